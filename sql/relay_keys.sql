SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- relay_keys: what a relay reads from a batch (txbox._batch_keys, which
-- reads as a relay worker does: the batch's keys from the outbox's (txid,
-- id) index alone, then the messages by runs of those keys, dropping the
-- rows the relay does not deliver).  Commit order across concurrent
-- transactions: test/specs/relay-batches.spec.
--
CREATE TEMP TABLE snaps (name text PRIMARY KEY, snap pg_snapshot);
CREATE FUNCTION pg_temp.batch(a text, b text, topics text[], relay text, after_id bigint DEFAULT 0)
RETURNS TABLE (w text) LANGUAGE sql AS $$
	SELECT coalesce(o.payload->>'w', o.topic || ' ' || (o.payload->>'n'))
	  FROM txbox._batch_keys((SELECT snap FROM snaps WHERE name = a),
							 (SELECT snap FROM snaps WHERE name = b), topics, relay, after_id)
		   WITH ORDINALITY AS k(txid, id, ord)
	  JOIN txbox.outbox o ON o.txid = k.txid AND o.id = k.id
	 ORDER BY k.ord
$$;

INSERT INTO snaps VALUES ('a', pg_current_snapshot());
-- topics a and b in one transaction, with a rolled-back savepoint
BEGIN;
SELECT txbox.publish('a', '{"w": "a1"}') IS NOT NULL AS published;
SELECT txbox.publish('b', '{"w": "b1"}') IS NOT NULL AS published;
SAVEPOINT sp;
SELECT txbox.publish('a', '{"w": "a rolled back"}') IS NOT NULL AS published;
ROLLBACK TO SAVEPOINT sp;
SELECT txbox.publish('a', '{"w": "a2"}') IS NOT NULL AS published;
COMMIT;
-- a rolled-back transaction
BEGIN;
SELECT txbox.publish('a', '{"w": "a aborted"}') IS NOT NULL AS published;
ROLLBACK;
-- dead letters sent again: one for relay r, one for another relay
SELECT txbox._republish('r', gen_random_uuid(), 'a', NULL, NULL, '{"w": "a for r"}', NULL);
SELECT txbox._republish('other', gen_random_uuid(), 'a', NULL, NULL, '{"w": "a for other"}', NULL);
INSERT INTO snaps VALUES ('b', pg_current_snapshot());

-- relay r of topic a: its messages only, in publish order
SELECT * FROM pg_temp.batch('a', 'b', ARRAY['a'], 'r');
-- every topic
SELECT * FROM pg_temp.batch('a', 'b', NULL, 'r');
-- relay other
SELECT * FROM pg_temp.batch('a', 'b', ARRAY['a', 'b'], 'other');
-- after an id: what follows it
SELECT * FROM pg_temp.batch('a', 'b', ARRAY['a'], 'r',
	(SELECT id FROM txbox.outbox WHERE payload->>'w' = 'a1'));

-- a big transaction of three topics: the relay of one reads every third
BEGIN;
SELECT count(txbox.publish(CASE g % 3 WHEN 0 THEN 'a' WHEN 1 THEN 'b' ELSE 'c' END,
						   jsonb_build_object('n', g)))
  FROM generate_series(1, 3000) g;
SAVEPOINT sp;
SELECT count(txbox.publish('a', jsonb_build_object('n', g))) FROM generate_series(1, 100) g;
ROLLBACK TO SAVEPOINT sp;
COMMIT;
INSERT INTO snaps VALUES ('c', pg_current_snapshot());
SELECT count(*) AS messages, count(DISTINCT w) AS distinct_messages,
	   bool_and(w LIKE 'a %') AS all_of_a,
	   min(w) FILTER (WHERE ord = 1) AS first, min(w) FILTER (WHERE ord = 1000) AS last,
	   bool_and((split_part(w, ' ', 2)::int = 3 * ord)) AS in_publish_order
  FROM pg_temp.batch('b', 'c', ARRAY['a'], 'r') WITH ORDINALITY AS b(w, ord);
SELECT count(*) AS whole_batch FROM pg_temp.batch('a', 'c', NULL, 'r');
