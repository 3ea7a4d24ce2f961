# The kafka relay target's exactly-once mode: pages and the relay's
# position commit in one Kafka transaction, and the position is read back
# from Kafka when the relay starts.  A position lost locally (what a crash
# between the Kafka commit and the local save leaves) delivers nothing
# twice, where an at-least-once relay delivers again; kill -9 mid-stream
# loses nothing and repeats nothing but the page whose Kafka transaction
# the kill left open.
#
# What librdkafka 2.0.2's mock cluster cannot show: it writes no
# transaction markers (EndTxn and a fencing InitProducerId abort nothing)
# and its Fetch reports no aborted transactions, so read_committed
# consumers see the records of an aborted transaction too.  A real broker
# aborts the transaction the killed producer left open when the restarted
# relay's producer (same transactional.id) initializes, and read_committed
# consumers skip its records; here they show as messages of one page
# (within batch_size consecutive messages) delivered twice, which is what
# section 3 checks.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;
use KafkaMock;

my $kafka = KafkaMock->new(3, 'eos.orders:4', 'alo.orders:4', 'txbox.positions:1');

my $node = $kafka->shop_node('');
$node->safe_psql(
	'shop', q{SELECT txbox.create_relay('eos', 'kafka', ARRAY['orders'],
			'{"server": "events", "exactly_once": true, "topic_prefix": "eos.",
			  "batch_size": 200, "backoff_max": "1s", "statement_timeout": "10s"}');
		  SELECT txbox.create_relay('alo', 'kafka', ARRAY['orders'],
			'{"server": "events", "topic_prefix": "alo.", "batch_size": 200, "backoff_max": "1s"}');});

# message id => how many times topic has it (read_committed)
sub counts
{
	my $topic = shift;
	my %n;
	$n{ $_->{headers}{'txbox-message-id'} }++ for $kafka->records($topic, 'read_committed');
	return \%n;
}

# "once twice missing" over the messages with keys like pattern; in list
# context also the payloads' n of those delivered more than once
sub tally
{
	my ($topic, $pattern) = @_;
	my $n = counts($topic);
	my @rows = split /\n/, $node->safe_psql('shop',
		"SELECT message_id || ' ' || (payload->>'n') FROM txbox.outbox
		 WHERE key LIKE '$pattern' ORDER BY id");
	my ($once, $more, $missing, @again) = (0, 0, 0);
	for (@rows)
	{
		my ($id, $pn) = split / /;
		my $c = $n->{$id} // 0;
		$c == 0 ? $missing++ : $c == 1 ? $once++ : ($more++, push @again, $pn);
	}
	return wantarray ? ("$once $more $missing", @again) : "$once $more $missing";
}

sub caught_up
{
	my ($relay, $name) = @_;
	poll_ok($node, 'shop',
		"SELECT state || ' ' || lag_messages FROM txbox.relay_status WHERE name = '$relay'",
		'running 0', 120, $name);
}

######################################################################
# 1. Delivered, with the position in Kafka
######################################################################

$node->safe_psql('shop',
	q{SELECT txbox.publish('orders', jsonb_build_object('n', g), 'a-' || (g % 20))
	  FROM generate_series(1, 1000) g});
caught_up('eos', 'exactly once: delivered');
caught_up('alo', 'at least once: delivered');
is(tally('eos.orders', 'a-%'), '1000 0 0', 'exactly once: every message once');
my @positions = $kafka->records('txbox.positions', 'read_committed');
ok(scalar(grep { ($_->{key} // '') =~ /^txbox-\d+-\d+-\d+$/ } @positions) > 0,
	'the relay\'s position is in txbox.positions, keyed by its transactional.id');

######################################################################
# 2. The local position lost after the Kafka commit
######################################################################

# Both relays' positions now, then 1000 more messages delivered; then the
# saved positions go back to the earlier ones, as when a crash loses the
# local save of positions Kafka committed.
my %saved;
for my $r ('eos', 'alo')
{
	$saved{$r} = $node->safe_psql('shop',
		"SELECT format('snapshot = %L, batch_snapshot = %L, batch_last_id = %L', snapshot, batch_snapshot, batch_last_id)
		 FROM txbox.relays WHERE name = '$r'");
}
$node->safe_psql('shop',
	q{SELECT txbox.publish('orders', jsonb_build_object('n', g), 'b-' || (g % 20))
	  FROM generate_series(1, 1000) g});
caught_up('eos', 'exactly once: the next 1000 delivered');
caught_up('alo', 'at least once: the next 1000 delivered');
for my $r ('eos', 'alo')
{
	$node->safe_psql('shop', "SELECT txbox.pause_relay('$r')");
	poll_ok($node, 'shop',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'txbox relay $r'",
		'0', 60, "$r paused");
	$node->safe_psql('shop', "UPDATE txbox.relays SET $saved{$r} WHERE name = '$r'");
	$node->safe_psql('shop', "SELECT txbox.resume_relay('$r')");
}
caught_up('alo', 'at least once: caught up again');
caught_up('eos', 'exactly once: caught up again');
is(tally('alo.orders', 'b-%'), '0 1000 0',
	'at least once: a lost local position delivers its messages again');
is(tally('eos.orders', 'b-%'), '1000 0 0',
	'exactly once: the position read back from Kafka delivers nothing twice');

######################################################################
# 3. kill -9 mid-stream
######################################################################

$node->safe_psql('shop',
	q{SELECT txbox.publish('orders', jsonb_build_object('n', g), 'c-' || (g % 20))
	  FROM generate_series(1, 10000) g});
poll_ok($node, 'shop', q{SELECT lag_messages < 9000 FROM txbox.relay_status WHERE name = 'eos'},
	't', 60, 'kill -9: the relay is mid-stream');
my $pid = $node->safe_psql('shop',
	q{SELECT pid FROM pg_stat_activity WHERE application_name = 'txbox relay eos'});
kill 'KILL', $pid;
caught_up('eos', 'kill -9: the relay restarts and catches up');
my ($tally, @again) = tally('eos.orders', 'c-%');
my ($once, $more, $missing) = split / /, $tally;
is($missing, 0, 'kill -9: no message lost');
# (those of its records that reached a broker: within one page of 200)
ok(!@again || $again[-1] - $again[0] < 200,
	'kill -9: nothing repeated but the page in flight (one transaction)');
note "kill -9: $more messages of the open transaction repeated (the mock cluster does not abort it)";

$node->stop('fast');
$kafka->stop;
done_testing();
