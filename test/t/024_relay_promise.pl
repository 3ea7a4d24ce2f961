# Relay promises (issue 8 items 1, 5, 9, 10; issue 9 item 13): a relay
# created in a publishing transaction delivers what it published; a
# replayed dead letter goes to its own relay only; the exact ordering rule;
# a page the target times out on is halved until it passes (and grows
# back), and a single message that times out is retried, never
# dead-lettered; a notification too large for NOTIFY even without its
# payload is dead-lettered and the relay goes on.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use TxboxTest;

my $node = PostgreSQL::Test::Cluster->new('promise');
$node->init;
$node->append_conf('postgresql.conf', 'max_worker_processes = 16');
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE shop');
$node->safe_psql('postgres', 'CREATE DATABASE billing');
my ($host, $port) = ($node->host, $node->port);

# The target: messages with "poison" are refused for their data until
# public.allow_poison has a row; messages with "sleep" take that long.
$node->safe_psql(
	'billing', q{
	CREATE EXTENSION txbox;
	CREATE TABLE public.allow_poison (ok boolean);
	CREATE FUNCTION public.inbox_check() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.payload ? 'poison' AND NOT EXISTS (SELECT 1 FROM public.allow_poison) THEN
			RAISE EXCEPTION 'poison refused' USING ERRCODE = 'data_exception';
		END IF;
		IF NEW.payload ? 'sleep' THEN
			PERFORM pg_catalog.pg_sleep((NEW.payload->>'sleep')::float8);
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER inbox_check BEFORE INSERT ON txbox.inbox
		FOR EACH ROW EXECUTE FUNCTION public.inbox_check();
});
$node->safe_psql(
	'shop', qq{
	CREATE EXTENSION txbox;
	CREATE SERVER billing FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host '$host', port '$port', dbname 'billing');
	CREATE USER MAPPING FOR CURRENT_USER SERVER billing;
});

# the n of each message of topic at billing, in arrival order
sub arrived
{
	my $topic = shift;
	return qq{SELECT coalesce(string_agg(payload->>'n', ',' ORDER BY seq), '')
			  FROM txbox.inbox WHERE topic = '$topic'};
}

sub status
{
	my ($relay, $cols) = @_;
	return qq{SELECT $cols FROM txbox.relay_status WHERE name = '$relay'};
}

######################################################################
# 8.5: messages published in the transaction that creates the relay
######################################################################

# Our transaction takes an xid (publish), then a later one commits: our
# xid is below the xmax of the snapshot create_relay takes, and is not in
# its in-progress list.
my $s1 = $node->background_psql('shop');
$s1->set_query_timer_restart;
$s1->query_safe('BEGIN');
$s1->query_safe(q{SELECT txbox.publish('orders', '{"n": "before"}')});
$node->safe_psql('shop', 'SELECT pg_current_xact_id()');
$s1->query_safe(
	q{SELECT txbox.create_relay('to_billing', 'postgres', ARRAY['orders'],
	  '{"server": "billing", "backoff_max": "1s"}')});
$s1->query_safe(q{SELECT txbox.publish('orders', '{"n": "after"}')});
$s1->query_safe('COMMIT');
poll_ok($node, 'billing', arrived('orders'), 'before,after', 90,
	'create_relay: what its own transaction published, before and after, is delivered, in publish order'
);

######################################################################
# 8.10: the ordering rule, as README "Ordering" states it
######################################################################

# Across batches, commit order: o1 takes the lower id, o2 commits first and
# is delivered while o1's transaction is still open; o1 comes after it.
$s1->query_safe('BEGIN');
$s1->query_safe(q{SELECT txbox.publish('orders', '{"n": "o1"}')});
$node->safe_psql('shop', q{SELECT txbox.publish('orders', '{"n": "o2"}')});
poll_ok($node, 'billing', arrived('orders'), 'before,after,o2', 90,
	'an open transaction holds no later commit back');
$s1->query_safe('COMMIT');
poll_ok($node, 'billing', arrived('orders'), 'before,after,o2,o1', 90,
	'the late committer follows, in commit order');

# Within one batch, publish order: with the relay paused, o3 takes the
# lower id and commits after o4; both land in the first batch after resume
# and go by id.
$node->safe_psql('shop', q{SELECT txbox.pause_relay('to_billing')});
poll_ok(
	$node, 'shop',
	q{SELECT count(*) FROM pg_stat_activity
	  WHERE backend_type = 'txbox relay' AND application_name = 'txbox relay to_billing'},
	'0', 60, 'paused relay: its worker is gone');
$s1->query_safe('BEGIN');
$s1->query_safe(q{SELECT txbox.publish('orders', '{"n": "o3"}')});
$node->safe_psql('shop', q{SELECT txbox.publish('orders', '{"n": "o4"}')});
$s1->query_safe('COMMIT');
$node->safe_psql('shop', q{SELECT txbox.resume_relay('to_billing')});
poll_ok($node, 'billing', arrived('orders'), 'before,after,o2,o1,o3,o4', 90,
	'one batch: publish order (o3 before o4, although o4 committed first)');

######################################################################
# 8.1: a replayed dead letter goes to its own relay only
# (and 8.10: a relay dead letter lets its key's later messages pass)
######################################################################

$node->safe_psql(
	'shop', q{
	SELECT txbox.create_relay('pay_pg', 'postgres', ARRAY['pay'],
		'{"server": "billing", "max_attempts": 2, "backoff_max": "1s"}');
	SELECT txbox.create_relay('pay_notify', 'notify', ARRAY['pay'], '{"channel": "pay_events"}');
});
my $poison = $node->safe_psql('shop',
	q{SELECT txbox.publish('pay', '{"n": "p", "poison": true}', key => 'k')});
$node->safe_psql('shop', q{SELECT txbox.publish('pay', '{"n": "q"}', key => 'k')});
poll_ok($node, 'shop', q{SELECT message_id FROM txbox.dead_letters WHERE relay = 'pay_pg'},
	$poison, 90, 'the refused message is a dead letter of pay_pg');
poll_ok($node, 'billing', arrived('pay'), 'q', 90,
	'the later message of its key passes the dead letter');
poll_ok($node, 'shop', status('pay_notify', q{delivered || ' ' || lag_messages}),
	'2 0', 90, 'the other relay delivered both');

$node->safe_psql('billing', 'INSERT INTO public.allow_poison VALUES (true)');
is( $node->safe_psql(
		'shop', q{SELECT txbox.replay_dead_letter(dead_letter_id)
				  FROM txbox.dead_letters WHERE relay = 'pay_pg'}),
	$poison, 'replay_dead_letter');
# a marker behind the replay: once pay_notify delivered it, it has passed
# the replay too
$node->safe_psql('shop', q{SELECT txbox.publish('pay', '{"n": "m"}', key => 'k')});
poll_ok($node, 'billing', arrived('pay'), 'q,p,m', 90,
	'the replayed message reaches its relay, after the later message of its key');
poll_ok($node, 'shop', status('pay_notify', 'lag_messages'),
	'0', 90, 'the other relay is done');
is($node->safe_psql('shop', status('pay_notify', 'delivered')),
	'3', 'the other relay never delivered the replayed dead letter');

######################################################################
# 8.9: a page that times out is halved; a single message is retried
######################################################################

# 60 messages of 50 ms each, one batch, 1 s statement_timeout: pages of
# 60 and 30 time out, pages of 15 pass.
$node->safe_psql(
	'shop', q{
	SELECT txbox.create_relay('slow_pg', 'postgres', ARRAY['slow'],
		'{"server": "billing", "statement_timeout": "1s", "backoff_max": "1s",
		  "max_attempts": 1}');
});
$node->safe_psql('shop',
	q{SELECT txbox.publish('slow', jsonb_build_object('n', g, 'sleep', 0.05))
	  FROM generate_series(1, 60) g});
poll_ok(
	$node, 'billing',
	q{SELECT count(*) || ' ' || count(DISTINCT message_id) || ' '
			 || (string_agg(payload->>'n', ',' ORDER BY seq)
				 = (SELECT string_agg(g::text, ',') FROM generate_series(1, 60) g))
	  FROM txbox.inbox WHERE topic = 'slow'},
	'60 60 true', 120, 'every message of a page too slow for the target arrives, in order');
is( $node->safe_psql(
		'shop', status('slow_pg', q{lag_messages || ' ' || (last_error LIKE '%statement timeout%')})),
	'0 true', 'the timeouts were recorded');

# One message slower than statement_timeout on its own: a timeout says
# nothing about its data, so it is retried (with backoff) and not
# dead-lettered, even with max_attempts 1.
my $retried = $node->safe_psql('shop', status('slow_pg', 'retried'));
my $slow = $node->safe_psql('shop',
	q{SELECT txbox.publish('slow', '{"n": "s", "sleep": 3}')});
poll_ok($node, 'shop',
	status('slow_pg', qq{state || ' ' || (retried >= $retried + 3)}),
	'retrying true', 90, 'a single message that times out is retried');
is($node->safe_psql('shop', q{SELECT count(*) FROM txbox.dead_letters WHERE relay = 'slow_pg'}),
	'0', '... and not dead-lettered');
$node->safe_psql('shop',
	q{SELECT txbox.alter_relay('slow_pg', '{"statement_timeout": "20s"}')});
poll_ok($node, 'billing', "SELECT count(*) FROM txbox.inbox WHERE message_id = '$slow'",
	'1', 90, 'with a longer statement_timeout it arrives');

# The page grows back once the slow spell is over: of 200 messages, the
# first 20 take 100 ms each; the first page that passes is small, later
# ones are larger (received_at is the receiving transaction's time: one
# value per page).
$node->safe_psql(
	'shop', q{
	SELECT txbox.create_relay('grow_pg', 'postgres', ARRAY['grow'],
		'{"server": "billing", "statement_timeout": "1s", "backoff_max": "1s"}');
});
$node->safe_psql('shop',
	q{SELECT txbox.publish('grow', jsonb_build_object('n', g) || CASE WHEN g <= 20
						   THEN '{"sleep": 0.1}' ELSE '{}' END::jsonb)
	  FROM generate_series(1, 200) g});
poll_ok($node, 'billing', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'grow'},
	'200', 120, 'every message of the slow spell arrives');
is( $node->safe_psql(
		'billing', q{WITH pages AS (SELECT min(seq) AS first, count(*) AS size
						FROM txbox.inbox WHERE topic = 'grow' GROUP BY received_at)
					 SELECT max(size) > (SELECT size FROM pages ORDER BY first LIMIT 1)
					   FROM pages}),
	't', 'after the slow spell the page grows again');

######################################################################
# 9.13: NOTIFY refuses a message (10 kB of headers): dead letter, go on
######################################################################

$node->safe_psql('shop',
	q{SELECT txbox.create_relay('big_notify', 'notify', ARRAY['big'],
	  '{"channel": "big_events", "max_attempts": 2, "backoff_max": "1s"}')});
my $listener = $node->background_psql('shop');
$listener->set_query_timer_restart;
$listener->query_safe('LISTEN big_events');
my $big = $node->safe_psql(
	'shop', q{BEGIN;
	  SELECT txbox.publish('big', '{"n": 1}') \g /dev/null
	  SELECT txbox.publish('big', '{"n": 2}', key => 'big',
						   headers => jsonb_build_object('h', repeat('x', 10000)));
	  SELECT txbox.publish('big', '{"n": 3}') \g /dev/null
	  COMMIT;});
$node->safe_psql('shop', q{SELECT txbox.publish('big', '{"n": 4}')});

poll_ok(
	$node, 'shop',
	q{SELECT message_id || ' ' || attempts || ' ' || (last_error LIKE '%payload string too long%')
	  FROM txbox.dead_letters WHERE relay = 'big_notify'},
	"$big 2 true", 90, 'the message too large for NOTIFY is a dead letter after max_attempts');

# the listener gets the others, in order
my $heard = '';
my $deadline = time() + 90;
while (time() < $deadline)
{
	$heard .= $listener->query('SELECT 1');
	last if (() = $heard =~ /Asynchronous notification "big_events"/g) >= 3;
	usleep(200_000);
}
is(join(',', $heard =~ /"payload": \{"n": (\d+)\}/g),
	'1,3,4', 'the listener got every other message, in order');
poll_ok($node, 'shop',
	status('big_notify', q{state || ' ' || lag_messages || ' ' || dead_lettered}),
	'running 0 1', 90, 'big_notify runs on, nothing left, one dead letter');
$listener->quit;
$s1->quit;

# a relay's dead letter can be discarded: it is marked so
is( $node->safe_psql(
		'shop', q{SELECT txbox.discard_dead_letter(dead_letter_id)
				  FROM txbox.dead_letters WHERE relay = 'big_notify'}),
	$big, 'discard_dead_letter of a relay dead letter');
is( $node->safe_psql(
		'shop', q{SELECT discarded_at IS NOT NULL FROM txbox.dead_letters WHERE relay = 'big_notify'}),
	't', '... marks it discarded');

$node->stop;
done_testing();
