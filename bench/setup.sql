-- bench/setup.sql -- the benchmark database: txbox and the hand-made
-- baselines it is compared with.  Run once on the throwaway cluster.
CREATE EXTENSION txbox;
CREATE SCHEMA bench;

-- The business table every publish variant writes one row into.
CREATE TABLE bench.orders (
	id			bigserial PRIMARY KEY,
	customer_id	int NOT NULL,
	amount		numeric(12,2) NOT NULL,
	status		text NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);

-- (b) A hand-made outbox: what a relay needs (bigserial primary key to read
-- in order), a message id, a topic, a jsonb payload and a timestamp.
CREATE TABLE bench.outbox (
	id			bigserial PRIMARY KEY,
	message_id	uuid NOT NULL,
	topic		text NOT NULL,
	payload		jsonb NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);

-- (d) A hand-made dedup table.
CREATE TABLE bench.dedup (
	consumer	text NOT NULL,
	message_id	text NOT NULL,
	claimed_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (consumer, message_id)
);

-- Diagnostics (BENCH_DIAG=1) ------------------------------------------

-- A plain table of txbox.outbox's shape, written by plain SQL.
CREATE SEQUENCE bench.outbox_shape_id_seq;
CREATE TABLE bench.outbox_shape (LIKE txbox.outbox INCLUDING CONSTRAINTS)
	PARTITION BY LIST (gen);
CREATE TABLE bench.outbox_shape_0 PARTITION OF bench.outbox_shape FOR VALUES IN (0);
CREATE TABLE bench.outbox_shape_1 PARTITION OF bench.outbox_shape FOR VALUES IN (1);
CREATE TABLE bench.outbox_shape_2 PARTITION OF bench.outbox_shape FOR VALUES IN (2);
CREATE INDEX ON bench.outbox_shape (txid);

-- The same C functions as txbox.publish and txbox._inbox_claim, declared
-- without SECURITY DEFINER (and without the txbox_api wrapper of
-- inbox_claim: the caller is passed).  The C code schema-qualifies
-- everything, so it behaves the same (the caller here is a superuser).
CREATE FUNCTION bench.publish_plain(topic text, payload jsonb, key text DEFAULT NULL,
									headers jsonb DEFAULT NULL,
									message_id uuid DEFAULT NULL)
RETURNS uuid LANGUAGE c VOLATILE AS '$libdir/txbox', 'txbox_publish';
CREATE FUNCTION bench.inbox_claim_plain(caller regrole, consumer text, message_id text)
RETURNS boolean LANGUAGE c VOLATILE AS '$libdir/txbox', 'txbox_inbox_claim';
