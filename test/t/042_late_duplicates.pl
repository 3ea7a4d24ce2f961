# A late duplicate inside the dedup window (SPEC 1.5): a copy of a processed
# message that arrives after its inbox row was rotated away, while the
# handler's dedup record of the first copy sits in the older generation of
# txbox.inbox_dedup, is never processed again, never counts as unprocessed
# and never holds retention back.
#
# Before the fix the copy was stored as a new message; once the generation
# with its record was truncated (allowed: the copy was received after that
# generation's last claim), the copy counted as unprocessed while the
# handler's floor had passed it (lag 1 forever, the inbox could not rotate),
# and a restarted handler processed it a second time.
#
# Compressed retention: dedup records 10 s, inbox 5 s (the minimums are low
# for tests like this one; README, Settings).  One cluster, database shop
# relays to database billing.
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
txbox.dedup_retention = '10s'
txbox.inbox_retention = '5s'
txbox.outbox_retention = '2s'
txbox.poll_interval = '200ms'
});
$node->start;
my ($host, $port) = ($node->host, $node->port);

# The tests' role is named like txbox's schema: our tables go in public.
$node->safe_psql('postgres', 'CREATE DATABASE billing');
$node->safe_psql('postgres', 'CREATE DATABASE shop');
$node->safe_psql(
	'billing', q{
	CREATE EXTENSION txbox;
	CREATE TABLE public.effects (message_id uuid NOT NULL);
	CREATE FUNCTION public.work(m txbox.message) RETURNS void
	LANGUAGE sql SET search_path = pg_catalog, pg_temp
	AS $$ INSERT INTO public.effects VALUES (m.message_id) $$;
	SELECT txbox.create_handler('h', ARRAY['work'], 'public.work(txbox.message)');
	-- an SQL consumer of topic audit: its unprocessed message holds the inbox
	SELECT count(*) FROM txbox.inbox_fetch('auditor', ARRAY['audit']);
});
$node->safe_psql(
	'shop', qq{
	CREATE EXTENSION txbox;
	CREATE SERVER billing FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host '$host', port '$port', dbname 'billing');
	CREATE USER MAPPING FOR CURRENT_USER SERVER billing;
	SELECT txbox.create_relay('to_billing', 'postgres', NULL,
							  '{"server": "billing", "backoff_max": "1s"}');
});

my $m = $node->safe_psql('shop', q{SELECT txbox.publish('work', '{"n": 1}')});
poll_ok($node, 'billing', qq{SELECT count(*) FROM public.effects WHERE message_id = '$m'},
	'1', 60, 'message M is relayed and processed');
my $record_gen = $node->safe_psql('billing',
	qq{SELECT gen FROM txbox.inbox_dedup WHERE consumer = 'h' AND message_id = '$m'});

# M leaves the inbox (inbox_retention), and the dedup records rotate once:
# M's record is now in the older generation
poll_ok(
	$node, 'billing',
	qq{SELECT NOT EXISTS (SELECT 1 FROM txbox.inbox WHERE message_id = '$m')
			  AND current_gen <> $record_gen FROM txbox._generation WHERE relname = 'inbox_dedup'},
	't', 60, 'M leaves the inbox, its dedup record moves to the older generation');
is($node->safe_psql('billing', qq{SELECT count(*) FROM txbox.inbox_dedup WHERE message_id = '$m'}),
	'1', 'M\'s dedup record is still there (the dedup window)');

# A late copy of M, and before it in the same page a message the SQL
# consumer leaves unprocessed for now: the copy stays in the inbox until
# the dedup generation with M's first record was truncated.
$node->safe_psql(
	'shop', qq{BEGIN;
	SELECT txbox.publish('audit', '{"hold": true}');
	SELECT txbox.publish('work', '{"n": 1}', message_id => '$m');
	COMMIT;});
poll_ok($node, 'billing', qq{SELECT count(*) FROM txbox.inbox WHERE message_id = '$m' OR topic = 'audit'},
	'2', 60, 'the late copy of M arrives (with the held message)');
is($node->safe_psql('billing', q{SELECT lag_messages FROM txbox.handler_status}),
	'0', 'the late copy counts as processed');

poll_ok($node, 'billing',
	qq{SELECT current_gen = $record_gen FROM txbox._generation WHERE relname = 'inbox_dedup'},
	't', 60, 'the dedup generation that held M\'s first record is truncated');
is($node->safe_psql('billing', qq{SELECT count(*) FROM txbox.inbox WHERE message_id = '$m'}),
	'1', 'while the late copy is still in the inbox');
is($node->safe_psql('billing', q{SELECT lag_messages FROM txbox.handler_status}),
	'0', 'the late copy still counts as processed: the handler\'s lag is 0');
is( $node->safe_psql(
		'billing', qq{BEGIN; SELECT txbox.inbox_claim('h', '$m'); ROLLBACK;}),
	'f', 'M is still a duplicate for the handler');

# A restarted handler looks at the whole inbox again (its floor starts at
# 0): once it handled a message received after the copy, it has seen it.
$node->restart;
my $n = $node->safe_psql('shop', q{SELECT txbox.publish('work', '{"n": 2}')});
poll_ok($node, 'billing', qq{SELECT count(*) FROM public.effects WHERE message_id = '$n'},
	'1', 60, 'after a restart the handler processes a later message');
is($node->safe_psql('billing', qq{SELECT count(*) FROM public.effects WHERE message_id = '$m'}),
	'1', 'the late copy of M had no second effect');

# the held message processed, the inbox rotates everything away
is( $node->safe_psql(
		'billing', q{BEGIN;
		CREATE TEMP TABLE fetched AS SELECT * FROM txbox.inbox_fetch('auditor', ARRAY['audit']);
		SELECT txbox.inbox_done('auditor', ARRAY(SELECT message_id FROM fetched));
		COMMIT;}),
	'1', 'the SQL consumer processes the held message');
poll_ok($node, 'billing', q{SELECT count(*) FROM txbox.inbox}, '0', 60,
	'the inbox still rotates: the late copy leaves it');
is($node->safe_psql('billing', q{SELECT lag_messages FROM txbox.handler_status}),
	'0', 'the handler has no lag');

note sprintf('total %.1f s', time() - $t_start);
$node->stop;
done_testing();
