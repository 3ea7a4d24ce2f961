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

-- kafka: the kafka relay target (txbox_kafka servers, relay options)
CREATE FUNCTION txbox._kafka_validator(text[], oid)
RETURNS void
LANGUAGE c STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_kafka_validator';
CREATE FOREIGN DATA WRAPPER txbox_kafka VALIDATOR txbox._kafka_validator;
ALTER TABLE txbox.relays DROP CONSTRAINT relays_target_check,
	ADD CONSTRAINT relays_target_check CHECK (target IN ('postgres', 'notify', 'kafka'));
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
CREATE OR REPLACE FUNCTION txbox._relay_check_options(target text, options jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM txbox._check_options(
		'relay', options,
		ARRAY['from', 'batch_size', 'max_attempts', 'backoff_max', 'connect_timeout',
			  'statement_timeout'] || CASE target WHEN 'postgres' THEN ARRAY['server']
			  WHEN 'kafka' THEN ARRAY['server', 'topic_prefix', 'topic_map', 'exactly_once', 'cloudevents']
			  ELSE ARRAY['channel'] END,
		'{"batch_size": [1, 100000, 1000], "max_attempts": [1, 1000000, 10]}',
		ARRAY['backoff_max', 'connect_timeout', 'statement_timeout']);
	IF target = 'postgres' AND NOT options ? 'server' THEN
		RAISE EXCEPTION 'a postgres relay needs the option "server"'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Create a server with CREATE SERVER name FOREIGN DATA WRAPPER txbox_fdw OPTIONS (host ..., dbname ...) and a USER MAPPING, then pass ''{"server": "name"}''.';
	END IF;
	IF target = 'kafka' AND NOT options ? 'server' THEN
		RAISE EXCEPTION 'a kafka relay needs the option "server"'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Create a server with CREATE SERVER name FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers ''host:9092'') and a USER MAPPING, then pass ''{"server": "name"}''.';
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
DROP FUNCTION txbox._relay_check_server(text, regrole);
CREATE FUNCTION txbox._relay_check_server(server text, role regrole, wrapper text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	srv oid;
BEGIN
	SELECT s.oid INTO srv FROM pg_foreign_server s
	  JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
	 WHERE s.srvname = server AND w.fdwname = wrapper;
	IF srv IS NULL THEN
		RAISE EXCEPTION 'server "%" does not exist or is not a % server', server, wrapper
			USING ERRCODE = 'undefined_object',
				  HINT = CASE wrapper WHEN 'txbox_kafka' THEN
					'CREATE SERVER name FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers ''host:9092'').'
					ELSE 'CREATE SERVER name FOREIGN DATA WRAPPER txbox_fdw OPTIONS (host ''...'', port ''...'', dbname ''...'').' END;
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
				  HINT = CASE wrapper WHEN 'txbox_kafka' THEN
					format('CREATE USER MAPPING FOR %s SERVER %I, with OPTIONS (sasl_username ''...'', sasl_password ''...'') for SASL.', role, server)
					ELSE format('CREATE USER MAPPING FOR %s SERVER %I OPTIONS (user ''...'', password ''...'').', role, server) END;
	END IF;
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
	IF target IS NULL OR target NOT IN ('postgres', 'notify', 'kafka') THEN
		RAISE EXCEPTION 'unknown relay target "%"', target
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Targets: postgres (another database''s txbox.inbox), notify (NOTIFY a channel), kafka (a Kafka cluster).';
	END IF;
	PERFORM txbox._check_topics(topics);
	options := txbox._relay_check_options(target, coalesce(options, '{}'));
	IF target IN ('postgres', 'kafka') THEN
		PERFORM txbox._relay_check_server(options->>'server', caller,
			CASE target WHEN 'kafka' THEN 'txbox_kafka' ELSE 'txbox_fdw' END);
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
	IF r.target IN ('postgres', 'kafka') THEN
		PERFORM txbox._relay_check_server(merged->>'server', r.owner,
			CASE r.target WHEN 'kafka' THEN 'txbox_kafka' ELSE 'txbox_fdw' END);
	END IF;
	UPDATE txbox.relays SET options = merged WHERE relays.name = _alter_relay.name;
	PERFORM txbox._wake_at_commit('manager');
	PERFORM txbox._wake_at_commit('relays');
END
$$;
REVOKE ALL ON FUNCTION txbox._kafka_validator(text[], oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION txbox._kafka_check_options(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION txbox._relay_check_server(text, regrole, text) FROM PUBLIC;
