# The http target (webhooks) against a local receiver (http_receiver.py):
# 10,000 messages with verified signatures and per-key order under
# concurrency 8; a receiver down then back; 503 and 429 with Retry-After;
# a poison message dead-lettered and replayed; 410 Gone; a hung receiver
# and pg_terminate_backend; kill -9 of the relay mid-stream; pages of 10
# in flight two at a time, with a 500 and a 400 in them; answers in every
# framing, not HTTP, or late; https with a private CA.
use strict;
use warnings;
use FindBin;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;
use HttpReceiver;

my $secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
my $previous = 'whsec_' . 'c2VjcmV0LXJvdGF0ZWQtb3V0LXNvb24=';
my $token = 'tok-7f3a9c-very-secret';
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $tls_port = PostgreSQL::Test::Cluster::get_free_port();	# section 10
my $log = "${PostgreSQL::Test::Utils::tmp_check}/http_receiver.log";

my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
$node->append_conf('postgresql.conf', "max_worker_processes = 16\nrestart_after_crash = on");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE shop');
$node->safe_psql(
	'shop', qq{
	CREATE EXTENSION txbox;
	CREATE SERVER hooks FOREIGN DATA WRAPPER txbox_http
		OPTIONS (url 'http://127.0.0.1:$port/hook', allow_private 'true');
	CREATE USER MAPPING FOR CURRENT_USER SERVER hooks
		OPTIONS (signing_secret '$secret', signing_secret_previous '$previous',
				 bearer_token '$token');
	CREATE SERVER tls_hooks FOREIGN DATA WRAPPER txbox_http
		OPTIONS (url 'https://127.0.0.1:$tls_port/hook', allow_private 'true');
	CREATE USER MAPPING FOR CURRENT_USER SERVER tls_hooks
		OPTIONS (signing_secret '$secret', signing_secret_previous '$previous');});
# (the statement above is in the log; what txbox logs comes after it)
my $log_from = -s $node->logfile;
receiver_start($port, $log, $secret, $previous);

# 1. 10,000 messages in 50 keys (and some without a key), concurrency 8
$node->safe_psql(
	'shop', q{
	SELECT txbox.create_relay('to_hooks', 'http', NULL,
		'{"server": "hooks", "concurrency": 8, "backoff_max": "1s", "max_attempts": 2,
		  "timeout": "3s", "connect_timeout": "2s"}');
	SELECT txbox.publish('bulk', jsonb_build_object('key', 'k' || (i % 50), 'seq', i),
						 key => CASE WHEN i % 100 = 7 THEN NULL ELSE 'k' || (i % 50) END,
						 headers => jsonb_build_object('traceparent', '00-' || i || '-01', 'attempt', '1'))
	  FROM generate_series(1, 5000) i;
	SELECT txbox.publish('bulk', jsonb_build_object('key', 'k' || (i % 50), 'seq', i),
						 key => CASE WHEN i % 100 = 7 THEN NULL ELSE 'k' || (i % 50) END,
						 headers => jsonb_build_object('traceparent', '00-' || i || '-01', 'attempt', '1'))
	  FROM generate_series(5001, 10000) i;
	SELECT txbox.publish_bytes('bytes', '\x00ff0a0d'::bytea, key => 'k0');});
my $t0 = time();
poll_delivered('bulk', 10000, 180, '10,000 messages delivered');
note sprintf('10,000 messages in %.1f s', time() - $t0);
poll_delivered('bytes', 1, 30, 'the binary message delivered');
{
	my @r = grep { $_->{topic} eq 'bulk' } requests();
	is(scalar(grep { !$_->{sig_ok} } @r), 0, 'every request carries both valid v1 signatures');
	is(scalar(grep { $_->{overlap} } @r), 0, 'never two requests of one key at once');
	my $max = 0;
	$max = $_->{in_flight} > $max ? $_->{in_flight} : $max for @r;
	ok($max > 1 && $max <= 8, "requests in parallel, at most 8 ($max)");
	my (%last, $disorder);
	for my $q (@r)
	{
		next unless defined $q->{key};
		my $seq = decode_json($q->{body})->{seq};
		$disorder++ if defined $last{ $q->{key} } && $seq <= $last{ $q->{key} };
		$last{ $q->{key} } = $seq;
	}
	is($disorder // 0, 0, 'each key in publish order');
	my ($q) = grep { decode_json($_->{body})->{seq} == 42 } @r;
	is($q->{headers}{traceparent}, '00-42-01', 'message headers as HTTP headers');
	is($q->{headers}{attempt}, '1', 'every message header');
	is($q->{headers}{authorization}, "Bearer $token", 'bearer token');
	is($q->{key}, 'k42', 'txbox-key');
	is($q->{content_type}, 'application/json', 'jsonb as application/json');
	like($q->{timestamp}, qr/^\d{10}$/, 'webhook-timestamp in Unix seconds');
	my ($b) = grep { $_->{topic} eq 'bytes' } requests();
	is($b->{body}, 'AP8KDQ==', 'publish_bytes byte-exact');
	is($b->{content_type}, 'application/octet-stream', 'bytes as application/octet-stream');
	ok($b->{sig_ok}, 'binary body signed');
}
is( $node->safe_psql('shop',
		q{SELECT string_agg(message_id::text, ',' ORDER BY message_id::text) FROM txbox.outbox WHERE topic = 'bulk'}),
	join(',', sort keys %{ { map { $_->{id} => 1 } grep { $_->{topic} eq 'bulk' } requests() } }),
	'webhook-id is the message id');

# 2. the receiver down, then back: nothing lost
receiver_stop();
$node->safe_psql('shop',
	q{SELECT txbox.publish('down', jsonb_build_object('seq', i), key => 'k' || (i % 3)) FROM generate_series(1, 50) i});
poll_ok($node, 'shop',
	q{SELECT state, last_error LIKE 'could not deliver message %' FROM txbox.relay_status},
	'retrying|t', 60, 'receiver down: relay retrying');
receiver_start();
poll_delivered('down', 50, 60, 'receiver back: every message delivered');
is($node->safe_psql('shop', 'SELECT dead_lettered FROM txbox.relay_status'),
	'0', 'nothing dead-lettered while down');

# 3. 503 then 429 with Retry-After: 3
control({ queue => [ 503, 429 ], retry_after => 3 });
$node->safe_psql('shop', q{SELECT txbox.publish('busy', '{"n": 1}', key => 'b')});
poll_delivered('busy', 1, 60, 'delivered after 503 and 429');
{
	my @r = grep { $_->{topic} eq 'busy' } requests();
	is(join(',', map { $_->{status} } @r), '503,429,200', 'answers: 503, 429, 200');
	is(scalar(keys %{ { map { $_->{id} => 1 } @r } }), 1, 'the same webhook-id on every attempt');
	cmp_ok($r[2]{t} - $r[1]{t}, '>=', 2.9, 'Retry-After honoured');
}
# Retry-After as an HTTP date (whole seconds: 4 s ahead waits at least 3)
control({ queue => [503], retry_after => POSIX::strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime(time() + 4)) });
$node->safe_psql('shop', q{SELECT txbox.publish('busy-date', '{"n": 1}', key => 'b')});
poll_delivered('busy-date', 1, 60, 'delivered after 503 with a Retry-After date');
{
	my @r = grep { $_->{topic} eq 'busy-date' } requests();
	is(join(',', map { $_->{status} } @r), '503,200', 'answers: 503, 200');
	cmp_ok($r[1]{t} - $r[0]{t}, '>=', 2.9, 'Retry-After date honoured');
}
control({ retry_after => undef });

# 4. a poison message: rejected (400) max_attempts times, dead-lettered
# while its key's next message waits and other keys go on; replayed.  One
# transaction: one page, whose delivered messages are not sent again when
# it is retried one message at a time
$node->safe_psql(
	'shop', q{
	BEGIN;
	SELECT txbox.publish('p', '{"seq": 1}', key => 'pk');
	SELECT txbox.publish('p', '{"seq": 2, "poison": true}', key => 'pk');
	SELECT txbox.publish('p', '{"seq": 3}', key => 'pk');
	SELECT txbox.publish('p', '{"seq": 1}', key => 'other');
	COMMIT;});
poll_delivered('p', 3, 60, 'the others delivered');
is( $node->safe_psql(
		'shop', q{SELECT payload->>'seq', attempts, last_error LIKE 'HTTP 400 for message %: poison refused for Bearer ****%'
		FROM txbox.dead_letters}),
	'2|2|t',
	'poison dead-lettered after max_attempts with the status and the answer (token scrubbed)');
{
	my @pk = map { decode_json($_->{body})->{seq} } grep { $_->{topic} eq 'p' && $_->{key} eq 'pk' } requests();
	my ($last_poison) = grep { $pk[$_] == 2 } reverse 0 .. $#pk;
	my ($three) = grep { $pk[$_] == 3 } 0 .. $#pk;
	ok($three > $last_poison, "its key's next message only after it was dead-lettered (@pk)");
	is(scalar(grep { $_->{topic} eq 'p' && $_->{key} eq 'other' } requests()),
		1, 'a message delivered when its page was rejected is not sent again');
}
control({ accept_poison => JSON::PP::true });
$node->safe_psql('shop', 'SELECT txbox.replay_dead_letter(dead_letter_id) FROM txbox.dead_letters');
poll_delivered('p', 4, 60, 'replayed dead letter delivered');

# 5. 410 Gone: the relay fails, nothing is dead-lettered; it goes on once
# the endpoint answers again
control({ queue => [ (410) x 10 ] });
$node->safe_psql('shop', q{SELECT txbox.publish('gone', '{}')});
poll_ok($node, 'shop',
	q{SELECT state, last_error LIKE '%answered 410 Gone%', dead_lettered FROM txbox.relay_status},
	'failed|t|1', 60, '410: relay failed, nothing more dead-lettered');
poll_delivered('gone', 1, 60, 'delivered once the endpoint is back');

# 6. a hung receiver: pg_terminate_backend ends the worker at once
control({ hang => JSON::PP::true });
$node->safe_psql('shop', q{SELECT txbox.publish('hang', '{}')});
my $where = "backend_type = 'txbox relay' AND state = 'active' AND query = 'txbox relay: delivering'"
  . " AND clock_timestamp() - state_change > interval '1 s'";
poll_ok($node, 'shop', "SELECT count(*) FROM pg_stat_activity WHERE $where", '1', 60,
	'worker waits on the hung receiver');
my $pid = $node->safe_psql('shop', "SELECT pid FROM pg_stat_activity WHERE $where");
$t0 = time();
is($node->safe_psql('shop', "SELECT pg_terminate_backend($pid, 5000)"),
	't', 'pg_terminate_backend ends the worker within 5 s');
note sprintf('worker ended %.2f s after pg_terminate_backend', time() - $t0);
control({ hang => JSON::PP::false });
poll_delivered('hang', 1, 60, 'delivered by the next worker');

# 7. kill -9 of the relay mid-stream: every message at least once, the
# redelivered ones with the same webhook-id
control({ delay => 0.05 });
$node->safe_psql('shop',
	q{SELECT txbox.publish('crash', jsonb_build_object('seq', i), key => 'c' || (i % 8)) FROM generate_series(1, 400) i});
my $deadline = time() + 60;
usleep(100_000) until scalar(grep { $_->{topic} eq 'crash' } requests()) >= 20 || time() > $deadline;
$pid = $node->safe_psql('shop', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'txbox relay'");
kill 'KILL', $pid;
control({ delay => 0 });
poll_delivered('crash', 400, 120, 'every message delivered after kill -9');
{
	my @ids = split /\n/, $node->safe_psql('shop',
		q{SELECT message_id FROM txbox.outbox WHERE topic = 'crash' ORDER BY id});
	my $got = delivered_ids();
	is(scalar(grep { !$got->{$_} } @ids), 0, 'each webhook-id is a published message id');
	note sprintf('%d redelivered', scalar(grep { $got->{$_} > 1 } @ids));
}

# 8. pages in flight two at a time: pages of 10 in 13 keys (and some
# without a key), so that each page's keys have messages in the page
# before.  A 500 (answered after 1 s, then 200) in one page and a poison
# message (400, answered after 1 s) in another, while the page after
# each is on its way: nothing lost, never two of one key at once, each key
# in order, the poison alone dead-lettered, its key's next message (in the
# next page) only after it, and what the page after it delivered before
# being dropped not sent again
control({ accept_poison => JSON::PP::false, delay => 0.002,
	rules => [ { text => '"fail": 1', status => 500, delay => 1, times => 1 },
		{ text => 'poison', delay => 1 } ] });
$node->safe_psql('shop', q{SELECT txbox.alter_relay('to_hooks', '{"batch_size": 10}')});
$node->safe_psql('shop', q{
	SELECT txbox.publish('paged', jsonb_build_object('seq', i)
			|| CASE i WHEN 105 THEN '{"fail": 1}' WHEN 405 THEN '{"poison": true}' ELSE '{}' END::jsonb,
		key => CASE WHEN i % 50 = 7 THEN NULL ELSE 'q' || (i % 13) END)
	  FROM generate_series(1, 600) i});
poll_delivered('paged', 599, 120, 'pages of 10: every message delivered but the poison');
poll_ok($node, 'shop',
	q{SELECT count(*), min(payload->>'seq') FROM txbox.dead_letters WHERE topic = 'paged'},
	'1|405', 60, 'the poison alone dead-lettered');
{
	my @r = grep { $_->{topic} eq 'paged' } requests();
	my @seq = map { decode_json($_->{body})->{seq} } @r;
	my (%last, $disorder, %ok);
	for my $i (0 .. $#r)
	{
		my $k = $r[$i]{key};
		next unless defined $k;
		$disorder++ if defined $last{$k} && $seq[$i] < $last{$k};
		$last{$k} = $seq[$i];
	}
	is($disorder // 0, 0, 'pages of 10: each key in publish order');
	is(scalar(grep { $_->{overlap} } @r), 0, 'pages of 10: never two requests of one key at once');
	$ok{ $seq[$_] }++ for grep { $r[$_]{status} == 200 } 0 .. $#r;
	is(scalar(grep { !$ok{$_} && $_ != 405 } 1 .. 600), 0, 'pages of 10: nothing lost');
	is(join(',', map { $r[$_]{status} } grep { $seq[$_] == 105 } 0 .. $#r), '500,200', '500, then 200');
	my ($fail) = grep { $seq[$_] == 105 } 0 .. $#r;
	my ($poison) = grep { $seq[$_] == 405 } 0 .. $#r;
	my ($last_poison) = grep { $seq[$_] == 405 } reverse 0 .. $#r;
	ok((grep { $seq[$_] > 110 && $seq[$_] <= 120 } 0 .. $fail - 1),
		'the next page on its way while the 500 was awaited');
	ok((grep { $seq[$_] > 410 && $seq[$_] <= 420 } 0 .. $poison - 1),
		'the next page on its way while the 400 was awaited');
	ok((grep { $seq[$_] == 405 + 13 } 0 .. $#r)[0] > $last_poison,
		"the poison's key's next message only after it was dead-lettered");
	is(join(',', grep { ($ok{$_} // 0) != 1 } grep { $_ != 405 } 401 .. 420), '',
		'the pages around the poison: each message delivered once');
}

# 9. answers framed every way HTTP/1.1 allows, read by txbox's own reader
# (curl only connects): chunked, up to the connection's end, after a 100
# Continue, and kept-alive connections the server drops without a word
# (a request sent on one goes again on a new connection, not counted as a
# failure); an answer that is not HTTP, and none within the timeout, are
# transient failures
$node->safe_psql('shop', q{SELECT txbox.alter_relay('to_hooks', '{"batch_size": 1000}')});
control({ accept_poison => JSON::PP::false, delay => 0, rules => [] });
my $retried = $node->safe_psql('shop', 'SELECT retried FROM txbox.relay_status');
for my $framing (qw(chunked close continue drop))
{
	control({ framing => $framing });
	$node->safe_psql('shop',
		qq{SELECT txbox.publish('$framing', jsonb_build_object('seq', i), key => 'f' || (i % 4)) FROM generate_series(1, 40) i});
	poll_delivered($framing, 40, 60, "framing $framing: every message delivered");
	my %n;
	$n{ $_->{id} }++ for grep { $_->{topic} eq $framing } requests();
	is(scalar(grep { $_ != 1 } values %n), 0, "framing $framing: each message sent once");
}
is($node->safe_psql('shop', 'SELECT retried FROM txbox.relay_status'),
	$retried, 'no transient failure in any of these framings');
control({ framing => 'chunked' });
$node->safe_psql('shop', q{SELECT txbox.publish('chunked-poison', '{"poison": true}')});
poll_ok($node, 'shop',
	q{SELECT count(*) FROM txbox.dead_letters WHERE topic = 'chunked-poison'
	  AND last_error LIKE 'HTTP 400 for message %: poison refused for Bearer ****%'},
	'1', 60, 'a chunked answer quoted whole in the dead letter');
control({ framing => 'garbage' });
$node->safe_psql('shop', q{SELECT txbox.publish('garbage', '{}')});
poll_ok($node, 'shop',
	q{SELECT state, last_error LIKE 'could not deliver message %: the server''s answer is not HTTP/1.x' FROM txbox.relay_status},
	'retrying|t', 60, 'an answer that is not HTTP: retrying');
control({ framing => 'length', rules => [ { text => 'slow', delay => 4, times => 1 } ] });
poll_delivered('garbage', 1, 60, 'delivered once the answers are HTTP again');
$node->safe_psql('shop', q{SELECT txbox.publish('slow', '{"slow": 1}')});
poll_ok($node, 'shop',
	q{SELECT last_error LIKE 'could not deliver message %: no answer within 3000 ms%' FROM txbox.relay_status},
	't', 60, 'no answer within the timeout: a transient failure');
poll_delivered('slow', 1, 60, 'delivered at the next attempt');

# 10. https: curl makes the TLS connection (the certificate and the host
# name verified), txbox writes and reads through it.  The receiver's
# certificate (test/t/tls, self-signed for 127.0.0.1) is refused until a
# superuser names it in ca_file.  (to_hooks paused: it would send the same
# topic to the plain receiver, which logs to the same file)
$node->safe_psql('shop', q{SELECT txbox.pause_relay('to_hooks')});
my $tls_pid = fork();
if ($tls_pid == 0)
{
	$ENV{RECEIVER_TLS_DIR} = "$FindBin::RealBin/tls";
	exec('python3', "$FindBin::RealBin/http_receiver.py", $tls_port, $log, $secret, $previous)
	  or die "exec: $!";
}
END { kill 'KILL', $tls_pid if $tls_pid; }
$node->safe_psql(
	'shop', qq{
	SELECT txbox.create_relay('to_tls', 'http', ARRAY['tls'],
		'{"server": "tls_hooks", "concurrency": 4, "backoff_max": "1s", "timeout": "5s"}');
	SELECT txbox.publish('tls', jsonb_build_object('seq', i), key => 't' || (i % 5))
	  FROM generate_series(1, 300) i;});
poll_ok($node, 'shop',
	q{SELECT state, last_error ILIKE '%certificate%' FROM txbox.relay_status WHERE name = 'to_tls'},
	'retrying|t', 60, 'https: a certificate of an unknown CA is refused');
$node->safe_psql('shop', "ALTER SERVER tls_hooks OPTIONS (ADD ca_file '$FindBin::RealBin/tls/server.crt')");
poll_delivered('tls', 300, 90, 'https with ca_file: every message delivered');
{
	my @r = grep { $_->{topic} eq 'tls' && $_->{status} == 200 } requests();
	is(scalar(grep { !$_->{sig_ok} } @r), 0, 'https: every request signed');
	my (%last, $disorder);
	for my $q (@r)
	{
		my $seq = decode_json($q->{body})->{seq};
		$disorder++ if defined $last{ $q->{key} } && $seq < $last{ $q->{key} };
		$last{ $q->{key} } = $seq;
	}
	is($disorder // 0, 0, 'https: each key in publish order');
}
$node->safe_psql('shop', q{SELECT txbox.resume_relay('to_hooks')});

# secrets appear nowhere in the status, the dead letters or the log
my $status = $node->safe_psql('shop',
	'SELECT r::text FROM txbox.relay_status r UNION ALL SELECT d::text FROM txbox.dead_letters d');
my $logtext = slurp_file($node->logfile, $log_from);
for my $s ($secret, $previous, $token)
{
	unlike($status, qr/\Q$s\E/, "no secret in relay_status or dead_letters");
	unlike($logtext, qr/\Q$s\E/, "no secret in the server log");
}

receiver_stop();
$node->stop;
done_testing();
