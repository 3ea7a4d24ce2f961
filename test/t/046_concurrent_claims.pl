# Concurrent claims of the same ids (SPEC 1.5, 2.3): 4 clients claim the
# id of the current 2 ms time slot, so that each id is claimed by several
# transactions at about the same moment, and each claim that returns true
# writes an effect in the same transaction; 1 transaction in 5 rolls back.
# At the end every committed claim has exactly one effect and no id has
# two.  This drives the claim's insert through its races: a conflicting
# insert in progress (waited for), one that rolled back (claimed again),
# and two inserts that both found the key free (the second one's
# speculative insert is taken back, and it looks again:
# txbox_generation_insert in src/generation.c).  The isolation spec inbox-claim-concurrent shows each
# case in a fixed order; this test, that they hold when they interleave.
use strict;
use warnings;
use Time::HiRes qw(time);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;

my $t_start = time();

my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
$node->append_conf('postgresql.conf', "log_statement = none\n");
$node->start;
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION txbox;
	CREATE TABLE public.effects (message_id text NOT NULL);
});

my $slot = q{'t' || (extract(epoch FROM clock_timestamp()) * 500)::bigint};
my $commit = $node->basedir . '/commit.sql';
my $abort = $node->basedir . '/abort.sql';
append_to_file(
	$commit, qq{BEGIN;
INSERT INTO public.effects SELECT id FROM (SELECT $slot AS id) s WHERE txbox.inbox_claim('race', id);
COMMIT;
});
append_to_file(
	$abort, qq{BEGIN;
INSERT INTO public.effects SELECT id FROM (SELECT $slot AS id) s WHERE txbox.inbox_claim('race', id);
ROLLBACK;
});
my ($out, $err) = ('', '');
my $ok = IPC::Run::run(
	[
		'pgbench', '-n', '-c', '4', '-j', '2', '-t', '3000',
		'-f', "$commit\@4", '-f', "$abort\@1",
		'-h', $node->host, '-p', $node->port, 'postgres'
	],
	'>', \$out, '2>', \$err);
ok($ok, 'the claiming load ran without an error') or diag($out . $err);

my $claims = $node->safe_psql('postgres',
	q{SELECT count(*) FROM txbox.inbox_dedup WHERE consumer = 'race'});
cmp_ok($claims, '>', 100, "the load claimed ids ($claims)");
is( $node->safe_psql(
		'postgres', q{SELECT count(*) - count(DISTINCT message_id) FROM public.effects}),
	'0', 'no id has two effects');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM (SELECT message_id FROM txbox.inbox_dedup WHERE consumer = 'race') d
	FULL JOIN public.effects e USING (message_id)
	WHERE d.message_id IS NULL OR e.message_id IS NULL}),
	'0', 'each committed claim has its effect, and each effect its claim');
note sprintf('total %.1f s', time() - $t_start);
$node->stop;
done_testing();
