------------------------------------------------------------------------
-- Stored inbox: messages delivered by relays from other databases
------------------------------------------------------------------------

-- Arrival order in the inbox: handlers and inbox_fetch go by it.
CREATE SEQUENCE txbox.inbox_seq;

CREATE TABLE txbox.inbox (
	gen				smallint NOT NULL,
	seq				bigint NOT NULL DEFAULT pg_catalog.nextval('txbox.inbox_seq'::pg_catalog.regclass),
	message_id		uuid NOT NULL,
	topic			text NOT NULL,
	key				text,
	headers			jsonb,
	payload			jsonb,
	payload_bytes	bytea,
	source			text NOT NULL,
	published_at	timestamptz NOT NULL,
	received_at		timestamptz NOT NULL,
	PRIMARY KEY (message_id, gen),
	CHECK ((payload IS NULL) <> (payload_bytes IS NULL))
) PARTITION BY LIST (gen);
CREATE TABLE txbox.inbox_0 PARTITION OF txbox.inbox FOR VALUES IN (0);
CREATE TABLE txbox.inbox_1 PARTITION OF txbox.inbox FOR VALUES IN (1);
CREATE TABLE txbox.inbox_2 PARTITION OF txbox.inbox FOR VALUES IN (2);
CREATE INDEX inbox_seq_idx ON txbox.inbox (seq);

-- Messages' payloads and headers are compressed with lz4 where the server
-- has it (Debian's and PGDG's builds do): pglz took half of a receiving
-- backend's CPU (bench/RELAY.md), lz4 a fraction of that for about 10%
-- more space.  A server built without lz4 keeps default_toast_compression.
DO $$
DECLARE
	tables pg_catalog.regclass[] := ARRAY['txbox.outbox', 'txbox.inbox'];
	t pg_catalog.regclass;
BEGIN
	IF EXISTS (SELECT FROM pg_catalog.pg_settings s
				WHERE s.name OPERATOR(pg_catalog.=) 'default_toast_compression'
				  AND 'lz4'::pg_catalog.text OPERATOR(pg_catalog.=) ANY (s.enumvals)) THEN
		-- the partitioned tables and their partitions (which do not follow)
		FOR t IN SELECT pg_catalog.unnest(tables)
				 UNION ALL
				 SELECT i.inhrelid FROM pg_catalog.pg_inherits i
				  WHERE i.inhparent OPERATOR(pg_catalog.=) ANY (tables)
		LOOP
			EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN headers SET COMPRESSION lz4,'
									  ' ALTER COLUMN payload SET COMPRESSION lz4,'
									  ' ALTER COLUMN payload_bytes SET COMPRESSION lz4', t);
		END LOOP;
	END IF;
END
$$;

-- What a handler receives, and what txbox.inbox_fetch returns.
CREATE TYPE txbox.message AS (
	message_id		uuid,
	topic			text,
	key				text,
	headers			jsonb,
	payload			jsonb,
	payload_bytes	bytea,
	source			text,
	published_at	timestamptz,
	received_at		timestamptz
);

-- The consumers of the inbox (SQL consumers of inbox_fetch and handlers):
-- inbox retention keeps every message until each consumer whose topics it
-- matches has processed it.
CREATE TABLE txbox.consumers (
	consumer		text PRIMARY KEY,
	topics			text[],				-- NULL: all
	handler_id		integer,			-- a handler's own consumer
	-- the role that registered it (a handler's owner): only its members
	-- (and superusers) may claim, fetch, complete or drop its messages
	owner			regrole NOT NULL,
	registered_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	-- an SQL consumer's floor: every inbox message of its topics with seq
	-- <= low is processed (inbox_fetch advances it and looks above it)
	low				bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE txbox.consumers IS
	'inbox consumers; txbox.drop_consumer forgets one that stopped, so retention no longer waits for it';

-- Refuse (42501) unless caller may act as consumer: a registered consumer
-- belongs to its owner's members (and superusers); an unregistered name
-- is anyone's (src/inbox.c).
CREATE FUNCTION txbox._consumer_check(caller regrole, consumer text)
RETURNS void
LANGUAGE c STRICT VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_consumer_check';
COMMENT ON TABLE txbox.inbox IS
	'messages delivered here by txbox relays, one row per message id';

-- Called by a remote relay (targets/postgres.c): store a batch, dropping
-- message ids already in the inbox.  Returns how many were new.  The
-- messages' source is the session user (the relay's login), '/', source.
CREATE FUNCTION txbox._inbox_receive(source text, message_ids uuid[], topics text[],
									 keys text[], headers jsonb[], payloads jsonb[],
									 payloads_bytes bytea[], published_at timestamptz[])
RETURNS integer
LANGUAGE c VOLATILE PARALLEL UNSAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_inbox_receive';
COMMENT ON FUNCTION txbox._inbox_receive(text, uuid[], text[], text[], jsonb[], jsonb[], bytea[], timestamptz[]) IS
	'private: store messages delivered by a relay, ignoring duplicates';

