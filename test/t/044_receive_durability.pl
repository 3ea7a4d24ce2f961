# What a relay counts as delivered survives a crash of the target, whatever
# the target's synchronous_commit: txbox._inbox_receive commits durably
# (ForceSyncCommit), so the relay never saves a position past messages the
# target can still lose.
#
# The target cluster runs with synchronous_commit = off and the longest
# wal_writer_delay (10 s): an asynchronous commit stays in the WAL buffers
# for seconds.  Each round publishes a batch, waits until relay_status
# counts it delivered, stops the target at once (-m immediate) and starts
# it again: every message must be in its inbox.  (TAP clusters run with
# fsync = off: a WAL write that reached the kernel survives the immediate
# stop, one left in the WAL buffers does not; so the test tells a durable
# commit from an asynchronous one, within the 10 s the WAL writer waits.)
use strict;
use warnings;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;

my $t_start = time();

my $target = PostgreSQL::Test::Cluster->new('target');
$target->init;
$target->append_conf('postgresql.conf', qq{log_statement = none
synchronous_commit = off
wal_writer_delay = '10s'
});
$target->start;
$target->safe_psql('postgres', 'CREATE DATABASE billing');
$target->safe_psql('billing', 'CREATE EXTENSION txbox');

my $source = PostgreSQL::Test::Cluster->new('source');
$source->init;
$source->append_conf('postgresql.conf', qq{log_statement = none
txbox.poll_interval = '200ms'
});
$source->start;
my ($thost, $tport) = ($target->host, $target->port);
$source->safe_psql(
	'postgres', qq{
	CREATE EXTENSION txbox;
	CREATE SERVER billing FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host '$thost', port '$tport', dbname 'billing');
	CREATE USER MAPPING FOR CURRENT_USER SERVER billing;
	SELECT txbox.create_relay('to_billing', 'postgres', NULL,
							  '{"server": "billing", "backoff_max": "1s"}');
});

# wait (without a test of its own) until the relay counts n delivered
sub delivered
{
	my ($n) = @_;
	my $deadline = time() + 90;
	while (time() < $deadline)
	{
		return 1
		  if $source->safe_psql('postgres', q{SELECT delivered FROM txbox.relay_status}) >= $n;
		usleep(20_000);
	}
	return 0;
}

my $total = 0;
for my $round (1 .. 3)
{
	$source->safe_psql('postgres',
		qq{SELECT txbox.publish('orders', jsonb_build_object('round', $round, 'n', g)) FROM generate_series(1, 20) g});
	$total += 20;
	ok(delivered($total), "round $round: the relay counts $total messages delivered");
	$target->stop('immediate');
	$target->start;
	is( $target->safe_psql('billing', qq{SELECT count(*) FROM txbox.inbox WHERE (payload->>'round')::int <= $round}),
		$total, "round $round: after an immediate stop of the target every delivered message is in its inbox");
}

note sprintf('total %.1f s', time() - $t_start);
$source->stop;
$target->stop;
done_testing();
