SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- security: pinned search_path, planted objects, privileges (SPEC 5).
--
\set VERBOSITY default
\set SHOW_CONTEXT never

\i sql/include/try.sql

------------------------------------------------------------------------
-- 1. Every function of the extension pins search_path (catalog check),
-- except the hot C functions whose SQL qualifies every name: part 2 plants
-- look-alikes in public and pg_temp, first on the caller's path, and shows
-- that none is used.
------------------------------------------------------------------------
CREATE TEMP VIEW ext_funcs AS
SELECT p.oid::regprocedure::text AS func, p.prosecdef, p.pronamespace::regnamespace::text AS schema,
	(SELECT substr(c, length('search_path=') + 1) FROM unnest(p.proconfig) c
	 WHERE c LIKE 'search_path=%') AS search_path
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
WHERE d.deptype = 'e' AND d.refclassid = 'pg_extension'::regclass
	AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'txbox');
SELECT count(*) >= 6 AS has_functions, bool_and(schema = 'txbox') AS all_in_txbox
FROM ext_funcs;
-- functions without a search_path setting: publish, publish_bytes, inbox_claim
SELECT func, prosecdef FROM ext_funcs WHERE search_path IS NULL ORDER BY func;
-- SECURITY DEFINER functions whose path is not trusted schemas ending with
-- pg_temp (else pg_temp is searched first): none
SELECT func, search_path FROM ext_funcs
WHERE prosecdef
	AND search_path !~ '^(pg_catalog|txbox)(, *(pg_catalog|txbox))*, *pg_temp$'
ORDER BY func;
-- and no function's path includes public or "$user" (writable by others)
SELECT func, search_path FROM ext_funcs
WHERE search_path ~ '(public|\$user)' ORDER BY func;

------------------------------------------------------------------------
-- 2. Objects planted in public and pg_temp are never used.  This backend
-- has not called txbox yet, so every saved plan is prepared below, with
-- the planted objects in place and first on the caller's search_path.
------------------------------------------------------------------------
CREATE TABLE public.hostile_calls (what text);
CREATE FUNCTION public.hostile(what text) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.hostile_calls VALUES (what) $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql
AS $$ BEGIN PERFORM public.hostile('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION public.pg_current_xact_id() RETURNS xid8 LANGUAGE plpgsql
AS $$ BEGIN PERFORM public.hostile('pg_current_xact_id()'); RETURN pg_catalog.pg_current_xact_id(); END $$;
CREATE FUNCTION public.nextval(regclass) RETURNS bigint LANGUAGE plpgsql
AS $$ BEGIN PERFORM public.hostile('nextval()'); RETURN pg_catalog.nextval($1); END $$;
CREATE FUNCTION public.texteq_evil(text, text) RETURNS boolean LANGUAGE plpgsql
AS $$ BEGIN PERFORM public.hostile('text = text'); RETURN pg_catalog.texteq($1, $2); END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.texteq_evil);
CREATE FUNCTION public.nameeq_evil(name, name) RETURNS boolean LANGUAGE plpgsql
AS $$ BEGIN PERFORM public.hostile('name = name'); RETURN pg_catalog.nameeq($1, $2); END $$;
CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = name, FUNCTION = public.nameeq_evil);
CREATE FUNCTION public.xid8eq_evil(xid8, xid8) RETURNS boolean LANGUAGE plpgsql
AS $$ BEGIN PERFORM public.hostile('xid8 = xid8'); RETURN pg_catalog.xid8eq($1, $2); END $$;
CREATE OPERATOR public.= (LEFTARG = xid8, RIGHTARG = xid8, FUNCTION = public.xid8eq_evil);
CREATE FUNCTION public.int2ne_evil(int2, int2) RETURNS boolean LANGUAGE plpgsql
AS $$ BEGIN PERFORM public.hostile('int2 <> int2'); RETURN pg_catalog.int2ne($1, $2); END $$;
CREATE OPERATOR public.<> (LEFTARG = int2, RIGHTARG = int2, FUNCTION = public.int2ne_evil);
CREATE FUNCTION public.tsle_evil(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql
AS $$ BEGIN PERFORM public.hostile('timestamptz <= timestamptz'); RETURN pg_catalog.timestamptz_le($1, $2); END $$;
CREATE OPERATOR public.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = public.tsle_evil);
CREATE FUNCTION public.tspl_evil(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql
AS $$ BEGIN PERFORM public.hostile('timestamptz + interval'); RETURN pg_catalog.timestamptz_pl_interval($1, $2); END $$;
CREATE OPERATOR public.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = public.tspl_evil);
-- (unqualified names never resolve to functions or operators in pg_temp;
-- planted all the same)
CREATE FUNCTION pg_temp.texteq_evil(text, text) RETURNS boolean LANGUAGE plpgsql
AS $$ BEGIN PERFORM public.hostile('pg_temp text = text'); RETURN pg_catalog.texteq($1, $2); END $$;
CREATE OPERATOR pg_temp.= (LEFTARG = text, RIGHTARG = text, FUNCTION = pg_temp.texteq_evil);
-- look-alike tables in public and pg_temp (parents and partitions)
CREATE TABLE public.outbox (LIKE txbox.outbox);
CREATE TABLE public.outbox_0 (LIKE txbox.outbox);
CREATE TABLE public.inbox_dedup_0 (LIKE txbox.inbox_dedup);
CREATE TEMP TABLE outbox_1 (LIKE txbox.outbox);
CREATE TEMP TABLE inbox_dedup_1 (LIKE txbox.inbox_dedup);
CREATE TABLE public.inbox_dedup (LIKE txbox.inbox_dedup);
CREATE TABLE public.idempotency_keys (LIKE txbox.idempotency_keys);
CREATE TABLE public._generation (LIKE txbox._generation);
CREATE TEMP TABLE outbox (LIKE txbox.outbox);
CREATE TEMP TABLE inbox_dedup (LIKE txbox.inbox_dedup);
CREATE TEMP TABLE idempotency_keys (LIKE txbox.idempotency_keys);
CREATE TEMP TABLE _generation (LIKE txbox._generation);
CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE plpgsql
AS $$ BEGIN PERFORM public.hostile('pg_temp.now()'); RETURN pg_catalog.now(); END $$;

SET search_path = pg_temp, public, pg_catalog;
-- control: for unqualified SQL of the caller, the planted objects win
SELECT 'a'::text = 'a'::text AS eq, now() IS NOT NULL AS now,
	'x'::name = 'x'::name AS name_eq, 1::int2 <> 2::int2 AS int2_ne;
SELECT what FROM public.hostile_calls ORDER BY what COLLATE "C";
TRUNCATE public.hostile_calls;

-- every SQL path of the API, with the planted objects in place
SELECT txbox.publish('sec.planted', '{"n": 1}', key => 'k', headers => '{"h": "v"}') IS NOT NULL AS published,
	txbox.publish_bytes('sec.planted', '\x00', message_id => '00000000-0000-7000-8000-0000000ff001') IS NOT NULL AS published_bytes;
SELECT txbox.inbox_claim('sec', 'planted-1') AS first_claim, txbox.inbox_claim('sec', 'planted-1') AS repeat_claim;
BEGIN;
SELECT state FROM txbox.idempotency_begin('sec', 'planted-1', 'fp');
SELECT state FROM txbox.idempotency_begin('sec', 'planted-1', 'fp');
SELECT txbox.idempotency_complete('sec', 'planted-1', '{"ok": true}', 201);
COMMIT;
SELECT * FROM txbox.idempotency_begin('sec', 'planted-1', 'fp', wait => false);
DO $$
BEGIN
	PERFORM * FROM txbox.idempotency_begin('sec', 'planted-1', 'other');
EXCEPTION WHEN SQLSTATE 'TX422' THEN
	RAISE NOTICE 'mismatch refused: %', SQLSTATE;
END $$;
SET txbox.idempotency_ttl = '1s';
BEGIN;
SELECT state FROM txbox.idempotency_begin('sec', 'planted-2');
SELECT txbox.idempotency_complete('sec', 'planted-2', '{}');
COMMIT;
SELECT pg_sleep(1.1);
SELECT state FROM txbox.idempotency_begin('sec', 'planted-2') AS expired_key;
RESET txbox.idempotency_ttl;
SELECT txbox._switch_generation('outbox') IS NOT NULL AS switched,
	txbox._switch_generation('inbox_dedup') IS NOT NULL AS switched,
	txbox._switch_generation('idempotency_keys') IS NOT NULL AS switched;
-- after the switches, the cached generations are read again
SELECT txbox.publish('sec.planted', '{"n": 2}') IS NOT NULL AS published,
	txbox.inbox_claim('sec', 'planted-1') AS claim_older_gen,
	txbox.inbox_claim('sec', 'planted-2') AS claim_new;
SELECT state FROM txbox.idempotency_begin('sec', 'planted-1', 'fp') AS older_gen_key;
RESET search_path;

-- none of the planted objects was called or written to
SELECT count(*) AS hostile_calls FROM public.hostile_calls;
SELECT (SELECT count(*) FROM public.outbox) + (SELECT count(*) FROM public.inbox_dedup)
	+ (SELECT count(*) FROM public.idempotency_keys) + (SELECT count(*) FROM public._generation)
	+ (SELECT count(*) FROM pg_temp.outbox) + (SELECT count(*) FROM pg_temp.inbox_dedup)
	+ (SELECT count(*) FROM pg_temp.idempotency_keys) + (SELECT count(*) FROM pg_temp._generation)
	+ (SELECT count(*) FROM public.outbox_0) + (SELECT count(*) FROM public.inbox_dedup_0)
	+ (SELECT count(*) FROM pg_temp.outbox_1) + (SELECT count(*) FROM pg_temp.inbox_dedup_1)
	AS rows_in_look_alikes;
-- and the real tables got the data
SELECT count(*) AS published FROM txbox.outbox WHERE topic = 'sec.planted';
SELECT count(*) AS claims FROM txbox.inbox_dedup WHERE consumer = 'sec';
DROP TABLE public.outbox, public.inbox_dedup, public.idempotency_keys, public._generation,
	pg_temp.outbox, pg_temp.inbox_dedup, pg_temp.idempotency_keys, pg_temp._generation,
	public.outbox_0, public.inbox_dedup_0, pg_temp.outbox_1, pg_temp.inbox_dedup_1;
DROP OPERATOR pg_temp.= (text, text);
DROP FUNCTION pg_temp.texteq_evil(text, text);
DROP OPERATOR public.= (text, text), public.= (name, name), public.= (xid8, xid8),
	public.<> (int2, int2), public.<= (timestamptz, timestamptz), public.+ (timestamptz, interval);
DROP FUNCTION public.texteq_evil(text, text), public.nameeq_evil(name, name),
	public.xid8eq_evil(xid8, xid8), public.int2ne_evil(int2, int2),
	public.tsle_evil(timestamptz, timestamptz), public.tspl_evil(timestamptz, interval);
DROP FUNCTION public.now(), public.pg_current_xact_id(), public.nextval(regclass), pg_temp.now(),
	public.hostile(text);
DROP TABLE public.hostile_calls;

------------------------------------------------------------------------
-- 3. Privileges.
------------------------------------------------------------------------
-- (roles left over by an interrupted earlier run)
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['regress_txbox_nobody', 'regress_txbox_app'] LOOP
		IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('DROP OWNED BY %I', r);
			EXECUTE format('DROP ROLE %I', r);
		END IF;
	END LOOP;
END $$;
CREATE ROLE regress_txbox_nobody;
CREATE ROLE regress_txbox_app;

-- Nothing is granted to PUBLIC: a fresh role can use no schema, table,
-- sequence or function of the extension; only txbox._manager_waiting(),
-- which the status views call for whoever reads them (it tells whether this
-- database's manager waits for a worker slot), is executable (and useless
-- without USAGE on the schema).
CREATE TEMP VIEW ext_objects AS
SELECT 'schema' AS kind, 'txbox' AS name, NULL::oid AS oid
UNION ALL
SELECT CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END, c.oid::regclass::text, c.oid
FROM pg_class c WHERE c.relnamespace = 'txbox'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
UNION ALL
SELECT 'function', p.oid::regprocedure::text, p.oid
FROM pg_proc p WHERE p.pronamespace = 'txbox'::regnamespace;
SELECT kind, count(*) > 0 AS checked FROM ext_objects GROUP BY kind ORDER BY kind;
SELECT kind, name, priv
FROM ext_objects o,
	LATERAL unnest(CASE kind
		WHEN 'schema' THEN ARRAY['USAGE', 'CREATE']
		WHEN 'sequence' THEN ARRAY['USAGE', 'SELECT', 'UPDATE']
		WHEN 'table' THEN ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']
		ELSE ARRAY['EXECUTE'] END) AS priv
WHERE CASE kind
	WHEN 'schema' THEN has_schema_privilege('regress_txbox_nobody', 'txbox', priv)
	WHEN 'sequence' THEN has_sequence_privilege('regress_txbox_nobody', o.oid, priv)
	WHEN 'table' THEN has_table_privilege('regress_txbox_nobody', o.oid, priv)
	ELSE has_function_privilege('regress_txbox_nobody', o.oid, priv) END
ORDER BY kind, name, priv;
-- nor any column privilege
SELECT c.oid::regclass AS table_name, a.attname
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relnamespace = 'txbox'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
	AND has_column_privilege('regress_txbox_nobody', c.oid, a.attnum, 'SELECT, INSERT, UPDATE, REFERENCES')
ORDER BY 1, 2;

-- The documented publisher grant: USAGE on the schema and EXECUTE on the
-- five API functions.
GRANT USAGE ON SCHEMA txbox TO regress_txbox_app;
GRANT EXECUTE ON FUNCTION
	txbox.publish(text, jsonb, text, jsonb, uuid),
	txbox.publish_bytes(text, bytea, text, jsonb, uuid),
	txbox.inbox_claim(text, text),
	txbox.idempotency_begin(text, text, text, boolean),
	txbox.idempotency_complete(text, text, jsonb, integer)
TO regress_txbox_app;

-- the fresh role still cannot call anything
SET ROLE regress_txbox_nobody;
SELECT c AS "case", pg_temp.try(q) AS result
FROM (VALUES
	(1, 'publish', $q$SELECT txbox.publish('sec.nobody', '{}')$q$),
	(2, 'inbox_claim', $q$SELECT txbox.inbox_claim('sec', 'nobody')$q$),
	(3, 'idempotency_begin', $q$SELECT * FROM txbox.idempotency_begin('sec', 'nobody')$q$)
) AS t(n, c, q)
ORDER BY n;
RESET ROLE;

-- the app role can call the API ...
SET ROLE regress_txbox_app;
SELECT current_user;
SELECT txbox.publish('sec.app', '{"n": 1}') IS NOT NULL AS published,
	txbox.publish('sec.app', '{"n": 2}', key => 'k', headers => '{"h": "v"}',
		message_id => '00000000-0000-7000-8000-0000000ff101') AS supplied_id,
	txbox.publish_bytes('sec.app', '\x00ff') IS NOT NULL AS published_bytes;
SELECT txbox.inbox_claim('sec.app', 'm-1') AS first_claim, txbox.inbox_claim('sec.app', 'm-1') AS repeat_claim;
BEGIN;
SELECT * FROM txbox.idempotency_begin('sec.app', 'k-1', 'fp');
SELECT txbox.idempotency_complete('sec.app', 'k-1', '{"ok": true}');
COMMIT;
SELECT * FROM txbox.idempotency_begin('sec.app', 'k-1', 'fp');
SELECT pg_temp.try($q$SELECT * FROM txbox.idempotency_begin('sec.app', 'k-1', 'other')$q$) AS mismatch;

-- ... but cannot read or change the tables, rotate them, create objects in
-- the schema, or raise the payload limit.
SELECT c AS "case", pg_temp.try(q) AS result
FROM (VALUES
	(1, 'SELECT outbox', $q$SELECT count(*) FROM txbox.outbox$q$),
	(2, 'INSERT outbox', $q$INSERT INTO txbox.outbox (gen, id, txid, message_id, topic, payload, published_at) VALUES (0, 1, '1', gen_random_uuid(), 't', '{}', now())$q$),
	(3, 'UPDATE outbox', $q$UPDATE txbox.outbox SET topic = 'x'$q$),
	(4, 'DELETE outbox', $q$DELETE FROM txbox.outbox$q$),
	(5, 'TRUNCATE outbox', $q$TRUNCATE txbox.outbox$q$),
	(6, 'SELECT outbox partition', $q$SELECT count(*) FROM txbox.outbox_0$q$),
	(7, 'SELECT inbox_dedup', $q$SELECT count(*) FROM txbox.inbox_dedup$q$),
	(8, 'INSERT inbox_dedup', $q$INSERT INTO txbox.inbox_dedup VALUES (0, 'c', 'm', now())$q$),
	(9, 'UPDATE inbox_dedup', $q$UPDATE txbox.inbox_dedup SET consumer = 'x'$q$),
	(10, 'DELETE inbox_dedup', $q$DELETE FROM txbox.inbox_dedup$q$),
	(11, 'TRUNCATE inbox_dedup', $q$TRUNCATE txbox.inbox_dedup$q$),
	(12, 'SELECT idempotency_keys', $q$SELECT count(*) FROM txbox.idempotency_keys$q$),
	(13, 'INSERT idempotency_keys', $q$INSERT INTO txbox.idempotency_keys (gen, scope, key, txid, created_at, expires_at) VALUES (0, 's', 'k', '1', now(), now())$q$),
	(14, 'UPDATE idempotency_keys', $q$UPDATE txbox.idempotency_keys SET response = '{}'$q$),
	(15, 'DELETE idempotency_keys', $q$DELETE FROM txbox.idempotency_keys$q$),
	(16, 'TRUNCATE idempotency_keys', $q$TRUNCATE txbox.idempotency_keys$q$),
	(17, 'SELECT _generation', $q$SELECT * FROM txbox._generation$q$),
	(18, 'UPDATE _generation', $q$UPDATE txbox._generation SET current_gen = 1$q$),
	(19, 'nextval outbox_id_seq', $q$SELECT nextval('txbox.outbox_id_seq')$q$),
	(20, '_switch_generation', $q$SELECT txbox._switch_generation('outbox')$q$),
	(21, 'CREATE in schema txbox', $q$CREATE TABLE txbox.planted (a int)$q$),
	(22, 'CREATE FUNCTION in txbox', $q$CREATE FUNCTION txbox.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT now()'$q$),
	(23, 'raise max_payload_size', $q$SET txbox.max_payload_size = '2MB'$q$),
	(24, 'lower max_payload_size', $q$SET txbox.max_payload_size = '1kB'$q$)
) AS t(n, c, q)
ORDER BY n;
SHOW txbox.max_payload_size;
RESET ROLE;

-- what the app published is in the outbox, written by the API functions
SELECT count(*) AS app_messages, count(*) FILTER (WHERE message_id = '00000000-0000-7000-8000-0000000ff101') AS supplied
FROM txbox.outbox WHERE topic = 'sec.app';
SELECT consumer, message_id FROM txbox.inbox_dedup WHERE consumer = 'sec.app';

DROP OWNED BY regress_txbox_app, regress_txbox_nobody;
DROP ROLE regress_txbox_app, regress_txbox_nobody;
