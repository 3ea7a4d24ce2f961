# Relay worker life cycle: pause and resume, drop while the worker is busy,
# DROP DATABASE under a running relay and its manager, and changes of the
# target (ALTER SERVER) reaching a running relay.  One cluster: the relays
# deliver to other databases of the same cluster.
use strict;
use warnings;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;


sub lit
{
	my $s = shift;
	$s =~ s/'/''/g;
	return "'$s'";
}

# the relay worker of relay (not the target's sessions of the same name)
sub worker_where
{
	my $relay = shift;
	return "backend_type = 'txbox relay' AND application_name = 'txbox relay $relay'";
}

sub worker_count
{
	my ($node, $relay) = @_;
	return "SELECT count(*) FROM pg_stat_activity WHERE " . worker_where($relay);
}

my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
$node->append_conf('postgresql.conf', 'max_worker_processes = 32');
$node->start;

my $servers = sprintf(
	q{CREATE SERVER billing FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host %s, port %s, dbname 'billing');
	  CREATE SERVER ledger FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host %s, port %s, dbname 'ledger');
	  CREATE USER MAPPING FOR CURRENT_USER SERVER billing;
	  CREATE USER MAPPING FOR CURRENT_USER SERVER ledger;},
	lit($node->host), lit($node->port), lit($node->host), lit($node->port));
for my $db ('shop', 'billing', 'ledger', 'doomed', 'archive')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION txbox');
}
$node->safe_psql('shop', $servers);
$node->safe_psql('doomed', $servers);

$node->safe_psql(
	'shop', q{
	SELECT txbox.create_relay('r_a', 'postgres', ARRAY['a'], '{"server": "billing", "backoff_max": "1s"}');
	SELECT txbox.create_relay('r_b', 'postgres', ARRAY['b'], '{"server": "ledger", "backoff_max": "1s"}');
	SELECT txbox.publish('a', '{"n": 1}');
	SELECT txbox.publish('b', '{"n": 1}');});
$node->safe_psql(
	'doomed', q{
	SELECT txbox.create_relay('r_d', 'postgres', NULL, '{"server": "billing", "backoff_max": "1s"}');
	SELECT txbox.publish('d', '{"n": 1}');});
poll_ok($node, 'billing', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'a'},
	'1', 30, 'r_a delivers');
poll_ok($node, 'ledger', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'b'},
	'1', 30, 'r_b delivers');
poll_ok($node, 'billing', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'd'},
	'1', 30, 'r_d delivers');

# An idle worker tree does no busy work (SPEC 3): in 3 quiet seconds no
# worker is started (databases without txbox, here postgres, are probed
# again once a minute).  The postmaster logs each start at DEBUG1.
$node->safe_psql('shop',
	"ALTER SYSTEM SET log_min_messages = 'debug1'; SELECT pg_reload_conf();");
sleep 1;
my $from = -s $node->logfile;
sleep 3;
my $window = slurp_file($node->logfile, $from);
$node->safe_psql('shop', 'ALTER SYSTEM RESET log_min_messages; SELECT pg_reload_conf();');
my $starts = () = $window =~ /starting background worker process "txbox/g;
cmp_ok($starts, '<=', 1, "idle: no txbox worker started over and over ($starts in 3 s)");

######################################################################
# 4. Pause and resume
######################################################################

is($node->safe_psql('shop', worker_count($node, 'r_a')), '1', 'r_a has a worker');
$node->safe_psql('shop', q{SELECT txbox.pause_relay('r_a')});
poll_ok($node, 'shop', worker_count($node, 'r_a'), '0', 10,
	'pause: the worker leaves pg_stat_activity');
is($node->safe_psql('shop', q{SELECT state FROM txbox.relay_status WHERE name = 'r_a'}),
	'paused', 'pause: relay_status says paused');
$node->safe_psql(
	'shop', q{BEGIN;
	  SELECT txbox.publish('a', jsonb_build_object('n', g)) FROM generate_series(2, 4) g;
	  SELECT txbox.publish('b', '{"n": 2}');
	  COMMIT;});
# r_b delivering the same transaction shows the commit was seen
poll_ok($node, 'ledger', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'b'},
	'2', 30, 'pause: other relays deliver meanwhile');
sleep 1;    # one more poll_interval, for good measure
is($node->safe_psql('billing', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'a'}),
	'1', 'pause: nothing delivered while paused');
is($node->safe_psql('shop', q{SELECT lag_messages FROM txbox.relay_status WHERE name = 'r_a'}),
	'3', 'pause: lag_messages counts the 3 waiting messages');
is($node->safe_psql('shop', worker_count($node, 'r_a')), '0',
	'pause: the manager does not start it again');

$node->safe_psql('shop', q{SELECT txbox.resume_relay('r_a')});
poll_ok($node, 'billing', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'a'},
	'4', 30, 'resume: the waiting messages are delivered');
poll_ok($node, 'shop', worker_count($node, 'r_a'), '1', 10, 'resume: the worker is back');
poll_ok($node, 'shop',
	q{SELECT state || ' ' || lag_messages FROM txbox.relay_status WHERE name = 'r_a'},
	'running 0', 10, 'resume: running, nothing left');

######################################################################
# 5. Drop a relay whose worker is busy (waiting on a locked target)
######################################################################

my $lock = $node->background_psql('ledger');
$lock->query_safe('BEGIN');
$lock->query_safe('LOCK TABLE txbox.inbox IN ACCESS EXCLUSIVE MODE');
$node->safe_psql('shop', q{SELECT txbox.publish('b', '{"n": 3}')});
poll_ok(
	$node, 'shop',
	'SELECT count(*) FROM pg_stat_activity WHERE ' . worker_where('r_b')
	  . q{ AND state = 'active' AND query = 'txbox relay: delivering'
		   AND clock_timestamp() - state_change > interval '1 s'},
	'1', 30, 'r_b waits on the locked target');
my $pid_a = $node->safe_psql('shop', 'SELECT pid FROM pg_stat_activity WHERE ' . worker_where('r_a'));
my $t0 = time();
$node->safe_psql('shop', q{SELECT txbox.drop_relay('r_b')});
poll_ok($node, 'shop', worker_count($node, 'r_b'), '0', 5,
	'drop: the busy worker exits');
my $elapsed = time() - $t0;
cmp_ok($elapsed, '<', 5, sprintf('... within 5 s (%.2f s)', $elapsed));
is( $node->safe_psql(
		'shop', q{SELECT (SELECT count(*) FROM txbox.relay_status WHERE name = 'r_b')
					  + (SELECT count(*) FROM txbox.relays WHERE name = 'r_b')}),
	'0', 'drop: the relay is gone from txbox.relays and relay_status');
$node->safe_psql('shop', q{SELECT txbox.publish('a', '{"n": 5}')});
poll_ok($node, 'billing', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'a'},
	'5', 30, 'drop: the other relay goes on delivering');
is($node->safe_psql('shop', 'SELECT pid FROM pg_stat_activity WHERE ' . worker_where('r_a')),
	$pid_a, 'drop: the other relay\'s worker was not disturbed');
is($node->safe_psql('shop', worker_count($node, 'r_b')), '0',
	'drop: the manager does not start the dropped relay again');
$lock->quit;

######################################################################
# ALTER SERVER reaches a relay with an open connection (as postgres_fdw
# drops connections when their server or user mapping changes)
######################################################################

$node->safe_psql('shop', q{ALTER SERVER billing OPTIONS (SET dbname 'archive')});
$node->safe_psql('shop', q{SELECT txbox.publish('a', '{"n": 6}')});
poll_ok($node, 'archive', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'a'},
	'1', 15, 'ALTER SERVER: the next message goes to the new database');
is($node->safe_psql('billing', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'a'}),
	'5', 'ALTER SERVER: ... and not to the old one');
$node->safe_psql('shop', q{ALTER SERVER billing OPTIONS (SET dbname 'billing')});

######################################################################
# 6. DROP DATABASE under a running relay and its manager
######################################################################

my $dboid = $node->safe_psql('postgres', q{SELECT oid FROM pg_database WHERE datname = 'doomed'});
is( $node->safe_psql(
		'postgres', qq{SELECT string_agg(backend_type, ',' ORDER BY backend_type)
					  FROM pg_stat_activity WHERE datid = $dboid}),
	'txbox manager,txbox relay', 'doomed has a manager and a relay worker');
my $log_from = -s $node->logfile;
$t0 = time();
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE doomed');
$elapsed = time() - $t0;
is($ret, 0, sprintf('DROP DATABASE succeeds under a running relay (%.2f s)', $elapsed))
  or diag $err;
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE datid = $dboid"),
	'0', 'no txbox worker left in the dropped database');
# The launcher scans pg_database every 5 s: wait past one scan.
sleep 6;
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE datid = $dboid"),
	'0', 'the launcher starts no manager for the dropped database');
my $log = slurp_file($node->logfile, $log_from);
unlike($log, qr/database $dboid does not exist/,
	'no manager was started again for the database being dropped');

# the tree still serves the other databases
$node->safe_psql('shop', q{SELECT txbox.publish('a', '{"n": 7}')});
poll_ok($node, 'billing', q{SELECT count(*) FROM txbox.inbox WHERE payload->>'n' = '7'},
	'1', 30, 'after DROP DATABASE, relays elsewhere still deliver');

$node->stop;

######################################################################
# DROP DATABASE gives back the txbox.max_workers slots of its workers
######################################################################

my $small = PostgreSQL::Test::Cluster->new('small');
$small->init;
# no slot kept back for other databases' managers: one manager, one relay
$small->append_conf('postgresql.conf', "txbox.max_workers = 2\ntxbox.reserved_manager_slots = 0");
$small->start;
# no manager for postgres: the launcher skips databases that refuse connections
$small->safe_psql('template1', 'ALTER DATABASE postgres WITH ALLOW_CONNECTIONS false');
for my $i (1, 2)
{
	$small->safe_psql('template1', "CREATE DATABASE cycle$i TEMPLATE template0");
	$small->safe_psql(
		"cycle$i", q{CREATE EXTENSION txbox;
		  SELECT txbox.create_relay('r', 'notify', NULL, '{"channel": "events"}');
		  SELECT txbox.publish('t', '{}');});
	poll_ok($small, "cycle$i", q{SELECT delivered FROM txbox.relay_status WHERE name = 'r'},
		'1', 15, "database $i of 2 in turn, max_workers 2: its manager and relay run");
	$small->safe_psql('template1', "DROP DATABASE cycle$i");
}
$small->stop;

done_testing();
