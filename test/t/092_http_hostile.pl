# The http target's own HTTP/1.1 reader against hostile answers: exact
# bytes written by the receiver (http_receiver.py's "raw"), split at every
# byte, trickled, flooded, malformed.  Each answer that HTTP/1.1 allows is
# read as such; each one that it does not is a transient failure naming
# what was wrong (never a rejection, never a delivery), within the relay's
# timeout, with bounded memory; the worker never crashes; once the
# receiver behaves again every message is delivered exactly once, each
# key in order.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;
use HttpReceiver;

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $log = "${PostgreSQL::Test::Utils::tmp_check}/http_hostile.log";

my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
$node->append_conf('postgresql.conf', "restart_after_crash = on");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE shop');
$node->safe_psql(
	'shop', qq{
	CREATE EXTENSION txbox;
	CREATE SERVER hooks FOREIGN DATA WRAPPER txbox_http
		OPTIONS (url 'http://127.0.0.1:$port/hook', allow_private 'true');
	CREATE USER MAPPING FOR CURRENT_USER SERVER hooks;
	SELECT txbox.create_relay('to_hooks', 'http', NULL,
		'{"server": "hooks", "concurrency": 4, "backoff_max": "200ms", "timeout": "2s",
		  "connect_timeout": "2s", "max_attempts": 100}');});
receiver_start($port, $log);

my $worker = q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'txbox relay'};
poll_ok($node, 'shop', "SELECT count(*) FROM ($worker) w", '1', 60, 'the relay runs');
my $pid = $node->safe_psql('shop', $worker);

sub status
{
	return split /\|/, $node->safe_psql('shop', 'SELECT retried, last_error FROM txbox.relay_status');
}

# hostile(name, raw answers, failures, error): three messages of one key,
# the first one answered with the raw answers (http_receiver.py) and then
# normally: every message delivered, after exactly that many transient
# failures, the last one's error matching error
my $topics = 0;
sub hostile
{
	my ($name, $raw, $failures, $error, $payload) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $topic = 'h' . ++$topics;
	my ($retried) = status();
	$payload //= q{jsonb_build_object('seq', i)};
	control({ raw => $raw });
	$node->safe_psql('shop',
		"SET txbox.max_payload_size = '16MB';"
		  . "SELECT txbox.publish('$topic', $payload, key => '$topic') FROM generate_series(1, 3) i");
	poll_delivered($topic, 3, 60, "$name: delivered");
	my ($now, $last_error) = status();
	is($now - $retried, $failures, "$name: $failures transient failures");
	like($last_error, $error, "$name: the error says why") if $error;
	control({ raw => [] });
	return $topic;
}

# an answer in one piece (kept alive unless close)
sub answer { return { parts => [ join('', @_) ], close => JSON::PP::false, status => 200 } }

# 1. what HTTP/1.1 allows: read as the answer, the connection kept alive
# for the key's next messages where the answer leaves it usable
hostile('no reason phrase', [ answer("HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok") ], 0);
hostile('bare LF line ends', [ answer("HTTP/1.1 200 OK\nContent-Length: 2\nX-A: b\n\nok") ], 0);
hostile('split at every byte',
	[ { %{ answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") }, split => 1, pause => 0.01 } ], 0);
hostile('chunk extensions and trailers, at every byte',
	[ { %{ answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"5;x=y\r\nhello\r\n2 ; ext\r\n!!\r\n000\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n") },
		split => 1, pause => 0.005 } ], 0);
hostile('1xx answers before it',
	[ answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nContent-Length: 7\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") ], 0);
hostile('the same Content-Length twice',
	[ answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length:2\r\n\r\nok") ], 0);
hostile('Transfer-Encoding chunked with a Content-Length: chunked',
	[ answer("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n") ], 0);
hostile('another Transfer-Encoding: up to the end',
	[ { parts => ["HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, zz\r\n\r\nchunked\r\n0\r\n\r\n"], status => 200 } ], 0);
hostile('Transfer-Encoding xchunked: not chunked',
	[ { parts => ["HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\nnot a chunk"], status => 200 } ], 0);
hostile('an unsolicited second answer in the same write',
	[ answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") ], 0);
hostile('a body up to the end, a byte at a time',
	[ { parts => ["HTTP/1.1 200 OK\r\n\r\n", "abc"], split => 1, pause => 0.01, status => 200 } ], 0);

# 2. what it does not: a transient failure naming what was wrong
my $bad = qr/^could not deliver message [-0-9a-f]{36}: the server's answer/;
for my $length ('99999999999999999999', '-1', '+5', '5 5')
{
	hostile("Content-Length '$length'",
		[ { parts => ["HTTP/1.1 200 OK\r\nContent-Length: $length\r\n\r\nhello"] } ],
		1, qr/$bad has an invalid Content-Length$/);
}
hostile('two different Content-Lengths',
	[ { parts => ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"] } ],
	1, qr/$bad has an invalid Content-Length$/);
for my $size ('fffffffffffffffffff5', '-5', ' 5', '0x10', '5x')
{
	hostile("chunk size '$size'",
		[ { parts => ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n$size\r\n0123456789abcdef\r\n0\r\n\r\n"] } ],
		1, qr/$bad has an invalid chunk size$/);
}
hostile('a chunk longer than its size',
	[ { parts => ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n"] } ],
	1, qr/$bad has a chunk longer than its size$/);
for my $line ("HTTP/1.1 2000 OK", "HTTP/1.1 20 OK", "HTTP/2 200 OK", "HTTP/1.1 2\x0000 OK")
{
	(my $shown = $line) =~ s/\x00/\\0/g;
	hostile("status line '$shown'", [ { parts => ["$line\r\nContent-Length: 0\r\n\r\n"] } ],
		1, qr/$bad is not HTTP\/1.x$/);
}
for my $status ('099', '600')
{
	hostile("status $status: as a 5xx",
		[ { parts => ["HTTP/1.1 $status Odd\r\nContent-Length: 4\r\n\r\nodd!"] } ],
		1, qr/^HTTP $status for message [-0-9a-f]{36}: odd!$/);
}
hostile('101 Switching Protocols',
	[ { parts => ["HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"] } ],
	1, qr/: the server switched protocols$/);
hostile('bytes outside printable ASCII in the quoted answer',
	[ { parts => ["HTTP/1.1 500 Oops\r\nContent-Length: 9\r\n\r\nab\x00cd\x01\xffgh"] } ],
	1, qr/^HTTP 500 for message [-0-9a-f]{36}: ab cd  gh$/);
hostile('the connection closed amid the body',
	[ { parts => ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"] } ],
	1, qr/: the server closed the connection before its answer was complete$/);
hostile('a head that never ends',
	[ { parts => ["HTTP/1.1 200 OK\r\n"], flood => 'X-Pad: ' . ('a' x 1000) . "\r\n" } ],
	1, qr/: the server's answer has a head or a line longer than 16 kB$/);
hostile('a chunk size line that never ends',
	[ { parts => ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;"], flood => ('x' x 4096) } ],
	1, qr/: the server's answer has a head or a line longer than 16 kB$/);

# 3. answers that never end, flooding or trickling: given up at the
# relay's timeout (2 s), the worker's memory bounded
sub peak_kb
{
	open(my $fh, '<', "/proc/$pid/status") or return 0;
	my ($kb) = map { /^VmHWM:\s+(\d+)/ ? $1 : () } <$fh>;
	return $kb;
}
my $peak_before = peak_kb();
my $timeout = qr/: no answer within 2000 ms \(the relay's timeout\)$/;
my %flood = (
	'a body of 2 GB, 64 MB/s' =>
	  { parts => ["HTTP/1.1 200 OK\r\nContent-Length: 2000000000\r\n\r\n"], flood => 'x' x 65536, pause => 0.001 },
	'a body up to the end' => { parts => ["HTTP/1.1 200 OK\r\n\r\n"], flood => 'x' x (1 << 20) },
	'endless chunks' =>
	  { parts => ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"], flood => "1\r\nx\r\n" x (1 << 17) },
	'endless 1xx answers' => { parts => [''], flood => "HTTP/1.1 100 Continue\r\n\r\n" x (1 << 15) });
for my $name (sort keys %flood)
{
	my $topic = hostile("flood: $name", [ $flood{$name} ], 1, $timeout);
	my ($sent) = map { $_->{t} } grep { $_->{topic} eq $topic } requests();
	my $failed = $node->safe_psql('shop', 'SELECT extract(epoch FROM last_error_at) FROM txbox.relay_status');
	cmp_ok($failed - $sent, '<', 3, "flood: $name: given up at the timeout, not later");
}
hostile('a trickle, a byte every 100 ms',
	[ { parts => ["HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"], flood => 'x', pause => 0.1 } ], 1, $timeout);
my $peak = peak_kb();
cmp_ok($peak - $peak_before, '<', 32 * 1024, "the worker's peak memory grew by less than 32 MB ("
	  . int(($peak - $peak_before) / 1024) . ' MB)');

# 4. an answer that came to no request: a 503 (Retry-After: 1) followed
# 50 ms later by a 200 on the kept-alive connection, while the relay waits
# to retry: the 200 is not the retry's answer (the retry gets a 500 on a
# new connection, then a 200)
hostile('an answer to no request, between requests',
	[ { parts => [ "HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" ], pause => 0.05, close => JSON::PP::false, status => 503 },
	  { parts => ["HTTP/1.1 500 No\r\nContent-Length: 0\r\n\r\n"], close => JSON::PP::false, status => 500 } ],
	2, qr/^HTTP 500 for message/);

# 5. a 200 before the server had the whole request (8 MB, which no socket
# buffer holds): not a delivery
hostile('a 200 before the whole request',
	[ { parts => [ "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", '' ], pause => 1, early => JSON::PP::true } ],
	1, qr/: the server answered 200 before it had the whole request$/,
	q{jsonb_build_object('seq', i, 'pad', CASE i WHEN 1 THEN repeat('x', 8000000) END)});

# 6. Retry-After: negative or not a date is ignored
hostile('Retry-After -5',
	[ { parts => ["HTTP/1.1 503 Busy\r\nRetry-After: -5\r\nContent-Length: 0\r\n\r\n"] } ],
	1, qr/^HTTP 503 for message [-0-9a-f]{36}: $/);

# no crash, and every message delivered exactly once, each key in order
unlike(slurp_file($node->logfile), qr/terminated by signal|terminating any other active server processes/,
	'no process crashed');
is($node->safe_psql('shop', $worker), $pid, 'the same worker throughout');
{
	my %pos = map { split /\|/ } split /\n/,
	  $node->safe_psql('shop', q{SELECT message_id, id FROM txbox.outbox WHERE topic ~ '^h\d+$'});
	my (%n, %last, $disorder);
	for my $r (grep { $_->{status} == 200 && $_->{topic} =~ /^h\d+$/ } requests())
	{
		$n{ $r->{id} }++;
		$disorder++ if ($last{ $r->{key} } // 0) >= $pos{ $r->{id} };
		$last{ $r->{key} } = $pos{ $r->{id} };
	}
	is(scalar(keys %n), 3 * $topics, 'every message answered 200');
	is(scalar(grep { $_ != 1 } values %n), 0, 'each message answered 200 once');
	is($disorder // 0, 0, 'each key in publish order');
	is($node->safe_psql('shop', 'SELECT delivered, dead_lettered FROM txbox.relay_status'),
		3 * $topics . '|0', 'the relay counts exactly those delivered, nothing dead-lettered');
}

# 7. Retry-After huge: at most an hour (the worker waits it out; a new
# worker does not)
control({ raw => [ { parts => ["HTTP/1.1 503 Busy\r\nRetry-After: 99999999999999\r\nContent-Length: 0\r\n\r\n"] } ] });
$node->safe_psql('shop', q{SELECT txbox.publish('later', '{}')});
poll_ok($node, 'shop', q{SELECT state, last_error LIKE 'HTTP 503 for message % (Retry-After: 3600 s): ' FROM txbox.relay_status},
	'retrying|t', 60, 'Retry-After: at most an hour');
$node->safe_psql('shop', "SELECT pg_terminate_backend(pid, 5000) FROM ($worker) w");
poll_delivered('later', 1, 60, 'delivered by the next worker');

receiver_stop();
$node->stop;
done_testing();
