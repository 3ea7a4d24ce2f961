# Relays deliver every committed message, exactly once into the target's
# inbox, to another database and to another cluster -- through a relay
# worker killed with SIGKILL mid-stream and a source stopped with
# `-m immediate` under a publishing load.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;

my $source = PostgreSQL::Test::Cluster->new('source');
$source->init;
$source->append_conf(
	'postgresql.conf', qq{max_worker_processes = 32
restart_after_crash = on
log_statement = none
});
$source->start;

my $remote = PostgreSQL::Test::Cluster->new('remote');
$remote->init;
$remote->start;

$source->safe_psql('postgres', 'CREATE DATABASE shop');
$source->safe_psql('postgres', 'CREATE DATABASE billing');
$source->safe_psql('billing', 'CREATE EXTENSION txbox');
$remote->safe_psql('postgres', 'CREATE EXTENSION txbox');

my ($shost, $sport, $rhost, $rport) =
  ($source->host, $source->port, $remote->host, $remote->port);
$source->safe_psql(
	'shop', qq{
	CREATE EXTENSION txbox;
	CREATE SERVER billing FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host '$shost', port '$sport', dbname 'billing');
	CREATE USER MAPPING FOR CURRENT_USER SERVER billing;
	CREATE SERVER remote FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host '$rhost', port '$rport', dbname 'postgres');
	CREATE USER MAPPING FOR CURRENT_USER SERVER remote;
	SELECT txbox.create_relay('to_billing', 'postgres', ARRAY['orders'],
							  '{"server": "billing", "backoff_max": "1s"}');
	SELECT txbox.create_relay('to_remote', 'postgres', NULL,
							  '{"server": "remote", "backoff_max": "1s"}');
});

# workers show up under clear names
ok( $source->poll_query_until(
		'postgres', q{SELECT count(*) = 2 FROM pg_stat_activity
					  WHERE backend_type = 'txbox relay' AND datname = 'shop'
						AND application_name IN ('txbox relay to_billing', 'txbox relay to_remote')}),
	'one relay worker per relay, named in pg_stat_activity');
is( $source->safe_psql(
		'postgres', q{SELECT count(*) FROM pg_stat_activity
					  WHERE backend_type = 'txbox manager' AND datname IN ('shop', 'billing')}),
	'2', 'a manager in every database with txbox');

# Everything in the source's outbox (committed) is exactly what a target
# holds: no message missing, none twice.
sub outbox_ids
{
	my ($topic_filter) = @_;
	return $source->safe_psql('shop',
		"SELECT string_agg(message_id::text, ',' ORDER BY message_id) FROM txbox.outbox $topic_filter");
}

sub wait_delivered
{
	my ($node, $db, $expected, $what) = @_;
	my $n = () = $expected =~ /,/g;
	$n = $expected eq '' ? 0 : $n + 1;
	ok($node->poll_query_until($db, "SELECT count(*) >= $n FROM txbox.inbox"),
		"$what: $n messages arrive");
	is( $node->safe_psql(
			$db, q{SELECT count(*) = count(DISTINCT message_id) FROM txbox.inbox}),
		't', "$what: no message twice");
	is( $node->safe_psql(
			$db, q{SELECT string_agg(message_id::text, ',' ORDER BY message_id) FROM txbox.inbox}),
		$expected, "$what: exactly the committed messages");
}

# 1. 10,000 messages, to another database and to another cluster
$source->safe_psql('shop',
	q{SELECT txbox.publish(CASE WHEN g % 10 = 0 THEN 'audit' ELSE 'orders' END,
						   jsonb_build_object('n', g), 'k' || (g % 200))
	  FROM generate_series(1, 10000) g});
$source->safe_psql('shop',
	q{SELECT txbox.publish_bytes('orders', '\x00ff00'::bytea, 'bin')});
# every column as published: no key, headers, non-ASCII text, payloads
# compressed and stored out of line (TOAST), an empty bytea
$source->safe_psql('shop',
	q{SELECT txbox.publish('orders', '{"a": "ü€", "b": [1, 2.50, null]}', NULL,
						   headers => '{"traceparent": "00-abc-01", "x-q": "a\"b"}');
	  SELECT txbox.publish('orders', jsonb_build_object('big', repeat('x', 300000)), 'big');
	  SELECT txbox.publish('orders', jsonb_build_object('r', string_agg(md5(g::text), '')), 'rnd')
		FROM generate_series(1, 3000) g;
	  SELECT txbox.publish_bytes('orders', ''::bytea, 'empty');
	  SELECT txbox.publish_bytes('orders', decode(string_agg(md5(g::text), ''), 'hex'), 'rndb')
		FROM generate_series(1, 5000) g;});
wait_delivered($source, 'billing', outbox_ids("WHERE topic = 'orders'"),
	'other database, topic filter');
wait_delivered($remote, 'postgres', outbox_ids(''), 'other cluster');
# the transaction's pages (read run by run, the other topic's messages in
# between left out) arrive in publish order
is( $source->safe_psql('billing',
		q{SELECT string_agg(message_id::text, ',' ORDER BY seq) FROM txbox.inbox}),
	$source->safe_psql('shop',
		q{SELECT string_agg(message_id::text, ',' ORDER BY id) FROM txbox.outbox WHERE topic = 'orders'}),
	'other database: in publish order');
is( $remote->safe_psql(
		'postgres', q{SELECT payload_bytes FROM txbox.inbox WHERE key = 'bin'}),
	'\x00ff00', 'binary payload delivered byte-exact');
my $columns = q{SELECT md5(string_agg(concat_ws('|', message_id, topic, coalesce(key, '<null>'),
	coalesce(headers::text, '<null>'), coalesce(payload::text, '<null>'),
	coalesce(encode(payload_bytes, 'hex'), '<null>'), published_at), ',' ORDER BY message_id))};
is($remote->safe_psql('postgres', "$columns FROM txbox.inbox"),
	$source->safe_psql('shop', "$columns FROM txbox.outbox"),
	'every column delivered as published');
is( $source->safe_psql(
		'shop', q{SELECT string_agg(name || ':' || state || ':' || lag_messages || ':' || delivered, ' ' ORDER BY name)
				  FROM txbox.relay_status}),
	'to_billing:running:0:9006 to_remote:running:0:10006',
	'relay_status: running, no lag, delivered counts');

# 2. SIGKILL the relay worker mid-stream (the postmaster restarts every
#    process): what committed is delivered, duplicates are dropped.
my $pgbench_script = $source->basedir . '/publish.sql';
PostgreSQL::Test::Utils::append_to_file($pgbench_script,
	q{SELECT txbox.publish('orders', jsonb_build_object('c', :client_id), 'k' || :client_id);});
my $load = IPC::Run::start(
	[
		'pgbench', '-n', '-c', '4', '-T', '30', '-f', $pgbench_script,
		'-h', $shost, '-p', $sport, 'shop'
	],
	'>', \my $pgbench_out, '2>', \my $pgbench_err);
ok( $source->poll_query_until(
		'shop', q{SELECT delivered > 9006 + 500 FROM txbox.relay_status WHERE name = 'to_billing'}),
	'relay delivers under load');
my $relay_pid = $source->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'txbox relay' AND application_name = 'txbox relay to_billing'});
kill 'KILL', $relay_pid;
$load->finish;    # the crash restart ends pgbench's connections
ok( $source->poll_query_until(
		'postgres', q{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'txbox relay'}),
	'relay workers are back after the crash restart');
wait_delivered($source, 'billing', outbox_ids("WHERE topic = 'orders'"),
	'after SIGKILL of the relay');
wait_delivered($remote, 'postgres', outbox_ids(''), 'other cluster, after SIGKILL');

# 3. Immediate stop of the source under load: every message whose COMMIT
#    returned to the client is delivered; none from rolled-back transactions.
my $sql = '';
for my $i (1 .. 200000)
{
	if ($i % 10 == 0)
	{
		$sql .= "BEGIN; SELECT txbox.publish('orders', '{\"i\": $i, \"aborted\": true}'); ROLLBACK;\n";
	}
	else
	{
		$sql .= "SELECT txbox.publish('orders', '{\"i\": $i}') IS NOT NULL AS ack_$i;\n";
	}
}
my $sqlfile = $source->basedir . '/load.sql';
PostgreSQL::Test::Utils::append_to_file($sqlfile, $sql);
my $acks = '';
my $psql = IPC::Run::start(
	[ 'psql', '-X', '-A', '-t', '-h', $shost, '-p', $sport, '-d', 'shop', '-f', $sqlfile ],
	'>', \$acks, '2>', \my $psql_err);
ok( $source->poll_query_until(
		'shop', q{SELECT count(*) > 300 FROM txbox.outbox WHERE payload ? 'i'}),
	'publishing load running');
$source->stop('immediate');
$psql->finish;
my @acked = ($acks =~ /^t$/mg);
ok(scalar(@acked) > 300, 'clients got acknowledgements before the stop (' . scalar(@acked) . ')');
$source->start;

# the client saw COMMIT (autocommit) return for the first @acked statements
my $acked_n = scalar(@acked);
my $last_acked = int(($acked_n - 1) / 9) * 10 + (($acked_n - 1) % 9) + 1;
ok( $remote->poll_query_until(
		'postgres', qq{SELECT count(*) = 9 * ($last_acked / 10) + $last_acked % 10
					   FROM txbox.inbox WHERE payload ? 'i' AND (payload->>'i')::int <= $last_acked}),
	"every acknowledged message (up to i = $last_acked) is delivered after the restart");
is($remote->safe_psql('postgres', q{SELECT count(*) FROM txbox.inbox WHERE payload ? 'aborted'}),
	'0', 'no message of a rolled-back transaction is delivered');
wait_delivered($remote, 'postgres', outbox_ids(''), 'other cluster, after an immediate stop');
wait_delivered($source, 'billing', outbox_ids("WHERE topic = 'orders'"),
	'other database, after an immediate stop');

# 4. The notify target: NOTIFY with the message as JSON, in commit order.
$source->safe_psql('shop',
	q{SELECT txbox.create_relay('events', 'notify', ARRAY['shipping'], '{"channel": "shipping_events"}')});
my $listen = IPC::Run::start(
	[
		'psql', '-X', '-h', $shost, '-p', $sport, '-d', 'shop',
		'-c', 'LISTEN shipping_events', '-c', 'SELECT pg_sleep(4)'
	],
	'>', \my $listen_out, '2>', \my $listen_err);
ok( $source->poll_query_until(
		'shop', q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(4)'})
	  && $source->poll_query_until(
		'shop', q{SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'txbox relay events'}),
	'listener and notify relay ready');
$source->safe_psql('shop',
	q{SELECT txbox.publish('shipping', jsonb_build_object('parcel', g), 'p' || g) FROM generate_series(1, 3) g;
	  SELECT txbox.publish_bytes('shipping', '\x0102'::bytea, 'bin');
	  SELECT txbox.publish('shipping', jsonb_build_object('big', repeat('x', 9000)), 'big');});
$listen->finish;
my @notes = ($listen_out =~ /Asynchronous notification "shipping_events" with payload "(.*)" received/g);
is(scalar(@notes), 5, 'one notification per message');
like($notes[0], qr/"key": "p1".*"payload": \{"parcel": 1\}/, 'first message, as JSON');
like($notes[2], qr/"payload": \{"parcel": 3\}/, 'publish order kept');
like($notes[3], qr/"payload_base64": "AQI="/, 'binary payload base64-encoded');
like($notes[4], qr/"payload_omitted": true/, 'a payload too large for NOTIFY is omitted');
unlike($notes[4], qr/xxxx/, 'without its payload');

$source->stop;
$remote->stop;
done_testing();
