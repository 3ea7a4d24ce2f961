SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- security_roles: attacks by one role on another's txbox state, run as
-- real roles with a hostile search_path (issue 9 items 2, 4-7, 10, 13).
-- Relays and handlers created here are paused in the transaction that
-- creates them: no worker runs for them.
--
\set VERBOSITY default
\set SHOW_CONTEXT never

\i sql/include/try.sql

-- (roles left over by an interrupted earlier run)
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['regress_sr_attacker', 'regress_sr_victim'] LOOP
		IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('DROP OWNED BY %I CASCADE', r);
			EXECUTE format('DROP ROLE %I', r);
		END IF;
	END LOOP;
END $$;
CREATE ROLE regress_sr_attacker LOGIN;
CREATE ROLE regress_sr_victim LOGIN;
GRANT USAGE ON SCHEMA txbox TO regress_sr_attacker, regress_sr_victim;
GRANT EXECUTE ON FUNCTION
	txbox.publish(text, jsonb, text, jsonb, uuid),
	txbox.publish_bytes(text, bytea, text, jsonb, uuid),
	txbox.inbox_claim(text, text),
	txbox.inbox_fetch(text, text[], integer),
	txbox.inbox_done(text, uuid[]),
	txbox.drop_consumer(text),
	txbox.create_relay(text, text, text[], jsonb),
	txbox.drop_relay(text), txbox.pause_relay(text), txbox.resume_relay(text),
	txbox.alter_relay(text, jsonb),
	txbox.create_handler(text, text[], regprocedure, jsonb),
	txbox.drop_handler(text), txbox.pause_handler(text), txbox.resume_handler(text),
	txbox.replay_dead_letter(bigint), txbox.discard_dead_letter(bigint)
TO regress_sr_attacker, regress_sr_victim;
CREATE SERVER sr_target FOREIGN DATA WRAPPER txbox_fdw OPTIONS (dbname 'sr_nowhere');
GRANT USAGE ON FOREIGN SERVER sr_target TO regress_sr_attacker, regress_sr_victim;
CREATE USER MAPPING FOR regress_sr_victim SERVER sr_target OPTIONS (user 'x', password 'secret');
CREATE FUNCTION public.sr_noop(m txbox.message) RETURNS void LANGUAGE sql AS '';

------------------------------------------------------------------------
-- The hostile schema: the attacker's look-alikes of what txbox's SQL uses,
-- first on every role's search_path.  None may ever be called.
------------------------------------------------------------------------
CREATE TABLE public.sr_hostile_calls (what text);
GRANT INSERT ON public.sr_hostile_calls TO PUBLIC;
CREATE SCHEMA regress_sr_hostile AUTHORIZATION regress_sr_attacker;
GRANT USAGE ON SCHEMA regress_sr_hostile TO PUBLIC;
SET ROLE regress_sr_attacker;
CREATE FUNCTION regress_sr_hostile.log(what text) RETURNS boolean LANGUAGE sql
AS $$ INSERT INTO public.sr_hostile_calls VALUES (what) RETURNING true $$;
CREATE FUNCTION regress_sr_hostile.pg_has_role(regrole, regrole, text) RETURNS boolean
LANGUAGE sql AS $$ SELECT regress_sr_hostile.log('pg_has_role') $$;
CREATE FUNCTION regress_sr_hostile.now() RETURNS timestamptz
LANGUAGE sql AS $$ SELECT regress_sr_hostile.log('now'); SELECT pg_catalog.now() $$;
CREATE FUNCTION regress_sr_hostile.texteq(text, text) RETURNS boolean
LANGUAGE sql AS $$ SELECT regress_sr_hostile.log('text = text') AND pg_catalog.texteq($1, $2) $$;
CREATE OPERATOR regress_sr_hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_sr_hostile.texteq);
CREATE FUNCTION regress_sr_hostile.oideq(oid, oid) RETURNS boolean
LANGUAGE sql AS $$ SELECT regress_sr_hostile.log('oid = oid') AND pg_catalog.oideq($1, $2) $$;
CREATE OPERATOR regress_sr_hostile.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = regress_sr_hostile.oideq);
CREATE FUNCTION regress_sr_hostile.get(jsonb, text) RETURNS text
LANGUAGE sql AS $$ SELECT regress_sr_hostile.log('jsonb ->> text'); SELECT pg_catalog.jsonb_object_field_text($1, $2) $$;
CREATE OPERATOR regress_sr_hostile.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = regress_sr_hostile.get);
CREATE FUNCTION regress_sr_hostile.nomatch(text, text) RETURNS boolean
LANGUAGE sql AS $$ SELECT regress_sr_hostile.log('text !~ text') AND pg_catalog.textregexne($1, $2) $$;
CREATE OPERATOR regress_sr_hostile.!~ (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_sr_hostile.nomatch);
RESET ROLE;
ALTER ROLE regress_sr_attacker SET search_path = regress_sr_hostile, pg_catalog, public;
ALTER ROLE regress_sr_victim SET search_path = regress_sr_hostile, pg_catalog, public;
-- control: unqualified SQL of a role does call them
SET search_path = regress_sr_hostile, pg_catalog, public;
SELECT 'a'::text = 'a' AS planted_eq_works;
RESET search_path;
SELECT count(*) AS control_calls FROM public.sr_hostile_calls;
TRUNCATE public.sr_hostile_calls;

-- The victim's relay, handler and SQL consumer.
SET ROLE regress_sr_victim;
SET search_path = regress_sr_hostile, pg_catalog, public;
BEGIN;
SELECT txbox.create_relay('sr_victim_relay', 'postgres', ARRAY['sr.t'], '{"server": "sr_target"}');
SELECT txbox.pause_relay('sr_victim_relay');
SELECT txbox.create_handler('sr_victim_h', ARRAY['sr.t'], 'public.sr_noop(txbox.message)');
SELECT txbox.pause_handler('sr_victim_h');
COMMIT;
SELECT count(*) AS fetched FROM txbox.inbox_fetch('sr_victim_c', ARRAY['sr.t']);
RESET search_path;
RESET ROLE;
SELECT consumer, owner, handler_id IS NOT NULL AS is_handler FROM txbox.consumers
WHERE consumer LIKE 'sr\_%' ORDER BY consumer;

------------------------------------------------------------------------
-- 9.2: relays and handlers belong to the role at the call.  The attacker's
-- SECURITY DEFINER function, run by a superuser, creates a handler: it
-- belongs to the attacker (not the superuser), and it cannot change the
-- victim's relay or handler.
------------------------------------------------------------------------
SET ROLE regress_sr_attacker;
-- (the attacker's own functions pin their path: only txbox's SQL is tested)
CREATE FUNCTION regress_sr_hostile.make_handler() RETURNS void SECURITY DEFINER
SET search_path = pg_catalog LANGUAGE sql AS $$ SELECT txbox.create_handler('sr_evil', NULL, 'public.sr_noop(txbox.message)') $$;
CREATE FUNCTION regress_sr_hostile.break_victim(what text) RETURNS void SECURITY DEFINER
SET search_path = pg_catalog LANGUAGE plpgsql AS $$
BEGIN
	CASE what
	WHEN 'drop_relay' THEN PERFORM txbox.drop_relay('sr_victim_relay');
	WHEN 'resume_relay' THEN PERFORM txbox.resume_relay('sr_victim_relay');
	WHEN 'alter_relay' THEN PERFORM txbox.alter_relay('sr_victim_relay', '{"batch_size": 1}');
	WHEN 'drop_handler' THEN PERFORM txbox.drop_handler('sr_victim_h');
	WHEN 'resume_handler' THEN PERFORM txbox.resume_handler('sr_victim_h');
	END CASE;
END $$;
-- run by the table owner's REFRESH: a security-restricted operation
CREATE FUNCTION regress_sr_hostile.in_refresh() RETURNS int
SET search_path = pg_catalog LANGUAGE plpgsql AS $$
BEGIN
	PERFORM txbox.create_handler('sr_refresh', NULL, 'public.sr_noop(txbox.message)');
	RETURN 1;
END $$;
CREATE MATERIALIZED VIEW regress_sr_hostile.mv AS SELECT regress_sr_hostile.in_refresh() AS x WITH NO DATA;
RESET ROLE;
SET search_path = regress_sr_hostile, pg_catalog, public;
BEGIN;
SELECT regress_sr_hostile.make_handler();
SELECT txbox.pause_handler('sr_evil');
COMMIT;
SELECT c AS "case", pg_temp.try(q) AS result
FROM (VALUES
	(1, 'drop_relay', $q$SELECT regress_sr_hostile.break_victim('drop_relay')$q$),
	(2, 'resume_relay', $q$SELECT regress_sr_hostile.break_victim('resume_relay')$q$),
	(3, 'alter_relay', $q$SELECT regress_sr_hostile.break_victim('alter_relay')$q$),
	(4, 'drop_handler', $q$SELECT regress_sr_hostile.break_victim('drop_handler')$q$),
	(5, 'resume_handler', $q$SELECT regress_sr_hostile.break_victim('resume_handler')$q$),
	(6, 'REFRESH runs create_handler', $q$REFRESH MATERIALIZED VIEW regress_sr_hostile.mv$q$)
) AS t(n, c, q)
ORDER BY n;
RESET search_path;
SELECT name, owner, paused FROM txbox.handlers WHERE name LIKE 'sr\_%' ORDER BY name;
SELECT name, owner, paused, options FROM txbox.relays WHERE name LIKE 'sr\_%' ORDER BY name;

------------------------------------------------------------------------
-- 9.4: dead letters belong to the owner of their relay or handler (a
-- superuser's once that is dropped).
------------------------------------------------------------------------
INSERT INTO txbox.dead_letters (relay, handler, message_id, topic, payload, published_at, attempts, last_error)
VALUES ('sr_victim_relay', NULL, '00000000-0000-7000-8000-00000000a001', 'sr.t', '{}', now(), 1, 'e'),
	   (NULL, 'sr_victim_h', '00000000-0000-7000-8000-00000000a002', 'sr.t', '{}', now(), 1, 'e'),
	   ('sr_dropped_relay', NULL, '00000000-0000-7000-8000-00000000a003', 'sr.t', '{}', now(), 1, 'e'),
	   (NULL, 'sr_victim_h', '00000000-0000-7000-8000-00000000a004', 'sr.t', '{}', now(), 1, 'e');
SELECT min(dead_letter_id) AS dl FROM txbox.dead_letters WHERE message_id::text LIKE '%a001' \gset
SET ROLE regress_sr_attacker;
SET search_path = regress_sr_hostile, pg_catalog, public;
SELECT c AS "case", regexp_replace(pg_temp.try(q), 'dead letter \d+', 'dead letter N') AS result
FROM (VALUES
	(1, 'replay victim relay''s', format('SELECT txbox.replay_dead_letter(%s)', :dl)),
	(2, 'discard victim handler''s', format('SELECT txbox.discard_dead_letter(%s)', :dl + 1)),
	(3, 'replay victim handler''s', format('SELECT txbox.replay_dead_letter(%s)', :dl + 3)),
	(4, 'replay dropped relay''s', format('SELECT txbox.replay_dead_letter(%s)', :dl + 2))
) AS t(n, c, q)
ORDER BY n;
RESET search_path;
SET ROLE regress_sr_victim;
SET search_path = regress_sr_hostile, pg_catalog, public;
SELECT c AS "case", regexp_replace(pg_temp.try(q), 'dead letter \d+', 'dead letter N') AS result
FROM (VALUES
	(1, 'replay own relay''s', format('SELECT txbox.replay_dead_letter(%s)', :dl)),
	(2, 'discard own handler''s', format('SELECT txbox.discard_dead_letter(%s)', :dl + 1)),
	(3, 'replay dropped relay''s', format('SELECT txbox.replay_dead_letter(%s)', :dl + 2))
) AS t(n, c, q)
ORDER BY n;
RESET search_path;
RESET ROLE;
SELECT pg_temp.try(format('SELECT txbox.discard_dead_letter(%s)', :dl + 2)) AS superuser_discards_orphan;
SELECT message_id, replayed_at IS NOT NULL AS replayed, discarded_at IS NOT NULL AS discarded
FROM txbox.dead_letters WHERE dead_letter_id >= :dl ORDER BY dead_letter_id;

------------------------------------------------------------------------
-- 9.5 and 9.7: a consumer registered by a role (an SQL consumer's first
-- inbox_fetch, a handler) is that role's: others cannot claim, fetch,
-- complete or drop it.  An unregistered name is anyone's.
------------------------------------------------------------------------
SET ROLE regress_sr_attacker;
SET search_path = regress_sr_hostile, pg_catalog, public;
SELECT c AS "case", pg_temp.try(q) AS result
FROM (VALUES
	(1, 'claim for handler', $q$SELECT txbox.inbox_claim('sr_victim_h', '00000000-0000-7000-8000-00000000b001')$q$),
	(2, 'fetch for handler', $q$SELECT * FROM txbox.inbox_fetch('sr_victim_h')$q$),
	(3, 'done for handler', $q$SELECT txbox.inbox_done('sr_victim_h', ARRAY['00000000-0000-7000-8000-00000000b001']::uuid[])$q$),
	(4, 'drop handler consumer', $q$SELECT txbox.drop_consumer('sr_victim_h')$q$),
	(5, 'claim for SQL consumer', $q$SELECT txbox.inbox_claim('sr_victim_c', '00000000-0000-7000-8000-00000000b001')$q$),
	(6, 'fetch for SQL consumer', $q$SELECT * FROM txbox.inbox_fetch('sr_victim_c', ARRAY['sr.t'])$q$),
	(7, 'done for SQL consumer', $q$SELECT txbox.inbox_done('sr_victim_c', ARRAY['00000000-0000-7000-8000-00000000b001']::uuid[])$q$),
	(8, 'drop SQL consumer', $q$SELECT txbox.drop_consumer('sr_victim_c')$q$),
	(9, 'claim unregistered name', $q$SELECT txbox.inbox_claim('sr_free', '00000000-0000-7000-8000-00000000b001')$q$)
) AS t(n, c, q)
ORDER BY n;
RESET search_path;
SET ROLE regress_sr_victim;
SET search_path = regress_sr_hostile, pg_catalog, public;
SELECT txbox.inbox_claim('sr_victim_c', '00000000-0000-7000-8000-00000000b002') AS own_claim,
	txbox.inbox_claim('sr_victim_h', '00000000-0000-7000-8000-00000000b002') AS own_handler_claim;
SELECT pg_temp.try($q$SELECT txbox.drop_consumer('sr_victim_h')$q$) AS drop_own_handler_consumer;
SELECT txbox.drop_consumer('sr_victim_c');
RESET search_path;
RESET ROLE;
SELECT consumer, message_id FROM txbox.inbox_dedup WHERE consumer LIKE 'sr\_%' ORDER BY 1, 2;
SELECT consumer FROM txbox.consumers WHERE consumer LIKE 'sr\_%' ORDER BY consumer;

------------------------------------------------------------------------
-- 9.6: a notify relay shows what it delivers to every role that may
-- connect (LISTEN needs no privilege): superusers only.
------------------------------------------------------------------------
SET ROLE regress_sr_victim;
SELECT pg_temp.try($q$SELECT txbox.create_relay('sr_notify', 'notify', ARRAY['sr.t'], '{"channel": "sr"}')$q$) AS notify_not_superuser;
RESET ROLE;
BEGIN;
SELECT txbox.create_relay('sr_notify', 'notify', ARRAY['sr.t'], '{"channel": "sr"}');
SELECT txbox.pause_relay('sr_notify');
COMMIT;
SELECT name, target, paused FROM txbox.relays WHERE name = 'sr_notify';

------------------------------------------------------------------------
-- 9.10: txbox.idempotency_ttl is for superusers to set, at most 30 days.
------------------------------------------------------------------------
SET ROLE regress_sr_attacker;
SELECT pg_temp.try($q$SET txbox.idempotency_ttl = '100 years'$q$) AS attacker_ttl,
	pg_temp.try($q$SET txbox.idempotency_ttl = '1h'$q$) AS attacker_short_ttl;
RESET ROLE;
-- (the SQLSTATE: the message differs between PostgreSQL versions)
SELECT pg_catalog.left(pg_temp.try($q$SET txbox.idempotency_ttl = '31d'$q$), 5) AS over_cap,
	pg_temp.try($q$SET txbox.idempotency_ttl = '30d'$q$) AS at_cap;
RESET txbox.idempotency_ttl;

------------------------------------------------------------------------
-- 9.13: key at most 4096 bytes, headers at most 65536 bytes (54000).
------------------------------------------------------------------------
SET ROLE regress_sr_attacker;
SET search_path = regress_sr_hostile, pg_catalog, public;
SELECT c AS "case", pg_temp.try(q) AS result
FROM (VALUES
	(1, 'key 4096 bytes', $q$SELECT txbox.publish('sr.t', '{}', key => repeat('k', 4096))$q$),
	(2, 'key 4097 bytes', $q$SELECT txbox.publish('sr.t', '{}', key => repeat('k', 4097))$q$),
	(3, 'key 2049 two-byte chars', $q$SELECT txbox.publish('sr.t', '{}', key => repeat('é', 2049))$q$),
	(4, 'key 20 MB, bytes', $q$SELECT txbox.publish_bytes('sr.t', '\x00', key => repeat('k', 20000000))$q$),
	(5, 'headers 60 kB', $q$SELECT txbox.publish('sr.t', '{}', headers => jsonb_build_object('h', repeat('x', 60000)))$q$),
	(6, 'headers 70 kB', $q$SELECT txbox.publish('sr.t', '{}', headers => jsonb_build_object('h', repeat('x', 70000)))$q$),
	(7, 'headers 20 MB, bytes', $q$SELECT txbox.publish_bytes('sr.t', '\x00', headers => jsonb_build_object('h', repeat('x', 20000000)))$q$)
) AS t(n, c, q)
ORDER BY n;
RESET search_path;
RESET ROLE;
SELECT count(*) AS published, max(octet_length(key)) AS longest_key FROM txbox.outbox WHERE topic = 'sr.t' AND relay IS NULL;

------------------------------------------------------------------------
-- Operators: README's grants read the status views, with rows in them.
------------------------------------------------------------------------
CREATE ROLE regress_sr_ops;
GRANT USAGE ON SCHEMA txbox TO regress_sr_ops;
GRANT SELECT ON txbox.outbox, txbox.relay_status, txbox.handler_status, txbox.dead_letters TO regress_sr_ops;
SET ROLE regress_sr_ops;
SELECT (SELECT count(*) FROM txbox.relay_status WHERE name = 'sr_victim_relay') AS relays,
	(SELECT count(lag_messages) FROM txbox.handler_status WHERE name = 'sr_victim_h') AS handlers,
	(SELECT count(*) >= 0 FROM txbox.dead_letters) AS dead_letters;
SELECT pg_temp.try($q$SELECT count(*) FROM txbox.relays$q$) AS relays_table;
RESET ROLE;
DROP OWNED BY regress_sr_ops;
DROP ROLE regress_sr_ops;

-- none of the hostile objects was ever called
SELECT what, count(*) AS hostile_calls FROM public.sr_hostile_calls GROUP BY what ORDER BY what;

-- clean up
SELECT txbox.drop_relay(name) FROM txbox.relays WHERE name LIKE 'sr\_%' ORDER BY name;
SELECT txbox.drop_handler(name) FROM txbox.handlers WHERE name LIKE 'sr\_%' ORDER BY name;
DELETE FROM txbox.dead_letters WHERE dead_letter_id >= :dl;
DELETE FROM txbox.outbox WHERE topic = 'sr.t';
DELETE FROM txbox.inbox_dedup WHERE consumer LIKE 'sr\_%';
DROP USER MAPPING FOR regress_sr_victim SERVER sr_target;
DROP SERVER sr_target;
DROP FUNCTION public.sr_noop(txbox.message);
DROP TABLE public.sr_hostile_calls;
DROP OWNED BY regress_sr_attacker, regress_sr_victim CASCADE;
DROP ROLE regress_sr_attacker, regress_sr_victim;
