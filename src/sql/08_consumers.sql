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
		   AND s.new_low > c.low AND c.topics IS NOT DISTINCT FROM consumer_topics
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

-- A handler worker's floor, one row per part (src/handler.c): every inbox
-- message of the handler's topics whose key falls in part (of "parallel"
-- parts) with seq <= low is processed.  Written by the worker with a
-- window, at most once a second; inbox retention reads it
-- (txbox._inbox_processed).
CREATE TABLE txbox.handler_floors (
	handler_id		integer NOT NULL REFERENCES txbox.handlers ON DELETE CASCADE,
	part			integer NOT NULL,
	parallel		integer NOT NULL,
	low				bigint NOT NULL,
	PRIMARY KEY (handler_id, part)
);

-- Every consumer's floor: each inbox message of its topics with seq <= low
-- is processed by it.  An SQL consumer's is txbox.consumers.low
-- (inbox_fetch advances it), a handler's the least of its workers'
-- (txbox.handler_floors; 0 unless every part of one "parallel" has its
-- row).  Inbox retention (txbox._inbox_processed) and handler_status's lag
-- look only above it.
CREATE VIEW txbox._consumer_floors AS
SELECT c.consumer, c.topics, c.handler_id,
	   CASE WHEN c.handler_id IS NULL THEN c.low ELSE coalesce(
			(SELECT max(s.low) FROM (SELECT min(f.low) AS low FROM txbox.handler_floors f
			  WHERE f.handler_id = c.handler_id AND f.part < f.parallel
			  GROUP BY f.parallel HAVING count(*) = f.parallel) s), 0) END AS low
  FROM txbox.consumers c;

CREATE FUNCTION txbox._handler_check_options(handler_options jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT txbox._check_options('handler', handler_options, ARRAY['handler'])
$$;

-- A handler function takes one txbox.message (a call per message) or a
-- txbox.message[] (a call per window of up to "batch_size" messages, in arrival
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
COMMENT ON VIEW txbox.handler_status IS
	'one row per handler: state (running, paused, retrying, blocked by a dead letter, failed, waiting for a worker slot), counters, lag, last error';

