# One role cannot take every worker slot (issue 9 item 12).
#  - a handler asking for "parallel": 16 runs at most txbox.max_parallel
#    workers, and its owner at most txbox.max_workers_per_role: the rest
#    wait, shown in handler_status; another role's relay still starts;
#  - txbox.max_workers_per_database holds a database's relays back;
#  - without the role cap, relays leave txbox.reserved_manager_slots to
#    managers: a second database's manager still starts.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;

my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
$node->append_conf(
	'postgresql.conf', q{max_worker_processes = 24
txbox.max_workers = 8
txbox.reserved_manager_slots = 2
txbox.max_workers_per_role = 3
txbox.max_parallel = 4});
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE one');
$node->safe_psql(
	'one', q{
	CREATE EXTENSION txbox;
	CREATE ROLE txbox_users;
	GRANT USAGE ON SCHEMA txbox TO txbox_users;
	GRANT EXECUTE ON FUNCTION txbox.create_handler(text, text[], regprocedure, jsonb),
	                          txbox.create_relay(text, text, text[], jsonb) TO txbox_users;
	CREATE ROLE alice LOGIN IN ROLE txbox_users;
	CREATE ROLE bob LOGIN IN ROLE txbox_users;
	CREATE FUNCTION public.h(m txbox.message) RETURNS void LANGUAGE sql AS 'SELECT';
	SET ROLE alice;
	SELECT txbox.create_handler('greedy', NULL, 'public.h(txbox.message)', '{"parallel": 16}');
	RESET ROLE;
	-- notify relays are superuser-only: a superuser creates it and hands it
	-- to bob (README's reassignment)
	BEGIN;
	SELECT txbox.create_relay('b1', 'notify', NULL, '{"channel": "b1"}');
	UPDATE txbox.relays SET owner = 'bob' WHERE name = 'b1';
	COMMIT;});

sub workers
{
	my ($db, $type) = @_;
	return "SELECT count(*) FROM pg_stat_activity WHERE datname = '$db' AND backend_type = '$type'";
}

poll_ok(
	$node, 'one',
	q{SELECT state, last_error LIKE 'waiting for a worker slot: its owner runs txbox.max_workers_per_role workers already%'
	    FROM txbox.handler_status WHERE name = 'greedy'},
	'waiting|t', 90, 'parallel 16 over the role cap: the handler shows waiting, and why');
poll_ok($node, 'one', workers('one', 'txbox handler'), '3', 90,
	'alice runs txbox.max_workers_per_role workers');
poll_ok($node, 'one', q{SELECT state FROM txbox.relay_status WHERE name = 'b1'},
	'running', 90, "another role's relay starts");
poll_ok($node, 'one', workers('one', 'txbox relay'), '1', 90, 'its worker runs');

# database cap: one has 4 workers; the next relay waits
$node->safe_psql('postgres', q{ALTER SYSTEM SET txbox.max_workers_per_database = 4; SELECT pg_reload_conf()});
$node->safe_psql('one', q{BEGIN; SELECT txbox.create_relay('b2', 'notify', NULL, '{"channel": "b2"}');
	UPDATE txbox.relays SET owner = 'bob' WHERE name = 'b2'; COMMIT;});
poll_ok(
	$node, 'one',
	q{SELECT state, last_error LIKE 'waiting for a worker slot: this database runs txbox.max_workers_per_database workers already%'
	    FROM txbox.relay_status WHERE name = 'b2'},
	'waiting|t', 90, 'a relay over the database cap shows waiting, and why');

# no caps but max_parallel: alice's fourth worker and b2 start (manager +
# 4 + 2 = 7 of 8, leaving one to managers), b3 waits for the reserve
$node->safe_psql('postgres', q{ALTER SYSTEM RESET txbox.max_workers_per_database;
	ALTER SYSTEM SET txbox.max_workers_per_role = 0; SELECT pg_reload_conf()});
poll_ok($node, 'one', workers('one', 'txbox handler'), '4', 90,
	'the handler runs txbox.max_parallel workers, no more');
poll_ok($node, 'one', q{SELECT string_agg(state, ',' ORDER BY name) FROM txbox.relay_status},
	'running,running', 90, 'b2 starts');
poll_ok($node, 'one', q{SELECT state FROM txbox.handler_status}, 'running', 90,
	'the handler runs');
$node->safe_psql('one', q{BEGIN; SELECT txbox.create_relay('b3', 'notify', NULL, '{"channel": "b3"}');
	UPDATE txbox.relays SET owner = 'bob' WHERE name = 'b3'; COMMIT;});
poll_ok(
	$node, 'one',
	q{SELECT state, last_error LIKE 'waiting for a worker slot: the free txbox.max_workers slots are kept for database managers%'
	    FROM txbox.relay_status WHERE name = 'b3'},
	'waiting|t', 90, 'the last slot is kept for managers');

# a second database: its manager finds the reserved slot
$node->safe_psql('postgres', 'CREATE DATABASE two');
$node->safe_psql(
	'two', q{
	CREATE EXTENSION txbox;});
poll_ok($node, 'two', workers('two', 'txbox manager'), '1', 90,
	"the second database's manager starts");

$node->stop;
done_testing();
