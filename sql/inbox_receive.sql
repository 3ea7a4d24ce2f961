SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- inbox_receive: txbox._inbox_receive records who delivered (README,
-- "Targets"): txbox.inbox.source is the relay's login role, set by the
-- receiving side, then the label the sender passes.  One relay login
-- cannot pose as another.
--
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE ROLE regress_txbox_relay_a LOGIN;
CREATE ROLE regress_txbox_relay_b LOGIN;
CREATE ROLE regress_txbox_group;
GRANT regress_txbox_group TO regress_txbox_relay_b;
GRANT USAGE ON SCHEMA txbox TO regress_txbox_relay_a, regress_txbox_relay_b, regress_txbox_group;
GRANT EXECUTE ON FUNCTION txbox._inbox_receive(text, uuid[], text[], text[], jsonb[], jsonb[],
											   bytea[], timestamptz[])
  TO regress_txbox_relay_a, regress_txbox_relay_b, regress_txbox_group;

CREATE FUNCTION pg_temp.receive(label text, id uuid) RETURNS integer
LANGUAGE sql AS $$
	SELECT txbox._inbox_receive(label, ARRAY[id], ARRAY['orders'], ARRAY[NULL::text],
			ARRAY[NULL::jsonb], ARRAY['{}'::jsonb], ARRAY[NULL::bytea], ARRAY[now()])
$$;

-- each login delivers under the same label; b also as a role it may SET
SET SESSION AUTHORIZATION regress_txbox_relay_a;
SELECT pg_temp.receive('shop/to_billing', '0190f0e0-0000-7000-8000-0000000000a1') AS stored;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_txbox_relay_b;
SELECT pg_temp.receive('shop/to_billing', '0190f0e0-0000-7000-8000-0000000000b1') AS stored;
SET ROLE regress_txbox_group;
SELECT pg_temp.receive('regress_txbox_relay_a/shop/to_billing', '0190f0e0-0000-7000-8000-0000000000b2') AS stored;
RESET ROLE;
RESET SESSION AUTHORIZATION;

SELECT message_id, source FROM txbox.inbox
 WHERE message_id::text LIKE '0190f0e0-0000-7000-8000-0000000000%' ORDER BY message_id;

-- cleanup
DELETE FROM txbox.inbox WHERE message_id::text LIKE '0190f0e0-0000-7000-8000-0000000000%';
REVOKE ALL ON FUNCTION txbox._inbox_receive(text, uuid[], text[], text[], jsonb[], jsonb[],
											bytea[], timestamptz[])
  FROM regress_txbox_relay_a, regress_txbox_relay_b, regress_txbox_group;
REVOKE ALL ON SCHEMA txbox FROM regress_txbox_relay_a, regress_txbox_relay_b, regress_txbox_group;
DROP ROLE regress_txbox_relay_a, regress_txbox_relay_b, regress_txbox_group;

--
-- The receive probes each older generation by its primary key, for the
-- ids that sort at or below its largest one (src/inbox.c,
-- inbox_older_bound): its cost does not grow with the messages the inbox
-- retains.  Its saved plan once made an anti-join the planner could turn
-- into a hash join or a seq scan per message over the older generations,
-- read in full for every page.  Asserted without timing: the page's
-- receive reads the older generation's heap only for its late duplicates.
-- (No autovacuum there meanwhile: its reads would count too.)  The older
-- generation's messages were received before the switch that ended it.
--
SELECT current_gen AS older FROM txbox._generation WHERE relname = 'inbox' \gset
INSERT INTO txbox.inbox (gen, message_id, topic, payload, source, published_at, received_at)
SELECT :older, ('0190f0e0-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, 'orders',
	   jsonb_build_object('pad', repeat('x', 500)), 'regress/older', now(), now()
  FROM generate_series(1, 2000) g;
SELECT txbox._switch_generation('inbox') IS NOT NULL AS switched;
DO $$ BEGIN FOR g IN 0..2 LOOP
	EXECUTE format('ALTER TABLE txbox.inbox_%s SET (autovacuum_enabled = off)', g);
END LOOP; END $$;
ANALYZE txbox.inbox;
SET plan_cache_mode = force_generic_plan;
SELECT pg_temp.receive('shop/to_billing', '0190f0df-0000-7000-8000-0000000000c1') AS stored;
SELECT pg_stat_force_next_flush();
SELECT heap_blks_read + heap_blks_hit AS heap_before, idx_blks_read + idx_blks_hit AS idx_before
  FROM pg_statio_user_tables WHERE relid = format('txbox.inbox_%s', :older)::regclass \gset
SELECT txbox._inbox_receive('shop/to_billing',
		array_agg(('0190f0e0-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid ORDER BY g),
		array_agg('orders'::text), array_agg(NULL::text), array_agg(NULL::jsonb),
		array_agg('{}'::jsonb), array_agg(NULL::bytea), array_agg(now())) AS stored
  FROM generate_series(1990, 2100) g;	-- 11 late duplicates of the older generation
SELECT pg_stat_force_next_flush();
SELECT heap_blks_read + heap_blks_hit - :heap_before <= 11 AS older_heap_read_for_duplicates_only,
	   idx_blks_read + idx_blks_hit > :idx_before AS older_index_probed
  FROM pg_statio_user_tables WHERE relid = format('txbox.inbox_%s', :older)::regclass;
SELECT gen OPERATOR(pg_catalog.=) :older AS in_older, count(*) FROM txbox.inbox
 WHERE message_id::text LIKE '0190f0e0-0000-7000-8000-%' GROUP BY 1 ORDER BY 1;
-- After another switch the ids stored above sort above the older
-- generation's largest id as read before it (2000), and are late
-- duplicates now: the bound is read again after a switch.
SELECT txbox._switch_generation('inbox') IS NOT NULL AS switched;
SELECT txbox._inbox_receive('shop/to_billing',
		array_agg(('0190f0e0-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid ORDER BY g),
		array_agg('orders'::text), array_agg(NULL::text), array_agg(NULL::jsonb),
		array_agg('{}'::jsonb), array_agg(NULL::bytea), array_agg(now())) AS stored
  FROM generate_series(2050, 2150) g;	-- 51 late duplicates, 50 new
SELECT count(*) AS stored, count(DISTINCT message_id) AS distinct_ids FROM txbox.inbox
 WHERE message_id::text LIKE '0190f0e0-0000-7000-8000-%';
RESET plan_cache_mode;
DO $$ BEGIN FOR g IN 0..2 LOOP
	EXECUTE format('ALTER TABLE txbox.inbox_%s RESET (autovacuum_enabled)', g);
END LOOP; END $$;

--
-- The receive's insert keeps one generic plan (a page's arrays made the
-- planner prefer a custom plan, planned again for every page), made with
-- index probes forced: a late duplicate's dedup records are read from the
-- other dedup generation through its primary key, although the plan was
-- made (in a new session) while that generation was empty and analyzed so.
--
\c
SELECT current_gen AS dedup_cur FROM txbox._generation WHERE relname = 'inbox_dedup' \gset
SELECT (:dedup_cur + 1) % 2 AS dedup_other \gset
DO $$ BEGIN FOR g IN 0..1 LOOP
	EXECUTE format('ALTER TABLE txbox.inbox_dedup_%s SET (autovacuum_enabled = off)', g);
END LOOP; END $$;
INSERT INTO txbox.consumers (consumer, topics, owner) VALUES ('regress_renew', NULL, current_user::regrole);
ANALYZE txbox.inbox_dedup;
SELECT txbox._inbox_receive('shop/to_billing', ARRAY['0190f0e2-0000-7000-8000-000000000001'::uuid],
		ARRAY['orders'], ARRAY[NULL::text], ARRAY[NULL::jsonb], ARRAY['{}'::jsonb], ARRAY[NULL::bytea],
		ARRAY[now()]) AS stored;
INSERT INTO txbox.inbox_dedup (gen, consumer, message_id, claimed_at)
SELECT :dedup_other, 'regress_renew', ('0190f0e1-0000-7000-8000-' || lpad(to_hex(g), 12, '0')), now()
  FROM generate_series(1, 2000) g;
SELECT pg_stat_force_next_flush();
SELECT seq_scan AS seq_before, idx_scan AS idx_before FROM pg_stat_user_tables
 WHERE relid = format('txbox.inbox_dedup_%s', :dedup_other)::regclass \gset
SELECT txbox._inbox_receive('shop/to_billing',
		array_agg(('0190f0e1-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid ORDER BY g),
		array_agg('orders'::text), array_agg(NULL::text), array_agg(NULL::jsonb),
		array_agg('{}'::jsonb), array_agg(NULL::bytea), array_agg(now())) AS stored
  FROM generate_series(1990, 2010) g;	-- 11 processed before, stored again
SELECT pg_stat_force_next_flush();
SELECT seq_scan = :seq_before AS other_dedup_not_scanned, idx_scan > :idx_before AS other_dedup_probed
  FROM pg_stat_user_tables WHERE relid = format('txbox.inbox_dedup_%s', :dedup_other)::regclass;
SELECT count(*) AS renewed FROM txbox.inbox_dedup
 WHERE gen = :dedup_cur AND consumer = 'regress_renew';
DELETE FROM txbox.inbox_dedup WHERE consumer = 'regress_renew';
DELETE FROM txbox.consumers WHERE consumer = 'regress_renew';
DELETE FROM txbox.inbox WHERE message_id::text LIKE '0190f0e1-0000-7000-8000-%'
   OR message_id = '0190f0e2-0000-7000-8000-000000000001';
DO $$ BEGIN FOR g IN 0..1 LOOP
	EXECUTE format('ALTER TABLE txbox.inbox_dedup_%s RESET (autovacuum_enabled)', g);
END LOOP; END $$;

-- a page's message ids are never NULL
SELECT txbox._inbox_receive('shop/to_billing', ARRAY[NULL::uuid], ARRAY['orders'], ARRAY[NULL::text],
		ARRAY[NULL::jsonb], ARRAY['{}'::jsonb], ARRAY[NULL::bytea], ARRAY[now()]);
DELETE FROM txbox.inbox WHERE message_id::text LIKE '0190f0e0-0000-7000-8000-%';

-- payloads and headers, in the outbox and the inbox and each of their
-- partitions, are compressed with lz4 where the server has it (pglz was
-- half of a receiving backend's CPU); a received payload is stored so
SELECT c.relname, a.attname,
	   a.attcompression = CASE WHEN 'lz4' = ANY (s.enumvals) THEN 'l' ELSE '' END AS as_expected
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid, pg_settings s
 WHERE s.name = 'default_toast_compression' AND c.relnamespace = 'txbox'::regnamespace
   AND c.relname ~ '^(outbox|inbox)(_[0-9]+)?$' AND a.attname IN ('headers', 'payload', 'payload_bytes')
 ORDER BY 1, 2;
SELECT txbox._inbox_receive('shop/to_billing', ARRAY['0190f0e3-0000-7000-8000-000000000001'::uuid],
		ARRAY['orders'], ARRAY[NULL::text], ARRAY[NULL::jsonb],
		ARRAY[(SELECT jsonb_object_agg(g, g) FROM generate_series(1, 1000) g)], ARRAY[NULL::bytea], ARRAY[now()]);
SELECT pg_column_compression(i.payload) = CASE WHEN 'lz4' = ANY (s.enumvals) THEN 'lz4' ELSE s.setting END
	   AS compressed_as_expected
  FROM txbox.inbox i, pg_settings s
 WHERE s.name = 'default_toast_compression' AND i.message_id = '0190f0e3-0000-7000-8000-000000000001';
DELETE FROM txbox.inbox WHERE message_id = '0190f0e3-0000-7000-8000-000000000001';

-- a payload over the receiving database's txbox.max_payload_size is
-- refused (54000), naming the first such message: a binary payload by its
-- bytes (1024 is not over 1kB, 1025 is), a JSON one by its size as stored
SET txbox.max_payload_size = '1kB';
SELECT txbox._inbox_receive('shop/to_billing',
		ARRAY['0190f0e4-0000-7000-8000-000000000001', '0190f0e4-0000-7000-8000-000000000002']::uuid[],
		ARRAY['orders', 'orders'], ARRAY[NULL, NULL]::text[], ARRAY[NULL, NULL]::jsonb[],
		ARRAY[NULL, NULL]::jsonb[], ARRAY[decode(repeat('ab', 1024), 'hex'), decode(repeat('ab', 1025), 'hex')],
		ARRAY[now(), now()]);
SELECT txbox._inbox_receive('shop/to_billing',
		ARRAY['0190f0e4-0000-7000-8000-000000000003', '0190f0e4-0000-7000-8000-000000000004']::uuid[],
		ARRAY['orders', 'orders'], ARRAY[NULL, NULL]::text[], ARRAY[NULL, NULL]::jsonb[],
		ARRAY['{}', jsonb_build_object('x', repeat('y', 1100))], ARRAY[NULL, NULL]::bytea[],
		ARRAY[now(), now()]);
RESET txbox.max_payload_size;
SELECT count(*) AS nothing_stored FROM txbox.inbox WHERE message_id::text LIKE '0190f0e4-%';
