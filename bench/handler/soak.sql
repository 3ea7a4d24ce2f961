-- bench/handler/soak.sql -- what bench/handler/soak.sh measures, installed
-- in both databases (shop and billing).

-- The files of every txbox table, by table (ord: 1 outbox, 2 inbox,
-- 3 inbox_dedup, 4 idempotency_keys, 5 relays, 6 handlers,
-- 7 handler_failures, 8 dead_letters, 9 the other txbox tables): heap,
-- indexes, TOAST table and its index, of every partition.  The benchmark
-- adds up the sizes of these files (all forks) itself, which is what
-- pg_total_relation_size does, but without taking any lock: the manager's
-- retention holds an ACCESS EXCLUSIVE lock on a truncated partition until
-- its transaction ends, and pg_total_relation_size would wait for it.
-- Only catalogs are read (pg_partition_tree would lock the partitions).
CREATE FUNCTION bench_txbox_files(OUT ord integer, OUT path text)
RETURNS SETOF record
LANGUAGE sql AS $$
	WITH t(name, ord) AS (
		SELECT name, ord::integer FROM unnest(ARRAY['outbox', 'inbox', 'inbox_dedup', 'idempotency_keys',
								   'relays', 'handlers', 'handler_failures', 'dead_letters']) WITH ORDINALITY AS u(name, ord)),
	tabs AS (	-- the tables of schema txbox (not partitions), with their ord
		SELECT c.oid, coalesce(t.ord, 9) AS ord
		  FROM pg_class c LEFT JOIN t ON t.name = c.relname
		 WHERE c.relnamespace = 'txbox'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition),
	leaves AS (	-- each table and its partitions
		SELECT oid, ord FROM tabs
		UNION ALL
		SELECT i.inhrelid, tabs.ord FROM tabs JOIN pg_inherits i ON i.inhparent = tabs.oid),
	rels AS (	-- + indexes, TOAST table, TOAST index
		SELECT oid, ord FROM leaves
		UNION ALL
		SELECT x.indexrelid, l.ord FROM leaves l JOIN pg_index x ON x.indrelid = l.oid
		UNION ALL
		SELECT c.reltoastrelid, l.ord FROM leaves l JOIN pg_class c ON c.oid = l.oid WHERE c.reltoastrelid <> 0
		UNION ALL
		SELECT x.indexrelid, l.ord FROM leaves l JOIN pg_class c ON c.oid = l.oid
		  JOIN pg_index x ON x.indrelid = c.reltoastrelid WHERE c.reltoastrelid <> 0)
	SELECT ord, pg_relation_filepath(oid) FROM rels WHERE pg_relation_filepath(oid) IS NOT NULL
$$;

-- Dead rows and deleted rows in the txbox tables (all partitions), and the
-- current generation of each rotated table.
CREATE FUNCTION bench_txbox_churn() RETURNS text
LANGUAGE sql AS $$
	SELECT (SELECT sum(n_dead_tup) || ' ' || sum(n_tup_del)
			  FROM pg_stat_all_tables WHERE schemaname = 'txbox')
		|| ' ' || (SELECT string_agg(relname || '=' || current_gen, ',' ORDER BY relname)
					 FROM txbox._generation)
$$;

-- Per table: what the statistics system knows of the writes to it.
CREATE VIEW bench_txbox_stats AS
SELECT coalesce(i.inhparent::regclass::text, s.relid::regclass::text) AS "table",
	   sum(n_tup_ins) AS ins, sum(n_tup_upd) AS upd, sum(n_tup_hot_upd) AS hot_upd,
	   sum(n_tup_del) AS del, sum(n_live_tup) AS live, sum(n_dead_tup) AS dead,
	   sum(vacuum_count + autovacuum_count) AS vacuums,
	   sum(analyze_count + autoanalyze_count) AS analyzes
  FROM pg_stat_all_tables s LEFT JOIN pg_inherits i ON i.inhrelid = s.relid
 WHERE s.schemaname = 'txbox' AND s.relname NOT LIKE '\_generation%'
 GROUP BY 1 ORDER BY 1;
