# The kafka relay target, at least once, against librdkafka's mock cluster
# (test/kafka_mock.c): 20,000 messages over 100 keys land with their key,
# headers and value, in partition murmur2(key) and in order per key; a
# page sent once complete, whatever linger.ms; brokers down then back
# with pages in flight; injected retriable errors; a page failing while
# the next ones are in flight; a page stuck in the middle of a deep queue
# of pages in flight (no position saved past it, kill -9 then); a page
# without the relay's messages read behind stuck pages; a message
# too large dead-lettered while pages after it were in flight; kill -9
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
# broker 3 leads docs only (section 3c takes it down)
$kafka->command("leader orders $_ " . (1 + $_ % 2)) for 0 .. 3;
$kafka->command("leader docs $_ 3") for 0 .. 1;

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

# (missing, misordered) of the messages of the keys LIKE pattern: the
# messages of each key in the outbox not in Kafka's topic, and the keys
# whose last copy of each message (a failure delivers the pages from the
# failed one on again) are not in publish order
sub check_keys
{
	my ($topic, $pattern) = @_;
	my %want = map { split / /, $_, 2 } split /\n/, $node->safe_psql('shop',
		qq{SELECT key || ' ' || string_agg(payload->>'n', ' ' ORDER BY id) FROM txbox.outbox
		   WHERE key LIKE '$pattern' AND payload ? 'n' GROUP BY key});
	my %copies;    # key -> n of each record, in partition order
	for my $r ($kafka->records($topic))
	{
		next unless defined $r->{key} && $want{ $r->{key} };
		$r->{value} =~ /"n": (\d+)/ and push @{ $copies{ $r->{key} } }, $1;
	}
	my ($missing, $misordered) = (0, 0);
	for my $k (keys %want)
	{
		my (%seen, @last);
		for my $n (reverse @{ $copies{$k} // [] })    # each message's last copy
		{
			unshift @last, $n unless $seen{$n}++;
		}
		my @want = split / /, $want{$k};
		$missing += grep { !$seen{$_} } @want;
		$misordered++ unless "@last" eq "@want";
	}
	note(sprintf('%s: %d records of %d keys', $pattern, scalar(map { @$_ } values %copies),
		scalar keys %want));
	return ($missing, $misordered);
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
# jsonb payloads of every kind of value, escapes, nesting and raw scalars:
# each value must be payload::text byte for byte (the relay writes the
# JSON text itself: src/relay.c, relay_put_json)
$node->safe_psql('shop', q{SELECT txbox.publish('docs', j::jsonb, 'json-' || n)
	FROM unnest(ARRAY[
	  '{"s": "q\" b\\\\ \b\f\n\r\t \u0001 \u001f \u007f / é € \u2028", "n": [0, -1.5, 1e100, 12345678901234567890.000001],
	    "t": true, "f": false, "z": null, "e": {}, "a": [], "o": {"x": [[], [{}], [1, [2, "3"]]]}}',
	  '{"a\"b\\\\c\n": 1, "": ""}', '"just a string \n"', '42.50', 'null', 'true', '[]', '{}',
	  '[{"k": "v"}, "x", 1, null, [true, false], {"y": [{}]}]', '""', '[[[]]]',
	  '["ab\"cdefghijklmnop", "ab\\\\cdefghijklmnop", "abcdefghij\nklmnopqrstuvwx", "ééééé\u0002ééééé", "12345678"]'])
	WITH ORDINALITY AS t(j, n)});
poll_ok($node, 'shop', q{SELECT lag_messages FROM txbox.relay_status WHERE name = 'to_kafka'},
	'0', 60, 'docs delivered');
my %json_want = map { split / / } split /,/, $node->safe_psql('shop',
	q{SELECT string_agg(message_id || ' ' || encode(convert_to(payload::text, 'UTF8'), 'hex'), ',')
	  FROM txbox.outbox WHERE topic = 'docs' AND key LIKE 'json-%'});
my @json = grep { ($_->{key} // '') =~ /^json-/ } $kafka->records('docs');
is(scalar @json, 12, 'twelve jsonb docs');
is(join(' ', map { $_->{key} } grep { unpack('H*', $_->{value}) ne ($json_want{ $_->{headers}{'txbox-message-id'} } // '') } @json),
	'', 'every jsonb value is payload::text, byte for byte');
my @docs = grep { !defined $_->{key} } $kafka->records('docs');
is(scalar @docs, 2, 'two docs without a key');
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

# (pages of 20: five of them, as many in flight as the target keeps)
$node->safe_psql('shop', q{SELECT txbox.alter_relay('to_kafka', '{"batch_size": 20}')});
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
my ($missing, $misordered) = check_keys('orders', 'down-%');
is($missing,    0, 'brokers down: every message delivered, none lost');
is($misordered, 0, 'brokers down: per key, the last copies in publish order');
$node->safe_psql('shop', q{SELECT txbox.alter_relay('to_kafka', '{"batch_size": null}')});

######################################################################
# 3. Retriable errors injected (NOT_LEADER_FOR_PARTITION)
######################################################################

$kafka->command('errors 5 6');
$node->safe_psql('shop',
	q{SELECT txbox.publish('orders', jsonb_build_object('n', g), 'err-' || (g % 10))
	  FROM generate_series(1, 100) g});
poll_ok($node, 'shop', q{SELECT lag_messages FROM txbox.relay_status WHERE name = 'to_kafka'},
	'0', 90, 'retriable errors: delivered');
my $got = by_id('orders');
my @err_ids = split /\n/, $node->safe_psql('shop',
	q{SELECT message_id FROM txbox.outbox WHERE key LIKE 'err-%'});
is(scalar(grep { $got->{$_} && @{ $got->{$_} } == 1 } @err_ids),
	100, 'retriable errors: every message once (idempotent producer)');

######################################################################
# 3b. A page fails while the next ones are in flight (pipelining)
######################################################################

# The relay produces the next pages before page N's delivery reports are in.
# Produce requests failing for good (TOPIC_AUTHORIZATION_FAILED: not
# retried by the producer) fail a page: no position may be saved past it,
# and it is delivered again with what follows, only once the pages after
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
($missing, $misordered) = check_keys('orders', 'pipe-%');
is($missing,    0, 'a page failing with the next in flight: every message delivered');
is($misordered, 0, 'a page failing with the next in flight: per key, the last copies in publish order');

######################################################################
# 3c. A page stuck in the middle of a deep queue of pages in flight
######################################################################

# Pages of 100: two of orders, one of docs (whose partitions' leader,
# broker 3, is down), then six of orders.  The relay produces the pages
# after the docs page while it waits for that one's delivery reports: they
# are delivered, it is not (it times out after statement_timeout, then
# again and again).  Its position must stay before the docs page all
# along (a position saved past a page in flight, taking a later page's
# outcome for an earlier one's, would pass it), and a relay killed then
# must deliver it after its restart.
$node->safe_psql('shop', q{SELECT txbox.alter_relay('to_kafka', '{"batch_size": 100}')});
$kafka->command('down 3');
$retried = $node->safe_psql('shop', q{SELECT retried FROM txbox.relays WHERE name = 'to_kafka'});
$node->safe_psql('shop',
	q{SELECT count(txbox.publish(CASE WHEN g BETWEEN 201 AND 300 THEN 'docs' ELSE 'orders' END,
						  jsonb_build_object('n', g),
						  CASE WHEN g BETWEEN 201 AND 300 THEN 'stuck' ELSE 'deep-' || (g % 10) END))
	  FROM generate_series(1, 900) g});
# a query: whether the relay's saved position is before the first message
# of key (its transaction not delivered, nor that message within the batch)
sub position_before
{
	my $key = shift;
	return qq{SELECT NOT pg_visible_in_snapshot(o.txid, r.snapshot)
		AND (r.batch_snapshot IS NULL OR NOT pg_visible_in_snapshot(o.txid, r.batch_snapshot)
			 OR r.batch_last_id < o.id)
	  FROM txbox.relays r, (SELECT txid, id FROM txbox.outbox WHERE key = '$key' ORDER BY id LIMIT 1) o
	  WHERE r.name = 'to_kafka'};
}
my $before_stuck = position_before('stuck');
poll_ok($node, 'shop',
	qq{SELECT retried >= $retried + 2 FROM txbox.relays WHERE name = 'to_kafka'},
	't', 90, 'a page stuck: the relay retries it');
# (n 401-500: the second page after the stuck one, in flight with it when
# more than two pages may be)
ok( (grep { ($_->{key} // '') =~ /^deep-/ && $_->{value} =~ /"n": (\d+)/ && $1 > 400 }
	  $kafka->records('orders')),
	'a page stuck: the pages after it in flight were delivered');
is($node->safe_psql('shop', $before_stuck), 't',
	'a page stuck: no position saved past it, after pages after it were delivered');
is( $node->safe_psql('shop', q{SELECT last_error ILIKE '%timed out%' FROM txbox.relays WHERE name = 'to_kafka'}),
	't', 'a page stuck: it timed out');

# kill -9 with the docs page still stuck: the restarted relay delivers it
my $pid = $node->safe_psql('shop',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'txbox relay'});
kill 'KILL', $pid;
$node->poll_query_until('shop',
	qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'txbox relay' AND pid <> $pid})
  or die 'the relay is not back';
poll_ok($node, 'shop', qq{SELECT state = 'retrying' AND ($before_stuck) FROM txbox.relays WHERE name = 'to_kafka'},
	't', 60, 'a page stuck, kill -9: the relay restarted, retrying it, no position past it');
$kafka->command('up 3');
poll_ok($node, 'shop', q{SELECT lag_messages FROM txbox.relay_status WHERE name = 'to_kafka'},
	'0', 90, 'a page stuck: delivered once its broker is back');
($missing, $misordered) = check_keys('orders', 'deep-%');
is($missing,    0, 'a page stuck: every message after it delivered');
is($misordered, 0, 'a page stuck: per key, the last copies in publish order');
($missing, $misordered) = check_keys('docs', 'stuck');
is($missing,    0, 'a page stuck: every message of it delivered');
is($misordered, 0, 'a page stuck: its last copies in publish order');
$node->safe_psql('shop', q{SELECT txbox.alter_relay('to_kafka', '{"batch_size": null}')});

######################################################################
# 3d. A page without any of the relay's messages after pages in flight
######################################################################

# One batch (the relay paused meanwhile) in pages of 20: five of one
# transaction of docs, stuck (broker 3 down), then a page of the keys of
# 25 transactions of a topic the relay does not serve (no message: the
# relay passes its keys once the pages before it are delivered, not
# before: its position stays before the docs while they are stuck), then
# five of orders.
$node->safe_psql('shop',
	q{SELECT txbox.alter_relay('to_kafka', '{"batch_size": 20}'); SELECT txbox.pause_relay('to_kafka')});
$kafka->command('down 3');
$retried = $node->safe_psql('shop', q{SELECT retried FROM txbox.relays WHERE name = 'to_kafka'});
$node->safe_psql('shop',
	q{SELECT count(txbox.publish('docs', jsonb_build_object('n', g), 'gapdoc'))
	  FROM generate_series(1, 100) g});
$node->safe_psql('shop', q{SELECT txbox.publish('elsewhere', '{"n": 0}')}) for 1 .. 25;
$node->safe_psql('shop',
	q{SELECT count(txbox.publish('orders', jsonb_build_object('n', g), 'gap-' || (g % 10)))
	  FROM generate_series(101, 200) g});
$node->safe_psql('shop', q{SELECT txbox.resume_relay('to_kafka')});
poll_ok($node, 'shop',
	qq{SELECT retried > $retried FROM txbox.relays WHERE name = 'to_kafka'},
	't', 90, 'a page without messages after stuck pages: the relay retries them');
is($node->safe_psql('shop', position_before('gapdoc')), 't',
	'a page without messages after stuck pages: no position saved past them');
$kafka->command('up 3');
poll_ok($node, 'shop', q{SELECT lag_messages FROM txbox.relay_status WHERE name = 'to_kafka'},
	'0', 90, 'a page without messages after pages in flight: delivered');
($missing, $misordered) = check_keys('docs', 'gapdoc');
is($missing + $misordered, 0, 'a page without messages after pages in flight: the docs before it, in order');
($missing, $misordered) = check_keys('orders', 'gap-%');
is($missing + $misordered, 0, 'a page without messages after pages in flight: the orders after it, in order');
$node->safe_psql('shop', q{SELECT txbox.alter_relay('to_kafka', '{"batch_size": null}')});

######################################################################
# 4. A message too large (message.max.bytes) is dead-lettered
######################################################################

# (among messages of a topic the relay does not serve, which are keys of
# its batch too: the dead letter is the message, not the key before it;
# in the third page of 100, the pages after it already on their way when
# it is rejected)
$node->safe_psql('shop', q{SELECT txbox.alter_relay('to_kafka', '{"batch_size": 100}')});
$node->safe_psql('shop',
	q{BEGIN;
	  SELECT count(txbox.publish('orders', jsonb_build_object('n', g), 'poison-' || (g % 10)))
	  FROM generate_series(1, 250) g;
	  SELECT txbox.publish('docs', '{"n": 1}', 'big');
	  SELECT txbox.publish('elsewhere', '{"n": 2}', 'big');
	  SELECT txbox.publish('docs', jsonb_build_object('blob', repeat('x', 200000)), 'big');
	  SELECT txbox.publish('elsewhere', '{"n": 4}', 'big');
	  SELECT txbox.publish('docs', '{"n": 3}', 'big');
	  SELECT count(txbox.publish('orders', jsonb_build_object('n', g), 'poison-' || (g % 10)))
	  FROM generate_series(251, 800) g;
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
($missing, $misordered) = check_keys('orders', 'poison-%');
is($missing,    0, 'a dead letter with pages after it in flight: every other message delivered');
is($misordered, 0, 'a dead letter with pages after it in flight: per key, the last copies in publish order');
$node->safe_psql('shop', q{SELECT txbox.alter_relay('to_kafka', '{"batch_size": null}')});

######################################################################
# 5. kill -9 mid-stream: every message at least once
######################################################################

$node->safe_psql('shop',
	q{SELECT txbox.publish('orders', jsonb_build_object('n', g), 'kill-' || (g % 50))
	  FROM generate_series(1, 20000) g});
poll_ok($node, 'shop',
	q{SELECT lag_messages < 19000 FROM txbox.relay_status WHERE name = 'to_kafka'},
	't', 60, 'kill -9: the relay is mid-stream');
$pid = $node->safe_psql('shop',
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
