# The kafka relay target, at least once, against librdkafka's mock cluster
# (test/kafka_mock.c): 20,000 messages over 100 keys land with their key,
# headers and value, in partition murmur2(key) and in order per key; a
# page sent once complete, whatever linger.ms; brokers down then back;
# injected retriable errors; a page failing while the next one is in
# flight; a message too large dead-lettered; kill -9
# mid-stream; SIGTERM and DROP DATABASE with every broker down.
use strict;
use warnings;
use Time::HiRes qw(time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;
use KafkaMock;

my $kafka = KafkaMock->new(3, 'orders:4', 'docs:2', 'txbox.positions:1');

my $node = $kafka->shop_node(q{, "message.max.bytes" '100000', "linger.ms" '5'});
$node->safe_psql(
	'shop', q{SELECT txbox.create_relay('to_kafka', 'kafka', ARRAY['orders', 'docs'],
			'{"server": "events", "statement_timeout": "5s", "backoff_max": "1s",
			  "max_attempts": 2, "topic_map": {"docs": "docs"}}');});

# every record of topic, grouped by message id
sub by_id
{
	my $topic = shift;
	my %ids;
	push @{ $ids{ $_->{headers}{'txbox-message-id'} } }, $_ for $kafka->records($topic);
	return \%ids;
}

######################################################################
# 1. 20,000 messages over 100 keys
######################################################################

$node->safe_psql(
	'shop', q{SELECT txbox.publish('orders', jsonb_build_object('n', g), 'key-' || (g % 100),
	  jsonb_build_object('h', 'v' || g, 'num', g::text))
	  FROM generate_series(1, 20000) g});
poll_ok($node, 'shop',
	q{SELECT delivered || ' ' || lag_messages FROM txbox.relay_status WHERE name = 'to_kafka'},
	'20000 0', 120, '20,000 messages delivered');

my @records = $kafka->records('orders');
is(scalar @records, 20000, 'Kafka has 20,000 records');
my $ids = $node->safe_psql('shop',
	q{SELECT string_agg(message_id::text || ' ' || (payload->>'n') || ' ' || key || ' '
						|| to_char(published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), ',')
	  FROM txbox.outbox WHERE topic = 'orders'});
my %want = map { my ($id, $n, $k, $at) = split / /, $_, 4; ($id => [ $n, $k, $at ]) } split /,/, $ids;
my ($bad_key, $bad_part, $bad_value, $bad_hdr, $bad_order) = (0, 0, 0, 0, 0);
my %last;    # partition/key -> last n
for my $r (@records)
{
	my $w = $want{ $r->{headers}{'txbox-message-id'} // '' };
	if (!$w) { $bad_hdr++; next; }
	my ($n, $k, $at) = @$w;
	$bad_key++ unless defined $r->{key} && $r->{key} eq $k;
	$bad_part++ unless $r->{partition} == KafkaMock::partition($k, 4);
	$bad_value++ unless $r->{value} eq qq({"n": $n});
	$bad_hdr++
	  unless $r->{headers}{h} eq "v$n"
	  && $r->{headers}{num} eq $n
	  && $r->{headers}{'txbox-topic'} eq 'orders'
	  && $r->{headers}{'txbox-published-at'} eq $at;
	$bad_order++ if defined $last{$k} && $last{$k} > $n;
	$last{$k} = $n;
}
is($bad_key,   0, 'every record has its message key');
is($bad_part,  0, 'every key is in partition murmur2(key) % 4 (the Java client\'s)');
is($bad_value, 0, 'every value is the payload as JSON text');
is($bad_hdr,   0, 'every record has the message headers and txbox\'s');
is($bad_order, 0, 'per-key order is publish order');
is(scalar(keys %last), 100, '100 keys');

# no key, a bytea payload byte-exact, another topic (topic_map)
$node->safe_psql('shop',
	q{SELECT txbox.publish_bytes('docs', '\x00ff0a0d'::bytea, NULL, '{"plain": "y", "empty": ""}');
	  SELECT txbox.publish('docs', '{"doc": true}', NULL,
		jsonb_build_object('q', 'say "hi" \ ' || chr(233) || chr(10), 'plain', 'x'))});
poll_ok($node, 'shop', q{SELECT lag_messages FROM txbox.relay_status WHERE name = 'to_kafka'},
	'0', 60, 'docs delivered');
my @docs = $kafka->records('docs');
is(scalar @docs, 2, 'two docs');
is_deeply([ sort map { defined $_->{key} ? 'key' : 'none' } @docs ], [ 'none', 'none' ],
	'no message key: no record key');
is_deeply([ sort map { unpack('H*', $_->{value}) } @docs ],
	[ sort('00ff0a0d', unpack('H*', '{"doc": true}')) ], 'bytea payload byte-exact, jsonb as text');
my %doc_headers = map { unpack('H*', $_->{value}) => $_->{headers} } @docs;
is( join(',', map { "$_=$doc_headers{'00ff0a0d'}{$_}" } qw(plain empty)),
	'plain=y,empty=', 'headers as written');
is( join(',', map { "$_=" . unpack('H*', $doc_headers{ unpack('H*', '{"doc": true}') }{$_}) } qw(q plain)),
	'q=' . unpack('H*', "say \"hi\" \\ \xc3\xa9\n") . ',plain=' . unpack('H*', 'x'),
	'headers with escapes and UTF-8, unescaped');

# A page is sent when it is complete, not after linger.ms: a relay whose
# server lingers a minute delivers one message well before that minute.
# That message is published among 500 of a topic the relay does not serve,
# in one transaction: the relay reads the batch's keys from the index,
# the rows of other topics among them too, and delivers only its own.
$node->safe_psql(
	'shop', qq{CREATE SERVER lingering FOREIGN DATA WRAPPER txbox_kafka
	  OPTIONS (bootstrap_servers '$kafka->{bootstrap}', allow_private 'true', "linger.ms" '60000');
	  CREATE USER MAPPING FOR CURRENT_USER SERVER lingering;
	  SELECT txbox.create_relay('lingering', 'kafka', ARRAY['docs'],
		'{"server": "lingering", "statement_timeout": "120s"}');});
$node->safe_psql('shop',
	q{SELECT count(CASE WHEN g = 250 THEN txbox.publish('docs', '{"linger": true}', 'linger')
						ELSE txbox.publish('elsewhere', jsonb_build_object('n', g)) END)
	  FROM generate_series(1, 500) g});
poll_ok($node, 'shop',
	q{SELECT delivered || ' ' || lag_messages FROM txbox.relay_status WHERE name = 'lingering'},
	'1 0', 30, 'linger.ms 60000: the page is delivered without waiting for it');
$node->safe_psql('shop', q{SELECT txbox.drop_relay('lingering')});
poll_ok($node, 'shop', q{SELECT lag_messages FROM txbox.relay_status WHERE name = 'to_kafka'},
	'0', 60, 'docs delivered');

######################################################################
# 2. Brokers down, then back
######################################################################

$kafka->command('down -1');
$node->safe_psql('shop',
	q{SELECT txbox.publish('orders', jsonb_build_object('n', g), 'down-' || (g % 10))
	  FROM generate_series(1, 100) g});
poll_ok($node, 'shop',
	q{SELECT state || ' ' || (last_error <> '')::int || ' ' || lag_messages
	  FROM txbox.relay_status WHERE name = 'to_kafka'},
	'retrying 1 100', 60, 'brokers down: relay retrying, lag visible');
$kafka->command('up -1');
poll_ok($node, 'shop',
	q{SELECT state || ' ' || lag_messages FROM txbox.relay_status WHERE name = 'to_kafka'},
	'running 0', 90, 'brokers back: everything delivered');
my $got = by_id('orders');
my @down_ids = split /\n/, $node->safe_psql('shop',
	q{SELECT message_id FROM txbox.outbox WHERE key LIKE 'down-%'});
is(scalar(grep { $got->{$_} } @down_ids), 100, 'brokers down: every message delivered, none lost');

######################################################################
# 3. Retriable errors injected (NOT_LEADER_FOR_PARTITION)
######################################################################

$kafka->command('errors 5 6');
$node->safe_psql('shop',
	q{SELECT txbox.publish('orders', jsonb_build_object('n', g), 'err-' || (g % 10))
	  FROM generate_series(1, 100) g});
poll_ok($node, 'shop', q{SELECT lag_messages FROM txbox.relay_status WHERE name = 'to_kafka'},
	'0', 90, 'retriable errors: delivered');
$got = by_id('orders');
my @err_ids = split /\n/, $node->safe_psql('shop',
	q{SELECT message_id FROM txbox.outbox WHERE key LIKE 'err-%'});
is(scalar(grep { $got->{$_} && @{ $got->{$_} } == 1 } @err_ids),
	100, 'retriable errors: every message once (idempotent producer)');

######################################################################
# 3b. A page fails while the next one is in flight (pipelining)
######################################################################

# The relay produces page N+1 before page N's delivery reports are in.
# Produce requests failing for good (TOPIC_AUTHORIZATION_FAILED: not
# retried by the producer) fail a page: no position may be saved past it,
# and it is delivered again with what follows, only once the page after
# it settled.  Every message lands, and per key the last copy of each
# message is in publish order (each retry goes out behind everything of
# the failed attempt).
$node->safe_psql('shop', q{SELECT txbox.alter_relay('to_kafka', '{"batch_size": 200}')});
my $retried = $node->safe_psql('shop', q{SELECT retried FROM txbox.relays WHERE name = 'to_kafka'});
$kafka->command('errors 3 29');
$node->safe_psql('shop',
	q{SELECT txbox.publish('orders', jsonb_build_object('n', g), 'pipe-' || (g % 20))
	  FROM generate_series(1, 4000) g});
poll_ok($node, 'shop', q{SELECT lag_messages FROM txbox.relay_status WHERE name = 'to_kafka'},
	'0', 90, 'a page failing with the next in flight: delivered');
is( $node->safe_psql('shop',
		qq{SELECT retried > $retried AND last_error LIKE '%uthoriz%' FROM txbox.relays WHERE name = 'to_kafka'}),
	't', 'the relay saw its pages fail');
my %copies;    # key -> n of each record, in partition order
for my $r (grep { ($_->{key} // '') =~ /^pipe-/ } $kafka->records('orders'))
{
	$r->{value} =~ /"n": (\d+)/ or next;
	push @{ $copies{ $r->{key} } }, $1;
}
my ($missing, $misordered) = (0, 0);
for my $k (map { "pipe-$_" } 0 .. 19)
{
	my (%seen, @last);
	for my $n (reverse @{ $copies{$k} // [] })    # each message's last copy
	{
		unshift @last, $n unless $seen{$n}++;
	}
	my @want = grep { $_ % 20 == substr($k, 5) } 1 .. 4000;
	$missing += @want - keys %seen;
	$misordered++ unless "@last" eq "@want";
}
note(sprintf('%d records for 4000 messages', scalar map { @$_ } values %copies));
is($missing,    0, 'a page failing with the next in flight: every message delivered');
is($misordered, 0, 'a page failing with the next in flight: per key, the last copies in publish order');
$node->safe_psql('shop', q{SELECT txbox.alter_relay('to_kafka', '{"batch_size": null}')});

######################################################################
# 4. A message too large (message.max.bytes) is dead-lettered
######################################################################

# (among messages of a topic the relay does not serve, which are keys of
# its batch too: the dead letter is the message, not the key before it)
$node->safe_psql('shop',
	q{BEGIN;
	  SELECT txbox.publish('docs', '{"n": 1}', 'big');
	  SELECT txbox.publish('elsewhere', '{"n": 2}', 'big');
	  SELECT txbox.publish('docs', jsonb_build_object('blob', repeat('x', 200000)), 'big');
	  SELECT txbox.publish('elsewhere', '{"n": 4}', 'big');
	  SELECT txbox.publish('docs', '{"n": 3}', 'big');
	  COMMIT;});
poll_ok($node, 'shop',
	q{SELECT count(*) || ' ' || bool_and(last_error LIKE '%too large%')::int
	  || ' ' || bool_and(topic = 'docs' AND length(payload->>'blob') = 200000)::int
	  FROM txbox.dead_letters WHERE relay = 'to_kafka'},
	'1 1 1', 90, 'the message too large is dead-lettered');
poll_ok($node, 'shop', q{SELECT lag_messages FROM txbox.relay_status WHERE name = 'to_kafka'},
	'0', 60, 'the relay goes on after the dead letter');
# (the first one perhaps twice: its page was retried one message at a time)
my %seen;
is( join(',', grep { !$seen{$_}++ } map { $_->{value} }
	  grep { ($_->{key} // '') eq 'big' } $kafka->records('docs')),
	'{"n": 1},{"n": 3}',
	'the others of its key are delivered, in order');

######################################################################
# 5. kill -9 mid-stream: every message at least once
######################################################################

$node->safe_psql('shop',
	q{SELECT txbox.publish('orders', jsonb_build_object('n', g), 'kill-' || (g % 50))
	  FROM generate_series(1, 20000) g});
poll_ok($node, 'shop',
	q{SELECT lag_messages < 19000 FROM txbox.relay_status WHERE name = 'to_kafka'},
	't', 60, 'kill -9: the relay is mid-stream');
my $pid = $node->safe_psql('shop',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'txbox relay'});
kill 'KILL', $pid;
poll_ok($node, 'shop', q{SELECT lag_messages FROM txbox.relay_status WHERE name = 'to_kafka'},
	'0', 120, 'kill -9: the relay restarts and catches up');
$got = by_id('orders');
my @kill_ids = split /\n/, $node->safe_psql('shop',
	q{SELECT message_id FROM txbox.outbox WHERE key LIKE 'kill-%'});
is(scalar(grep { $got->{$_} } @kill_ids), 20000, 'kill -9: every message at least once');

######################################################################
# 6. SIGTERM with every broker down: the worker exits at once
######################################################################

$kafka->command('down -1');
$node->safe_psql('shop', q{SELECT txbox.publish('orders', '{"n": 0}', 'term')});
poll_ok($node, 'shop',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'txbox relay'
	  AND query = 'txbox relay: delivering' AND state = 'active'},
	'1', 60, 'brokers down: the relay waits for delivery reports');
$pid = $node->safe_psql('shop',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'txbox relay'});
my $t0 = time();
kill 'TERM', $pid;
my $gone = 0;
while (time() - $t0 < 30)
{
	if (!kill(0, $pid)) { $gone = 1; last; }
	select(undef, undef, undef, 0.05);
}
my $secs = time() - $t0;
ok($gone, 'SIGTERM with brokers down: the relay worker exits');
note sprintf('exited after %.2f s', $secs);
ok($secs < 5, 'SIGTERM with brokers down: promptly (not after the 5 s message timeout)');

# and DROP DATABASE (which waits 5 s for other sessions) is not held up
poll_ok($node, 'shop',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'txbox relay'
	  AND query = 'txbox relay: delivering' AND state = 'active'},
	'1', 60, 'brokers down: the relay is back, waiting for delivery reports');
$node->safe_psql('postgres', 'DROP DATABASE shop');
pass('DROP DATABASE with the relay waiting for brokers that are down');
$kafka->command('up -1');

$node->stop('fast');
$kafka->stop;
done_testing();
