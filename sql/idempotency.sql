SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- idempotency: txbox.idempotency_begin / txbox.idempotency_complete
-- (SPEC 2.4, promise 6).
--
\set VERBOSITY default
\set SHOW_CONTEXT never

\i sql/include/try.sql

-- new -> complete -> completed, with the stored response and status.
BEGIN;
SELECT * FROM txbox.idempotency_begin('payments', 'key-1', 'fp-1');
SELECT txbox.idempotency_complete('payments', 'key-1', '{"charge": "ch_1"}', 201);
COMMIT;
SELECT * FROM txbox.idempotency_begin('payments', 'key-1', 'fp-1');
-- a replay is read-only: still completed with the same response
SELECT * FROM txbox.idempotency_begin('payments', 'key-1', 'fp-1', wait => false);
-- the default status is 200
BEGIN;
SELECT * FROM txbox.idempotency_begin('payments', 'key-2');
SELECT txbox.idempotency_complete('payments', 'key-2', '{"ok": true}');
COMMIT;
SELECT * FROM txbox.idempotency_begin('payments', 'key-2');
-- keys are per scope
SELECT state FROM txbox.idempotency_begin('refunds', 'key-1', 'fp-1');

-- The same key with a different request is refused (TX422, HTTP 422),
-- and NULL and non-NULL fingerprints count as different.
SELECT c AS "case", pg_temp.try(q) AS result
FROM (VALUES
	(1, 'other fingerprint', $q$SELECT * FROM txbox.idempotency_begin('payments', 'key-1', 'fp-2')$q$),
	(2, 'fingerprint case', $q$SELECT * FROM txbox.idempotency_begin('payments', 'key-1', 'FP-1')$q$),
	(3, 'NULL after non-NULL', $q$SELECT * FROM txbox.idempotency_begin('payments', 'key-1')$q$),
	(4, 'non-NULL after NULL', $q$SELECT * FROM txbox.idempotency_begin('payments', 'key-2', 'fp-1')$q$),
	(5, 'same fingerprint', $q$SELECT * FROM txbox.idempotency_begin('payments', 'key-1', 'fp-1')$q$),
	(6, 'NULL after NULL', $q$SELECT * FROM txbox.idempotency_begin('payments', 'key-2', NULL)$q$)
) AS t(n, c, q)
ORDER BY n;

-- Rollback frees the key: no stuck "in progress".
BEGIN;
SELECT * FROM txbox.idempotency_begin('payments', 'key-3', 'fp-3');
ROLLBACK;
BEGIN;
SELECT * FROM txbox.idempotency_begin('payments', 'key-3', 'fp-3', wait => false);
-- a retry after a rollback may carry another request: the key was never used
ROLLBACK;
SELECT * FROM txbox.idempotency_begin('payments', 'key-3', 'fp-other', wait => false);
-- (that autocommit call committed without complete: see below)

-- So does a rolled-back savepoint, with or without the completion.
BEGIN;
SAVEPOINT s1;
SELECT state FROM txbox.idempotency_begin('payments', 'key-4', 'fp-4');
ROLLBACK TO SAVEPOINT s1;
SELECT pg_temp.try($q$SELECT txbox.idempotency_complete('payments', 'key-4', '{}')$q$) AS complete_after_savepoint_rollback;
SELECT state FROM txbox.idempotency_begin('payments', 'key-4', 'fp-4', wait => false);
SAVEPOINT s2;
SELECT txbox.idempotency_complete('payments', 'key-4', '{"try": 1}');
ROLLBACK TO SAVEPOINT s2;
SELECT txbox.idempotency_complete('payments', 'key-4', '{"try": 2}', 202);
COMMIT;
SELECT * FROM txbox.idempotency_begin('payments', 'key-4', 'fp-4');

-- begin called twice by the holder, before it completes: new both times.
BEGIN;
SELECT state FROM txbox.idempotency_begin('payments', 'key-5', 'fp-5');
SELECT state FROM txbox.idempotency_begin('payments', 'key-5', 'fp-5');
SELECT txbox.idempotency_complete('payments', 'key-5', '"done"');
-- after completing, the holder sees its own stored response
SELECT * FROM txbox.idempotency_begin('payments', 'key-5', 'fp-5');
COMMIT;

-- complete without begin, in another transaction, or twice: 55000.
SELECT c AS "case", pg_temp.try(q) AS result
FROM (VALUES
	(1, 'never begun', $q$SELECT txbox.idempotency_complete('payments', 'key-none', '{}')$q$),
	(2, 'completed earlier', $q$SELECT txbox.idempotency_complete('payments', 'key-1', '{}')$q$),
	(3, 'other scope', $q$SELECT txbox.idempotency_complete('orders', 'key-1', '{}')$q$)
) AS t(n, c, q)
ORDER BY n;
BEGIN;
SELECT state FROM txbox.idempotency_begin('payments', 'key-6');
SELECT txbox.idempotency_complete('payments', 'key-6', '{"n": 1}');
SELECT pg_temp.try($q$SELECT txbox.idempotency_complete('payments', 'key-6', '{"n": 2}')$q$) AS complete_twice;
COMMIT;
SELECT * FROM txbox.idempotency_begin('payments', 'key-6');

-- Committed without complete: the effects happened, so a later begin says
-- completed, with a NULL response (never new again).
BEGIN;
SELECT state FROM txbox.idempotency_begin('payments', 'key-7', 'fp-7');
COMMIT;
SELECT * FROM txbox.idempotency_begin('payments', 'key-7', 'fp-7');
SELECT pg_temp.try($q$SELECT txbox.idempotency_complete('payments', 'key-7', '{}')$q$) AS complete_later;
-- (the autocommit begin of key-3 above, likewise)
SELECT * FROM txbox.idempotency_begin('payments', 'key-3', 'fp-other');

-- A NULL response and a NULL status can be stored.
BEGIN;
SELECT state FROM txbox.idempotency_begin('payments', 'key-8');
SELECT txbox.idempotency_complete('payments', 'key-8', NULL, NULL);
COMMIT;
SELECT * FROM txbox.idempotency_begin('payments', 'key-8');

-- in_progress: the key is held by another transaction (here a prepared
-- one).  wait => false says so at once; wait => true waits for the holder.
BEGIN;
SELECT state FROM txbox.idempotency_begin('payments', 'key-9', 'fp-9');
SELECT txbox.idempotency_complete('payments', 'key-9', '{"n": 9}');
PREPARE TRANSACTION 'txbox_idem_commit';
BEGIN;
SELECT state FROM txbox.idempotency_begin('payments', 'key-10', 'fp-10');
PREPARE TRANSACTION 'txbox_idem_rollback';
SELECT * FROM txbox.idempotency_begin('payments', 'key-9', 'fp-9', wait => false);
SELECT * FROM txbox.idempotency_begin('payments', 'key-10', 'fp-other', wait => false);
SET lock_timeout = '50ms';
SELECT pg_temp.try($q$SELECT * FROM txbox.idempotency_begin('payments', 'key-9', 'fp-9')$q$) AS waits_for_holder;
RESET lock_timeout;
COMMIT PREPARED 'txbox_idem_commit';
ROLLBACK PREPARED 'txbox_idem_rollback';
SELECT * FROM txbox.idempotency_begin('payments', 'key-9', 'fp-9', wait => false);
BEGIN;
SELECT * FROM txbox.idempotency_begin('payments', 'key-10', 'fp-other', wait => false);
ROLLBACK;

-- Expiry (txbox.idempotency_ttl): an expired key is new again, and may
-- carry another request.
SET txbox.idempotency_ttl = '1s';
BEGIN;
SELECT state FROM txbox.idempotency_begin('payments', 'key-ttl', 'fp-a');
SELECT txbox.idempotency_complete('payments', 'key-ttl', '{"n": 1}');
COMMIT;
SELECT state, response FROM txbox.idempotency_begin('payments', 'key-ttl', 'fp-a');
SELECT pg_sleep(1.1);
BEGIN;
SELECT * FROM txbox.idempotency_begin('payments', 'key-ttl', 'fp-b');
SELECT txbox.idempotency_complete('payments', 'key-ttl', '{"n": 2}');
COMMIT;
RESET txbox.idempotency_ttl;
SELECT * FROM txbox.idempotency_begin('payments', 'key-ttl', 'fp-b');
-- the key's stored expiry follows the setting at begin time
SELECT scope, key, fingerprint, extract(epoch FROM expires_at - created_at)::int AS ttl_seconds
FROM txbox.idempotency_keys WHERE key IN ('key-ttl', 'key-1') ORDER BY scope, key;

-- NULL or empty scope / key.
SELECT c AS "case", pg_temp.try(q) AS result
FROM (VALUES
	(1, 'begin NULL scope', $q$SELECT * FROM txbox.idempotency_begin(NULL, 'k')$q$),
	(2, 'begin empty scope', $q$SELECT * FROM txbox.idempotency_begin('', 'k')$q$),
	(3, 'begin NULL key', $q$SELECT * FROM txbox.idempotency_begin('s', NULL)$q$),
	(4, 'begin empty key', $q$SELECT * FROM txbox.idempotency_begin('s', '')$q$),
	(5, 'complete NULL scope', $q$SELECT txbox.idempotency_complete(NULL, 'k', '{}')$q$),
	(6, 'complete empty scope', $q$SELECT txbox.idempotency_complete('', 'k', '{}')$q$),
	(7, 'complete NULL key', $q$SELECT txbox.idempotency_complete('s', NULL, '{}')$q$),
	(8, 'complete empty key', $q$SELECT txbox.idempotency_complete('s', '', '{}')$q$)
) AS t(n, c, q)
ORDER BY n;
