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
	('idempotency_keys', 0, 2),
	('inbox', 0, 3);

-- When each generation stopped being current: by which transaction
-- (ended_xid) and when.  Retention truncates a generation only once every
-- relay's position includes ended_xid (txbox._maintain).
CREATE TABLE txbox._generation_end (
	relname		name NOT NULL,
	gen			smallint NOT NULL,
	ended_at	timestamptz NOT NULL,
	ended_xid	xid8 NOT NULL,
	PRIMARY KEY (relname, gen)
);

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
	relay			text			-- NULL: every relay; else a replayed dead letter for that relay
	-- exactly one of payload and payload_bytes is set (publish.c ensures it;
	-- no CHECK here: it would cost every publish)
) PARTITION BY LIST (gen);
CREATE TABLE txbox.outbox_0 PARTITION OF txbox.outbox FOR VALUES IN (0);
CREATE TABLE txbox.outbox_1 PARTITION OF txbox.outbox FOR VALUES IN (1);
CREATE TABLE txbox.outbox_2 PARTITION OF txbox.outbox FOR VALUES IN (2);
CREATE INDEX outbox_txid_idx ON txbox.outbox (txid, id);
COMMENT ON TABLE txbox.outbox IS
	'messages published with txbox.publish / txbox.publish_bytes and still retained';

------------------------------------------------------------------------
-- Inbox deduplication records (txbox.inbox_claim)
------------------------------------------------------------------------

-- Ids compare bytewise (COLLATE "C": equality is the same in every
-- deterministic collation, and the index's comparisons skip strcoll).
CREATE TABLE txbox.inbox_dedup (
	gen			smallint NOT NULL,
	consumer	text COLLATE "C" NOT NULL,
	message_id	text COLLATE "C" NOT NULL,
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
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_api';
CREATE FUNCTION txbox._inbox_claim(caller regrole, consumer text, message_id text)
RETURNS boolean
LANGUAGE c VOLATILE PARALLEL UNSAFE
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

------------------------------------------------------------------------
-- Relays
------------------------------------------------------------------------

-- The foreign-data wrapper whose servers and user mappings name the
-- PostgreSQL databases relays deliver to (options as libpq's, validated
-- like postgres_fdw's).
CREATE FUNCTION txbox._fdw_validator(text[], oid)
RETURNS void
LANGUAGE c STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_fdw_validator';
CREATE FOREIGN DATA WRAPPER txbox_fdw VALIDATOR txbox._fdw_validator;

-- This server's "system identifier:timeline" (src/identity.c): the xid
-- space of relay positions.
CREATE FUNCTION txbox._cluster()
RETURNS text
LANGUAGE c STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_cluster';

CREATE TABLE txbox.relays (
	relay_id		serial PRIMARY KEY,
	name			text NOT NULL UNIQUE,
	target			text NOT NULL CHECK (target IN ('postgres', 'notify')),
	topics			text[],
	options			jsonb NOT NULL DEFAULT '{}',
	owner			regrole NOT NULL,
	paused			boolean NOT NULL DEFAULT false,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	-- position: every message visible in snapshot is delivered; within the
	-- batch up to batch_snapshot, those with id <= batch_last_id too
	snapshot		pg_snapshot NOT NULL,
	batch_snapshot	pg_snapshot,
	batch_last_id	bigint,
	-- the cluster and timeline the position belongs to (txbox._relays_adopt)
	position_cluster text NOT NULL DEFAULT txbox._cluster(),
	-- status
	state			text NOT NULL DEFAULT 'running',
	delivered		bigint NOT NULL DEFAULT 0,
	retried			bigint NOT NULL DEFAULT 0,
	dead_lettered	bigint NOT NULL DEFAULT 0,
	duplicates		bigint NOT NULL DEFAULT 0,	-- of delivered: already at the target (redelivered), dropped there
	last_delivered_at timestamptz,
	last_error		text,
	last_error_at	timestamptz
);
COMMENT ON TABLE txbox.relays IS 'relays and their positions; change them with the txbox.*_relay functions';

CREATE TABLE txbox.dead_letters (
	dead_letter_id	bigserial PRIMARY KEY,
	relay			text,				-- a relay's dead letter, or
	handler			text,				-- a handler's
	message_id		uuid NOT NULL,
	topic			text NOT NULL,
	key				text,
	headers			jsonb,
	payload			jsonb,
	payload_bytes	bytea,
	published_at	timestamptz NOT NULL,
	attempts		integer NOT NULL,
	last_error		text NOT NULL,
	failed_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	replayed_at		timestamptz,
	discarded_at	timestamptz,
	CHECK ((relay IS NULL) <> (handler IS NULL))
);
COMMENT ON TABLE txbox.dead_letters IS
	'messages a target rejected max_attempts times; txbox.replay_dead_letter sends one again';

-- Wake the worker tree when the current transaction commits (no-op
-- without shared_preload_libraries).
CREATE FUNCTION txbox._wake_at_commit(what text)
RETURNS void
LANGUAGE c STRICT VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_wake_at_commit_sql';

-- Whether the relay workers can run here; warns with a hint when not.
CREATE FUNCTION txbox._workers_available()
RETURNS boolean
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_workers_available';

-- The API functions that act for a role (relays, handlers, consumers, dead
-- letters) are not SECURITY DEFINER: each is txbox_api (src/relay_api.c),
-- which takes the role current at the call (current_user, as pg_cron
-- does; GetOuterUserId() would skip SECURITY DEFINER frames) and runs
-- txbox._<name>(caller, ...) as the extension's owner.  That role, caller,
-- owns what it creates and may change only what its roles own.

-- Why this database's manager could not start, and since when (NULLs while
-- it runs): then no relay or handler here runs (the status views say so).
CREATE FUNCTION txbox._manager_waiting(OUT reason text, OUT since timestamptz)
RETURNS record
LANGUAGE c VOLATILE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_manager_waiting';

-- Options common to every relay, and per target.
-- Options of a relay or handler (what): a JSON object of known keys
-- (allowed), integers within their range (integers: {"key": [min, max,
-- example]}), positive intervals of at most a day (intervals).
CREATE FUNCTION txbox._check_options(what text, options jsonb, allowed text[],
									 integers jsonb, intervals text[])
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	lo numeric;
	hi numeric;
BEGIN
	IF options IS NULL OR jsonb_typeof(options) <> 'object' THEN
		RAISE EXCEPTION '% options must be a JSON object', what
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = format('Options of a %s: %s.', what, array_to_string(allowed, ', '));
	END IF;
	FOR k IN SELECT jsonb_object_keys(options) LOOP
		IF NOT k = ANY (allowed) THEN
			RAISE EXCEPTION 'unknown % option "%"', what, k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = format('Options of a %s: %s.', what, array_to_string(allowed, ', '));
		END IF;
	END LOOP;
	FOR k IN SELECT jsonb_object_keys(integers) LOOP
		lo := (integers->k->>0)::numeric;
		hi := (integers->k->>1)::numeric;
		IF options ? k AND (jsonb_typeof(options->k) <> 'number'
		   OR (options->>k)::numeric NOT BETWEEN lo AND hi
		   OR (options->>k)::numeric <> trunc((options->>k)::numeric)) THEN
			RAISE EXCEPTION '% option "%" must be an integer from % to %', what, k, lo, hi
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = format('For example ''{"%s": %s}''.', k, integers->k->>2);
		END IF;
	END LOOP;
	FOREACH k IN ARRAY intervals LOOP
		IF options ? k THEN
			BEGIN
				IF (options->>k)::interval <= interval '0' OR (options->>k)::interval > interval '1 day' THEN
					RAISE EXCEPTION USING ERRCODE = 'invalid_datetime_format';
				END IF;
			EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_text_representation THEN
				RAISE EXCEPTION '% option "%" must be an interval between 0 and 1 day', what, k
					USING ERRCODE = 'invalid_parameter_value', HINT = format('For example ''{"%s": "30s"}''.', k);
			END;
		END IF;
	END LOOP;
	RETURN options;
END
$$;

-- Topic names of a relay or handler: NULL (all), or valid names.
CREATE FUNCTION txbox._check_topics(topics text[])
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t text;
BEGIN
	IF topics IS NULL THEN
		RETURN;
	END IF;
	IF cardinality(topics) = 0 THEN
		RAISE EXCEPTION 'topics must not be an empty array'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass NULL for all topics.';
	END IF;
	FOREACH t IN ARRAY topics LOOP
		IF t IS NULL OR t !~ '^[A-Za-z0-9._-]{1,249}$' THEN
			RAISE EXCEPTION 'invalid topic name "%"', t
				USING ERRCODE = 'invalid_name',
					  HINT = 'Topic names are 1 to 249 characters of A-Z, a-z, 0-9, ''.'', ''_'' and ''-''.';
		END IF;
	END LOOP;
END
$$;

-- Relays and handlers run as the role that creates them: it must log in.
CREATE FUNCTION txbox._check_caller_can_login(caller regrole, what text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT (SELECT rolcanlogin FROM pg_roles WHERE oid = caller) THEN
		RAISE EXCEPTION 'role % cannot log in, and a % runs as the role that creates it', caller, what
			USING ERRCODE = 'insufficient_privilege',
				  HINT = format('Create the %s as a role with LOGIN (RESET ROLE, or ALTER ROLE ... LOGIN).', what);
	END IF;
END
$$;

CREATE FUNCTION txbox._relay_check_options(target text, options jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM txbox._check_options(
		'relay', options,
		ARRAY['from', 'batch_size', 'max_attempts', 'backoff_max', 'connect_timeout',
			  'statement_timeout', CASE target WHEN 'postgres' THEN 'server' ELSE 'channel' END],
		'{"batch_size": [1, 100000, 1000], "max_attempts": [1, 1000000, 10]}',
		ARRAY['backoff_max', 'connect_timeout', 'statement_timeout']);
	IF target = 'postgres' AND NOT options ? 'server' THEN
		RAISE EXCEPTION 'a postgres relay needs the option "server"'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Create a server with CREATE SERVER name FOREIGN DATA WRAPPER txbox_fdw OPTIONS (host ..., dbname ...) and a USER MAPPING, then pass ''{"server": "name"}''.';
	END IF;
	IF target = 'notify' AND (NOT options ? 'channel' OR jsonb_typeof(options->'channel') <> 'string'
	   OR options->>'channel' = '' OR length(options->>'channel') >= 64) THEN
		RAISE EXCEPTION 'a notify relay needs the option "channel" (a name of up to 63 characters)'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass ''{"channel": "orders_events"}''.';
	END IF;
	IF options ? 'from' AND NOT (options->>'from') IN ('now', 'beginning') THEN
		RAISE EXCEPTION 'relay option "from" must be "now" or "beginning"'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = '"beginning" also delivers the messages still retained in the outbox.';
	END IF;
	RETURN options;
END
$$;

-- A postgres relay's server must be a txbox_fdw server that role may use,
-- with a user mapping for role (or PUBLIC).
CREATE FUNCTION txbox._relay_check_server(server text, role regrole)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	srv oid;
BEGIN
	SELECT s.oid INTO srv FROM pg_foreign_server s
	  JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
	 WHERE s.srvname = server AND w.fdwname = 'txbox_fdw';
	IF srv IS NULL THEN
		RAISE EXCEPTION 'server "%" does not exist or is not a txbox_fdw server', server
			USING ERRCODE = 'undefined_object',
				  HINT = 'CREATE SERVER name FOREIGN DATA WRAPPER txbox_fdw OPTIONS (host ''...'', port ''...'', dbname ''...'').';
	END IF;
	IF NOT has_server_privilege(role, srv, 'USAGE') THEN
		RAISE EXCEPTION 'permission denied for server "%"', server
			USING ERRCODE = 'insufficient_privilege',
				  HINT = format('GRANT USAGE ON FOREIGN SERVER %I TO %s.', server, role);
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_user_mapping
					WHERE umserver = srv AND umuser IN (role, 0)) THEN
		RAISE EXCEPTION 'user mapping for "%" on server "%" does not exist', role, server
			USING ERRCODE = 'undefined_object',
				  HINT = format('CREATE USER MAPPING FOR %s SERVER %I OPTIONS (user ''...'', password ''...'').', role, server);
	END IF;
END
$$;

-- The current snapshot, in which this transaction counts as in progress
-- (pg_current_snapshot leaves our own xid out of xip, so that messages we
-- published would look delivered): a relay created "from now" delivers
-- what its creating transaction publishes, before and after creating it.
CREATE FUNCTION txbox._snapshot_without_me()
RETURNS pg_snapshot
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN me OPERATOR(pg_catalog.<) pg_catalog.pg_snapshot_xmax(s) THEN
			 (LEAST(pg_catalog.pg_snapshot_xmin(s), me)::pg_catalog.text OPERATOR(pg_catalog.||) ':'
			  OPERATOR(pg_catalog.||) pg_catalog.pg_snapshot_xmax(s)::pg_catalog.text
			  OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||)
			  (SELECT pg_catalog.string_agg(x::pg_catalog.text, ',' ORDER BY x)
				 FROM (SELECT pg_catalog.pg_snapshot_xip(s) UNION SELECT me) AS xip(x)))::pg_catalog.pg_snapshot
			ELSE s END		-- at or above xmax: in progress already
	  FROM (SELECT pg_catalog.pg_current_snapshot(), pg_catalog.pg_current_xact_id()) AS now(s, me)
$$;

CREATE FUNCTION txbox._create_relay(caller regrole, name text, target text, topics text[],
								   options jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF name IS NULL OR name !~ '^[A-Za-z0-9._-]{1,60}$' THEN
		RAISE EXCEPTION 'invalid relay name "%"', name
			USING ERRCODE = 'invalid_name',
				  HINT = 'Relay names are 1 to 60 characters of A-Z, a-z, 0-9, ''.'', ''_'' and ''-''.';
	END IF;
	IF target IS NULL OR target NOT IN ('postgres', 'notify') THEN
		RAISE EXCEPTION 'unknown relay target "%"', target
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Targets: postgres (another database''s txbox.inbox), notify (NOTIFY a channel).';
	END IF;
	PERFORM txbox._check_topics(topics);
	options := txbox._relay_check_options(target, coalesce(options, '{}'));
	IF target = 'postgres' THEN
		PERFORM txbox._relay_check_server(options->>'server', caller);
	END IF;
	PERFORM txbox._check_caller_can_login(caller, 'relay');
	-- LISTEN needs no privilege: a notify relay shows every message it
	-- delivers to every role that can connect to this database
	IF target = 'notify' AND NOT (SELECT rolsuper FROM pg_roles WHERE oid = caller) THEN
		RAISE EXCEPTION 'only a superuser may create a notify relay'
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Any role that can connect to the database may LISTEN to its channel and read what it delivers: have a superuser create it, or use a postgres relay.';
	END IF;
	IF EXISTS (SELECT 1 FROM txbox.relays r WHERE r.name = _create_relay.name) THEN
		RAISE EXCEPTION 'relay "%" already exists', name
			USING ERRCODE = 'duplicate_object', HINT = 'Drop it first, or pick another name.';
	END IF;
	INSERT INTO txbox.relays (name, target, topics, options, owner, snapshot)
	VALUES (name, target, topics, options, caller,
			CASE WHEN options->>'from' = 'beginning' THEN '1:1:'::pg_snapshot
				 ELSE txbox._snapshot_without_me() END);
	PERFORM txbox._workers_available();
	PERFORM txbox._wake_at_commit('manager');
END
$$;
CREATE FUNCTION txbox.create_relay(name text, target text, topics text[] DEFAULT NULL,
								   options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_api';
COMMENT ON FUNCTION txbox.create_relay(text, text, text[], jsonb) IS
	'create a relay that delivers committed messages (of topics, or all) to a target';

-- The relay row, locked; errors clearly if there is none or the caller
-- may not change it (only its owner's members and superusers may).
CREATE FUNCTION txbox._relay_lock(caller regrole, name text)
RETURNS txbox.relays
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r txbox.relays;
BEGIN
	SELECT * INTO r FROM txbox.relays WHERE relays.name = _relay_lock.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'relay "%" does not exist', name
			USING ERRCODE = 'undefined_object', HINT = 'See SELECT name FROM txbox.relay_status.';
	END IF;
	IF NOT pg_has_role(caller, r.owner, 'USAGE') THEN
		RAISE EXCEPTION 'must be a member of role "%" to change relay "%"', r.owner, name
			USING ERRCODE = 'insufficient_privilege', HINT = 'Only the relay''s owner may change it.';
	END IF;
	RETURN r;
END
$$;

CREATE FUNCTION txbox._drop_relay(caller regrole, name text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM txbox._relay_lock(caller, name);
	DELETE FROM txbox.relays WHERE relays.name = _drop_relay.name;
	PERFORM txbox._wake_at_commit('manager');
END
$$;
CREATE FUNCTION txbox.drop_relay(name text)
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_api';

CREATE FUNCTION txbox._pause_relay(caller regrole, name text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM txbox._relay_lock(caller, name);
	UPDATE txbox.relays SET paused = true WHERE relays.name = _pause_relay.name;
	PERFORM txbox._wake_at_commit('manager');
END
$$;
CREATE FUNCTION txbox.pause_relay(name text)
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_api';

CREATE FUNCTION txbox._resume_relay(caller regrole, name text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM txbox._relay_lock(caller, name);
	UPDATE txbox.relays SET paused = false WHERE relays.name = _resume_relay.name;
	PERFORM txbox._wake_at_commit('manager');
END
$$;
CREATE FUNCTION txbox.resume_relay(name text)
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_api';

-- Merge options into the relay's (a null value removes an option).
CREATE FUNCTION txbox._alter_relay(caller regrole, name text, options jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r txbox.relays := txbox._relay_lock(caller, name);
	merged jsonb;
BEGIN
	IF options IS NULL OR jsonb_typeof(options) <> 'object' THEN
		RAISE EXCEPTION 'relay options must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ''{"batch_size": 500}''.';
	END IF;
	IF options ? 'from' THEN
		RAISE EXCEPTION 'option "from" only applies when a relay is created'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Drop and create the relay to deliver from the beginning.';
	END IF;
	merged := jsonb_strip_nulls(r.options || options);
	merged := txbox._relay_check_options(r.target, merged);
	IF r.target = 'postgres' THEN
		PERFORM txbox._relay_check_server(merged->>'server', r.owner);
	END IF;
	UPDATE txbox.relays SET options = merged WHERE relays.name = _alter_relay.name;
	PERFORM txbox._wake_at_commit('manager');
	PERFORM txbox._wake_at_commit('relays');
END
$$;
CREATE FUNCTION txbox.alter_relay(name text, options jsonb)
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_api';

-- Send a dead letter again: a relay's goes back to the outbox for that relay
-- only, with its message id (targets deduplicate); a handler's is retried
-- by its handler, and its key's later messages follow.  Returns the
-- message id.
CREATE FUNCTION txbox._replay_dead_letter(caller regrole, dead_letter_id bigint)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	d txbox.dead_letters := txbox._dead_letter_lock(caller, dead_letter_id);
BEGIN
	IF d.relay IS NOT NULL THEN
		PERFORM txbox._republish(d.relay, d.message_id, d.topic, d.key, d.headers,
								 d.payload, d.payload_bytes);
	ELSE
		-- due now, with fresh attempts: the handler tries it again first
		UPDATE txbox.handler_failures f SET dead = false, attempts = 0, next_attempt_at = now()
		  FROM txbox.handlers h
		 WHERE h.name = d.handler AND f.handler_id = h.handler_id
		   AND f.message_id = d.message_id;
		PERFORM txbox._wake_at_commit('handlers');
	END IF;
	UPDATE txbox.dead_letters x SET replayed_at = now()
	 WHERE x.dead_letter_id = _replay_dead_letter.dead_letter_id;
	RETURN d.message_id;
END
$$;
CREATE FUNCTION txbox.replay_dead_letter(dead_letter_id bigint)
RETURNS uuid
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_api';
COMMENT ON FUNCTION txbox.replay_dead_letter(bigint) IS
	'send a dead letter again (relay) or retry it (handler)';

-- Give up on a dead letter: a handler's is recorded processed without
-- running the handler, so its key's later messages go on; a relay's is
-- only marked discarded (retention may then delete it).
CREATE FUNCTION txbox._discard_dead_letter(caller regrole, dead_letter_id bigint)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	d txbox.dead_letters := txbox._dead_letter_lock(caller, dead_letter_id);
BEGIN
	IF d.handler IS NOT NULL THEN
		-- recorded handled; due now, so that its key's later messages go on
		PERFORM txbox._inbox_claim(caller, d.handler, d.message_id::text);
		UPDATE txbox.handler_failures f SET dead = false, next_attempt_at = now()
		  FROM txbox.handlers h
		 WHERE h.name = d.handler AND f.handler_id = h.handler_id
		   AND f.message_id = d.message_id;
		PERFORM txbox._wake_at_commit('handlers');
	END IF;
	UPDATE txbox.dead_letters x SET discarded_at = now()
	 WHERE x.dead_letter_id = _discard_dead_letter.dead_letter_id;
	RETURN d.message_id;
END
$$;
CREATE FUNCTION txbox.discard_dead_letter(dead_letter_id bigint)
RETURNS uuid
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_api';
COMMENT ON FUNCTION txbox.discard_dead_letter(bigint) IS
	'give up on a dead letter (relay or handler); a handler''s key goes on without it';

-- The dead letter, locked, not yet replayed or discarded; only members of
-- the role owning its relay or handler (superusers, once that is dropped)
-- may act on it.
CREATE FUNCTION txbox._dead_letter_lock(caller regrole, dead_letter_id bigint)
RETURNS txbox.dead_letters
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	d txbox.dead_letters;
	owner regrole;
BEGIN
	SELECT * INTO d FROM txbox.dead_letters x
	 WHERE x.dead_letter_id = _dead_letter_lock.dead_letter_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'dead letter % does not exist', dead_letter_id
			USING ERRCODE = 'undefined_object', HINT = 'See SELECT * FROM txbox.dead_letters.';
	END IF;
	owner := coalesce((SELECT r.owner FROM txbox.relays r WHERE r.name = d.relay),
					  (SELECT h.owner FROM txbox.handlers h WHERE h.name = d.handler));
	IF NOT (SELECT rolsuper FROM pg_roles WHERE oid = caller)
	   AND (owner IS NULL OR NOT pg_has_role(caller, owner, 'USAGE')) THEN
		RAISE EXCEPTION 'must be a member of the role owning % "%" to act on dead letter %',
			CASE WHEN d.relay IS NOT NULL THEN 'relay' ELSE 'handler' END,
			coalesce(d.relay, d.handler), dead_letter_id
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Only the owner of the relay or handler (a superuser once it is dropped) may replay or discard its dead letters.';
	END IF;
	IF d.replayed_at IS NOT NULL OR d.discarded_at IS NOT NULL THEN
		RAISE EXCEPTION 'dead letter % was already %', dead_letter_id,
			CASE WHEN d.replayed_at IS NOT NULL THEN 'replayed' ELSE 'discarded' END
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'If it failed again, it is a new dead letter.';
	END IF;
	RETURN d;
END
$$;

CREATE FUNCTION txbox._republish(relay text, message_id uuid, topic text, key text,
								 headers jsonb, payload jsonb, payload_bytes bytea)
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_republish';

-- The keys of a relay batch, in delivery order: messages of transactions
-- that committed between snapshots prev and cur (visible in cur, not in
-- prev), of the relay's topics, after after_id.  The late committers in
-- prev's in-progress list are found by txid, the rest by the txid range
-- from prev's xmax: an open transaction never makes a batch rescan.
-- (src/relay.c explains the ordering.)  No parameter is named like a
-- column: in a LANGUAGE sql function the column would win (sql/relay_promise.sql).
CREATE FUNCTION txbox._batch_keys(prev pg_snapshot, cur pg_snapshot, relay_topics text[],
								  relay_name text, after_id bigint DEFAULT 0)
RETURNS TABLE (txid xid8, id bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT o.txid, o.id
	  FROM txbox.outbox o
	 WHERE ((o.txid >= pg_snapshot_xmax(prev) AND o.txid < pg_snapshot_xmax(cur))
			OR o.txid = ANY (ARRAY(SELECT pg_snapshot_xip(prev))))
	   AND pg_visible_in_snapshot(o.txid, cur)
	   AND (relay_topics IS NULL OR o.topic = ANY (relay_topics))
	   AND (o.relay IS NULL OR o.relay = relay_name)
	   AND o.id > after_id
	 ORDER BY o.id
$$;

-- state 'waiting': no worker runs for lack of a worker slot, last_error
-- says why (the manager's row update, or this database's manager itself
-- could not start: _manager_waiting).
CREATE VIEW txbox.relay_status AS
SELECT r.name, r.target, r.topics, r.owner,
	   CASE WHEN r.paused THEN 'paused' WHEN m.reason IS NOT NULL THEN 'waiting' ELSE r.state END AS state,
	   r.snapshot AS position,
	   r.last_delivered_at,
	   b.messages AS lag_messages,
	   coalesce(extract(epoch FROM now() - b.oldest), 0)::double precision AS lag_seconds,
	   now() - b.oldest AS oldest_undelivered_age,
	   r.delivered, r.retried, r.dead_lettered, r.duplicates,
	   CASE WHEN m.reason IS NOT NULL AND NOT r.paused THEN m.reason ELSE r.last_error END AS last_error,
	   CASE WHEN m.reason IS NOT NULL AND NOT r.paused THEN m.since ELSE r.last_error_at END AS last_error_at,
	   r.options
  FROM txbox.relays r,
	   -- its backlog: committed messages it has not delivered yet (in the
	   -- view, not a function: the view's readers need no privilege on the
	   -- outbox or on a helper)
	   LATERAL (SELECT count(*) AS messages, min(o.published_at) AS oldest
				  FROM txbox.outbox o
				 WHERE o.txid >= pg_snapshot_xmin(r.snapshot)
				   AND NOT pg_visible_in_snapshot(o.txid, r.snapshot)
				   AND (r.topics IS NULL OR o.topic = ANY (r.topics))
				   AND (o.relay IS NULL OR o.relay = r.name)
				   AND NOT (r.batch_snapshot IS NOT NULL
							AND pg_visible_in_snapshot(o.txid, r.batch_snapshot)
							AND o.id <= r.batch_last_id)) b,
	   txbox._manager_waiting() m;
COMMENT ON VIEW txbox.relay_status IS
	'one row per relay: state (running, retrying, failed, paused, waiting for a worker slot), position, lag, counters, last error';

------------------------------------------------------------------------
-- Inbox consumption: SQL consumers and handler workers
------------------------------------------------------------------------

-- A consumer's topics, recorded so that retention waits for it.  Writes
-- (and so may wait for a concurrent first fetch) only when the consumer is
-- new or its topics changed.
CREATE FUNCTION txbox._consumer_register(consumer_name text, consumer_topics text[],
										 consumer_owner regrole)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO txbox.consumers AS c (consumer, topics, owner)
	SELECT consumer_name, consumer_topics, consumer_owner
	 WHERE NOT EXISTS (SELECT 1 FROM txbox.consumers x
						WHERE x.consumer = consumer_name
						  AND (x.topics IS NOT DISTINCT FROM consumer_topics
							   OR x.handler_id IS NOT NULL))
	ON CONFLICT (consumer) DO UPDATE SET topics = excluded.topics, low = 0
	WHERE c.topics IS DISTINCT FROM excluded.topics AND c.handler_id IS NULL
$$;

-- Move an SQL consumer's floor (txbox.consumers.low) up past the messages
-- above it that it has processed, so that fetches do not read them again.
-- Messages locked by a fetch in progress count as unprocessed.  Receives
-- are serialized, so inbox.seq grows in commit order: whatever commits
-- later lands above every seq seen here.  Only when the consumer's row can
-- be locked at once: concurrent fetches never wait for each other here.
CREATE FUNCTION txbox._consumer_advance(consumer_name text, consumer_topics text[], consumer_low bigint)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH stretch AS (
		-- the first unprocessed message above low, or the last message
		SELECT coalesce((SELECT i.seq - 1 FROM txbox.inbox i
						  WHERE i.seq > consumer_low
							AND (consumer_topics IS NULL OR i.topic = ANY (consumer_topics))
							AND NOT EXISTS (SELECT 1 FROM txbox.inbox_dedup d
											 WHERE d.consumer = consumer_name
											   AND d.message_id = i.message_id::text)
						  ORDER BY i.seq LIMIT 1),
						(SELECT max(i.seq) FROM txbox.inbox i)) AS new_low
	), mine AS (
		SELECT c.consumer FROM txbox.consumers c, stretch s
		 WHERE c.consumer = consumer_name AND c.low = consumer_low
		   AND s.new_low > c.low
		   FOR UPDATE OF c SKIP LOCKED
	)
	UPDATE txbox.consumers c SET low = s.new_low FROM mine m, stretch s
	 WHERE c.consumer = m.consumer
$$;

-- Up to batch messages of topics (NULL: all) that consumer has not
-- processed, oldest first, locked for this transaction: concurrent fetches
-- skip them.  Process them and call inbox_done in the same transaction.
CREATE FUNCTION txbox._inbox_fetch(caller regrole, consumer text, topics text[],
								  batch integer)
RETURNS SETOF txbox.message
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	low bigint;
BEGIN
	IF consumer IS NULL OR consumer = '' THEN
		RAISE EXCEPTION 'consumer must not be NULL or empty'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Name the consumer, e.g. ''billing''.';
	END IF;
	IF batch IS NULL OR batch < 1 OR batch > 100000 THEN
		RAISE EXCEPTION 'batch must be between 1 and 100000'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'For example 100.';
	END IF;
	PERFORM txbox._consumer_check(caller, consumer);
	PERFORM txbox._consumer_register(consumer, topics, caller);
	SELECT c.low INTO low FROM txbox.consumers c WHERE c.consumer = _inbox_fetch.consumer;
	RETURN QUERY
	SELECT i.message_id, i.topic, i.key, i.headers, i.payload, i.payload_bytes,
		   i.source, i.published_at, i.received_at
	  FROM txbox.inbox i
	 WHERE i.seq > low
	   AND (topics IS NULL OR i.topic = ANY (topics))
	   AND NOT EXISTS (SELECT 1 FROM txbox.inbox_dedup d
					    WHERE d.consumer = _inbox_fetch.consumer
						  AND d.message_id = i.message_id::text)
	 ORDER BY i.seq
	 LIMIT batch
	   FOR UPDATE OF i SKIP LOCKED;
	PERFORM txbox._consumer_advance(consumer, topics, low);
END
$$;
CREATE FUNCTION txbox.inbox_fetch(consumer text, topics text[] DEFAULT NULL,
								  batch integer DEFAULT 100)
RETURNS SETOF txbox.message
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_api';
COMMENT ON FUNCTION txbox.inbox_fetch(text, text[], integer) IS
	'unprocessed inbox messages for a consumer, locked for this transaction';

-- Record messages processed by consumer, with the effects of processing
-- them (same records as inbox_claim).  Raises 40001 if another transaction
-- processed one of them meanwhile, so the effects roll back.
CREATE FUNCTION txbox._inbox_done(caller regrole, consumer text, message_ids uuid[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id uuid;
	n integer := 0;
BEGIN
	IF message_ids IS NULL THEN
		RAISE EXCEPTION 'message_ids must not be NULL'
			USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass the ids inbox_fetch returned.';
	END IF;
	FOREACH id IN ARRAY message_ids LOOP
		IF id IS NULL THEN
			RAISE EXCEPTION 'message_ids must not contain NULL'
				USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass the ids inbox_fetch returned.';
		END IF;
		IF NOT txbox._inbox_claim(caller, consumer, id::text) THEN
			RAISE EXCEPTION 'message % was already processed by consumer "%"', id, consumer
				USING ERRCODE = 'serialization_failure',
					  HINT = 'Another transaction processed it first: roll back this one (its effects would be a duplicate) and fetch again.';
		END IF;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;
CREATE FUNCTION txbox.inbox_done(consumer text, message_ids uuid[])
RETURNS integer
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_api';
COMMENT ON FUNCTION txbox.inbox_done(text, uuid[]) IS
	'record fetched messages processed, in the transaction of their effects';

-- Forget a consumer: inbox retention stops waiting for it.
CREATE FUNCTION txbox._drop_consumer(caller regrole, consumer text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM txbox._consumer_check(caller, consumer);
	IF EXISTS (SELECT 1 FROM txbox.consumers c WHERE c.consumer = _drop_consumer.consumer
				AND c.handler_id IS NOT NULL) THEN
		RAISE EXCEPTION 'consumer "%" is a handler', consumer
			USING ERRCODE = 'object_in_use', HINT = 'Use txbox.drop_handler.';
	END IF;
	DELETE FROM txbox.consumers c WHERE c.consumer = _drop_consumer.consumer;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'consumer "%" does not exist', consumer
			USING ERRCODE = 'undefined_object', HINT = 'See SELECT * FROM txbox.consumers.';
	END IF;
END
$$;
CREATE FUNCTION txbox.drop_consumer(consumer text)
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_api';

CREATE TABLE txbox.handlers (
	handler_id		serial PRIMARY KEY,
	name			text NOT NULL UNIQUE,
	topics			text[],
	handler			regprocedure NOT NULL,
	owner			regrole NOT NULL,
	paused			boolean NOT NULL DEFAULT false,
	options			jsonb NOT NULL DEFAULT '{}',
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	state			text NOT NULL DEFAULT 'running',
	processed		bigint NOT NULL DEFAULT 0,
	retried			bigint NOT NULL DEFAULT 0,
	dead_lettered	bigint NOT NULL DEFAULT 0,
	last_processed_at timestamptz,
	last_error		text,
	last_error_at	timestamptz
);
COMMENT ON TABLE txbox.handlers IS 'handlers; change them with the txbox.*_handler functions';

-- A message a handler failed on: its attempts, and when to try again.
-- While it is here, the later messages of its key wait.
CREATE TABLE txbox.handler_failures (
	handler_id		integer NOT NULL REFERENCES txbox.handlers ON DELETE CASCADE,
	message_id		uuid NOT NULL,
	key				text NOT NULL,		-- the ordering key (message id when NULL)
	seq				bigint NOT NULL,	-- its place in the inbox: later ones of the key wait
	attempts		integer NOT NULL,
	last_error		text NOT NULL,
	next_attempt_at	timestamptz NOT NULL,
	dead			boolean NOT NULL DEFAULT false,
	PRIMARY KEY (handler_id, message_id)
);
CREATE INDEX handler_failures_key_idx ON txbox.handler_failures (handler_id, key);

CREATE FUNCTION txbox._handler_check_options(handler_options jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT txbox._check_options(
		'handler', handler_options,
		ARRAY['max_attempts', 'backoff', 'batch', 'parallel', 'statement_timeout'],
		'{"max_attempts": [1, 1000000, 10], "batch": [1, 10000, 100], "parallel": [1, 16, 2]}',
		ARRAY['backoff', 'statement_timeout'])
$$;

-- A handler function takes one txbox.message (a call per message) or a
-- txbox.message[] (a call per window of up to "batch" messages, in arrival
-- order); the owner must be allowed to call it.
CREATE FUNCTION txbox._handler_check_function(handler regprocedure, role regrole)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p pg_proc;
BEGIN
	SELECT * INTO p FROM pg_proc WHERE oid = handler;
	IF p.pronargs <> 1 OR p.proargtypes[0] NOT IN ('txbox.message'::regtype, 'txbox.message[]'::regtype)
	   OR p.proretset OR p.prokind <> 'f' THEN
		RAISE EXCEPTION 'handler % must be a function taking one argument of type txbox.message or txbox.message[]', handler
			USING ERRCODE = 'invalid_function_definition',
				  HINT = 'CREATE FUNCTION my_handler(m txbox.message) RETURNS void ..., or (ms txbox.message[]) to get a window of messages per call.';
	END IF;
	IF NOT has_function_privilege(role, handler, 'EXECUTE') THEN
		RAISE EXCEPTION 'permission denied for function %', handler
			USING ERRCODE = 'insufficient_privilege',
				  HINT = format('GRANT EXECUTE ON FUNCTION %s TO %s.', handler, role);
	END IF;
END
$$;

CREATE FUNCTION txbox._create_handler(caller regrole, name text, topics text[], handler regprocedure,
									 options jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id integer;
BEGIN
	IF name IS NULL OR name !~ '^[A-Za-z0-9._-]{1,50}$' THEN
		RAISE EXCEPTION 'invalid handler name "%"', name
			USING ERRCODE = 'invalid_name',
				  HINT = 'Handler names are 1 to 50 characters of A-Z, a-z, 0-9, ''.'', ''_'' and ''-''.';
	END IF;
	IF handler IS NULL THEN
		RAISE EXCEPTION 'handler must not be NULL'
			USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass a function, e.g. ''charge(txbox.message)''::regprocedure.';
	END IF;
	PERFORM txbox._check_topics(topics);
	options := txbox._handler_check_options(coalesce(options, '{}'));
	IF (options->>'parallel')::integer > current_setting('txbox.max_parallel', true)::integer THEN
		RAISE WARNING 'handler "%" asks for % workers: it runs txbox.max_parallel (%)',
			name, options->>'parallel', current_setting('txbox.max_parallel')
			USING HINT = 'A superuser may raise txbox.max_parallel.';
	END IF;
	PERFORM txbox._handler_check_function(handler, caller);
	PERFORM txbox._check_caller_can_login(caller, 'handler');
	IF EXISTS (SELECT 1 FROM txbox.handlers h WHERE h.name = _create_handler.name)
	   OR EXISTS (SELECT 1 FROM txbox.consumers c WHERE c.consumer = _create_handler.name) THEN
		RAISE EXCEPTION 'a handler or consumer "%" already exists', name
			USING ERRCODE = 'duplicate_object',
				  HINT = 'A handler is an inbox consumer of the same name: pick another name.';
	END IF;
	INSERT INTO txbox.handlers (name, topics, handler, owner, options)
	VALUES (name, topics, handler, caller, options)
	RETURNING handler_id INTO id;
	INSERT INTO txbox.consumers (consumer, topics, handler_id, owner) VALUES (name, topics, id, caller);
	PERFORM txbox._workers_available();
	PERFORM txbox._wake_at_commit('manager');
END
$$;
CREATE FUNCTION txbox.create_handler(name text, topics text[], handler regprocedure,
									 options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_api';
COMMENT ON FUNCTION txbox.create_handler(text, text[], regprocedure, jsonb) IS
	'call handler(txbox.message) for every inbox message of topics, or handler(txbox.message[]) for every window of them, in a background worker';

CREATE FUNCTION txbox._handler_lock(caller regrole, name text)
RETURNS txbox.handlers
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	h txbox.handlers;
BEGIN
	SELECT * INTO h FROM txbox.handlers WHERE handlers.name = _handler_lock.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'handler "%" does not exist', name
			USING ERRCODE = 'undefined_object', HINT = 'See SELECT name FROM txbox.handler_status.';
	END IF;
	IF NOT pg_has_role(caller, h.owner, 'USAGE') THEN
		RAISE EXCEPTION 'must be a member of role "%" to change handler "%"', h.owner, name
			USING ERRCODE = 'insufficient_privilege', HINT = 'Only the handler''s owner may change it.';
	END IF;
	RETURN h;
END
$$;

CREATE FUNCTION txbox._drop_handler(caller regrole, name text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	h txbox.handlers := txbox._handler_lock(caller, name);
BEGIN
	DELETE FROM txbox.consumers c WHERE c.handler_id = h.handler_id;
	DELETE FROM txbox.handlers x WHERE x.handler_id = h.handler_id;
	PERFORM txbox._wake_at_commit('manager');
END
$$;
CREATE FUNCTION txbox.drop_handler(name text)
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_api';

CREATE FUNCTION txbox._pause_handler(caller regrole, name text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	h txbox.handlers := txbox._handler_lock(caller, name);
BEGIN
	UPDATE txbox.handlers x SET paused = true WHERE x.handler_id = h.handler_id;
	PERFORM txbox._wake_at_commit('manager');
END
$$;
CREATE FUNCTION txbox.pause_handler(name text)
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_api';

CREATE FUNCTION txbox._resume_handler(caller regrole, name text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	h txbox.handlers := txbox._handler_lock(caller, name);
BEGIN
	UPDATE txbox.handlers x SET paused = false WHERE x.handler_id = h.handler_id;
	PERFORM txbox._wake_at_commit('manager');
END
$$;
CREATE FUNCTION txbox.resume_handler(name text)
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_api';

-- state 'waiting' and 'failed' as in relay_status.
CREATE VIEW txbox.handler_status AS
SELECT h.name, h.topics, h.handler, h.owner,
	   CASE WHEN h.paused THEN 'paused'
			WHEN m.reason IS NOT NULL THEN 'waiting'
			WHEN h.state IN ('waiting', 'failed') THEN h.state
			WHEN EXISTS (SELECT 1 FROM txbox.handler_failures f
						  WHERE f.handler_id = h.handler_id AND f.dead) THEN 'blocked'
			ELSE h.state END AS state,
	   h.processed, h.retried, h.dead_lettered,
	   b.messages AS lag_messages,
	   coalesce(extract(epoch FROM now() - b.oldest), 0)::double precision AS lag_seconds,
	   (SELECT count(*) FROM txbox.handler_failures f WHERE f.handler_id = h.handler_id) AS failing,
	   h.last_processed_at,
	   CASE WHEN m.reason IS NOT NULL AND NOT h.paused THEN m.reason ELSE h.last_error END AS last_error,
	   CASE WHEN m.reason IS NOT NULL AND NOT h.paused THEN m.since ELSE h.last_error_at END AS last_error_at,
	   h.options
  FROM txbox.handlers h,
	   -- its backlog: inbox messages of its topics it has not processed
	   LATERAL (SELECT count(*) AS messages, min(i.received_at) AS oldest
				  FROM txbox.inbox i
				 WHERE (h.topics IS NULL OR i.topic = ANY (h.topics))
				   AND NOT EXISTS (SELECT 1 FROM txbox.inbox_dedup d
								    WHERE d.consumer = h.name
									  AND d.message_id = i.message_id::text)) b,
	   txbox._manager_waiting() m;
COMMENT ON VIEW txbox.handler_status IS
	'one row per handler: state (running, paused, retrying, blocked by a dead letter, failed, waiting for a worker slot), counters, lag, last error';

------------------------------------------------------------------------
-- Retention, run by the per-database manager (src/manager.c)
------------------------------------------------------------------------

-- Rotate rotated_table (truncate its oldest generation, make it current)
-- if its current generation is at least min_age old and the oldest one may
-- go, as may_go(ended_at, ended_xid, gen) says (ended_* NULL: never used).
-- Returns whether it rotated.  Writers busy: not now (lock_timeout).
CREATE FUNCTION txbox._rotate_if(rotated_table name, min_age interval, may_go text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	g txbox._generation;
	e txbox._generation_end;
	oldest smallint;
	ok boolean;
BEGIN
	SELECT * INTO g FROM txbox._generation WHERE relname = rotated_table;
	IF g.switched_at > now() - min_age THEN
		RETURN false;
	END IF;
	oldest := (g.current_gen + 1) % g.generations;
	SELECT * INTO e FROM txbox._generation_end WHERE relname = rotated_table AND gen = oldest;
	EXECUTE 'SELECT ' || may_go USING e.ended_at, e.ended_xid, oldest INTO ok;
	IF NOT ok THEN
		RETURN false;
	END IF;
	BEGIN
		PERFORM txbox._switch_generation(rotated_table);
	EXCEPTION WHEN lock_not_available THEN
		RETURN false;		-- writers busy: next round
	END;
	RETURN true;
END
$$;

-- Retention, every few seconds: each rotated table drops its oldest
-- generation once nothing in it must be kept.
--  outbox: switched away from more than outbox_retention ago, and delivered
--    by every relay (paused ones too: a paused relay holds retention back).
--  inbox: switched away from more than inbox_retention ago (at most half
--    the dedup window), and every message processed by every consumer of
--    its topic (handlers included).
--  inbox_dedup: the other generation stopped taking claims more than
--    dedup_retention ago, so every record lives at least that long; and the
--    inbox holds no message that could have its record there: the oldest
--    message (by seq, which follows commit order) was received after that
--    generation's last claim committed.  A message never outlives the
--    record that it was processed, even while unprocessed messages (a dead
--    letter, a stopped consumer) hold the inbox back.  A late duplicate
--    (stored again after the inbox let go of its first copy) gets its
--    consumers' records renewed in the current generation (src/inbox.c).
--  idempotency_keys: every key of the oldest generation expired.
--  dead_letters (not a hot table): deleted dead_letter_retention after
--    they were resolved (replayed or discarded); an unresolved one stays
--    until someone replays or discards it (SPEC 1.4).
CREATE FUNCTION txbox._maintain()
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	outbox_keep interval := current_setting('txbox.outbox_retention')::interval;
	dedup_keep interval := current_setting('txbox.dedup_retention')::interval;
	inbox_keep interval := least(current_setting('txbox.inbox_retention')::interval, dedup_keep / 2);
	ttl interval := current_setting('txbox.idempotency_ttl')::interval;
BEGIN
	PERFORM txbox._relays_adopt();		-- before retention compares positions
	PERFORM txbox._rotate_if('outbox', greatest(outbox_keep / 2, interval '1s'), format(
		'$1 IS NULL OR ($1 <= now() - %L::interval AND NOT EXISTS (SELECT 1 FROM txbox.relays r
			WHERE NOT pg_visible_in_snapshot($2, r.snapshot)))', outbox_keep));
	PERFORM txbox._rotate_if('inbox', greatest(inbox_keep / 2, interval '1s'), format(
		'$1 IS NULL OR ($1 <= now() - %L::interval AND NOT EXISTS (
			SELECT 1 FROM txbox.inbox i JOIN txbox.consumers c
			    ON c.topics IS NULL OR i.topic = ANY (c.topics)
			 WHERE i.gen = $3 AND NOT EXISTS (SELECT 1 FROM txbox.inbox_dedup d
				WHERE d.consumer = c.consumer AND d.message_id = i.message_id::text)))', inbox_keep));
	PERFORM txbox._rotate_if('inbox_dedup', dedup_keep,
		'$1 IS NULL OR coalesce((SELECT i.received_at > $1 FROM txbox.inbox i ORDER BY i.seq LIMIT 1), true)');
	PERFORM txbox._rotate_if('idempotency_keys', least(ttl, interval '1 hour'),
		'NOT EXISTS (SELECT 1 FROM txbox.idempotency_keys k WHERE k.gen = $3 AND k.expires_at > now())');
	DELETE FROM txbox.dead_letters d
	 WHERE coalesce(d.replayed_at, d.discarded_at)
		   < now() - current_setting('txbox.dead_letter_retention')::interval;
END
$$;

------------------------------------------------------------------------
-- pg_dump, pg_restore, failover (README "Backup, restore and failover")
------------------------------------------------------------------------

-- Relays whose position was saved on another cluster or timeline (a dump
-- restored elsewhere, a promoted standby, point-in-time recovery,
-- pg_upgrade): their snapshots belong to another xid space and compare
-- nonsense here, so they start again from the beginning of what the outbox
-- retains; the targets drop the messages they already have.  Each relay
-- calls this before it uses its position, and retention before it compares
-- positions; the row locks make one caller adopt each relay.
CREATE FUNCTION txbox._relays_adopt()
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	here text := txbox._cluster();
	r record;
BEGIN
	FOR r IN SELECT x.relay_id, x.name, x.position_cluster FROM txbox.relays x
			  WHERE x.position_cluster <> here FOR UPDATE OF x
	LOOP
		UPDATE txbox.relays x
		   SET snapshot = '1:1:', batch_snapshot = NULL, batch_last_id = NULL,
			   position_cluster = here
		 WHERE x.relay_id = r.relay_id;
		RAISE LOG 'txbox relay "%": position saved on cluster:timeline %, this is %: delivering every message the outbox retains again (targets drop those they have)',
			r.name, r.position_cluster, here;
	END LOOP;
END
$$;

-- Generation gen of rotated_table got rows restored by this transaction:
-- for retention it ends no earlier than now, by this transaction (a relay
-- position that includes ended_xid includes the restored messages).
CREATE FUNCTION txbox._generation_restored(rotated_table name, generation smallint)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO txbox._generation_end AS e (relname, gen, ended_at, ended_xid)
	SELECT _generation_restored.rotated_table, _generation_restored.generation,
		   now(), pg_current_xact_id()
	 WHERE NOT EXISTS (SELECT 1 FROM txbox._generation_end x
						WHERE x.relname = _generation_restored.rotated_table
						  AND x.gen = _generation_restored.generation
						  AND x.ended_xid = pg_current_xact_id())
	ON CONFLICT (relname, gen) DO UPDATE SET ended_at = excluded.ended_at, ended_xid = excluded.ended_xid
$$;

-- pg_restore loads txbox's state (marked below) with COPY after CREATE
-- EXTENSION, and these triggers adapt what it loads:
--  outbox, idempotency_keys: restored txids belong to the dumped cluster.
--    Restored rows take the restoring transaction's: their messages are new
--    to every relay position and are delivered (again), and the targets
--    drop the duplicates; a restored generation ends now, by this
--    transaction.  Statement triggers on the partitions, with the rows of
--    the statement: pg_restore writes into the partitions, txbox only
--    through the parent, which fires none of them (publishing pays nothing).
--  _generation_end: restored rows likewise (txbox writes ended_xid as
--    pg_current_xact_id(); a restored row carries an older one).
--  _generation: the install script's rows take the restored generations;
--    no rotation until the retention intervals passed from now.
--  relays, handlers: a restored copy must not deliver to the original's
--    targets, nor handle messages before the restore is complete: restored
--    relays and handlers (created_at is not now) are paused until
--    txbox.resume_relay / txbox.resume_handler.
CREATE FUNCTION txbox._restored_rows()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('UPDATE txbox.%I t SET txid = pg_current_xact_id() FROM restored r WHERE %s
					   AND r.txid <> pg_current_xact_id()',
				   TG_TABLE_NAME, CASE TG_ARGV[0]
				   WHEN 'outbox' THEN 't.txid = r.txid AND t.id = r.id'
				   ELSE 't.scope = r.scope AND t.key = r.key AND t.gen = r.gen' END);
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n > 0 AND TG_ARGV[0] = 'outbox' THEN
		PERFORM txbox._generation_restored('outbox', TG_ARGV[1]::smallint);
	END IF;
	RETURN NULL;
END
$$;
CREATE TRIGGER restored AFTER INSERT ON txbox.outbox_0 REFERENCING NEW TABLE AS restored
	FOR EACH STATEMENT EXECUTE FUNCTION txbox._restored_rows('outbox', '0');
CREATE TRIGGER restored AFTER INSERT ON txbox.outbox_1 REFERENCING NEW TABLE AS restored
	FOR EACH STATEMENT EXECUTE FUNCTION txbox._restored_rows('outbox', '1');
CREATE TRIGGER restored AFTER INSERT ON txbox.outbox_2 REFERENCING NEW TABLE AS restored
	FOR EACH STATEMENT EXECUTE FUNCTION txbox._restored_rows('outbox', '2');
CREATE TRIGGER restored AFTER INSERT ON txbox.idempotency_keys_0 REFERENCING NEW TABLE AS restored
	FOR EACH STATEMENT EXECUTE FUNCTION txbox._restored_rows('idempotency_keys', '0');
CREATE TRIGGER restored AFTER INSERT ON txbox.idempotency_keys_1 REFERENCING NEW TABLE AS restored
	FOR EACH STATEMENT EXECUTE FUNCTION txbox._restored_rows('idempotency_keys', '1');

CREATE FUNCTION txbox._restored_generation_end()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM txbox._generation_restored(NEW.relname, NEW.gen);
	RETURN NULL;
END
$$;
CREATE TRIGGER restored BEFORE INSERT ON txbox._generation_end FOR EACH ROW
	WHEN (NEW.ended_xid OPERATOR(pg_catalog.<>) pg_catalog.pg_current_xact_id())
	EXECUTE FUNCTION txbox._restored_generation_end();

CREATE FUNCTION txbox._restored_generation()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE txbox._generation g SET current_gen = NEW.current_gen, switched_at = now()
	 WHERE g.relname = NEW.relname;
	RETURN NULL;
END
$$;
CREATE TRIGGER restored BEFORE INSERT ON txbox._generation FOR EACH ROW
	EXECUTE FUNCTION txbox._restored_generation();

CREATE FUNCTION txbox._restored_paused()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	NEW.paused := true;
	RETURN NEW;
END
$$;
CREATE TRIGGER restored BEFORE INSERT ON txbox.relays FOR EACH ROW
	WHEN (NEW.created_at OPERATOR(pg_catalog.<>) pg_catalog.now())
	EXECUTE FUNCTION txbox._restored_paused();
CREATE TRIGGER restored BEFORE INSERT ON txbox.handlers FOR EACH ROW
	WHEN (NEW.created_at OPERATOR(pg_catalog.<>) pg_catalog.now())
	EXECUTE FUNCTION txbox._restored_paused();

-- What pg_dump keeps: every table of state (a partitioned table's rows are
-- in its partitions) and every sequence.
SELECT pg_catalog.pg_extension_config_dump('txbox._generation', '');
SELECT pg_catalog.pg_extension_config_dump('txbox._generation_end', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.outbox_0', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.outbox_1', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.outbox_2', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.inbox_0', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.inbox_1', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.inbox_2', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.inbox_seq', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.inbox_dedup_0', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.inbox_dedup_1', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.idempotency_keys_0', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.idempotency_keys_1', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.consumers', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.relays', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.relays_relay_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.handlers', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.handlers_handler_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.handler_failures', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.dead_letters_dead_letter_id_seq', '');

------------------------------------------------------------------------
-- Privileges.  Nothing for PUBLIC; see README "Grants" for the roles.
------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA txbox FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA txbox FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA txbox FROM PUBLIC;
-- the status views call it for whoever reads them; it tells only whether
-- this database's manager waits for a worker slot, and why
GRANT EXECUTE ON FUNCTION txbox._manager_waiting() TO PUBLIC;

-- A new txbox database: have the launcher start its manager at commit.
SELECT txbox._wake_at_commit('launcher');
