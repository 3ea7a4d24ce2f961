# Workers without a background worker slot (issue 8 item 13): with a small
# max_worker_processes, a relay whose worker cannot start, and every relay
# and handler of a database whose manager cannot start, show state
# 'waiting' and the fix in last_error (not 'running'), and start by
# themselves once slots free up.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;

my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
# four background workers: the txbox launcher and three others; nothing
# else of PostgreSQL's may take one (parallel query, logical replication)
$node->append_conf(
	'postgresql.conf', q{max_worker_processes = 4
max_parallel_workers = 0
max_parallel_workers_per_gather = 0
max_logical_replication_workers = 0
txbox.reserved_manager_slots = 0});
$node->start;

for my $db ('one', 'two')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
}
$node->safe_psql('one', 'CREATE EXTENSION txbox');

sub running
{
	my ($db, $type, $name) = @_;
	return "SELECT count(*) FROM pg_stat_activity WHERE datname = '$db'"
	  . " AND backend_type = '$type' AND application_name = '$name'";
}

# manager of "one" + r1 + r2 take the three slots; r3 finds none
$node->safe_psql(
	'one', q{
	SELECT txbox.create_relay('r1', 'notify', NULL, '{"channel": "c1"}');
	SELECT txbox.create_relay('r2', 'notify', NULL, '{"channel": "c2"}');});
poll_ok($node, 'one', running('one', 'txbox relay', 'txbox relay r2'),
	'1', 90, 'r1 and r2 run');
$node->safe_psql('one',
	q{SELECT txbox.create_relay('r3', 'notify', NULL, '{"channel": "c3"}')});
poll_ok(
	$node, 'one',
	q{SELECT state, last_error LIKE 'waiting for a worker slot: no background worker slot is free; raise max_worker_processes%'
	    FROM txbox.relay_status WHERE name = 'r3'},
	"waiting|t", 90,
	'a relay without a worker slot shows waiting, and why');
is( $node->safe_psql(
		'one', q{SELECT string_agg(state, ',' ORDER BY name) FROM txbox.relay_status}),
	'running,running,waiting',
	'the others run');

# "two" gets txbox: its manager finds no slot; nobody there updates rows,
# the views show it from shared memory
$node->safe_psql(
	'two', q{
	CREATE EXTENSION txbox;
	CREATE FUNCTION public.h(m txbox.message) RETURNS void LANGUAGE sql AS 'SELECT';
	SELECT txbox.create_handler('h2', NULL, 'public.h(txbox.message)');
	SELECT txbox.create_relay('t1', 'notify', NULL, '{"channel": "t1"}');});
poll_ok(
	$node, 'two',
	q{SELECT state, last_error LIKE 'the txbox manager of this database is waiting for a worker slot: no background worker slot is free; raise max_worker_processes%',
	         last_error_at IS NOT NULL
	    FROM txbox.handler_status},
	"waiting|t|t", 90,
	'a handler of a database whose manager cannot start shows waiting, and why');
is( $node->safe_psql(
		'two', q{SELECT state, last_error LIKE 'the txbox manager %' FROM txbox.relay_status}),
	'waiting|t',
	'so does a relay there');
is($node->safe_psql('two', q{SELECT count(*) FROM pg_stat_activity
	WHERE backend_type = 'txbox manager' AND datname = 'two'}),
	'0', 'its manager does not run');

# two slots free: r3 and the manager of "two" start by themselves; the
# manager shows that its relay and handler wait for a slot in turn
$node->safe_psql('one', q{SELECT txbox.drop_relay('r1'); SELECT txbox.drop_relay('r2');});
poll_ok($node, 'one', q{SELECT state, last_error IS NOT NULL FROM txbox.relay_status WHERE name = 'r3'},
	'running|t', 90, 'r3 starts once a slot is free');
poll_ok($node, 'one', running('one', 'txbox relay', 'txbox relay r3'),
	'1', 90, 'its worker runs');
poll_ok(
	$node, 'two',
	q{SELECT string_agg(state || ' ' || (last_error LIKE 'waiting for a worker slot: no background worker slot%'), ',')
	    FROM (SELECT state, last_error FROM txbox.handler_status
	          UNION ALL SELECT state, last_error FROM txbox.relay_status) s},
	'waiting true,waiting true', 90,
	'the manager of "two" runs, and shows what it cannot start');

# one more slot: the manager of "two" starts one of its workers
$node->safe_psql('one', q{SELECT txbox.pause_relay('r3')});
poll_ok(
	$node, 'two',
	q{SELECT count(*) FROM pg_stat_activity WHERE datname = 'two'
	    AND backend_type IN ('txbox handler', 'txbox relay')},
	'1', 90, 'a freed slot goes to a waiting worker of "two"');
poll_ok(
	$node, 'two',
	q{SELECT count(*) FROM (SELECT state FROM txbox.handler_status
	          UNION ALL SELECT state FROM txbox.relay_status) s WHERE state = 'running'},
	'1', 90, 'and its status says running');

$node->stop;
done_testing();
