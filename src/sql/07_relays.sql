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

-- The foreign-data wrapper whose servers name the endpoints of http relays
-- (url, allow_private) and whose user mappings hold their secrets
-- (signing_secret, signing_secret_previous, bearer_token); src/targets/http.c.
CREATE FUNCTION txbox._http_validator(text[], oid)
RETURNS void
LANGUAGE c STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_http_validator';
CREATE FOREIGN DATA WRAPPER txbox_http VALIDATOR txbox._http_validator;

-- The foreign-data wrapper whose servers and user mappings name the Kafka
-- clusters relays produce to (src/targets/kafka.c: bootstrap_servers and
-- allowed producer properties on the server, secrets in the user mapping).
CREATE FUNCTION txbox._kafka_validator(text[], oid)
RETURNS void
LANGUAGE c STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_kafka_validator';
CREATE FOREIGN DATA WRAPPER txbox_kafka VALIDATOR txbox._kafka_validator;

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
	target			text NOT NULL CHECK (target IN ('postgres', 'notify', 'http', 'kafka')),
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

-- A kafka relay's own options: topic_prefix and the topic_map values make
-- Kafka topic names with the topics (at most 249 characters in all),
-- exactly_once and cloudevents are booleans.
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

-- The servers of a relay target: the foreign-data wrapper that its file in
-- src/targets names, and the options of a server and the end of a user
-- mapping's statement, for hints.  All null: the target has no server.
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

CREATE FUNCTION txbox._relay_check_options(target text, options jsonb)
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

-- A relay's server must be a server of its target's wrapper that role may
-- use, with a user mapping for role (or PUBLIC).
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
	IF merged ? 'server' THEN
		PERFORM txbox._relay_check_server(merged->>'server', r.owner, r.target);
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
-- prev), of the relay's topics, after after_id -- what a relay worker
-- reads, the way it reads them (src/relay.c explains the batches and their order).
CREATE FUNCTION txbox._batch_keys(prev pg_snapshot, cur pg_snapshot, relay_topics text[],
								  relay_name text, after_id bigint DEFAULT 0)
RETURNS TABLE (txid xid8, id bigint)
LANGUAGE c STABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_batch_keys';

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

