# A handler with parallel 2: resolving a dead letter reaches the worker
# that owns its key.  Each worker takes the keys that hash to its part and
# keeps a floor below which everything of its part is handled; a dead
# letter's key waits behind it.  When the dead letter is discarded (or
# replayed), the owning worker must drop its floor back to it, so that its
# key's later messages are handled.
#
# Before the fix whichever worker read txbox.handler_failures first deleted
# the discarded row and dropped only its own floor: with the owning worker
# busy in a slow message at that moment, the key's waiting message was
# never handled (until a restart).
use strict;
use warnings;
use Time::HiRes qw(time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;

my $t_start = time();

my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
$node->append_conf('postgresql.conf', qq{log_statement = none
txbox.poll_interval = '200ms'
});
$node->start;

# The tests' role is named like txbox's schema: our tables go in public.
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION txbox;
	CREATE TABLE public.effects (key text NOT NULL, tag text NOT NULL);
	CREATE TABLE public.fixed (ok boolean);
	-- deliver one message into the inbox as a relay does
	CREATE FUNCTION public.receive(key text, tag text, payload jsonb DEFAULT '{}') RETURNS integer
	LANGUAGE sql AS $$
		SELECT txbox._inbox_receive('test', ARRAY[gen_random_uuid()], ARRAY['work'], ARRAY[key],
				ARRAY[NULL::jsonb], ARRAY[payload || jsonb_build_object('tag', tag)],
				ARRAY[NULL::bytea], ARRAY[now()])
	$$;
	CREATE FUNCTION public.work(m txbox.message) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
	BEGIN
		IF m.payload ? 'poison' AND NOT EXISTS (SELECT FROM public.fixed) THEN
			RAISE EXCEPTION 'poison %', m.payload->>'tag';
		END IF;
		IF m.payload ? 'sleep' THEN
			PERFORM pg_sleep((m.payload->>'sleep')::float8);
		END IF;
		INSERT INTO public.effects VALUES (m.key, m.payload->>'tag');
	END $$;
	SELECT txbox.create_handler('h', ARRAY['work'], 'public.work(txbox.message)',
								'{"parallel": 2, "max_attempts": 1, "backoff": "1s"}');
});
ok( $node->poll_query_until(
		'postgres', q{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'txbox handler'}),
	'the handler runs two workers');

# keys of one part (as the workers split them): k, the dead letter's, and
# s, of a slow message
my ($k, $s) = split /\|/, $node->safe_psql(
	'postgres', q{
	WITH keys AS (SELECT 'key' || g AS key,
						 (hashtext('key' || g) & 2147483647) % 2 AS part
					FROM generate_series(1, 100) g)
	SELECT min(key) || '|' || max(key) FROM keys WHERE part = (SELECT part FROM keys WHERE key = 'key1')});

sub busy_owner
{
	my ($name) = @_;
	poll_ok($node, 'postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'txbox handler' AND wait_event = 'PgSleep'},
		'1', 60, $name);
}

sub effects
{
	my ($tag) = @_;
	return "SELECT count(*) FROM public.effects WHERE tag = '$tag'";
}

######################################################################
# Discard
######################################################################

$node->safe_psql('postgres', qq{SELECT public.receive('$k', 'k1', '{"poison": true}')});
poll_ok($node, 'postgres', q{SELECT count(*) FROM txbox.dead_letters}, '1', 60,
	'a poison message becomes a dead letter (max_attempts 1)');
$node->safe_psql('postgres', qq{SELECT public.receive('$k', 'k2'); SELECT public.receive('$s', 's1', '{"sleep": 6}')});
busy_owner('a later message of its key waits; the owning worker is busy in a slow message');
is($node->safe_psql('postgres', effects('k2')), '0', 'the key\'s later message waits');
$node->safe_psql('postgres',
	q{SELECT txbox.discard_dead_letter(dead_letter_id) FROM txbox.dead_letters WHERE discarded_at IS NULL});
# the other worker, idle, looks at the failures first
poll_ok($node, 'postgres', effects('s1'), '1', 60, 'the slow message is done');
poll_ok($node, 'postgres', effects('k2'), '1', 30,
	'the discarded dead letter\'s key goes on: its waiting message is handled');
is($node->safe_psql('postgres', effects('k1')), '0', 'the discarded message never ran');

######################################################################
# Replay
######################################################################

$node->safe_psql('postgres', qq{SELECT public.receive('$k', 'k3', '{"poison": true}')});
poll_ok($node, 'postgres', q{SELECT count(*) FROM txbox.dead_letters WHERE discarded_at IS NULL}, '1', 60,
	'another poison message of the key becomes a dead letter');
$node->safe_psql('postgres', qq{SELECT public.receive('$k', 'k4'); SELECT public.receive('$s', 's2', '{"sleep": 6}')});
busy_owner('the owning worker is busy in a slow message again');
$node->safe_psql('postgres',
	q{INSERT INTO public.fixed VALUES (true);
	  SELECT txbox.replay_dead_letter(dead_letter_id) FROM txbox.dead_letters WHERE discarded_at IS NULL});
poll_ok($node, 'postgres', effects('s2'), '1', 60, 'the slow message is done');
poll_ok($node, 'postgres', q{SELECT string_agg(tag, ' ' ORDER BY tag) FROM public.effects WHERE tag IN ('k3', 'k4')},
	'k3 k4', 30, 'the replayed message and its key\'s waiting message are handled');
is($node->safe_psql('postgres', q{SELECT lag_messages || ' ' || failing FROM txbox.handler_status}),
	'0 0', 'no lag, no failure left');

note sprintf('total %.1f s', time() - $t_start);
$node->stop;
done_testing();
