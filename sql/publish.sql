SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- publish: txbox.publish / txbox.publish_bytes (SPEC 2.1, promise 1).
--
\set VERBOSITY default
\set SHOW_CONTEXT never

\i sql/include/try.sql

-- A message id is a UUID version 7 (RFC 9562): version nibble 7, variant
-- 10xx, and its first 48 bits are the current Unix time in milliseconds.
SELECT txbox.publish('pub.basic', '{"id": 1}') AS mid \gset
SELECT :'mid' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS is_uuid_v7,
	abs(('x' || substr(replace(:'mid', '-', ''), 1, 12))::bit(48)::bigint
		- (extract(epoch FROM clock_timestamp()) * 1000)::bigint) < 60000 AS time_is_now;

-- The untyped literal call resolves to the jsonb function and stores jsonb.
SELECT topic, key, headers, payload, payload_bytes IS NULL AS no_bytes,
	jsonb_typeof(payload) AS payload_type,
	published_at BETWEEN now() - interval '1 minute' AND clock_timestamp() AS published_now
FROM txbox.outbox WHERE message_id = :'mid';

-- Key, headers and a caller-supplied message id are kept as given.
SELECT txbox.publish('pub.basic', '{"id": 2}', key => 'customer-42',
	headers => '{"trace_id": "abc", "content-type": "application/json"}',
	message_id => '00000000-0000-7000-8000-00000000aa01');
SELECT message_id, topic, key, headers, payload
FROM txbox.outbox WHERE message_id = '00000000-0000-7000-8000-00000000aa01';
-- positional arguments too; NULL key and NULL headers are stored as NULL
SELECT txbox.publish('pub.basic', '[1, "two", null]', NULL, NULL,
	'00000000-0000-7000-8000-00000000aa02');
SELECT key IS NULL AS key_null, headers IS NULL AS headers_null, payload
FROM txbox.outbox WHERE message_id = '00000000-0000-7000-8000-00000000aa02';
-- a JSON null payload is a message, not a missing payload
SELECT txbox.publish('pub.basic', 'null', message_id => '00000000-0000-7000-8000-00000000aa03');
SELECT payload IS NOT NULL AS is_sql_value, jsonb_typeof(payload)
FROM txbox.outbox WHERE message_id = '00000000-0000-7000-8000-00000000aa03';

-- Binary payloads are stored byte-exact in payload_bytes, zero bytes included.
SELECT txbox.publish_bytes('pub.bytes', '\x00ff000a0d00'::bytea,
	message_id => '00000000-0000-7000-8000-00000000bb01');
SELECT encode(payload_bytes, 'hex') AS bytes, length(payload_bytes), payload IS NULL AS no_json
FROM txbox.outbox WHERE message_id = '00000000-0000-7000-8000-00000000bb01';
-- every byte value 0..255
SELECT txbox.publish_bytes('pub.bytes',
	(SELECT string_agg(set_byte('\x00'::bytea, 0, b), ''::bytea ORDER BY b)
	 FROM generate_series(0, 255) b),
	message_id => '00000000-0000-7000-8000-00000000bb02');
SELECT payload_bytes = (SELECT string_agg(set_byte('\x00'::bytea, 0, b), ''::bytea ORDER BY b)
						FROM generate_series(0, 255) b) AS all_bytes_exact,
	length(payload_bytes)
FROM txbox.outbox WHERE message_id = '00000000-0000-7000-8000-00000000bb02';
-- an empty binary payload is allowed
SELECT txbox.publish_bytes('pub.bytes', ''::bytea,
	message_id => '00000000-0000-7000-8000-00000000bb03');
SELECT length(payload_bytes) FROM txbox.outbox
WHERE message_id = '00000000-0000-7000-8000-00000000bb03';
-- a compressed (toasted) argument is stored as its original bytes
CREATE TEMP TABLE blobs (b bytea);
INSERT INTO blobs SELECT convert_to(repeat('abcd', 25000), 'SQL_ASCII');
SELECT pg_column_size(b) < 100000 AS stored_compressed, length(b) FROM blobs;
SELECT txbox.publish_bytes('pub.bytes', b, message_id => '00000000-0000-7000-8000-00000000bb04')
FROM blobs;
SELECT o.payload_bytes = b.b AS toasted_bytes_exact
FROM txbox.outbox o, blobs b WHERE o.message_id = '00000000-0000-7000-8000-00000000bb04';

-- Every row records its transaction (txid) and lands in the current generation.
BEGIN;
SELECT txbox.publish('pub.tx', '{}') AS mid \gset
SELECT txbox.publish_bytes('pub.tx', '\x01') AS mid2 \gset
SELECT count(*) AS n,
	bool_and(txid = pg_current_xact_id()) AS txid_is_mine,
	bool_and(gen = (SELECT current_gen FROM txbox._generation WHERE relname = 'outbox')) AS current_gen
FROM txbox.outbox WHERE message_id IN (:'mid', :'mid2');
COMMIT;

-- Ids increase in publish order within a backend: 1000 ids published by
-- one statement sort in the order they were published, and so do the
-- outbox's sequence ids.
WITH p AS (
	SELECT g, txbox.publish('pub.order', jsonb_build_object('g', g)) AS mid
	FROM generate_series(1, 1000) g
)
SELECT count(*) AS n, count(DISTINCT mid) AS distinct_ids,
	array_agg(g ORDER BY mid) = array_agg(g ORDER BY g) AS ids_in_publish_order,
	bool_and(mid::text ~ '^.{14}7.{3}-[89ab]') AS all_v7
FROM p;
SELECT array_agg((payload->>'g')::int ORDER BY id)
		= array_agg((payload->>'g')::int ORDER BY message_id) AS seq_and_uuid_agree,
	array_agg((payload->>'g')::int ORDER BY id)
		= (SELECT array_agg(g) FROM generate_series(1, 1000) g) AS seq_in_publish_order
FROM txbox.outbox WHERE topic = 'pub.order';
-- and the next statement's id is larger still
SELECT txbox.publish('pub.order', '{"g": 1001}')
	> (SELECT message_id FROM txbox.outbox WHERE topic = 'pub.order' AND payload <> '{"g": 1001}'
	   ORDER BY message_id DESC LIMIT 1)
	AS later_id_larger;

-- Rolled-back work never leaves a message.
BEGIN;
SELECT txbox.publish('pub.rollback', '{}', message_id => '00000000-0000-7000-8000-0000000cc001') IS NOT NULL AS published;
SELECT count(*) AS visible_inside FROM txbox.outbox WHERE topic = 'pub.rollback';
ROLLBACK;
SELECT count(*) AS after_rollback FROM txbox.outbox WHERE topic = 'pub.rollback';

-- A read-only transaction refuses a publish as it refuses an INSERT
-- (25006), before the outbox's sequence moves.
SELECT last_value AS seq_before FROM txbox.outbox_id_seq \gset
BEGIN READ ONLY;
SELECT pg_temp.try($q$SELECT txbox.publish('pub.read_only', '{}')$q$) AS read_only,
	pg_temp.try($q$SELECT txbox.publish_bytes('pub.read_only', '\x01')$q$) AS read_only_bytes;
ROLLBACK;
SELECT count(*) AS read_only_published FROM txbox.outbox WHERE topic = 'pub.read_only';
SELECT last_value = :seq_before AS seq_unmoved FROM txbox.outbox_id_seq;

-- A rolled-back savepoint removes only its own messages.
BEGIN;
SELECT txbox.publish('pub.savepoint', '{"n": 1}', message_id => '00000000-0000-7000-8000-0000000cc011') IS NOT NULL AS published;
SAVEPOINT s1;
SELECT txbox.publish('pub.savepoint', '{"n": 2}', message_id => '00000000-0000-7000-8000-0000000cc012') IS NOT NULL AS published;
SELECT txbox.publish_bytes('pub.savepoint', '\x02', message_id => '00000000-0000-7000-8000-0000000cc013') IS NOT NULL AS published;
ROLLBACK TO SAVEPOINT s1;
SELECT txbox.publish('pub.savepoint', '{"n": 4}', message_id => '00000000-0000-7000-8000-0000000cc014') IS NOT NULL AS published;
SAVEPOINT s2;
SELECT txbox.publish('pub.savepoint', '{"n": 5}', message_id => '00000000-0000-7000-8000-0000000cc015') IS NOT NULL AS published;
RELEASE SAVEPOINT s2;
COMMIT;
SELECT message_id, payload FROM txbox.outbox WHERE topic = 'pub.savepoint' ORDER BY id;

-- A failed PL/pgSQL block (exception caught) leaves none of its messages;
-- the rest of the transaction keeps its own.
DO $$
BEGIN
	PERFORM txbox.publish('pub.plpgsql', '{"n": 1}', message_id => '00000000-0000-7000-8000-0000000dd001');
	BEGIN
		PERFORM txbox.publish('pub.plpgsql', '{"n": 2}', message_id => '00000000-0000-7000-8000-0000000dd002');
		PERFORM txbox.publish_bytes('pub.plpgsql', '\x03', message_id => '00000000-0000-7000-8000-0000000dd003');
		RAISE EXCEPTION 'handler failed';
	EXCEPTION WHEN raise_exception THEN
		RAISE NOTICE 'caught: %', SQLERRM;
	END;
	BEGIN
		PERFORM txbox.publish('pub.plpgsql', '{"n": 4}', message_id => '00000000-0000-7000-8000-0000000dd004');
		PERFORM txbox.publish('bad topic', '{"n": 5}');
	EXCEPTION WHEN invalid_name THEN
		RAISE NOTICE 'caught % %', SQLSTATE, SQLERRM;
	END;
	PERFORM txbox.publish('pub.plpgsql', '{"n": 6}', message_id => '00000000-0000-7000-8000-0000000dd006');
END $$;
SELECT message_id, payload FROM txbox.outbox WHERE topic = 'pub.plpgsql' ORDER BY id;

-- Two-phase commit: the message exists if and only if COMMIT PREPARED.
BEGIN;
SELECT txbox.publish('pub.2pc', '{"n": 1}', message_id => '00000000-0000-7000-8000-0000000ee001') IS NOT NULL AS published;
PREPARE TRANSACTION 'txbox_publish_commit';
BEGIN;
SELECT txbox.publish('pub.2pc', '{"n": 2}', message_id => '00000000-0000-7000-8000-0000000ee002') IS NOT NULL AS published;
PREPARE TRANSACTION 'txbox_publish_rollback';
SELECT count(*) AS visible_while_prepared FROM txbox.outbox WHERE topic = 'pub.2pc';
COMMIT PREPARED 'txbox_publish_commit';
ROLLBACK PREPARED 'txbox_publish_rollback';
SELECT message_id, payload FROM txbox.outbox WHERE topic = 'pub.2pc' ORDER BY id;

-- 10,000 messages in one transaction.
BEGIN;
SELECT count(*) AS published
FROM (SELECT txbox.publish('pub.bulk', jsonb_build_object('n', g), key => (g % 10)::text)
	  FROM generate_series(1, 10000) g) s;
SELECT count(*) AS n, count(DISTINCT message_id) AS distinct_ids,
	min((payload->>'n')::int), max((payload->>'n')::int),
	bool_and(txid = pg_current_xact_id()) AS txid_is_mine
FROM txbox.outbox WHERE topic = 'pub.bulk';
COMMIT;
SELECT count(*) AS committed FROM txbox.outbox WHERE topic = 'pub.bulk';

-- Validation: every error has its SQLSTATE and a hint.
SELECT c AS "case", pg_temp.try(q) AS result
FROM (VALUES
	(1, 'NULL topic', $q$SELECT txbox.publish(NULL, '{}')$q$),
	(2, 'NULL topic (bytes)', $q$SELECT txbox.publish_bytes(NULL, '\x00')$q$),
	(3, 'NULL payload', $q$SELECT txbox.publish('pub.err', NULL)$q$),
	(4, 'NULL payload (bytes)', $q$SELECT txbox.publish_bytes('pub.err', NULL)$q$),
	(5, 'empty topic', $q$SELECT txbox.publish('', '{}')$q$),
	(6, '250-char topic', $q$SELECT txbox.publish(repeat('a', 250), '{}')$q$),
	(7, '249-char topic', $q$SELECT txbox.publish(repeat('a', 249), '{}')$q$),
	(8, 'all allowed characters', $q$SELECT txbox.publish('AZaz09._-', '{}')$q$),
	(9, 'space in topic', $q$SELECT txbox.publish('a b', '{}')$q$),
	(10, 'non-ASCII topic', $q$SELECT txbox.publish('ü', '{}')$q$),
	(11, 'slash in topic', $q$SELECT txbox.publish_bytes('orders/eu', '\x00')$q$),
	(12, 'headers array', $q$SELECT txbox.publish('pub.err', '{}', headers => '[1]')$q$),
	(13, 'headers string', $q$SELECT txbox.publish('pub.err', '{}', headers => '"x"')$q$),
	(14, 'headers nested object', $q$SELECT txbox.publish('pub.err', '{}', headers => '{"a": {"b": "c"}}')$q$),
	(15, 'headers nested array', $q$SELECT txbox.publish('pub.err', '{}', headers => '{"a": ["b"]}')$q$),
	(16, 'headers number value', $q$SELECT txbox.publish('pub.err', '{}', headers => '{"a": 1}')$q$),
	(17, 'headers null value', $q$SELECT txbox.publish('pub.err', '{}', headers => '{"a": null}')$q$),
	(18, 'headers (bytes) number', $q$SELECT txbox.publish_bytes('pub.err', '\x00', headers => '{"a": true}')$q$),
	(19, 'headers empty object', $q$SELECT txbox.publish('pub.err', '{}', headers => '{}')$q$),
	(20, 'headers NULL', $q$SELECT txbox.publish('pub.err', '{}', headers => NULL)$q$)
) AS t(n, c, q)
ORDER BY n;
-- the accepted ones were published, the refused ones not
SELECT left(topic, 10) AS topic, length(topic), count(*) FROM txbox.outbox
WHERE topic IN ('pub.err', 'AZaz09._-') OR length(topic) > 200
GROUP BY topic ORDER BY topic;

-- Payload size limit (txbox.max_payload_size, superuser-only), measured on
-- the stored bytes, uncompressed.
SET txbox.max_payload_size = '1kB';
SELECT c AS "case", pg_temp.try(q) AS result
FROM (VALUES
	(1, '1024 bytes', $q$SELECT txbox.publish_bytes('pub.size', decode(repeat('ab', 1024), 'hex'))$q$),
	(2, '1025 bytes', $q$SELECT txbox.publish_bytes('pub.size', decode(repeat('ab', 1025), 'hex'))$q$),
	(3, 'small jsonb', $q$SELECT txbox.publish('pub.size', jsonb_build_object('s', repeat('x', 900)))$q$),
	(4, 'large jsonb', $q$SELECT txbox.publish('pub.size', jsonb_build_object('s', repeat('x', 2000)))$q$),
	(5, 'compressed 100 kB', $q$SELECT txbox.publish_bytes('pub.size', b) FROM blobs$q$)
) AS t(n, c, q)
ORDER BY n;
-- the 100 kB blob is stored compressed in well under 64 kB, but counts as 100 kB
SET txbox.max_payload_size = '64kB';
SELECT pg_column_size(b) < 65536 AS compressed_fits, pg_temp.try($q$SELECT txbox.publish_bytes('pub.size', b) FROM blobs$q$)
FROM blobs;
RESET txbox.max_payload_size;
SELECT count(*) AS accepted FROM txbox.outbox WHERE topic = 'pub.size';
