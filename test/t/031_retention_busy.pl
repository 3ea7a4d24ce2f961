# A rotation held back by a lock -- a long reader of the generation it
# truncates, or writers busy past the manager's lock_timeout -- is tried
# again a second later, not at the next retention round (every 10 s here):
# a monitoring query must not make a rotated table miss whole rounds.  A
# table locked for long (pg_dump) is tried 1, 2, 4 and 8 s apart, then at
# the usual pace: each try may hold writers back for its lock_timeout.
use strict;
use warnings;
use Time::HiRes qw(time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;

# retention rounds every 10 s (outbox_retention 1h); the idempotency keys
# may rotate at every round (idempotency_ttl 1s, no keys)
my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
$node->append_conf('postgresql.conf', qq{txbox.outbox_retention = '1h'\ntxbox.idempotency_ttl = '1s'\n});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION txbox');
my $switched = q{SELECT switched_at FROM txbox._generation WHERE relname = 'idempotency_keys'};
poll_ok($node, 'postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'txbox manager'},
	'1', 30, 'the manager runs');
my $manager = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'txbox manager'});

# a reader of the keys holds ACCESS SHARE on both generations until the
# manager has tried to truncate one and given up (its lock_timeout); it
# watches the manager's lock waits with these
my $reader = $node->background_psql('postgres');
$reader->query_safe(qq{
	CREATE FUNCTION pg_temp.manager_waits() RETURNS boolean LANGUAGE sql AS
		\$\$ SELECT EXISTS (SELECT FROM pg_locks WHERE pid = $manager AND NOT granted) \$\$;
	CREATE FUNCTION pg_temp.await_manager_wait() RETURNS void LANGUAGE plpgsql AS \$\$
	DECLARE deadline timestamptz := clock_timestamp() + interval '60s';
	BEGIN
		WHILE NOT pg_temp.manager_waits() LOOP
			IF clock_timestamp() > deadline THEN RAISE EXCEPTION 'the manager never waited'; END IF;
			PERFORM pg_sleep(0.005);
		END LOOP;
	END \$\$});
$reader->query_safe('BEGIN');
$reader->query_safe('LOCK TABLE txbox.idempotency_keys IN ACCESS SHARE MODE');
my $before = $node->safe_psql('postgres', $switched);
my $waited = $reader->query_safe(q{
	DO $$
	BEGIN
		PERFORM pg_temp.await_manager_wait();
		WHILE pg_temp.manager_waits() LOOP
			PERFORM pg_sleep(0.005);
		END LOOP;
	END $$;
	SELECT 'waited'});
is($waited, 'waited', 'the manager waited for the reader, then gave up');
is($node->safe_psql('postgres', $switched), $before, 'no rotation meanwhile');

my $t0 = time();
$reader->query_safe('COMMIT');
poll_ok($node, 'postgres', "SELECT ($switched) <> '$before'", 't', 30, 'the keys rotate once the reader is gone');
my $elapsed = time() - $t0;
cmp_ok($elapsed, '<', 5,
	sprintf('... retried within seconds, not at the next round 10 s later (%.1f s)', $elapsed));

# locked for long: the manager's tries (each a wait of its lock_timeout)
# counted for 16 s from the first: at 0, 1, 3, 7 and 15 s
$reader->query_safe('BEGIN');
$reader->query_safe('LOCK TABLE txbox.idempotency_keys IN ACCESS SHARE MODE');
my $tries = $reader->query_safe(q{
	DO $$
	DECLARE
		deadline timestamptz;
		tries integer := 0;
		waiting boolean := false;
		now_waiting boolean;
	BEGIN
		PERFORM pg_temp.await_manager_wait();
		deadline := clock_timestamp() + interval '16s';
		WHILE clock_timestamp() < deadline LOOP
			now_waiting := pg_temp.manager_waits();
			IF now_waiting AND NOT waiting THEN tries := tries + 1; END IF;
			waiting := now_waiting;
			PERFORM pg_sleep(0.005);
		END LOOP;
		PERFORM set_config('txbox_test.tries', tries::text, false);
	END $$;
	SELECT current_setting('txbox_test.tries')});
$reader->query_safe('COMMIT');
note "tries in 16 s: $tries";
ok($tries >= 3 && $tries <= 6, "a table locked for long is tried 1, 2, 4, 8 s apart ($tries tries in 16 s, not one a second)");
$reader->quit;

$node->stop;
done_testing();
