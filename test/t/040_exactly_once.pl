# Exactly-once processing end to end: a publishing load (pgbench, 8
# clients, over 100,000 messages on 200 keys, each carrying its key's
# sequence number, some from transactions that roll back) relayed from one
# cluster to another and consumed there by a handler (parallel 2) that
# writes an effects table and raises if its key's sequence goes backwards.
# During the run the relay worker is killed with SIGKILL, then a handler
# worker, and the target cluster is stopped with -m immediate and started
# again.  At the end effects holds exactly one row per committed message
# (none missing, none doubled), each key's sequence strictly increases, and
# no message of a rolled-back transaction appears.  A poison message (the
# handler raises for it) ends as a dead letter after max_attempts while its
# key's later messages wait and the other keys flow; replayed after the
# handler is fixed, its key drains in order.  Then a smaller run with both
# databases in one cluster, through a SIGKILL of its handler worker.  Last,
# asynchronous commit at the source: a transaction that a crash loses must
# not have been delivered.
#
# The loads publish with synchronous_commit = on: TAP clusters run with
# fsync = off, so it costs little, and with it a crash restart of the
# source cannot lose a transaction whose message the relay already read
# (section 6 shows what happens otherwise).  That acknowledged commits
# survive an immediate stop is tested in 010_relay_delivery.pl.
use strict;
use warnings;
use List::Util qw(max);
use POSIX qw(ceil);
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;
use TxboxTest;

my $t_start = time();


# wait_for(node, db, query, seconds): like poll_ok for a query printing t,
# without a test of its own; returns whether it did in time.
sub wait_for
{
	my ($node, $db, $query, $secs) = @_;
	my $deadline = time() + $secs;
	for (;;)
	{
		my ($out, $err) = ('', '');
		my $ret = $node->psql($db, $query, stdout => \$out, stderr => \$err);
		return 1 if defined $ret && $ret == 0 && $out eq 't';
		return 0 if time() > $deadline;
		usleep(100_000);
	}
}

my $nkeys = 200;

######################################################################
# Setup
######################################################################

my $common_conf = qq{max_worker_processes = 16
restart_after_crash = on
log_statement = none
};

# The tests' role is named like txbox's schema, so "$user" in the default
# search_path is txbox's schema: our own tables go in public explicitly.

# Target cluster: database billing, a handler writing effects.
my $target = PostgreSQL::Test::Cluster->new('target');
$target->init;
$target->append_conf('postgresql.conf', $common_conf);
$target->start;
$target->safe_psql('postgres', 'CREATE DATABASE billing');

# The handler: one effects row per message; raises if the message's
# sequence number is not above every number its key already has (the
# runtime check of the issue), and for a poison message (until fixed).
my $handler_body = q{
	DECLARE
		mk int := (m.payload->>'k')::int;
		mn int := (m.payload->>'n')::int;
		last_n int;
	BEGIN
		__CHECK__
		SELECT max(e.n) INTO last_n FROM public.effects e WHERE e.k = mk;
		IF mn <= last_n THEN
			RAISE EXCEPTION 'sequence of key % went backwards: % after %', mk, mn, last_n;
		END IF;
		INSERT INTO public.effects (message_id, k, n) VALUES (m.message_id, mk, mn);
	END
};
my $poison_check = q{IF m.payload ? 'poison' THEN
			RAISE EXCEPTION 'poison message % refused', m.message_id;
		END IF;};

sub handler_sql
{
	my ($check) = @_;
	(my $body = $handler_body) =~ s/__CHECK__/$check/;
	return q{CREATE OR REPLACE FUNCTION public.apply(m txbox.message) RETURNS void
		LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$} . $body . q{$f$;};
}

# consumer side of a run: effects (ord: processing order) and the handler,
# public.apply(txbox.message) or public.apply_window(txbox.message[]) (a
# window of messages per call, each applied in order)
sub setup_consumer
{
	my ($node, $db, $topic, $options, $function) = @_;
	$node->safe_psql(
		$db, qq{
		CREATE EXTENSION txbox;
		CREATE TABLE public.effects (ord bigserial PRIMARY KEY, message_id uuid NOT NULL,
							  k int NOT NULL, n int NOT NULL);
		CREATE INDEX ON public.effects (k, n);
		CREATE INDEX ON public.effects (message_id);
		} . handler_sql($poison_check) . q{
		CREATE FUNCTION public.apply_window(ms txbox.message[]) RETURNS void
		LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
		DECLARE
			m txbox.message;
		BEGIN
			FOREACH m IN ARRAY ms LOOP
				PERFORM public.apply(m);
			END LOOP;
		END $f$;
		} . qq{
		SELECT txbox.create_handler('apply', ARRAY['$topic'], '$function', '$options');
	});
}

setup_consumer($target, 'billing', 'orders',
	'{"parallel": 2, "max_attempts": 3, "backoff": "1s"}', 'public.apply(txbox.message)');

# SQL for shop: a server for database db at host:port (named after db), a
# user mapping, and a relay name of topic to it
sub relay_sql
{
	my ($name, $topic, $host, $port, $db) = @_;
	return qq{
	CREATE SERVER $db FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host '$host', port '$port', dbname '$db');
	CREATE USER MAPPING FOR CURRENT_USER SERVER $db;
	SELECT txbox.create_relay('$name', 'postgres', ARRAY['$topic'],
							  '{"server": "$db", "backoff_max": "1s"}');};
}

# Source cluster: database shop, per-key sequence numbers, the relay.
# Retention of delivered messages 1 h: the outbox is the record of what
# committed, compared with the effects at the end.
my $source = PostgreSQL::Test::Cluster->new('source');
$source->init;
$source->append_conf('postgresql.conf', $common_conf . qq{txbox.outbox_retention = '1h'\n});
$source->start;
$source->safe_psql('postgres', 'CREATE DATABASE shop');
my ($shost, $sport, $thost, $tport) =
  ($source->host, $source->port, $target->host, $target->port);
$source->safe_psql(
	'shop', qq{
	CREATE EXTENSION txbox;
	-- the next sequence number of each key, per run (topic); the row lock
	-- serializes the writers of a key, so numbers follow commit order
	CREATE TABLE public.keyseq (topic text, k int, n int NOT NULL DEFAULT 0, PRIMARY KEY (topic, k));
	INSERT INTO public.keyseq (topic, k) SELECT t, k
	  FROM unnest(ARRAY['orders', 'orders_local']) t, generate_series(1, $nkeys) k;
	-- counts rolled-back publishing transactions (sequences do not roll back)
	CREATE SEQUENCE public.aborted_tx;
} . relay_sql('to_billing', 'orders', $thost, $tport, 'billing'));

ok( $target->poll_query_until(
		'billing', q{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'txbox handler'}),
	'the handler runs two workers (parallel 2)');
ok( $source->poll_query_until(
		'shop', q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'txbox relay'}),
	'the relay runs');

# pgbench scripts of a run: 9 in 10 transactions take their key's next
# number and publish it; 1 in 10 do the same and roll back (a rolled-back
# UPDATE does not consume the number).
sub pgbench_scripts
{
	my ($topic) = @_;
	my $commit = $source->basedir . "/commit_$topic.sql";
	my $abort = $source->basedir . "/abort_$topic.sql";
	unlink $commit, $abort;
	append_to_file(
		$commit, qq{\\set k random(1, $nkeys)
BEGIN;
UPDATE public.keyseq SET n = n + 1 WHERE topic = '$topic' AND k = :k RETURNING n \\gset
SELECT txbox.publish('$topic', jsonb_build_object('k', :k, 'n', :n), 'k' || :k);
COMMIT;
});
	append_to_file(
		$abort, qq{\\set k random(1, $nkeys)
BEGIN;
UPDATE public.keyseq SET n = n + 1 WHERE topic = '$topic' AND k = :k RETURNING n \\gset
SELECT nextval('public.aborted_tx');
SELECT txbox.publish('$topic', jsonb_build_object('k', :k, 'n', :n, 'aborted', true), 'k' || :k);
ROLLBACK;
});
	return ("$commit\@9", "$abort\@1");
}

# tx_per_client transactions per client; or, with 'until the crash', a
# load that goes on until a crash restart of the source ends its
# connections (10 minutes at most): a fixed count may run out before the
# crash on a slow machine, and then the crash happens after the load
sub start_pgbench
{
	my ($topic, $tx_per_client, $out) = @_;
	my @limit = $tx_per_client eq 'until the crash' ? ('-T', '600') : ('-t', $tx_per_client);
	local $ENV{PGAPPNAME} = 'txbox_load';
	return IPC::Run::start(
		[
			'pgbench', '-n', '-c', '8', '-j', '2', @limit,
			(map { ('-f', $_) } pgbench_scripts($topic)),
			'-h', $shost, '-p', $sport, 'shop'
		],
		'>', $out, '2>&1');
}

# messages of topic committed so far (the sum of the keys' numbers)
sub committed
{
	my ($topic) = @_;
	return $source->safe_psql('shop', "SELECT sum(n) FROM keyseq WHERE topic = '$topic'");
}

# pgbench is still connected: an event happens during the load
sub load_running
{
	return $source->safe_psql('shop',
		q{SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'txbox_load'}) eq 't';
}

sub effects_count
{
	my ($node, $db) = @_;
	return $node->safe_psql($db, 'SELECT count(*) FROM effects');
}

# Exactly once: the committed messages of topic in the source's outbox
# against the effects in node/db.
sub check_exactly_once
{
	my ($node, $db, $topic, $what) = @_;
	my $file = $source->basedir . "/expected_$topic.copy";
	unlink $file;
	$source->safe_psql('shop',
		"COPY (SELECT message_id, (payload->>'k')::int, (payload->>'n')::int FROM txbox.outbox
			   WHERE topic = '$topic') TO '$file'");
	$node->safe_psql(
		$db, qq{CREATE TABLE public.expected (message_id uuid PRIMARY KEY, k int, n int);
				COPY public.expected FROM '$file'; ANALYZE public.expected;});
	my $n = $node->safe_psql($db, 'SELECT count(*) FROM expected');
	is( $n,
		$source->safe_psql('shop', "SELECT sum(n) FROM keyseq WHERE topic = '$topic'"),
		"$what: the outbox holds every committed message ($n)");
	is( $node->safe_psql(
			$db, q{SELECT count(*) FILTER (WHERE e.message_id IS NULL) || ' missing, '
					|| count(*) FILTER (WHERE x.message_id IS NULL) || ' not committed'
					FROM expected x FULL JOIN (SELECT DISTINCT message_id FROM effects) e USING (message_id)}),
		'0 missing, 0 not committed',
		"$what: an effect for every committed message and for nothing else");
	is( $node->safe_psql(
			$db, q{SELECT count(*) - count(DISTINCT message_id) FROM effects}),
		'0', "$what: no message has two effects");
	is( $node->safe_psql(
			$db, q{SELECT count(*) FROM effects e JOIN expected x USING (message_id)
				   WHERE (e.k, e.n) IS DISTINCT FROM (x.k, x.n)}),
		'0', "$what: each effect carries its message's key and number");
	is( $node->safe_psql(
			$db, q{SELECT count(*) FROM (SELECT n, lag(n) OVER (PARTITION BY k ORDER BY ord) AS prev
										 FROM effects) s WHERE n <= prev}),
		'0', "$what: per key, the numbers strictly increase in processing order");
	is( $node->safe_psql(
			$db, q{SELECT count(*) || ' keys, ' || count(*) FILTER (WHERE lo <> 1 OR hi <> c) || ' with gaps'
				   FROM (SELECT k, count(*) c, min(n) lo, max(n) hi FROM effects GROUP BY k) s}),
		"$nkeys keys, 0 with gaps",
		"$what: every key's numbers run 1, 2, 3, ... without a gap");
	is( $node->safe_psql(
			$db, qq{SELECT count(*) FROM (SELECT (payload->>'n')::int AS n,
					lag((payload->>'n')::int) OVER (PARTITION BY key ORDER BY seq) AS prev
					FROM txbox.inbox WHERE topic = '$topic') s WHERE n <= prev}),
		'0', "$what: per key, the relay delivered in commit order (inbox arrival order)");
	is( $node->safe_psql(
			$db, qq{SELECT count(*) FROM txbox.inbox WHERE topic = '$topic' AND payload ? 'aborted'}),
		'0', "$what: no message of a rolled-back transaction arrived");
	is( $node->safe_psql(
			$db, qq{SELECT count(*) || ' ' || count(DISTINCT message_id) FROM txbox.inbox
					WHERE topic = '$topic'}),
		"$n $n", "$what: the inbox holds each committed message once");
	return $n;
}

######################################################################
# 1. A poison message, before the load: dead letter after max_attempts
######################################################################

# publish a poison message as key 7's next message of topic; its id
sub publish_poison
{
	my ($topic) = @_;
	return $source->safe_psql(
		'shop', qq{WITH s AS (UPDATE keyseq SET n = n + 1 WHERE topic = '$topic' AND k = 7 RETURNING n)
				   SELECT txbox.publish('$topic', jsonb_build_object('k', 7, 'n', n, 'poison', true), 'k7')
				   FROM s});
}

my $poison = publish_poison('orders');
poll_ok($target, 'billing', q{SELECT count(*) FROM txbox.dead_letters}, '1', 30,
	'the poison message becomes a dead letter');
is( $target->safe_psql(
		'billing', q{SELECT handler || ' ' || message_id || ' ' || key || ' ' || attempts || ' '
					 || (last_error LIKE 'poison message % refused')
					 FROM txbox.dead_letters}),
	"apply $poison k7 3 true",
	'dead letter: the handler, the poison message, after max_attempts (3), with the handler\'s error');
is( $target->safe_psql(
		'billing', q{SELECT state || ' ' || retried || ' ' || dead_lettered || ' ' || failing || ' '
					 || lag_messages FROM txbox.handler_status}),
	'blocked 3 1 1 1', 'handler_status: blocked by it, 3 attempts, 1 dead letter');
is($target->safe_psql('billing', 'SELECT count(*) FROM effects'), '0', 'the poison message had no effect');

######################################################################
# 2. The load, through SIGKILL of the relay worker (which restarts the
#    whole source cluster and ends pgbench's connections), SIGKILL of a
#    handler worker (the target restarts) and an immediate stop of the
#    target.
######################################################################

my $aborted_before = $source->safe_psql('shop',
	'SELECT last_value + CASE WHEN is_called THEN 0 ELSE -1 END FROM aborted_tx');

# phase 1: until the relay worker is killed
my $out1 = '';
my $t_load = time();
my $load = start_pgbench('orders', 'until the crash', \$out1);
ok( wait_for($source, 'shop', q{SELECT sum(n) >= 10000 FROM keyseq WHERE topic = 'orders'}, 120)
	  && wait_for($target, 'billing', 'SELECT count(*) >= 1000 FROM effects', 60),
	'load: messages flow to the handler');
ok(load_running(), 'the relay worker is killed during the load');
my $relay_pid = $source->safe_psql('shop',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'txbox relay'
	  AND application_name = 'txbox relay to_billing'});
note "killing relay worker $relay_pid after " . committed('orders') . ' messages committed';
kill 'KILL', $relay_pid;
$load->finish;    # the crash restart ends pgbench's connections
ok( wait_for(
		$source, 'shop', qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'txbox relay'
							AND pid <> $relay_pid}, 60),
	'the source restarted after the crash, its relay runs again');

# phase 2: the rest of the load, so that over 100,000 messages commit in
# all (9 in 10 transactions commit: aim at 102,000, twenty standard
# deviations above)
my $done1 = committed('orders');
my $tx_per_client = ceil((102_000 - $done1) / 0.9 / 8);
note "phase 1 committed $done1 messages; phase 2: 8 x $tx_per_client transactions";
my $out2 = '';
$load = start_pgbench('orders', $tx_per_client, \$out2);

# each event once the load went on by 20,000 more messages, and the
# handler made progress since the previous one
my $effects = effects_count($target, 'billing');
ok( wait_for($source, 'shop', 'SELECT sum(n) >= ' . ($done1 + 20_000) . q{ FROM keyseq WHERE topic = 'orders'}, 120)
	  && wait_for($target, 'billing', 'SELECT count(*) >= ' . ($effects + 1000) . ' FROM effects', 60),
	'load resumed: messages flow again');
ok(load_running(), 'a handler worker is killed during the load');
my $handler_pid = $target->safe_psql('billing',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'txbox handler' ORDER BY pid LIMIT 1});
note 'killing handler worker ' . $handler_pid;
kill 'KILL', $handler_pid;
ok( wait_for(
		$target, 'billing', qq{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'txbox handler'
							   AND pid <> $handler_pid}, 60),
	'the target restarted after the crash, both handler workers run again');

$effects = effects_count($target, 'billing');
ok( wait_for($source, 'shop', 'SELECT sum(n) >= ' . ($done1 + 40_000) . q{ FROM keyseq WHERE topic = 'orders'}, 120)
	  && wait_for($target, 'billing', 'SELECT count(*) >= ' . ($effects + 1000) . ' FROM effects', 60),
	'messages flow after the handler crash');
ok(load_running(), 'the target is stopped with -m immediate during the load');
$target->stop('immediate');
$target->start;

ok($load->finish, 'phase 2 of the load completed without an error') or diag $out2;
my $load_secs = time() - $t_load;
my $committed = committed('orders');
cmp_ok($committed, '>=', 100_000, "over 100,000 messages committed ($committed)");
my $aborted = $source->safe_psql('shop',
	'SELECT last_value + CASE WHEN is_called THEN 0 ELSE -1 END FROM aborted_tx') - $aborted_before;
cmp_ok($aborted, '>', 5000, "and thousands of publishing transactions rolled back (about $aborted)");
note sprintf('load: %.1f s', $load_secs);

######################################################################
# 3. Everything delivered and processed, but the poison's key waits
######################################################################

my $k7 = $source->safe_psql('shop', q{SELECT n FROM keyseq WHERE topic = 'orders' AND k = 7});
poll_ok($source, 'shop',
	q{SELECT state || ' ' || lag_messages FROM txbox.relay_status WHERE name = 'to_billing'},
	'running 0', 120, 'the relay delivered everything');
poll_ok(
	$target, 'billing',
	q{SELECT count(*) FROM effects},
	$committed - $k7, 120, 'the other keys flowed: every message of the other 199 keys has its effect');
note sprintf('drained after %.1f s', time() - $t_load);
is( $target->safe_psql(
		'billing', q{SELECT state || ' ' || lag_messages || ' ' || retried || ' ' || dead_lettered
					 FROM txbox.handler_status}),
	"blocked $k7 3 1",
	"the poison's key waits: its $k7 messages are the handler's lag; no other attempt failed");
is( $target->safe_psql(
		'billing', q{SELECT count(*) || ' ' || count(*) FILTER (WHERE payload ? 'poison')
					 FROM txbox.inbox i WHERE key = 'k7'
					 AND NOT EXISTS (SELECT 1 FROM effects e WHERE e.message_id = i.message_id)}),
	"$k7 1", 'all of them wait in the inbox, with the poison message');
is($target->safe_psql('billing', q{SELECT count(*) FROM effects WHERE k = 7}),
	'0', 'no effect for the poison\'s key');
is( $target->safe_psql(
		'billing', q{SELECT count(*) || ' ' || count(*) FILTER (WHERE dead) FROM txbox.handler_failures}),
	'1 1', 'the poison message is the only failure of the handler');

######################################################################
# 4. Fix the handler, replay the dead letter: the key drains in order
######################################################################

$target->safe_psql('billing', handler_sql(''));
is( $target->safe_psql(
		'billing', q{SELECT txbox.replay_dead_letter(dead_letter_id) FROM txbox.dead_letters}),
	$poison, 'replay_dead_letter returns the poison message id');
poll_ok(
	$target, 'billing',
	q{SELECT state || ' ' || lag_messages || ' ' || failing FROM txbox.handler_status},
	'running 0 0', 60, 'after the replay the handler has nothing left');
is($target->safe_psql('billing', q{SELECT count(*) FROM effects WHERE k = 7}),
	$k7, "the poison's key drained: $k7 effects");
is( $target->safe_psql(
		'billing', q{SELECT string_agg(n::text, ',' ORDER BY ord) = string_agg(g::text, ',' ORDER BY g)
					 FROM (SELECT n, ord, row_number() OVER (ORDER BY ord) g FROM effects WHERE k = 7) s}),
	't', "the poison's key drained in order, the poison message first");
is( $target->safe_psql(
		'billing', q{SELECT retried || ' ' || dead_lettered || ' '
					 || (SELECT count(*) FROM txbox.dead_letters WHERE replayed_at IS NOT NULL)
					 || ' ' || (SELECT count(*) FROM txbox.dead_letters)
					 FROM txbox.handler_status}),
	'3 1 1 1', 'no retry other than the poison\'s; its dead letter is marked replayed');

check_exactly_once($target, 'billing', 'orders', 'two clusters');
note sprintf('two-cluster run done after %.1f s', time() - $t_start);

######################################################################
# 5. Both databases in one cluster: a smaller load through SIGKILL of the
#    handler worker (which restarts that whole cluster, publishers too),
#    with a handler that takes a window of messages per call.  A poison
#    message fails the whole window: its messages are tried again one at
#    a time, so the poison message alone becomes a dead letter, its key
#    waits and the others flow.
######################################################################

$source->safe_psql('postgres', 'CREATE DATABASE billing_local');
setup_consumer($source, 'billing_local', 'orders_local',
	'{"parallel": 2, "max_attempts": 3, "backoff": "1s"}', 'public.apply_window(txbox.message[])');
$source->safe_psql('shop', relay_sql('to_local', 'orders_local', $shost, $sport, 'billing_local'));
ok( $source->poll_query_until(
		'billing_local',
		q{SELECT count(*) = 2 FROM pg_stat_activity
		  WHERE backend_type = 'txbox handler' AND datname = 'billing_local'}),
	'one cluster: the handler runs');

my $poison_local = publish_poison('orders_local');
my $out3 = '';
$load = start_pgbench('orders_local', 'until the crash', \$out3);
ok( wait_for($source, 'shop', q{SELECT sum(n) >= 2000 FROM keyseq WHERE topic = 'orders_local'}, 60)
	  && wait_for($source, 'billing_local', 'SELECT count(*) >= 500 FROM effects', 60),
	'one cluster: messages flow');
ok(load_running(), 'one cluster: the handler worker is killed during the load');
$handler_pid = $source->safe_psql('billing_local',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'txbox handler'
	  AND datname = 'billing_local' ORDER BY pid LIMIT 1});
kill 'KILL', $handler_pid;
$load->finish;    # the crash restart ends pgbench's connections
ok( wait_for(
		$source, 'billing_local',
		qq{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'txbox handler'
		   AND datname = 'billing_local' AND pid <> $handler_pid}, 60),
	'one cluster: restarted after the crash, the handler runs again');
$done1 = committed('orders_local');
$load = start_pgbench('orders_local', max(1, ceil((10_500 - $done1) / 0.9 / 8)), \$out3);
ok($load->finish, 'one cluster: the rest of the load completed without an error') or diag $out3;
$committed = committed('orders_local');
cmp_ok($committed, '>=', 10_000, "one cluster: over 10,000 messages committed ($committed)");
poll_ok($source, 'shop',
	q{SELECT state || ' ' || lag_messages FROM txbox.relay_status WHERE name = 'to_local'},
	'running 0', 60, 'one cluster: the relay delivered everything');
$k7 = $source->safe_psql('shop', q{SELECT n FROM keyseq WHERE topic = 'orders_local' AND k = 7});
poll_ok(
	$source, 'billing_local',
	q{SELECT state || ' ' || lag_messages || ' ' || retried || ' ' || dead_lettered || ' '
	  || (SELECT count(*) FROM effects) FROM txbox.handler_status},
	"blocked $k7 3 1 " . ($committed - $k7), 60,
	"one cluster, windows: the other keys flowed; the poison's key waits, its message failed 3 times");
is( $source->safe_psql(
		'billing_local', q{SELECT message_id || ' ' || attempts || ' ' || (last_error LIKE 'poison message % refused')
						   || ' ' || (SELECT count(*) FROM txbox.handler_failures) FROM txbox.dead_letters}),
	"$poison_local 3 true 1",
	'one cluster, windows: the poison message alone is a dead letter, with its own error');
$source->safe_psql('billing_local', handler_sql(''));
$source->safe_psql('billing_local', q{SELECT txbox.replay_dead_letter(dead_letter_id) FROM txbox.dead_letters});
poll_ok(
	$source, 'billing_local',
	q{SELECT state || ' ' || lag_messages || ' ' || failing FROM txbox.handler_status},
	'running 0 0', 60, 'one cluster, windows: after the replay the handler has nothing left');
check_exactly_once($source, 'billing_local', 'orders_local', 'one cluster');

note sprintf('one-cluster run done after %.1f s', time() - $t_start);

######################################################################
# 6. Asynchronous commit at the source.  A transaction that committed with
#    synchronous_commit = off is visible before its commit record reaches
#    the WAL on disk, and a crash restart (here: SIGKILL of the relay
#    worker) within wal_writer_delay loses it: after recovery it never
#    committed.  Its message must not have been delivered then (relayed if
#    and only if the transaction commits).  wal_writer_delay = 10s keeps
#    such commits off the disk for a while.
######################################################################

$source->safe_psql(
	'shop', q{SELECT txbox.create_relay('to_billing_async', 'postgres', ARRAY['async'],
			  '{"server": "billing", "backoff_max": "1s"}')});
$source->safe_psql('postgres', q{ALTER SYSTEM SET wal_writer_delay = '10s'; SELECT pg_reload_conf();});
my $async_worker = q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'txbox relay'
					 AND application_name = 'txbox relay to_billing_async'};
ok(wait_for($source, 'shop', $async_worker, 30), 'asynchronous commit: the relay runs');
my $lost_here = 0;
for my $i (1 .. 3)
{
	my $id = $source->safe_psql('shop',
		qq{SET synchronous_commit = off; SELECT txbox.publish('async', '{"i": $i}')});
	# give the relay (woken at commit) time to deliver it, then crash
	wait_for($target, 'billing', "SELECT count(*) = 1 FROM txbox.inbox WHERE message_id = '$id'", 3);
	my $pid = $source->safe_psql('shop',
		q{SELECT pid FROM pg_stat_activity WHERE application_name = 'txbox relay to_billing_async'});
	kill 'KILL', $pid;
	ok(wait_for($source, 'shop', $async_worker . " AND (SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid)", 60),
		"asynchronous commit: crash restart $i done, the relay runs again");
	$lost_here++
	  if $source->safe_psql('shop', "SELECT count(*) FROM txbox.outbox WHERE message_id = '$id'") eq '0';
}
$source->safe_psql('postgres', q{ALTER SYSTEM RESET wal_writer_delay; SELECT pg_reload_conf();});
note "asynchronous commit: the crashes lost $lost_here of 3 published transactions at the source";
poll_ok($source, 'shop',
	q{SELECT state || ' ' || lag_messages FROM txbox.relay_status WHERE name = 'to_billing_async'},
	'running 0', 30, 'asynchronous commit: the relay delivered what the source kept');
my $async_ids = $source->safe_psql('shop',
	q{SELECT array_agg(message_id ORDER BY message_id)::text FROM txbox.outbox WHERE topic = 'async'});
$async_ids = '{}' if $async_ids eq '';
is( $target->safe_psql(
		'billing', qq{SELECT count(*) FILTER (WHERE message_id <> ALL ('$async_ids'::uuid[])) || ' delivered but lost, '
					  || count(*) FILTER (WHERE message_id = ANY ('$async_ids'::uuid[])) || ' kept'
					  FROM txbox.inbox WHERE topic = 'async'}),
	'0 delivered but lost, ' . (3 - $lost_here) . ' kept',
	'asynchronous commit: no message of a transaction lost in a crash was delivered');

note sprintf('total %.1f s', time() - $t_start);
$source->stop;
$target->stop;
done_testing();
