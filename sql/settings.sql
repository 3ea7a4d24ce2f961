SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- settings: the txbox.* GUCs (SPEC 6).
--
\set VERBOSITY default
\set SHOW_CONTEXT never

\i sql/include/try.sql

-- Defaults, shown with units.
SHOW txbox.max_payload_size;
SHOW txbox.idempotency_ttl;
SHOW txbox.dedup_retention;
SELECT name, setting, unit, context, vartype, min_val, max_val, boot_val, reset_val
FROM pg_settings
WHERE name IN ('txbox.max_payload_size', 'txbox.idempotency_ttl', 'txbox.dedup_retention')
ORDER BY name;

-- Units are accepted and shown back.
SET txbox.max_payload_size = '2MB';
SHOW txbox.max_payload_size;
SELECT current_setting('txbox.max_payload_size') AS shown, setting AS bytes
FROM pg_settings WHERE name = 'txbox.max_payload_size';
SET txbox.max_payload_size = '512kB';
SHOW txbox.max_payload_size;
SET txbox.max_payload_size = 4096;
SHOW txbox.max_payload_size;
RESET txbox.max_payload_size;
SHOW txbox.max_payload_size;
SET txbox.idempotency_ttl = '30min';
SHOW txbox.idempotency_ttl;
SELECT setting AS seconds FROM pg_settings WHERE name = 'txbox.idempotency_ttl';
SET txbox.idempotency_ttl = '36h';
SHOW txbox.idempotency_ttl;
SET txbox.idempotency_ttl = 90;
SHOW txbox.idempotency_ttl;
RESET txbox.idempotency_ttl;
SHOW txbox.idempotency_ttl;
-- a transaction-local setting ends with its transaction
BEGIN;
SET LOCAL txbox.idempotency_ttl = '5s';
SHOW txbox.idempotency_ttl;
COMMIT;
SHOW txbox.idempotency_ttl;

-- dedup_retention is a server setting (sighup): not settable in a session,
-- but ALTER SYSTEM validates it, with units.
-- (PostgreSQL 17+ gives the valid range with units, "(1 s .. 10 s)": shown
-- without, as before 17)
SELECT c AS "case",
	pg_catalog.regexp_replace(pg_temp.try(q), '\((\d+) \w+ \.\. (\d+) \w+\)$', '(\1 .. \2)') AS result
FROM (VALUES
	(1, 'SET dedup_retention', $q$SET txbox.dedup_retention = '1d'$q$),
	(2, 'max_payload_size 0', $q$SET txbox.max_payload_size = 0$q$),
	(3, 'max_payload_size 1GB', $q$SET txbox.max_payload_size = '1GB'$q$),
	(4, 'max_payload_size bad unit', $q$SET txbox.max_payload_size = '2 parsecs'$q$),
	(5, 'idempotency_ttl 0', $q$SET txbox.idempotency_ttl = 0$q$),
	(6, 'idempotency_ttl not a time', $q$SET txbox.idempotency_ttl = 'forever'$q$),
	(7, 'unknown txbox setting', $q$SET txbox.no_such_setting = 1$q$)
) AS t(n, c, q)
ORDER BY n;
SHOW txbox.max_payload_size;
SHOW txbox.idempotency_ttl;
ALTER SYSTEM SET txbox.dedup_retention = '30min';
ALTER SYSTEM RESET txbox.dedup_retention;
-- (ALTER SYSTEM cannot run inside try(): the error shows its SQLSTATE
-- only, as the message differs between PostgreSQL versions)
\set VERBOSITY sqlstate
ALTER SYSTEM SET txbox.dedup_retention = '9s';
\set VERBOSITY default
\echo SQLSTATE :SQLSTATE
SHOW txbox.dedup_retention;
