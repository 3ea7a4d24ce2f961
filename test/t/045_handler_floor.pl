# A handler's persisted floor (txbox.handler_floors), which inbox
# retention trusts instead of scanning the oldest generation, never claims
# a message processed that is not: a dead letter and the later message of
# its key, waiting behind it, keep the floor of their part below them (the
# other part's floor may pass them: its messages are all handled), and
# their generation is not rotated away while the handler's workers go on
# past them.  Once they are handled, the floors catch up with the last
# message (also while the handler has nothing to do) and the inbox rotates
# again.  A worker whose floor drops back to a replayed dead letter finds
# the records of the messages it passes again in the older dedup
# generation too.  Dropping the handler drops its floors.
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
$node->append_conf(
	'postgresql.conf', qq{log_statement = none
txbox.inbox_retention = '2s'
txbox.dedup_retention = '60s'
txbox.outbox_retention = '2s'
txbox.poll_interval = '200ms'
});
$node->start;

# The tests' role is named like txbox's schema: our tables go in public.
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION txbox;
	CREATE TABLE public.effects (key text NOT NULL, tag text NOT NULL);
	CREATE TABLE public.fixed (ok boolean);
	-- deliver messages into the inbox in one batch, as a relay does
	CREATE FUNCTION public.receive(keys text[], tags text[]) RETURNS integer
	LANGUAGE sql AS $$
		SELECT txbox._inbox_receive('test', array_agg(gen_random_uuid()), array_agg('work'::text),
				keys, array_agg(NULL::jsonb),
				array_agg(jsonb_build_object('tag', t) || CASE WHEN t = 'p1' THEN '{"poison": true}'::jsonb
														 ELSE '{}' END),
				array_agg(NULL::bytea), array_agg(now()))
		  FROM unnest(tags) t
	$$;
	CREATE FUNCTION public.work(m txbox.message) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
	BEGIN
		IF m.payload ? 'poison' AND NOT EXISTS (SELECT FROM public.fixed) THEN
			RAISE EXCEPTION 'poison %', m.payload->>'tag';
		END IF;
		INSERT INTO public.effects VALUES (m.key, m.payload->>'tag');
	END $$;
	SELECT txbox.create_handler('h', ARRAY['work'], 'public.work(txbox.message)',
								'{"parallel": 2, "max_attempts": 1, "backoff": "1s"}');
});

# p1 fails (a dead letter at once), p2 of the same key waits behind it,
# twenty others of other keys are handled
my @keys = ('p', 'p', map { "k$_" } 1 .. 20);
my @tags = ('p1', 'p2', map { "k$_" } 1 .. 20);
is( $node->safe_psql(
		'postgres',
		sprintf(q{SELECT public.receive(ARRAY['%s'], ARRAY['%s'])},
			join("','", @keys), join("','", @tags))),
	'22',
	'22 messages arrive in one batch');
my ($pgen, $pseq) = split /\|/,
  $node->safe_psql('postgres', q{SELECT gen, seq FROM txbox.inbox WHERE payload->>'tag' = 'p1'});
poll_ok($node, 'postgres', 'SELECT count(*) FROM public.effects', '20', 60,
	'the others are handled');
poll_ok($node, 'postgres', 'SELECT count(*) FROM txbox.dead_letters', '1', 60,
	'p1 is a dead letter');
poll_ok($node, 'postgres',
	q{SELECT string_agg(part || '/' || parallel, ' ' ORDER BY part) FROM txbox.handler_floors},
	'0/2 1/2', 60, 'both workers persist their floor');
sleep 2;    # several more rounds, each may write its floor
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM txbox.handler_floors
					  WHERE low >= $pseq AND part = (hashtext('p') & 2147483647) % parallel"),
	'0', 'the floor of the dead letter\'s part stays below it');
is($node->safe_psql('postgres', "SELECT min(low) < $pseq FROM txbox.handler_floors"),
	't', 'so does the handler\'s floor, the least of its parts\'');

# the dead letter's generation becomes the oldest, and stays
my $oldest_is_p = "SELECT (current_gen + 1) % generations = $pgen FROM txbox._generation WHERE relname = 'inbox'";
poll_ok($node, 'postgres', $oldest_is_p, 't', 60,
	'the inbox rotates until the dead letter\'s generation is the oldest');
is($node->safe_psql('postgres', "SELECT txbox._inbox_processed(${pgen}::smallint)"),
	'f', 'retention finds it not processed');
sleep 4;    # retention runs every second (outbox_retention 2 s), inbox_retention is 2 s
is($node->safe_psql('postgres', $oldest_is_p), 't', '... and does not rotate it away');
is( $node->safe_psql(
		'postgres', q{SELECT string_agg(payload->>'tag', ' ' ORDER BY seq) FROM txbox.inbox WHERE key = 'p'}),
	'p1 p2',
	'the dead letter and its key\'s waiting message stay in the inbox');
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.effects WHERE key = 'p'}),
	'0', '... unhandled: the waiting one is not handled before the dead letter');

# fixed and replayed: both are handled in order, the inbox goes on
$node->safe_psql(
	'postgres', q{INSERT INTO public.fixed VALUES (true);
	  SELECT txbox.replay_dead_letter(dead_letter_id) FROM txbox.dead_letters});
poll_ok($node, 'postgres', q{SELECT string_agg(tag, ' ' ORDER BY tag) FROM public.effects WHERE key = 'p'},
	'p1 p2', 60, 'the replayed message and its key\'s waiting one are handled');
poll_ok($node, 'postgres', q{SELECT count(*) FROM txbox.inbox WHERE key = 'p'}, '0', 60,
	'then their generation is rotated away');

# with nothing more to do, the floors reach the last message
is($node->safe_psql('postgres', q{SELECT public.receive(ARRAY['k1'], ARRAY['k21'])}), '1',
	'one more message arrives');
poll_ok($node, 'postgres',
	q{SELECT count(*) FROM txbox.handler_floors WHERE low >= (SELECT max(seq) FROM txbox.inbox)},
	'2', 60, 'the idle workers\' floors reach the last message');
is($node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT tag) FROM public.effects'),
	'23|23', 'every message was handled once');

# Once the dedup records rotated, a window probes the older generation
# too: a replayed dead letter drops its worker's floor back below messages
# it processed before the rotation (an SQL consumer holds them in the
# inbox), and those are skipped, though the workers wrote records into the
# new generation since.
$node->safe_psql('postgres', q{DELETE FROM public.fixed;
	SELECT count(*) FROM txbox.inbox_fetch('holder', ARRAY['work'], 1)});
my @more = ('p1', map { "m$_" } 1 .. 10);
is( $node->safe_psql(
		'postgres', sprintf(q{SELECT public.receive(ARRAY['%s'], ARRAY['%s'])},
			join("','", 'q', map { "k$_" } 1 .. 10), join("','", @more))),
	'11',
	'a poisoned message and ten more arrive, held in the inbox by an SQL consumer');
poll_ok($node, 'postgres', q{SELECT count(*) FROM txbox.dead_letters WHERE replayed_at IS NULL}, '1', 60,
	'the poisoned one is a dead letter');
poll_ok($node, 'postgres', 'SELECT count(*) FROM public.effects', '33', 60, 'the others are handled');
$node->safe_psql('postgres', q{SELECT txbox._switch_generation('inbox_dedup')});
is($node->safe_psql('postgres', q{SELECT public.receive(ARRAY['k1', 'k2'], ARRAY['n1', 'n2'])}), '2',
	'the dedup records rotate; two more messages arrive');
poll_ok($node, 'postgres', 'SELECT count(*) FROM public.effects', '35', 60,
	'... and are handled, recorded in the new generation');
$node->safe_psql(
	'postgres', q{INSERT INTO public.fixed VALUES (true);
	  SELECT txbox.replay_dead_letter(dead_letter_id) FROM txbox.dead_letters WHERE replayed_at IS NULL});
poll_ok($node, 'postgres', q{SELECT count(*) FROM public.effects WHERE key = 'q'}, '1', 60,
	'the replayed dead letter is handled');
is($node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT (key, tag)) FROM public.effects'),
	'36|36', '... and no message it passed again twice: their records are in the older generation');
$node->safe_psql('postgres', q{SELECT txbox.drop_consumer('holder')});

$node->safe_psql('postgres', q{SELECT txbox.drop_handler('h')});
is($node->safe_psql('postgres', 'SELECT count(*) FROM txbox.handler_floors'),
	'0', 'a dropped handler\'s floors go with it');

$node->stop;
diag(sprintf('%s took %.0f s', $0, time() - $t_start));
done_testing();
