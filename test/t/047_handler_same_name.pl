# A handler and another consumer of the same name (SPEC 1.5: a message is
# processed once per consumer).  While the handler's function holds a
# window of messages, a session claims one of them under the handler's
# name and commits first.  The handler's dedup records then meet that
# claim's (a unique violation in handler_record_done, src/handler.c): the
# window is a serialization failure and rolls back, effects included, and
# the handler looks at the messages again: the claimed one is left out,
# the others are processed once.
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
$node->append_conf('postgresql.conf', qq{log_statement = none\ntxbox.poll_interval = '100ms'\n});
$node->start;

# The window's function waits for advisory lock 42 while the test holds it.
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION txbox;
	CREATE TABLE public.effects (message_id uuid NOT NULL, tag text NOT NULL);
	CREATE FUNCTION public.work(ms txbox.message[]) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
	BEGIN
		PERFORM pg_advisory_xact_lock(42);
		INSERT INTO public.effects SELECT m.message_id, m.payload->>'tag' FROM unnest(ms) m;
	END $$;
	CREATE FUNCTION public.receive(tags text[]) RETURNS integer
	LANGUAGE sql AS $$
		SELECT txbox._inbox_receive('test', array_agg(gen_random_uuid()), array_agg('work'::text),
				array_agg(NULL::text), array_agg(NULL::jsonb), array_agg(jsonb_build_object('tag', t)),
				array_agg(NULL::bytea), array_agg(now()))
		  FROM unnest(tags) t
	$$;
});

my $holder = $node->background_psql('postgres');
$holder->query_safe('SELECT pg_advisory_lock(42)');
$node->safe_psql(
	'postgres', q{
	SELECT txbox.create_handler('h', ARRAY['work'], 'public.work(txbox.message[])', '{"backoff": "100ms"}');
	SELECT public.receive(ARRAY['a', 'b', 'c']);
});

# the handler's window waits for the lock with all three messages
poll_ok(
	$node, 'postgres', q{SELECT count(*) FROM pg_locks
	  WHERE locktype = 'advisory' AND objid = 42 AND NOT granted},
	'1', 60, 'the handler holds a window of the messages');

# another consumer named h processes b first
is( $node->safe_psql(
		'postgres', q{SELECT txbox.inbox_claim('h', message_id::text) FROM txbox.inbox
	  WHERE payload->>'tag' = 'b'}),
	't',
	'a session claims b under the handler\'s name');
my $log_offset = -s $node->logfile;
$holder->query_safe('SELECT pg_advisory_unlock(42)');
$holder->quit;

poll_ok($node, 'postgres', q{SELECT string_agg(tag, ',' ORDER BY tag) FROM public.effects},
	'a,c', 60, 'the handler processes the others, and not b');
ok( $node->wait_for_log(
		qr/txbox handler "h": error: a message of handler "h" was processed concurrently by a consumer of the same name/,
		$log_offset),
	'the window met the other claim and was rolled back');
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.effects}),
	'2', 'the rolled back window left no effect: each message once');
is( $node->safe_psql(
		'postgres', q{SELECT count(*), count(DISTINCT message_id) FROM txbox.inbox_dedup WHERE consumer = 'h'}),
	'3|3',
	'one dedup record per message');

$node->stop;
note(sprintf('047_handler_same_name: %.1f s', time() - $t_start));
done_testing();
