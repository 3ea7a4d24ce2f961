SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- inbox_floor: inbox retention asks every consumer's floor before it
-- scans (txbox._inbox_processed).  A consumer whose floor reaches the
-- oldest generation's last message costs an index probe, not a read of
-- that generation; without a floor (a handler missing a part's) the
-- generation's messages are checked against the dedup records as before.
-- handler_status counts a handler's lag above its floor the same way.
-- All in one transaction that rolls back; the reads counted are this
-- transaction's own (pg_stat_get_xact_blocks_fetched).
--
SET search_path = public;
\i sql/include/try.sql

CREATE FUNCTION floor_h(m txbox.message) RETURNS void LANGUAGE sql AS $$ SELECT $$;
BEGIN;
-- only this test's consumers and messages in the generation looked at
DELETE FROM txbox.consumers;
SELECT (current_gen + 1) % generations AS og FROM txbox._generation WHERE relname = 'inbox' \gset
DELETE FROM txbox.inbox WHERE gen = :og;
INSERT INTO txbox.inbox (gen, message_id, topic, payload, source, published_at, received_at)
SELECT :og, ('0190f0e0-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, 'floor',
	   jsonb_build_object('pad', repeat('x', 500)), 'regress/floor', now(), now()
  FROM generate_series(1, 2000) g;
SELECT max(seq) AS last FROM txbox.inbox WHERE gen = :og \gset
-- an SQL consumer with its floor at the last message, a paused handler
-- (two parts) with both parts' floors there
INSERT INTO txbox.consumers (consumer, topics, owner, low)
VALUES ('floor_sql', ARRAY['floor'], current_user::regrole, :last);
SELECT txbox.create_handler('floor_h', ARRAY['floor'], 'floor_h(txbox.message)', '{"parallel": 2}');
SELECT txbox.pause_handler('floor_h');
SELECT handler_id AS hid FROM txbox.handlers WHERE name = 'floor_h' \gset
INSERT INTO txbox.handler_floors VALUES (:hid, 0, 2, :last), (:hid, 1, 2, :last + 5);

CREATE FUNCTION pg_temp.heap_read(gen integer) RETURNS bigint LANGUAGE sql AS $$
	SELECT pg_stat_get_xact_blocks_fetched(format('txbox.inbox_%s', gen)::regclass)
$$;
SELECT pg_temp.heap_read(:og) AS before \gset
SELECT txbox._inbox_processed(:og::smallint) AS floors_reach_the_last_message,
	   pg_temp.heap_read(:og) - :before <= 1 AS heap_read_one_block_at_most;
-- handler_status's lag is looked for above the floor only: the inbox is
-- not read whole (2,000 messages without a dedup record, but at the floor)
SELECT pg_temp.heap_read(:og) AS before \gset
SELECT lag_messages AS lag_at_floor, pg_temp.heap_read(:og) - :before <= 2 AS lag_heap_read_two_blocks_at_most
  FROM txbox.handler_status WHERE name = 'floor_h';

-- a part without its row: no floor for the handler, its messages scanned
DELETE FROM txbox.handler_floors WHERE part = 1;
SELECT pg_temp.heap_read(:og) AS before \gset
SELECT txbox._inbox_processed(:og::smallint) AS unprocessed_without_floor,
	   pg_temp.heap_read(:og) - :before > 0 AS heap_read;
SELECT lag_messages AS lag_without_floor FROM txbox.handler_status WHERE name = 'floor_h';
-- nor with the rows of two different splits of the keys
INSERT INTO txbox.handler_floors VALUES (:hid, 1, 3, :last);
SELECT txbox._inbox_processed(:og::smallint) AS unprocessed_mixed_splits;
-- rows of one split are a floor again, even with a part's row of another
INSERT INTO txbox.handler_floors VALUES (:hid, 2, 3, :last);
UPDATE txbox.handler_floors SET parallel = 3 WHERE part = 0;
INSERT INTO txbox.handler_floors VALUES (:hid, 5, 7, 0);
SELECT txbox._inbox_processed(:og::smallint) AS processed_one_split;
-- the least part's floor counts
UPDATE txbox.handler_floors SET low = :last - 1 WHERE part = 2;
SELECT txbox._inbox_processed(:og::smallint) AS unprocessed_least_part_below;
SELECT lag_messages AS lag_least_part_below FROM txbox.handler_status WHERE name = 'floor_h';
-- ... and above it, the dedup records: only the last message is looked at
INSERT INTO txbox.inbox_dedup (gen, consumer, message_id, claimed_at)
SELECT 0, 'floor_h', message_id::text, now() FROM txbox.inbox WHERE seq = :last;
SELECT pg_temp.heap_read(:og) AS before \gset
SELECT txbox._inbox_processed(:og::smallint) AS processed_above_floor,
	   pg_temp.heap_read(:og) - :before <= 2 AS heap_read_above_floor_only;
SELECT lag_messages AS lag_processed_above_floor FROM txbox.handler_status WHERE name = 'floor_h';

-- an SQL consumer below: the same
UPDATE txbox.consumers SET low = :last - 2 WHERE consumer = 'floor_sql';
SELECT txbox._inbox_processed(:og::smallint) AS unprocessed_sql_consumer_below;
UPDATE txbox.consumers SET low = 0 WHERE consumer = 'floor_sql';
INSERT INTO txbox.inbox_dedup (gen, consumer, message_id, claimed_at)
SELECT 0, 'floor_sql', message_id::text, now() FROM txbox.inbox WHERE gen = :og;
SELECT txbox._inbox_processed(:og::smallint) AS processed_by_scan;

-- a consumer not of the topic does not hold it; an empty generation goes
INSERT INTO txbox.consumers (consumer, topics, owner) VALUES ('floor_other', ARRAY['other'], current_user::regrole);
SELECT txbox._inbox_processed(:og::smallint) AS processed_other_topic_consumer;
DELETE FROM txbox.inbox WHERE gen = :og;
INSERT INTO txbox.consumers (consumer, topics, owner) VALUES ('floor_all', NULL, current_user::regrole);
SELECT txbox._inbox_processed(:og::smallint) AS empty_generation_goes;

-- An SQL consumer's floor moves only under the topics it was computed for:
-- a fetch of other topics (its registration changed them meanwhile)
-- leaves it alone.
INSERT INTO txbox.inbox (gen, message_id, topic, payload, source, published_at, received_at)
VALUES (:og, '0190f0e0-0000-7000-8000-00000000ffff', 'floor', '{}', 'regress/floor', now(), now());
SELECT txbox._consumer_advance('floor_other', ARRAY['floor'], 0);
SELECT low = 0 AS floor_kept FROM txbox.consumers WHERE consumer = 'floor_other';
SELECT txbox._consumer_advance('floor_other', ARRAY['other'], 0);
SELECT low > 0 AS floor_moved FROM txbox.consumers WHERE consumer = 'floor_other';
ROLLBACK;
DROP FUNCTION floor_h(txbox.message);
