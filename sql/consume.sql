SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- consume: the stored inbox and its consumers (SPEC 2.3) -- inbox_fetch /
-- inbox_done, consumers, the handler API and its errors, dead letters.
-- Handlers are created paused in the same transaction, so no worker runs
-- them here (TAP tests run them).
--
-- (the tests run as an OS user named txbox: keep "$user" out of the path)
SET search_path = public;
\i sql/include/try.sql

-- six messages arrive as a relay delivers them (two of them twice)
CREATE TEMP TABLE m AS
SELECT g, ('00000000-0000-7000-8000-00000000000' || g)::uuid AS id,
	   CASE WHEN g <= 4 THEN 'orders' ELSE 'refunds' END AS topic
  FROM generate_series(1, 6) g;
SELECT txbox._inbox_receive('regress', array_agg(id ORDER BY g), array_agg(topic ORDER BY g),
	array_agg('k' || g % 2 ORDER BY g), array_agg(NULL::jsonb ORDER BY g),
	array_agg(jsonb_build_object('g', g) ORDER BY g), array_agg(NULL::bytea ORDER BY g),
	array_agg(now() ORDER BY g)) AS new_messages FROM m;
SELECT txbox._inbox_receive('regress', array_agg(id ORDER BY g), array_agg(topic ORDER BY g),
	array_agg('k' || g % 2 ORDER BY g), array_agg(NULL::jsonb ORDER BY g),
	array_agg(jsonb_build_object('g', g) ORDER BY g), array_agg(NULL::bytea ORDER BY g),
	array_agg(now() ORDER BY g)) AS redelivered_are_dropped FROM m WHERE g <= 2;
SELECT count(*) AS in_inbox FROM txbox.inbox;

-- a consumer fetches in arrival order, at most batch, its topics only
BEGIN;
SELECT payload->>'g' AS g, topic, key FROM txbox.inbox_fetch('billing', ARRAY['orders'], 2);
SELECT txbox.inbox_done('billing', ARRAY['00000000-0000-7000-8000-000000000001',
										 '00000000-0000-7000-8000-000000000002']::uuid[]) AS done;
COMMIT;
SELECT payload->>'g' AS g FROM txbox.inbox_fetch('billing', ARRAY['orders'], 10);
-- another consumer sees every message, once
SELECT string_agg(payload->>'g', ',') AS audit_sees FROM txbox.inbox_fetch('audit', NULL, 10);
-- a rolled-back inbox_done leaves the message to fetch again
BEGIN;
SELECT txbox.inbox_done('billing', ARRAY['00000000-0000-7000-8000-000000000003']::uuid[]);
ROLLBACK;
SELECT string_agg(payload->>'g', ',') AS billing_left FROM txbox.inbox_fetch('billing', ARRAY['orders'], 10);
-- inbox_done and inbox_claim are the same records
SELECT txbox.inbox_claim('billing', '00000000-0000-7000-8000-000000000001') AS claim_after_done;
SELECT txbox.inbox_claim('billing', '00000000-0000-7000-8000-000000000003') AS claim_first;
SELECT string_agg(payload->>'g', ',') AS billing_left FROM txbox.inbox_fetch('billing', ARRAY['orders'], 10);
SELECT pg_temp.try($$SELECT txbox.inbox_done('billing', ARRAY['00000000-0000-7000-8000-000000000003']::uuid[])$$) AS done_twice;
-- a consumer's floor: fetches look only above the messages it processed in
-- a row (1-3: the floor is 3 messages up)
CREATE TEMP VIEW floor AS
SELECT c.low - (SELECT min(seq) - 1 FROM txbox.inbox) AS floor FROM txbox.consumers c WHERE consumer = 'billing';
SELECT * FROM floor;
-- with 4 processed, it moves past 5 and 6 too (refunds: not its topics)
SELECT txbox.inbox_claim('billing', '00000000-0000-7000-8000-000000000004') AS claim_4;
SELECT count(*) AS billing_left FROM txbox.inbox_fetch('billing', ARRAY['orders'], 10);
SELECT * FROM floor;
-- a change of topics starts from the beginning again: 5 and 6 are returned
SELECT string_agg(payload->>'g', ',') AS billing_with_refunds
  FROM txbox.inbox_fetch('billing', ARRAY['orders', 'refunds'], 10);
SELECT txbox.inbox_done('billing', ARRAY['00000000-0000-7000-8000-000000000005',
	'00000000-0000-7000-8000-000000000006']::uuid[]) AS done;
SELECT count(*) AS billing_left FROM txbox.inbox_fetch('billing', ARRAY['orders'], 10);
SELECT * FROM floor;
DROP VIEW floor;
-- bad arguments
SELECT pg_temp.try($$SELECT * FROM txbox.inbox_fetch('', NULL, 10)$$) AS empty_consumer;
SELECT pg_temp.try($$SELECT * FROM txbox.inbox_fetch(NULL, NULL, 10)$$) AS null_consumer;
SELECT pg_temp.try($$SELECT * FROM txbox.inbox_fetch('billing', NULL, 0)$$) AS batch_zero;
SELECT pg_temp.try($$SELECT txbox.inbox_done('billing', NULL)$$) AS done_null;
SELECT pg_temp.try($$SELECT txbox.inbox_done('billing', ARRAY[NULL]::uuid[])$$) AS done_null_id;
-- consumers are remembered with their topics, for retention
SELECT consumer, topics, handler_id FROM txbox.consumers ORDER BY consumer;
SELECT txbox.drop_consumer('audit');
SELECT pg_temp.try($$SELECT txbox.drop_consumer('audit')$$) AS drop_unknown_consumer;

-- handlers: API errors
CREATE FUNCTION good(m txbox.message) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION wrong_arg(i int) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION two_args(m txbox.message, i int) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION returns_set(m txbox.message) RETURNS SETOF int LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION good_window(ms txbox.message[]) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION wrong_array(ms int[]) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT pg_temp.try($$SELECT txbox.create_handler('bad name', NULL, 'good(txbox.message)')$$) AS bad_name;
SELECT pg_temp.try($$SELECT txbox.create_handler('h', NULL, NULL)$$) AS null_function;
SELECT pg_temp.try($$SELECT txbox.create_handler('h', NULL, 'missing(txbox.message)')$$) AS unknown_function;
SELECT pg_temp.try($$SELECT txbox.create_handler('h', NULL, 'wrong_arg(int)')$$) AS wrong_signature;
SELECT pg_temp.try($$SELECT txbox.create_handler('h', NULL, 'two_args(txbox.message, int)')$$) AS two_arguments;
SELECT pg_temp.try($$SELECT txbox.create_handler('h', NULL, 'returns_set(txbox.message)')$$) AS set_returning;
SELECT pg_temp.try($$SELECT txbox.create_handler('h', NULL, 'wrong_array(int[])')$$) AS array_of_another_type;
SELECT pg_temp.try($$SELECT txbox.create_handler('h', ARRAY[]::text[], 'good(txbox.message)')$$) AS empty_topics;
SELECT pg_temp.try($$SELECT txbox.create_handler('h', ARRAY['a b'], 'good(txbox.message)')$$) AS bad_topic;
SELECT pg_temp.try($$SELECT txbox.create_handler('h', NULL, 'good(txbox.message)', '{"colour": 1}')$$) AS unknown_option;
SELECT pg_temp.try($$SELECT txbox.create_handler('h', NULL, 'good(txbox.message)', '{"parallel": 17}')$$) AS too_parallel;
SELECT pg_temp.try($$SELECT txbox.create_handler('h', NULL, 'good(txbox.message)', '{"max_attempts": 0}')$$) AS no_attempts;
SELECT pg_temp.try($$SELECT txbox.create_handler('h', NULL, 'good(txbox.message)', '{"batch": "x"}')$$) AS batch_text;
SELECT pg_temp.try($$SELECT txbox.create_handler('h', NULL, 'good(txbox.message)', '{"backoff": "later"}')$$) AS backoff_not_interval;
-- batch and backoff are the 0.1.0 names of batch_size and backoff_max (txbox.options())
SELECT pg_temp.try($$SELECT txbox.create_handler('h', NULL, 'good(txbox.message)', '{"batch": 5, "batch_size": 5}')$$) AS name_and_alias;
SELECT pg_temp.try($$SELECT txbox.create_handler('h', NULL, 'good(txbox.message)', '{"batch_size": 0}')$$) AS batch_size_zero;
SELECT name, alias, kind, min, max, default_value FROM txbox.options() WHERE applies_to = 'handler';
SELECT pg_temp.try($$SELECT txbox.create_handler('billing', NULL, 'good(txbox.message)')$$) AS name_of_a_consumer;
SELECT count(*) AS handlers_after_errors FROM txbox.handlers;

BEGIN;
SELECT txbox.create_handler('charge', ARRAY['orders'], 'good(txbox.message)',
	'{"max_attempts": 3, "backoff": "5s", "parallel": 2}');
SELECT txbox.pause_handler('charge');
-- a handler taking txbox.message[]: a window of messages per call
SELECT txbox.create_handler('charge_windows', ARRAY['orders'], 'good_window(txbox.message[])');
SELECT txbox.pause_handler('charge_windows');
COMMIT;
SELECT pg_temp.try($$SELECT txbox.create_handler('charge', NULL, 'good(txbox.message)')$$) AS duplicate;
SELECT name, topics, handler, state, processed, lag_messages, options FROM txbox.handler_status;
SELECT consumer, topics, handler_id IS NOT NULL AS is_handler FROM txbox.consumers WHERE consumer = 'charge';
SELECT txbox.drop_handler('charge_windows');
SELECT pg_temp.try($$SELECT txbox.drop_consumer('charge')$$) AS drop_handlers_consumer;
SELECT pg_temp.try($$SELECT txbox.pause_handler('nope')$$) AS pause_unknown;
SELECT pg_temp.try($$SELECT txbox.resume_handler('nope')$$) AS resume_unknown;
SELECT pg_temp.try($$SELECT txbox.drop_handler('nope')$$) AS drop_unknown;

-- privileges: a handler runs as its creator, who must be allowed to call it
CREATE ROLE regress_handler_owner LOGIN;
GRANT USAGE ON SCHEMA txbox TO regress_handler_owner;
GRANT EXECUTE ON FUNCTION txbox.create_handler(text, text[], regprocedure, jsonb),
	txbox.drop_handler(text) TO regress_handler_owner;
REVOKE EXECUTE ON FUNCTION good(txbox.message) FROM PUBLIC;
SET ROLE regress_handler_owner;
SELECT pg_temp.try($$SELECT txbox.create_handler('mine', NULL, 'good(txbox.message)')$$) AS no_execute_on_function;
SELECT left(pg_temp.try($$SELECT txbox.drop_handler('charge')$$), 31) AS drop_someone_elses;
SELECT pg_temp.try($$SELECT * FROM txbox.inbox$$) AS read_inbox;
RESET ROLE;

-- a handler's dead letter: replayed (or discarded) once
INSERT INTO txbox.handler_failures (handler_id, message_id, key, seq, attempts, last_error, next_attempt_at, dead)
SELECT handler_id, '00000000-0000-7000-8000-000000000004', 'k0', 4, 3, 'boom', now(), true
  FROM txbox.handlers WHERE name = 'charge';
INSERT INTO txbox.dead_letters (handler, message_id, topic, published_at, attempts, last_error, payload)
VALUES ('charge', '00000000-0000-7000-8000-000000000004', 'orders', now(), 3, 'boom', '{}');
SELECT name, state, failing FROM txbox.handler_status;
SELECT txbox.replay_dead_letter(dead_letter_id) FROM txbox.dead_letters;
SELECT name, state, failing FROM txbox.handler_status;
SELECT pg_temp.try(format('SELECT txbox.replay_dead_letter(%s)', dead_letter_id)) AS replay_twice FROM txbox.dead_letters;
SELECT pg_temp.try(format('SELECT txbox.discard_dead_letter(%s)', dead_letter_id)) AS discard_replayed FROM txbox.dead_letters;
SELECT pg_temp.try($$SELECT txbox.discard_dead_letter(424242)$$) AS discard_unknown;

-- drop: the handler and its consumer go
SELECT txbox.drop_handler('charge');
SELECT count(*) AS handlers, (SELECT count(*) FROM txbox.consumers WHERE consumer = 'charge') AS its_consumer
  FROM txbox.handlers;

-- clean up
SELECT txbox.drop_consumer('billing');
TRUNCATE txbox.inbox, txbox.inbox_dedup, txbox.dead_letters;
DROP FUNCTION good(txbox.message), wrong_arg(int), two_args(txbox.message, int), returns_set(txbox.message),
	good_window(txbox.message[]), wrong_array(int[]);
REVOKE ALL ON SCHEMA txbox FROM regress_handler_owner;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA txbox FROM regress_handler_owner;
DROP ROLE regress_handler_owner;
