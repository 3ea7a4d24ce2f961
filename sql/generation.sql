SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- generation: the rotated, LIST-partitioned tables and the private
-- txbox._switch_generation (src/generation.c; SPEC 4).
--
\set VERBOSITY default
\set SHOW_CONTEXT never

\i sql/include/try.sql

-- Start from a freshly created extension, whatever earlier files did.  The
-- same backend then also shows that its cached generations and saved plans
-- survive DROP EXTENSION / CREATE EXTENSION.
SELECT txbox.inbox_claim('gen', 'warm-up') AS warm_up,
	txbox.publish('gen.warmup', '{}') IS NOT NULL AS published;
DROP EXTENSION txbox;
CREATE EXTENSION txbox;
SELECT relname, current_gen, generations FROM txbox._generation ORDER BY relname;

-- counts(table): rows per partition of a rotated table.
CREATE FUNCTION pg_temp.counts(rel text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	n int;
	out text := '';
BEGIN
	FOR g IN 0 .. (SELECT generations - 1 FROM txbox._generation WHERE relname = rel) LOOP
		EXECUTE format('SELECT count(*) FROM txbox.%I', rel || '_' || g) INTO n;
		out := out || CASE WHEN g > 0 THEN ', ' ELSE '' END || format('%s_%s: %s', rel, g, n);
	END LOOP;
	RETURN out;
END $$;

------------------------------------------------------------------------
-- inbox_dedup (2 generations)
------------------------------------------------------------------------
SELECT txbox.inbox_claim('gen', 'a') AS claim_a, txbox.inbox_claim('gen', 'b') AS claim_b,
	txbox.inbox_claim('gen', 'warm-up') AS claim_warm_up_again;
SELECT pg_temp.counts('inbox_dedup');
SELECT txbox._switch_generation('inbox_dedup') AS switched_to;
SELECT current_gen FROM txbox._generation WHERE relname = 'inbox_dedup';
-- a claim made before one switch still deduplicates: its record is in the
-- older generation, and the duplicate writes none (checked in a rolled-back
-- transaction, leaving no trace)
BEGIN;
SELECT txbox.inbox_claim('gen', 'a') AS claim_a_after_one_switch;
SELECT pg_temp.counts('inbox_dedup');
ROLLBACK;
-- new claims go to the new generation
SELECT txbox.inbox_claim('gen', 'c') AS claim_c;
SELECT pg_temp.counts('inbox_dedup');
-- the second switch empties the oldest generation, 0, and makes it current
SELECT txbox._switch_generation('inbox_dedup') AS switched_to;
SELECT pg_temp.counts('inbox_dedup');
-- a and b were truncated: claimable again; c (one switch old) is not
SELECT txbox.inbox_claim('gen', 'a') AS claim_a_after_two_switches,
	txbox.inbox_claim('gen', 'b') AS claim_b_after_two_switches;
BEGIN;
SELECT txbox.inbox_claim('gen', 'c') AS claim_c_after_one_switch;
ROLLBACK;
-- a switch rolled back changes nothing, and the cached generation follows
BEGIN;
SELECT txbox._switch_generation('inbox_dedup') AS switched_to;
SELECT txbox.inbox_claim('gen', 'd') AS claim_d_in_switched_gen;
SELECT pg_temp.counts('inbox_dedup');
ROLLBACK;
SELECT current_gen FROM txbox._generation WHERE relname = 'inbox_dedup';
SELECT txbox.inbox_claim('gen', 'e') AS claim_e;
SELECT pg_temp.counts('inbox_dedup');
SELECT consumer, message_id, gen FROM txbox.inbox_dedup WHERE consumer = 'gen'
ORDER BY message_id COLLATE "C", gen;

-- A claim looks for its id in the older generation only if the id sorts
-- at or below the consumer's largest id there (src/inbox.c,
-- claim_above_older), which a backend reads once per switch: ids at,
-- below and above that bound; then a bound read before a switch is not
-- used after it (m5 and m9 sort above the old bound m4, and are recorded).
SELECT txbox.inbox_claim('bound', 'm2') AS m2, txbox.inbox_claim('bound', 'm4') AS m4;
SELECT txbox._switch_generation('inbox_dedup') IS NOT NULL AS switched;
SELECT txbox.inbox_claim('bound', 'm4') AS m4_at_bound,
	txbox.inbox_claim('bound', 'm2') AS m2_below_bound,
	txbox.inbox_claim('bound', 'm3') AS m3_below_bound_new,
	txbox.inbox_claim('bound', 'm5') AS m5_above_bound,
	txbox.inbox_claim('bound', 'm9') AS m9_above_bound,
	txbox.inbox_claim('no-older', 'x') AS x_no_older_records;
SELECT txbox._switch_generation('inbox_dedup') IS NOT NULL AS switched;
SELECT txbox.inbox_claim('bound', 'm9') AS m9_again, txbox.inbox_claim('bound', 'm5') AS m5_again,
	txbox.inbox_claim('bound', 'm4') AS m4_truncated, txbox.inbox_claim('no-older', 'x') AS x_again,
	txbox.inbox_claim('no-older', 'y') AS y_new;
SELECT message_id, d.gen = g.current_gen AS in_current_gen
FROM txbox.inbox_dedup d, txbox._generation g
WHERE d.consumer = 'bound' AND g.relname = 'inbox_dedup' ORDER BY message_id COLLATE "C";

------------------------------------------------------------------------
-- outbox (3 generations): publish writes into the current generation.
------------------------------------------------------------------------
SELECT txbox.publish('gen.t', '{"n": 1}') IS NOT NULL AS published;
SELECT pg_temp.counts('outbox');
SELECT txbox._switch_generation('outbox') AS switched_to;
SELECT txbox.publish('gen.t', '{"n": 2}') IS NOT NULL AS published,
	txbox.publish_bytes('gen.t', '\x02') IS NOT NULL AS published_bytes;
SELECT pg_temp.counts('outbox');
SELECT txbox._switch_generation('outbox') AS switched_to;
SELECT txbox.publish('gen.t', '{"n": 3}') IS NOT NULL AS published;
SELECT pg_temp.counts('outbox');
-- the third switch wraps around: generation 0 is emptied and current again
SELECT txbox._switch_generation('outbox') AS switched_to;
SELECT pg_temp.counts('outbox');
SELECT txbox.publish('gen.t', '{"n": 4}') IS NOT NULL AS published;
SELECT gen, coalesce(payload::text, encode(payload_bytes, 'hex')) AS payload
FROM txbox.outbox WHERE topic = 'gen.t' ORDER BY id;
-- a publish in a rolled-back transaction that switched leaves no trace
BEGIN;
SELECT txbox._switch_generation('outbox') AS switched_to;
SELECT txbox.publish('gen.t', '{"n": 5}') IS NOT NULL AS published;
SELECT gen FROM txbox.outbox WHERE payload = '{"n": 5}';
ROLLBACK;
SELECT txbox.publish('gen.t', '{"n": 6}') IS NOT NULL AS published;
SELECT gen, payload FROM txbox.outbox WHERE topic = 'gen.t' AND payload IS NOT NULL
	AND gen = (SELECT current_gen FROM txbox._generation WHERE relname = 'outbox')
ORDER BY id;
SELECT pg_temp.counts('outbox');

------------------------------------------------------------------------
-- idempotency_keys (2 generations)
------------------------------------------------------------------------
BEGIN;
SELECT state FROM txbox.idempotency_begin('gen', 'k1', 'fp');
SELECT txbox.idempotency_complete('gen', 'k1', '{"n": 1}');
COMMIT;
SELECT pg_temp.counts('idempotency_keys');
SELECT txbox._switch_generation('idempotency_keys') AS switched_to;
-- one switch: the completed key is still found in the older generation
SELECT * FROM txbox.idempotency_begin('gen', 'k1', 'fp');
SELECT pg_temp.try($q$SELECT * FROM txbox.idempotency_begin('gen', 'k1', 'other')$q$) AS mismatch_after_one_switch;
BEGIN;
SELECT state FROM txbox.idempotency_begin('gen', 'k2', 'fp');
SELECT txbox.idempotency_complete('gen', 'k2', '{"n": 2}');
COMMIT;
SELECT pg_temp.counts('idempotency_keys');
-- two switches: k1 was truncated and is new again; k2 is still completed
SELECT txbox._switch_generation('idempotency_keys') AS switched_to;
SELECT pg_temp.counts('idempotency_keys');
BEGIN;
SELECT * FROM txbox.idempotency_begin('gen', 'k1', 'other');
SELECT * FROM txbox.idempotency_begin('gen', 'k2', 'fp');
ROLLBACK;

------------------------------------------------------------------------
-- Errors
------------------------------------------------------------------------
SELECT c AS "case", pg_temp.try(q) AS result
FROM (VALUES
	(1, 'unknown table', $q$SELECT txbox._switch_generation('nope')$q$),
	(2, 'generation table', $q$SELECT txbox._switch_generation('_generation')$q$),
	(3, 'partition name', $q$SELECT txbox._switch_generation('outbox_0')$q$),
	(4, 'qualified name', $q$SELECT txbox._switch_generation('txbox.outbox')$q$)
) AS t(n, c, q)
ORDER BY n;
SELECT relname, current_gen FROM txbox._generation ORDER BY relname;

------------------------------------------------------------------------
-- A switch committed by another session after this transaction took its
-- snapshot (REPEATABLE READ) still moves this transaction's writes to the
-- new generation, and so later transactions of this backend: the current
-- generation must never be read from a stale snapshot (generation.c: "once
-- a switch has committed no transaction writes into the old generation
-- again"; the inbox's duplicate check relies on it).
------------------------------------------------------------------------
CREATE EXTENSION dblink;
SELECT dblink_connect('other', format('dbname=%s port=%s host=%s', current_database(),
	current_setting('port'), split_part(current_setting('unix_socket_directories'), ',', 1)));
SELECT txbox.inbox_claim('gen.rr', 'warm-up') AS warm_up,
	txbox.publish('gen.rr', '{"n": 0}') IS NOT NULL AS published;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT relname, current_gen FROM txbox._generation ORDER BY relname;
SELECT * FROM dblink('other', $$SELECT txbox._switch_generation('inbox_dedup'),
	txbox._switch_generation('outbox')$$) AS t(inbox_dedup smallint, outbox smallint);
SELECT txbox.inbox_claim('gen.rr', 'x') AS claim_x,
	txbox.publish('gen.rr', '{"n": 1}') IS NOT NULL AS published;
COMMIT;
SELECT txbox.inbox_claim('gen.rr', 'y') AS claim_y,
	txbox.publish('gen.rr', '{"n": 2}') IS NOT NULL AS published;
SELECT relname, current_gen FROM txbox._generation ORDER BY relname;
SELECT message_id, gen = (SELECT current_gen FROM txbox._generation WHERE relname = 'inbox_dedup') AS in_current_gen
FROM txbox.inbox_dedup WHERE consumer = 'gen.rr' AND message_id <> 'warm-up' ORDER BY message_id;
SELECT payload, gen = (SELECT current_gen FROM txbox._generation WHERE relname = 'outbox') AS in_current_gen
FROM txbox.outbox WHERE topic = 'gen.rr' AND payload <> '{"n": 0}' ORDER BY id;
SELECT dblink_disconnect('other');
DROP EXTENSION dblink;

-- NULL is refused or ignored (STRICT), never a crash, and switches nothing.
SELECT pg_temp.try($q$SELECT txbox._switch_generation(NULL)$q$) ~ '^(ok|22004 )' AS null_refused_or_ignored;
SELECT relname, current_gen FROM txbox._generation ORDER BY relname;
