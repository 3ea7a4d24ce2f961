# Extension life cycle on real servers: with and without
# shared_preload_libraries, and crash safety of committed state.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# TEMP_CONFIG (test/txbox.conf) preloads txbox in every node.
my $node = PostgreSQL::Test::Cluster->new('preloaded');
$node->init;
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION txbox');
is( $node->safe_psql('postgres', "SHOW shared_preload_libraries"),
	'txbox', 'node preloads txbox');

# committed messages, claims and keys survive a crash (all tables logged)
$node->safe_psql(
	'postgres', q{
	SELECT txbox.publish('orders', '{"id": 1}', 'k1');
	SELECT txbox.inbox_claim('billing', 'm-1');
	BEGIN;
	SELECT txbox.idempotency_begin('api', 'req-1');
	SELECT txbox.idempotency_complete('api', 'req-1', '{"ok": true}', 201);
	COMMIT;
});
# an aborted publish leaves nothing, before or after the crash
$node->psql('postgres',
	q{BEGIN; SELECT txbox.publish('orders', '{"id": 2}'); ROLLBACK;});

is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class c
		  JOIN pg_namespace n ON n.oid = c.relnamespace
		  WHERE nspname = 'txbox' AND relkind IN ('r', 'p') AND relpersistence <> 'p'}),
	'', 'no unlogged or temporary txbox tables');

# immediate stop: no shutdown checkpoint, the restart replays WAL
$node->stop('immediate');
$node->start;

is($node->safe_psql('postgres', q{SELECT count(*) FROM txbox.outbox WHERE payload->>'id' = '1'}),
	'1', 'committed message survives a crash');
is($node->safe_psql('postgres', q{SELECT count(*) FROM txbox.outbox}),
	'1', 'rolled-back message never appears');
is($node->safe_psql('postgres', q{SELECT txbox.inbox_claim('billing', 'm-1')}),
	'f', 'claim survives a crash');
is( $node->safe_psql(
		'postgres', q{SELECT state || ' ' || response::text || ' ' || response_status
					  FROM txbox.idempotency_begin('api', 'req-1')}),
	'completed {"ok": true} 201',
	'stored idempotent response survives a crash');
$node->stop;

# Without preloading, the SQL API works all the same.
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->append_conf('postgresql.conf', "shared_preload_libraries = ''");
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION txbox');
is( $plain->safe_psql(
		'postgres', q{SELECT txbox.publish('orders', '{"id": 3}') IS NOT NULL}),
	't', 'publish works without shared_preload_libraries');
is($plain->safe_psql('postgres', q{SELECT txbox.inbox_claim('c', 'x')}),
	't', 'inbox_claim works without shared_preload_libraries');
$plain->safe_psql('postgres', 'DROP EXTENSION txbox');
$plain->safe_psql('postgres', 'CREATE EXTENSION txbox');
is( $plain->safe_psql(
		'postgres', q{SELECT txbox.publish('orders', '{"id": 4}') IS NOT NULL}),
	't', 'publish works after the extension is dropped and created again');

# A session's cached OIDs of txbox's tables and of their generations'
# partitions follow a DROP and CREATE EXTENSION made by another session or
# by itself: every call finds the new tables.
my $s = $plain->background_psql('postgres');
$s->query_safe(q{SELECT txbox.publish('orders', '{"id": 5}'), txbox.inbox_claim('c', 'y')});
$plain->safe_psql('postgres', 'DROP EXTENSION txbox; CREATE EXTENSION txbox');
is($s->query_safe(q{SELECT txbox.publish('orders', '{"id": 6}') IS NOT NULL, txbox.inbox_claim('c', 'y')}),
	't|t', 'a session publishes and claims after another recreated the extension');
$s->query_safe('DROP EXTENSION txbox');
$s->query_safe('CREATE EXTENSION txbox');
$s->query_safe(q{SELECT txbox._switch_generation('inbox_dedup'), txbox._switch_generation('outbox')});
is( $s->query_safe(
		q{SELECT txbox.publish('orders', '{"id": 7}') IS NOT NULL, txbox.inbox_claim('c', 'y'),
			txbox.inbox_claim('c', 'y')}),
	't|t|f',
	'and after it recreated the extension itself and switched generations');
is( $s->query_safe(
		q{SELECT string_agg((tableoid = 'txbox.outbox_1'::regclass) || ':' || (payload->>'id'), ',')
			FROM txbox.outbox}),
	'true:7', 'the message is in the new current generation');
$s->quit;
$plain->stop;

done_testing();
