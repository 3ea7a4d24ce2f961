/*-------------------------------------------------------------------------
 * txbox--0.1.0.sql
 *		Install script for the txbox extension: the outbox, the inbox
 *		deduplication records and the idempotency keys.
 *
 * Storage layout.  The three growing tables (outbox, inbox_dedup,
 * idempotency_keys) are LIST-partitioned by a small "generation" number.
 * Writers insert into the current generation only; txbox._generation says
 * which one that is.  Old data is removed by truncating a whole generation
 * and making it current again (src/generation.c, txbox._switch_generation),
 * never by per-row DELETE, so none of these tables bloats.
 *-------------------------------------------------------------------------
 */
\echo Use "CREATE EXTENSION txbox" to load this file. \quit

-- The current generation of each rotated table.
CREATE TABLE txbox._generation (
	relname		name PRIMARY KEY,
	current_gen	smallint NOT NULL,
	generations	smallint NOT NULL CHECK (generations >= 2),
	switched_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	CHECK (current_gen >= 0 AND current_gen < generations)
);
INSERT INTO txbox._generation (relname, current_gen, generations) VALUES
	('outbox', 0, 3),
	('inbox_dedup', 0, 2),
	('idempotency_keys', 0, 2);

------------------------------------------------------------------------
-- Outbox
------------------------------------------------------------------------

-- Publish order.  Within one transaction ids follow publish order; across
-- transactions relays deliver by commit (snapshot batches on txid), not by id.
CREATE SEQUENCE txbox.outbox_id_seq;

CREATE TABLE txbox.outbox (
	gen				smallint NOT NULL,
	id				bigint NOT NULL,
	txid			xid8 NOT NULL,
	message_id		uuid NOT NULL,
	topic			text NOT NULL,
	key				text,
	headers			jsonb,
	payload			jsonb,
	payload_bytes	bytea,
	published_at	timestamptz NOT NULL,
	CHECK ((payload IS NULL) <> (payload_bytes IS NULL))
) PARTITION BY LIST (gen);
CREATE TABLE txbox.outbox_0 PARTITION OF txbox.outbox FOR VALUES IN (0);
CREATE TABLE txbox.outbox_1 PARTITION OF txbox.outbox FOR VALUES IN (1);
CREATE TABLE txbox.outbox_2 PARTITION OF txbox.outbox FOR VALUES IN (2);
CREATE INDEX outbox_txid_idx ON txbox.outbox (txid);
COMMENT ON TABLE txbox.outbox IS
	'messages published with txbox.publish / txbox.publish_bytes and still retained';

------------------------------------------------------------------------
-- Inbox deduplication records (txbox.inbox_claim)
------------------------------------------------------------------------

CREATE TABLE txbox.inbox_dedup (
	gen			smallint NOT NULL,
	consumer	text NOT NULL,
	message_id	text NOT NULL,
	claimed_at	timestamptz NOT NULL,
	PRIMARY KEY (consumer, message_id, gen)
) PARTITION BY LIST (gen);
CREATE TABLE txbox.inbox_dedup_0 PARTITION OF txbox.inbox_dedup FOR VALUES IN (0);
CREATE TABLE txbox.inbox_dedup_1 PARTITION OF txbox.inbox_dedup FOR VALUES IN (1);
COMMENT ON TABLE txbox.inbox_dedup IS
	'one row per (consumer, message id) processed, kept for txbox.dedup_retention';

------------------------------------------------------------------------
-- Idempotency keys
------------------------------------------------------------------------

CREATE TABLE txbox.idempotency_keys (
	gen				smallint NOT NULL,
	scope			text NOT NULL,
	key				text NOT NULL,
	fingerprint		text,
	txid			xid8 NOT NULL,
	response		jsonb,
	response_status	integer,
	created_at		timestamptz NOT NULL,
	expires_at		timestamptz NOT NULL,
	completed_at	timestamptz,
	PRIMARY KEY (scope, key, gen)
) PARTITION BY LIST (gen);
CREATE TABLE txbox.idempotency_keys_0 PARTITION OF txbox.idempotency_keys FOR VALUES IN (0);
CREATE TABLE txbox.idempotency_keys_1 PARTITION OF txbox.idempotency_keys FOR VALUES IN (1);
COMMENT ON TABLE txbox.idempotency_keys IS
	'idempotency keys and their stored responses, kept until expires_at';

------------------------------------------------------------------------
-- Functions.  Every one pins search_path (test: sql/security.sql).
------------------------------------------------------------------------

CREATE FUNCTION txbox.publish(topic text, payload jsonb, key text DEFAULT NULL,
							  headers jsonb DEFAULT NULL,
							  message_id uuid DEFAULT NULL)
RETURNS uuid
LANGUAGE c VOLATILE PARALLEL UNSAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_publish';
COMMENT ON FUNCTION txbox.publish(text, jsonb, text, jsonb, uuid) IS
	'publish a JSON message in the current transaction; returns its message id';

CREATE FUNCTION txbox.publish_bytes(topic text, payload bytea, key text DEFAULT NULL,
									headers jsonb DEFAULT NULL,
									message_id uuid DEFAULT NULL)
RETURNS uuid
LANGUAGE c VOLATILE PARALLEL UNSAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_publish_bytes';
COMMENT ON FUNCTION txbox.publish_bytes(text, bytea, text, jsonb, uuid) IS
	'publish a binary message (delivered byte-exact) in the current transaction';

CREATE FUNCTION txbox.inbox_claim(consumer text, message_id text)
RETURNS boolean
LANGUAGE c VOLATILE PARALLEL UNSAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_inbox_claim';
COMMENT ON FUNCTION txbox.inbox_claim(text, text) IS
	'true the first time consumer claims message_id (do the work in this transaction), false for a duplicate';

CREATE FUNCTION txbox.idempotency_begin(scope text, key text,
										fingerprint text DEFAULT NULL,
										wait boolean DEFAULT true)
RETURNS TABLE (state text, response jsonb, response_status integer)
LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_idempotency_begin';
COMMENT ON FUNCTION txbox.idempotency_begin(text, text, text, boolean) IS
	'take an idempotency key: new (held by this transaction), completed (stored response) or in_progress';

CREATE FUNCTION txbox.idempotency_complete(scope text, key text, response jsonb,
										   response_status integer DEFAULT 200)
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_idempotency_complete';
COMMENT ON FUNCTION txbox.idempotency_complete(text, text, jsonb, integer) IS
	'store the response of the request holding this idempotency key, with its effects';

CREATE FUNCTION txbox._switch_generation(relname name)
RETURNS smallint
LANGUAGE c STRICT VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_switch_generation';
COMMENT ON FUNCTION txbox._switch_generation(name) IS
	'private: truncate the oldest generation of a rotated table and make it current';

------------------------------------------------------------------------
-- Privileges.  Nothing for PUBLIC; see README "Grants" for the roles.
------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA txbox FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA txbox FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA txbox FROM PUBLIC;
