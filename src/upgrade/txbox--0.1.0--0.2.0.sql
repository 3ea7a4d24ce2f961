/*-------------------------------------------------------------------------
 * txbox--0.1.0--0.2.0.sql
 *		ALTER EXTENSION txbox UPDATE from 0.1.0: every schema change made
 *		in src/sql/ since 0.1.0, in the order it was made.  A new function
 *		here is revoked from PUBLIC like every other (src/sql/11_grants.sql).
 *		test/t/080_upgrade.pl checks that 0.1.0 + this script gives the
 *		same catalog as a fresh 0.2.0 install.
 *-------------------------------------------------------------------------
 */
\echo Use "ALTER EXTENSION txbox UPDATE" to load this file. \quit

-- shape: the options of relays and handlers in one table (txbox.options(),
-- src/options.c); handlers' batch and backoff are now batch_size and
-- backoff_max, the old names still accepted
DROP FUNCTION txbox._check_options(text, jsonb, text[], jsonb, text[]);
-- The options of relays and handlers, one row each (src/options.c, where
-- the workers read the same table): what they apply to ('relay': every
-- relay, a relay target's name, 'handler'), the 0.1.0 spelling still
-- accepted (alias), kind (integer from min to max; interval over 0 and at
-- most a day; text), default (a value, or the setting that gives it).
CREATE FUNCTION txbox.options(OUT applies_to text, OUT name text, OUT alias text,
							  OUT kind text, OUT min integer, OUT max integer,
							  OUT default_value text)
RETURNS SETOF record
LANGUAGE c IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_options_sql';
COMMENT ON FUNCTION txbox.options() IS
	'the options of relays and handlers: names, 0.1.0 aliases, kinds, ranges, defaults';

-- Check the options of a relay or handler (what) against txbox.options()
-- rows of applies_to: a JSON object of known keys, integers within their
-- range, intervals over 0 and at most a day.  Returns them with every
-- alias replaced by its option's name.
CREATE FUNCTION txbox._check_options(what text, options jsonb, applies_to text[])
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	allowed text := (SELECT string_agg(o.name, ', ') FROM txbox.options() o
					  WHERE o.applies_to = ANY (_check_options.applies_to));
	o record;
	k text;
	example text;
BEGIN
	IF options IS NULL OR jsonb_typeof(options) <> 'object' THEN
		RAISE EXCEPTION '% options must be a JSON object', what
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = format('Options of a %s: %s.', what, allowed);
	END IF;
	FOR k IN SELECT jsonb_object_keys(options) LOOP
		IF NOT EXISTS (SELECT 1 FROM txbox.options() x
						WHERE x.applies_to = ANY (_check_options.applies_to)
						  AND k IN (x.name, x.alias)) THEN
			RAISE EXCEPTION 'unknown % option "%"', what, k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = format('Options of a %s: %s.', what, allowed);
		END IF;
	END LOOP;
	FOR o IN SELECT * FROM txbox.options() x WHERE x.applies_to = ANY (_check_options.applies_to) LOOP
		IF options ? o.name AND options ? o.alias THEN
			RAISE EXCEPTION '% option "%" is given twice, also as "%"', what, o.name, o.alias
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = format('"%s" is the earlier name of "%s": give only "%s".', o.alias, o.name, o.name);
		END IF;
		k := CASE WHEN options ? o.name THEN o.name WHEN options ? o.alias THEN o.alias END;
		CONTINUE WHEN k IS NULL;
		example := CASE WHEN o.default_value LIKE 'txbox.%' THEN current_setting(o.default_value)
						ELSE o.default_value END;
		IF o.kind = 'integer' AND (jsonb_typeof(options->k) <> 'number'
		   OR (options->>k)::numeric NOT BETWEEN o.min AND o.max
		   OR (options->>k)::numeric <> trunc((options->>k)::numeric)) THEN
			RAISE EXCEPTION '% option "%" must be an integer from % to %', what, k, o.min, o.max
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = format('For example ''{"%s": %s}''.', k, example);
		END IF;
		IF o.kind = 'interval' THEN
			BEGIN
				IF (options->>k)::interval <= interval '0' OR (options->>k)::interval > interval '1 day' THEN
					RAISE EXCEPTION USING ERRCODE = 'invalid_datetime_format';
				END IF;
			EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_text_representation THEN
				RAISE EXCEPTION '% option "%" must be an interval between 0 and 1 day', what, k
					USING ERRCODE = 'invalid_parameter_value', HINT = format('For example ''{"%s": "%s"}''.', k, example);
			END;
		END IF;
		IF k = o.alias THEN
			options := options - o.alias || jsonb_build_object(o.name, options->o.alias);
		END IF;
	END LOOP;
	RETURN options;
END
$$;

CREATE OR REPLACE FUNCTION txbox._handler_check_options(handler_options jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT txbox._check_options('handler', handler_options, ARRAY['handler'])
$$;

REVOKE ALL ON FUNCTION txbox.options() FROM PUBLIC;
REVOKE ALL ON FUNCTION txbox._check_options(text, jsonb, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION txbox.options() TO PUBLIC;

-- http: the webhook target (relays.target 'http', the txbox_http wrapper,
-- its options and server checks)
CREATE FUNCTION txbox._http_validator(text[], oid)
RETURNS void
LANGUAGE c STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_http_validator';
CREATE FOREIGN DATA WRAPPER txbox_http VALIDATOR txbox._http_validator;
REVOKE ALL ON FUNCTION txbox._http_validator(text[], oid) FROM PUBLIC;
-- kafka: the kafka relay target (txbox_kafka servers, relay options)
CREATE FUNCTION txbox._kafka_validator(text[], oid)
RETURNS void
LANGUAGE c STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_kafka_validator';
CREATE FOREIGN DATA WRAPPER txbox_kafka VALIDATOR txbox._kafka_validator;
CREATE FUNCTION txbox._kafka_check_options(options jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
BEGIN
	IF options ? 'topic_prefix' AND (jsonb_typeof(options->'topic_prefix') <> 'string'
	   OR options->>'topic_prefix' !~ '^[A-Za-z0-9._-]{0,200}$') THEN
		RAISE EXCEPTION 'kafka relay option "topic_prefix" must be a string of up to 200 characters of A-Z, a-z, 0-9, ''.'', ''_'' and ''-'''
			USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ''{"topic_prefix": "shop."}''.';
	END IF;
	IF options ? 'topic_map' THEN
		IF jsonb_typeof(options->'topic_map') <> 'object' THEN
			RAISE EXCEPTION 'kafka relay option "topic_map" must be a JSON object of topic names'
				USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ''{"topic_map": {"orders": "shop-orders"}}''.';
		END IF;
		FOR k IN SELECT jsonb_object_keys(options->'topic_map') LOOP
			IF jsonb_typeof(options->'topic_map'->k) <> 'string'
			   OR options->'topic_map'->>k !~ '^[A-Za-z0-9._-]{1,249}$' THEN
				RAISE EXCEPTION 'kafka relay option "topic_map" maps "%" to an invalid Kafka topic name', k
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'Topic names are 1 to 249 characters of A-Z, a-z, 0-9, ''.'', ''_'' and ''-''.';
			END IF;
		END LOOP;
	END IF;
	FOREACH k IN ARRAY ARRAY['exactly_once', 'cloudevents'] LOOP
		IF options ? k AND jsonb_typeof(options->k) <> 'boolean' THEN
			RAISE EXCEPTION 'kafka relay option "%" must be true or false', k
				USING ERRCODE = 'invalid_parameter_value', HINT = format('For example ''{"%s": true}''.', k);
		END IF;
	END LOOP;
END
$$;

REVOKE ALL ON FUNCTION txbox._kafka_validator(text[], oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION txbox._kafka_check_options(jsonb) FROM PUBLIC;

-- http, kafka: the relay targets they add, the servers of each target and
-- their check, and the relay functions that name the targets
ALTER TABLE txbox.relays DROP CONSTRAINT relays_target_check,
	ADD CONSTRAINT relays_target_check CHECK (target IN ('postgres', 'notify', 'http', 'kafka'));
DROP FUNCTION txbox._relay_check_server(text, regrole);
CREATE FUNCTION txbox._relay_server_kind(relay_target text, OUT wrapper text,
										 OUT server_options text, OUT mapping_options text)
RETURNS record
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT k.wrapper, k.server_options, k.mapping_options
	  FROM (VALUES ('postgres', 'txbox_fdw', 'host ''...'', port ''...'', dbname ''...''',
					' OPTIONS (user ''...'', password ''...'')'),
				   ('http', 'txbox_http', 'url ''https://...''', ' OPTIONS (signing_secret ''whsec_...'')'),
				   ('kafka', 'txbox_kafka', 'bootstrap_servers ''host:9092''',
					', with OPTIONS (sasl_username ''...'', sasl_password ''...'') for SASL'))
		   AS k(target, wrapper, server_options, mapping_options)
	 WHERE k.target OPERATOR(pg_catalog.=) relay_target
$$;

REVOKE ALL ON FUNCTION txbox._relay_server_kind(text) FROM PUBLIC;
CREATE FUNCTION txbox._relay_check_server(server text, role regrole, target text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind record;
	srv oid;
BEGIN
	SELECT * INTO kind FROM txbox._relay_server_kind(target);
	SELECT s.oid INTO srv FROM pg_foreign_server s
	  JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
	 WHERE s.srvname = server AND w.fdwname = kind.wrapper;
	IF srv IS NULL THEN
		RAISE EXCEPTION 'server "%" does not exist or is not a % server', server, kind.wrapper
			USING ERRCODE = 'undefined_object',
				  HINT = format('CREATE SERVER name FOREIGN DATA WRAPPER %s OPTIONS (%s).',
								kind.wrapper, kind.server_options);
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
				  HINT = format('CREATE USER MAPPING FOR %s SERVER %I%s.', role, server, kind.mapping_options);
	END IF;
END
$$;

REVOKE ALL ON FUNCTION txbox._relay_check_server(text, regrole, text) FROM PUBLIC;
CREATE OR REPLACE FUNCTION txbox._relay_check_options(target text, options jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind record;
BEGIN
	options := txbox._check_options('relay', options, ARRAY['relay', target]);
	SELECT * INTO kind FROM txbox._relay_server_kind(target);
	IF kind.wrapper IS NOT NULL AND NOT options ? 'server' THEN
		RAISE EXCEPTION '% relays need the option "server"', target
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = format('Create a server with CREATE SERVER name FOREIGN DATA WRAPPER %s OPTIONS (%s) and a USER MAPPING, then pass ''{"server": "name"}''.',
								kind.wrapper, kind.server_options);
	END IF;
	IF options ? 'format' AND NOT (options->>'format') IN ('webhooks', 'cloudevents') THEN
		RAISE EXCEPTION 'relay option "format" must be "webhooks" or "cloudevents"'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = '"cloudevents" adds the CloudEvents binary-mode headers ce-id, ce-source, ce-type, ce-specversion.';
	END IF;
	IF target = 'kafka' THEN
		PERFORM txbox._kafka_check_options(options);
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

CREATE OR REPLACE FUNCTION txbox._create_relay(caller regrole, name text, target text, topics text[],
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
	IF target IS NULL OR target NOT IN ('postgres', 'notify', 'http', 'kafka') THEN
		RAISE EXCEPTION 'unknown relay target "%"', target
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Targets: postgres (another database''s txbox.inbox), notify (NOTIFY a channel), http (webhooks), kafka (a Kafka cluster).';
	END IF;
	PERFORM txbox._check_topics(topics);
	options := txbox._relay_check_options(target, coalesce(options, '{}'));
	IF options ? 'server' THEN
		PERFORM txbox._relay_check_server(options->>'server', caller, target);
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

CREATE OR REPLACE FUNCTION txbox._alter_relay(caller regrole, name text, options jsonb)
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
	IF merged ? 'server' THEN
		PERFORM txbox._relay_check_server(merged->>'server', r.owner, r.target);
	END IF;
	UPDATE txbox.relays SET options = merged WHERE relays.name = _alter_relay.name;
	PERFORM txbox._wake_at_commit('manager');
	PERFORM txbox._wake_at_commit('relays');
END
$$;


-- speed: publish, publish_bytes and inbox_claim no longer pin search_path
-- (their SQL qualifies every name; sql/security.sql plants look-alikes)
ALTER FUNCTION txbox.publish(text, jsonb, text, jsonb, uuid) RESET search_path;
ALTER FUNCTION txbox.publish_bytes(text, bytea, text, jsonb, uuid) RESET search_path;
ALTER FUNCTION txbox.inbox_claim(text, text) RESET search_path;
ALTER FUNCTION txbox._inbox_claim(regrole, text, text) RESET search_path;

-- speed: a relay's batch keys come from one saved plan in the library
-- (src/relay.c); txbox._batch_keys shows them with it
CREATE OR REPLACE FUNCTION txbox._batch_keys(prev pg_snapshot, cur pg_snapshot, relay_topics text[],
											 relay_name text, after_id bigint DEFAULT 0)
RETURNS TABLE (txid xid8, id bigint)
LANGUAGE c STABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_batch_keys';

-- hand: handlers persist their floor (txbox.handler_floors), and inbox
-- retention checks every consumer's floor before scanning
-- (txbox._inbox_processed); an SQL consumer's floor moves only under the
-- topics it was computed for
CREATE TABLE txbox.handler_floors (
	handler_id		integer NOT NULL REFERENCES txbox.handlers ON DELETE CASCADE,
	part			integer NOT NULL,
	parallel		integer NOT NULL,
	low				bigint NOT NULL,
	PRIMARY KEY (handler_id, part)
);
REVOKE ALL ON TABLE txbox.handler_floors FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('txbox.handler_floors', '');
CREATE OR REPLACE FUNCTION txbox._consumer_advance(consumer_name text, consumer_topics text[], consumer_low bigint)
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
		   AND s.new_low > c.low AND c.topics IS NOT DISTINCT FROM consumer_topics
		   FOR UPDATE OF c SKIP LOCKED
	)
	UPDATE txbox.consumers c SET low = s.new_low FROM mine m, stretch s
	 WHERE c.consumer = m.consumer
$$;
CREATE VIEW txbox._consumer_floors AS
SELECT c.consumer, c.topics, c.handler_id,
	   CASE WHEN c.handler_id IS NULL THEN c.low ELSE coalesce(
			(SELECT max(s.low) FROM (SELECT min(f.low) AS low FROM txbox.handler_floors f
			  WHERE f.handler_id = c.handler_id AND f.part < f.parallel
			  GROUP BY f.parallel HAVING count(*) = f.parallel) s), 0) END AS low
  FROM txbox.consumers c;
REVOKE ALL ON TABLE txbox._consumer_floors FROM PUBLIC;
CREATE FUNCTION txbox._inbox_processed(generation smallint)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_material = off
SET jit = off
AS $$
	SELECT NOT EXISTS (
		SELECT 1
		  FROM txbox._consumer_floors c,
			   (SELECT max(x.seq) AS seq FROM txbox.inbox x WHERE x.gen = _inbox_processed.generation) l
		 WHERE c.low < l.seq
		   -- the first unprocessed message up to there above the floor, by
		   -- the seq index (later generations' messages are all above)
		   AND (SELECT true FROM txbox.inbox i
				 WHERE i.seq > c.low AND i.seq <= l.seq
				   AND (c.topics IS NULL OR i.topic = ANY (c.topics))
				   AND NOT EXISTS (SELECT 1 FROM txbox.inbox_dedup d
									WHERE d.consumer = c.consumer
									  AND d.message_id = i.message_id::text)
				 ORDER BY i.seq LIMIT 1))
$$;
REVOKE ALL ON FUNCTION txbox._inbox_processed(smallint) FROM PUBLIC;

-- retention: a rotation that could not have its locks is tried again
-- sooner (src/manager.c) than at the next round
CREATE OR REPLACE FUNCTION txbox._rotate_if(rotated_table name, min_age interval, may_go text)
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
		RETURN NULL;		-- busy: try again soon
	END;
	RETURN true;
END
$$;
DROP FUNCTION txbox._maintain();
CREATE FUNCTION txbox._maintain()
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	outbox_keep interval := current_setting('txbox.outbox_retention')::interval;
	dedup_keep interval := current_setting('txbox.dedup_retention')::interval;
	inbox_keep interval := least(current_setting('txbox.inbox_retention')::interval, dedup_keep / 2);
	ttl interval := current_setting('txbox.idempotency_ttl')::interval;
	rotated boolean[];
BEGIN
	PERFORM txbox._relays_adopt();		-- before retention compares positions
	-- in this order (the inbox before its dedup records)
	rotated := ARRAY[
		txbox._rotate_if('outbox', greatest(outbox_keep / 2, interval '1s'), format(
			'$1 IS NULL OR ($1 <= now() - %L::interval AND NOT EXISTS (SELECT 1 FROM txbox.relays r
				WHERE NOT pg_visible_in_snapshot($2, r.snapshot)))', outbox_keep)),
		txbox._rotate_if('inbox', greatest(inbox_keep / 2, interval '1s'), format(
			'$1 IS NULL OR ($1 <= now() - %L::interval AND txbox._inbox_processed($3))', inbox_keep)),
		txbox._rotate_if('inbox_dedup', dedup_keep,
			'$1 IS NULL OR coalesce((SELECT i.received_at > $1 FROM txbox.inbox i ORDER BY i.seq LIMIT 1), true)'),
		txbox._rotate_if('idempotency_keys', least(ttl, interval '1 hour'),
			'NOT EXISTS (SELECT 1 FROM txbox.idempotency_keys k WHERE k.gen = $3 AND k.expires_at > now())')];
	DELETE FROM txbox.dead_letters d
	 WHERE coalesce(d.replayed_at, d.discarded_at)
		   < now() - current_setting('txbox.dead_letter_retention')::interval;
	RETURN array_position(rotated, NULL) IS NOT NULL;	-- one was busy
END
$$;
REVOKE ALL ON FUNCTION txbox._maintain() FROM PUBLIC;

-- handler_status: the lag is looked for above the handler's floor only
CREATE OR REPLACE VIEW txbox.handler_status AS
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
	   -- its backlog: inbox messages of its topics it has not processed,
	   -- looked for above its floor only (the inbox is seconds to read
	   -- whole, and a reader holds its rotation back); the upper bound, the
	   -- last message, makes the planner expect a short range of seq and
	   -- look up each message's dedup record by index, without JIT
	   LATERAL (SELECT count(*) AS messages, min(i.received_at) AS oldest
				  FROM txbox.inbox i
				 WHERE i.seq > coalesce((SELECT f.low FROM txbox._consumer_floors f
										  WHERE f.handler_id = h.handler_id), 0)
				   AND i.seq <= (SELECT max(x.seq) FROM txbox.inbox x)
				   AND (h.topics IS NULL OR i.topic = ANY (h.topics))
				   AND NOT EXISTS (SELECT 1 FROM txbox.inbox_dedup d
								    WHERE d.consumer = h.name
									  AND d.message_id = i.message_id::text)) b,
	   txbox._manager_waiting() m;

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
