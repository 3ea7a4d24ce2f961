SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- inbox: txbox.inbox_claim (SPEC 2.3, promise 5).
--
\set VERBOSITY default
\set SHOW_CONTEXT never

\i sql/include/try.sql

-- First claim true, a repeat false: in the same transaction and later ones.
BEGIN;
SELECT txbox.inbox_claim('billing', 'msg-1') AS first_claim;
SELECT txbox.inbox_claim('billing', 'msg-1') AS same_txn_repeat;
COMMIT;
SELECT txbox.inbox_claim('billing', 'msg-1') AS later_txn_repeat;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT txbox.inbox_claim('billing', 'msg-1') AS repeatable_read_repeat;
COMMIT;

-- Claims are per consumer, and ids are compared exactly.
SELECT txbox.inbox_claim('shipping', 'msg-1') AS other_consumer;
SELECT txbox.inbox_claim('shipping', 'msg-1') AS other_consumer_repeat;
SELECT txbox.inbox_claim('billing', 'MSG-1') AS other_case_id,
	txbox.inbox_claim('billing', 'msg-1 ') AS trailing_space_id;

-- The claim is recorded once, in the current generation.
SELECT consumer, message_id,
	gen = (SELECT current_gen FROM txbox._generation WHERE relname = 'inbox_dedup') AS current_gen
FROM txbox.inbox_dedup WHERE message_id = 'msg-1' ORDER BY consumer;

-- A rolled-back claim leaves the id claimable.
BEGIN;
SELECT txbox.inbox_claim('billing', 'msg-2') AS claim_then_rollback;
ROLLBACK;
SELECT txbox.inbox_claim('billing', 'msg-2') AS claimable_again;
SELECT txbox.inbox_claim('billing', 'msg-2') AS now_duplicate;

-- A claim writes: a read-only transaction refuses it as it refuses an
-- INSERT (25006), and the id stays claimable.
BEGIN READ ONLY;
SELECT pg_temp.try($q$SELECT txbox.inbox_claim('billing', 'msg-ro')$q$) AS read_only;
ROLLBACK;
SELECT txbox.inbox_claim('billing', 'msg-ro') AS claimable_after_read_only;

-- So does a rolled-back savepoint, and a failed PL/pgSQL block.
BEGIN;
SAVEPOINT s;
SELECT txbox.inbox_claim('billing', 'msg-3') AS claim_in_savepoint;
ROLLBACK TO SAVEPOINT s;
SELECT txbox.inbox_claim('billing', 'msg-3') AS after_savepoint_rollback;
COMMIT;
DO $$
BEGIN
	BEGIN
		RAISE NOTICE 'claimed msg-4: %', txbox.inbox_claim('billing', 'msg-4');
		RAISE EXCEPTION 'handler failed';
	EXCEPTION WHEN raise_exception THEN
		RAISE NOTICE 'caught: %', SQLERRM;
	END;
	RAISE NOTICE 'claimed msg-4 again: %', txbox.inbox_claim('billing', 'msg-4');
	RAISE NOTICE 'claimed msg-4 a third time: %', txbox.inbox_claim('billing', 'msg-4');
END $$;

-- Only the committed claims remain.
SELECT consumer, message_id FROM txbox.inbox_dedup
WHERE consumer = 'billing' ORDER BY message_id COLLATE "C";

-- Ids of any text form, up to large ones.
SELECT txbox.inbox_claim('billing', repeat('x', 2000)) AS long_id,
	txbox.inbox_claim('billing', repeat('x', 2000)) AS long_id_repeat,
	txbox.inbox_claim('billing', 'ü-☃') AS non_ascii_id,
	txbox.inbox_claim('billing', 'ü-☃') AS non_ascii_id_repeat;

-- NULL or empty consumer / message id.
SELECT c AS "case", pg_temp.try(q) AS result
FROM (VALUES
	(1, 'NULL consumer', $q$SELECT txbox.inbox_claim(NULL, 'msg-9')$q$),
	(2, 'empty consumer', $q$SELECT txbox.inbox_claim('', 'msg-9')$q$),
	(3, 'NULL message_id', $q$SELECT txbox.inbox_claim('billing', NULL)$q$),
	(4, 'empty message_id', $q$SELECT txbox.inbox_claim('billing', '')$q$)
) AS t(n, c, q)
ORDER BY n;
SELECT count(*) AS msg_9_claims FROM txbox.inbox_dedup WHERE message_id = 'msg-9' OR message_id = '';

-- txbox.inbox_claim calls txbox._inbox_claim, looked up once per backend
-- (src/relay_api.c): a change to the functions is seen at once.
BEGIN;
SELECT txbox.inbox_claim('billing', 'msg-5') AS before_rename;
ALTER FUNCTION txbox._inbox_claim(regrole, text, text) RENAME TO _inbox_claim_renamed;
SELECT pg_temp.try($q$SELECT txbox.inbox_claim('billing', 'msg-6')$q$) AS after_rename;
ROLLBACK;
SELECT txbox.inbox_claim('billing', 'msg-6') AS after_rollback;
