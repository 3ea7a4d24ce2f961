SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- relay_promise: what relays promise beyond the API (issue 8): parameters
-- that columns could shadow, the position of a relay created in a
-- transaction that publishes, and dead letters that stay until resolved.
-- Delivery itself: test/t/024_relay_promise.pl.
--
\i sql/include/try.sql

-- In a LANGUAGE sql function a column name wins over a parameter of the
-- same name, silently (txbox._batch_keys compared o.relay with itself, so
-- every relay delivered a replayed dead letter): no parameter of a txbox
-- sql function may be named like a column of a txbox table, view or type.
SELECT p.oid::regprocedure AS sql_function, a.name AS parameter
  FROM pg_proc p
  JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'sql'
 CROSS JOIN LATERAL unnest(p.proargnames) WITH ORDINALITY AS a(name, n)
 WHERE p.pronamespace = 'txbox'::regnamespace
   AND coalesce(p.proargmodes[a.n], 'i') IN ('i', 'b', 'v')
   AND a.name IN (SELECT att.attname FROM pg_attribute att
					JOIN pg_class c ON c.oid = att.attrelid
				   WHERE c.relnamespace = 'txbox'::regnamespace
					 AND att.attnum > 0 AND NOT att.attisdropped)
 ORDER BY 1, 2;

-- PL/pgSQL raises an error on such an ambiguity (variable_conflict =
-- error, the default): no txbox function may change that.
SELECT p.oid::regprocedure AS plpgsql_function_changing_variable_conflict
  FROM pg_proc p
 WHERE p.pronamespace = 'txbox'::regnamespace
   AND (p.prosrc ~* '#\s*variable_conflict'
		OR EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c ILIKE 'plpgsql.variable_conflict=%'));

-- A relay created "from now" in a transaction that already published (and
-- so has an xid that committed transactions may follow) counts that
-- transaction as in progress: what it published is delivered.
BEGIN;
SELECT txbox.publish('promise', '{"before": true}') IS NOT NULL AS published;
SELECT txbox.create_relay('same_xact', 'notify', NULL, '{"channel": "c"}');
SELECT pg_visible_in_snapshot(pg_current_xact_id(), snapshot) AS own_xact_looks_delivered
  FROM txbox.relays WHERE name = 'same_xact';
ROLLBACK;

-- Dead letters: an unresolved one (of a relay or a handler) stays however
-- old it is (SPEC 1.4: visible and replayable); resolved ones (replayed or
-- discarded) go txbox.dead_letter_retention (default 30 days) after that.
INSERT INTO txbox.dead_letters (relay, handler, message_id, topic, payload, published_at,
								attempts, last_error, failed_at, replayed_at, discarded_at)
VALUES ('regress_relay', NULL, '00000000-0000-7000-8000-000000000001', 't', '{}', now(), 10, 'e',
		now() - interval '60 days', NULL, NULL),
	   ('regress_relay', NULL, '00000000-0000-7000-8000-000000000002', 't', '{}', now(), 10, 'e',
		now() - interval '60 days', now() - interval '59 days', NULL),
	   ('regress_relay', NULL, '00000000-0000-7000-8000-000000000003', 't', '{}', now(), 10, 'e',
		now() - interval '60 days', NULL, now() - interval '59 days'),
	   ('regress_relay', NULL, '00000000-0000-7000-8000-000000000004', 't', '{}', now(), 10, 'e',
		now() - interval '1 day', NULL, NULL),
	   ('regress_relay', NULL, '00000000-0000-7000-8000-000000000005', 't', '{}', now(), 10, 'e',
		now() - interval '60 days', NULL, NULL);

-- discard_dead_letter works for a relay's dead letter too: it is marked
-- discarded (nothing else to undo: the relay went on without it), and
-- cannot be replayed or discarded again
SELECT txbox.discard_dead_letter(dead_letter_id) FROM txbox.dead_letters
 WHERE message_id = '00000000-0000-7000-8000-000000000005';
SELECT regexp_replace(pg_temp.try(format('SELECT txbox.replay_dead_letter(%s)', dead_letter_id)),
					  'letter \d+', 'letter N') AS replay_discarded,
	   regexp_replace(pg_temp.try(format('SELECT txbox.discard_dead_letter(%s)', dead_letter_id)),
					  'letter \d+', 'letter N') AS discard_again
  FROM txbox.dead_letters WHERE message_id = '00000000-0000-7000-8000-000000000005';

SELECT txbox._maintain();
SELECT message_id, replayed_at IS NOT NULL AS replayed, discarded_at IS NOT NULL AS discarded
  FROM txbox.dead_letters WHERE relay = 'regress_relay' ORDER BY message_id;
DELETE FROM txbox.dead_letters WHERE relay = 'regress_relay';
