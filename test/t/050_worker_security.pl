# Handler workers run user code as the handler's owner, and their own
# bookkeeping as txbox's owner (a superuser here).  A non-superuser handler
# owner, mallory, tries what an attacker would to get her code called as the
# superuser: a search_path of her role's settings that plants operators,
# set_config('search_path') from her handler, a temporary type named like
# one the worker casts to (text).  Her planted functions try to make her
# superuser and record who called them.  Also: EXECUTE is checked at every
# window; a handler that goes on past its statement_timeout (it catches
# query_canceled) is ended at a hard deadline and the attempt counts; errors
# raised from deep in nested blocks are logged in full and the worker lives.
use strict;
use warnings;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;

my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{txbox.poll_interval = '200ms'
log_error_verbosity = verbose
max_worker_processes = 16
});
$node->start;

$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION txbox;
	CREATE ROLE mallory LOGIN;
	GRANT USAGE ON SCHEMA txbox TO mallory;
	GRANT EXECUTE ON FUNCTION txbox.create_handler(text, text[], regprocedure, jsonb) TO mallory;
	CREATE SCHEMA mine AUTHORIZATION mallory;
	-- deliver a message into the inbox as a relay does
	CREATE FUNCTION public.receive(topic text, k text, body jsonb DEFAULT '{}') RETURNS integer
	LANGUAGE sql AS $$
		SELECT txbox._inbox_receive('test', ARRAY[gen_random_uuid()], ARRAY[topic], ARRAY[k],
				ARRAY[NULL::jsonb], ARRAY[body], ARRAY[NULL::bytea], ARRAY[now()])
	$$;
});

# mallory's schema: what her code did (effects), who ran her planted code
# (calls), and the planted code itself
$node->safe_psql(
	'postgres', q{
	SET ROLE mallory;
	CREATE TABLE mine.effects (handler text, k text, search_path text);
	CREATE TABLE mine.calls (who name, what text);
	CREATE TABLE mine.locked (x int);
	GRANT INSERT ON mine.calls TO PUBLIC;
	CREATE FUNCTION mine.pwn(what text) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO mine.calls VALUES (current_user, what);
		BEGIN
			ALTER ROLE mallory SUPERUSER;
		EXCEPTION WHEN insufficient_privilege THEN NULL;
		END;
		RETURN true;
	END $$;
	CREATE FUNCTION mine.mul(numeric, integer) RETURNS numeric LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM mine.pwn('*');
		RETURN $1 OPERATOR(pg_catalog.*) $2;
	END $$;
	CREATE OPERATOR mine.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = mine.mul);
	CREATE FUNCTION mine.arrow(jsonb, text) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM mine.pwn('->>');
		RETURN $1 OPERATOR(pg_catalog.->>) $2;
	END $$;
	CREATE OPERATOR mine.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = mine.arrow);
	CREATE FUNCTION mine.check_id(text) RETURNS boolean LANGUAGE sql AS $$ SELECT mine.pwn('text') $$;

	-- 1. plain: her role's search_path plants mine.*(numeric, integer)
	CREATE FUNCTION mine.plain(m txbox.message) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_catalog.pg_advisory_lock(4242);
		INSERT INTO mine.effects VALUES ('plain', m.key, current_setting('search_path'));
	END $$;
	-- 2. setpath: leaves a search_path that plants mine.->>(jsonb, text)
	CREATE FUNCTION mine.setpath(m txbox.message) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO mine.effects VALUES ('setpath', m.key, current_setting('search_path'));
		PERFORM pg_catalog.set_config('search_path', 'mine, pg_catalog', false);
		PERFORM pg_catalog.set_config('work_mem', '77kB', false);
	END $$;
	-- 3. temptype: a temporary type named text, whose check calls her code
	CREATE FUNCTION mine.temptype(m txbox.message) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (mine.check_id(VALUE));
		INSERT INTO mine.effects VALUES ('temptype', m.key, current_setting('search_path'));
	END $$;
	-- 4. acl: loses EXECUTE on its function
	CREATE FUNCTION mine.acl(m txbox.message) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO mine.effects VALUES ('acl', m.key, NULL);
	END $$;
	-- 5. stubborn: holds a lock and goes on past its statement_timeout
	CREATE FUNCTION mine.stubborn(m txbox.message) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		LOCK TABLE mine.locked IN ACCESS EXCLUSIVE MODE;
		LOOP
			BEGIN
				PERFORM pg_catalog.pg_sleep(10);
			EXCEPTION WHEN query_canceled THEN
				NULL;
			END;
		END LOOP;
	END $$;
	-- 6. deferred: its deferred trigger would run at commit, unrestricted
	CREATE TABLE mine.dtab (k text);
	CREATE FUNCTION mine.dtrig() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		CREATE TEMP TABLE escaped (x int);
		INSERT INTO mine.effects VALUES ('deferred', NEW.k, current_setting('search_path'));
		RETURN NULL;
	END $$;
	CREATE CONSTRAINT TRIGGER dtrig AFTER INSERT ON mine.dtab DEFERRABLE INITIALLY DEFERRED
		FOR EACH ROW EXECUTE FUNCTION mine.dtrig();
	CREATE FUNCTION mine.deferred(m txbox.message) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO mine.dtab VALUES (m.key);
	END $$;
	-- 7. nested: raises from deep inside blocks that do not catch it
	CREATE FUNCTION mine.nested(m txbox.message) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		BEGIN
			BEGIN
				BEGIN
					IF m.key = 'bad' THEN
						RAISE EXCEPTION 'deep failure' USING ERRCODE = '22023',
							DETAIL = 'deep detail', HINT = 'deep hint';
					END IF;
				EXCEPTION WHEN division_by_zero THEN NULL;
				END;
			EXCEPTION WHEN unique_violation THEN NULL;
			END;
		EXCEPTION WHEN undefined_table THEN NULL;
		END;
		INSERT INTO mine.effects VALUES ('nested', m.key, NULL);
	END $$;
	RESET ROLE;
	ALTER ROLE mallory SET search_path = mine, public;
});

for my $h ('plain', 'setpath', 'temptype', 'acl', 'nested', 'deferred')
{
	$node->safe_psql('postgres',
		    "SET ROLE mallory; SELECT txbox.create_handler('$h', ARRAY['$h'], 'mine.$h(txbox.message)',"
		  . " '{\"max_attempts\": 1, \"backoff\": \"1s\"}')");
}
$node->safe_psql('postgres',
	q{SET ROLE mallory; SELECT txbox.create_handler('stubborn', ARRAY['stubborn'], 'mine.stubborn(txbox.message)',
	  '{"max_attempts": 2, "backoff": "1s", "statement_timeout": "1s"}')});
poll_ok($node, 'postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'txbox handler %'},
	'7', 90, 'the seven handlers run');

# mallory loses EXECUTE on the function of handler acl
$node->safe_psql('postgres',
	'SET ROLE mallory; REVOKE EXECUTE ON FUNCTION mine.acl(txbox.message) FROM PUBLIC, mallory');

my $log_from = -s $node->logfile;
$node->safe_psql(
	'postgres', q{
	SELECT public.receive('plain', 'p1'), public.receive('plain', 'p2');
	SELECT public.receive('setpath', 's1');
	SELECT public.receive('setpath', 's2');
	SELECT public.receive('temptype', 't1');
	SELECT public.receive('temptype', 't2');
	SELECT public.receive('acl', 'a1');
	SELECT public.receive('nested', 'bad'), public.receive('nested', 'good');
	SELECT public.receive('deferred', 'd1');
});

poll_ok($node, 'postgres', q{SELECT count(*) FROM mine.effects WHERE handler = 'plain'},
	'2', 90, 'handler plain processed its messages');
poll_ok($node, 'postgres', q{SELECT count(*) FROM mine.effects WHERE handler = 'setpath'},
	'2', 90, 'handler setpath processed its messages');
poll_ok($node, 'postgres', q{SELECT count(*) FROM txbox.dead_letters WHERE handler = 'temptype'},
	'2', 90, 'handler temptype failed its messages');
poll_ok($node, 'postgres',
	q{SELECT state, last_error LIKE 'permission denied for function acl%' FROM txbox.handler_status WHERE name = 'acl'},
	'failed|t', 90, 'handler acl without EXECUTE is failed, with the error');
poll_ok($node, 'postgres', q{SELECT count(*) FROM mine.effects WHERE handler = 'nested'},
	'1', 90, 'handler nested processed the good message');
poll_ok($node, 'postgres',
	q{SELECT count(*), bool_and(last_error LIKE '%security-restricted operation%') FROM txbox.dead_letters
	  WHERE handler = 'deferred'},
	'1|t', 90, 'a handler cannot queue a deferred trigger');

# processing went on after the first bookkeeping queries: give the workers
# a few more rounds, then nothing of mallory's ran as anyone but her
sleep 2;
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}),
	'f', 'mallory is not superuser');
is($node->safe_psql('postgres', q{SELECT count(*) FROM mine.calls WHERE who <> 'mallory'}),
	'0', 'no planted function was called as another role');

# her handlers ran with her role's search_path, and nothing one call set
# survived into the next
is( $node->safe_psql(
		'postgres', q{SELECT string_agg(DISTINCT search_path, ';') FROM mine.effects
		  WHERE handler IN ('plain', 'setpath')}),
	'mine, public',
	'every call started with the role\'s search_path');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242}),
	'0', 'a session-level advisory lock taken by a handler is released');
is($node->safe_psql('postgres', q{SELECT count(*) FROM mine.effects WHERE handler = 'temptype'}),
	'0', 'no temporary type was created');
like(
	$node->safe_psql('postgres',
		q{SELECT string_agg(DISTINCT last_error, ';') FROM txbox.dead_letters WHERE handler = 'temptype'}),
	qr/security-restricted operation/,
	'creating a temporary object is refused to a handler');

# acl: no message is marked processed; EXECUTE again: it is processed
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM mine.effects WHERE handler = 'acl'}
		  . q{ UNION ALL SELECT count(*) FROM txbox.inbox_dedup WHERE consumer = 'acl'}
		  . q{ UNION ALL SELECT count(*) FROM txbox.dead_letters WHERE handler = 'acl'}),
	"0\n0\n0",
	'the handler without EXECUTE ran nothing, processed nothing, dead-lettered nothing');
$node->safe_psql('postgres', 'GRANT EXECUTE ON FUNCTION mine.acl(txbox.message) TO mallory');
poll_ok($node, 'postgres', q{SELECT count(*) FROM mine.effects WHERE handler = 'acl'},
	'1', 90, 'with EXECUTE back, the waiting message is processed');

# nested: the error was logged in full, the worker did not end
my $nested_pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE application_name = 'txbox handler nested/0'});
like($nested_pid, qr/^\d+$/, 'handler nested still runs');
my $log = slurp_file($node->logfile, $log_from);
like($log, qr/ERROR:  22023: deep failure/, 'the log keeps the SQLSTATE');
like($log, qr/DETAIL:  deep detail/, 'the log keeps the detail');
like($log, qr/HINT:  deep hint/, 'the log keeps the hint');
like($log, qr/CONTEXT:  PL\/pgSQL function (?:mine\.)?nested\(txbox\.message\) line \d+ at RAISE\n\s*txbox handler "nested"/,
	'the context names the handler');
$node->safe_psql('postgres', q{SELECT public.receive('nested', 'good2')});
poll_ok($node, 'postgres', q{SELECT count(*) FROM mine.effects WHERE handler = 'nested'},
	'2', 90, 'handler nested goes on');
is( $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE application_name = 'txbox handler nested/0'}),
	$nested_pid, 'by the same worker');

# stubborn: its lock is freed at the deadline (statement_timeout 1 s + 5 s),
# each time counted as a failed attempt; the second makes a dead letter
$node->safe_psql('postgres', q{SELECT public.receive('stubborn', 'x')});
poll_ok($node, 'postgres',
	q{SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	  WHERE a.backend_type = 'txbox handler' AND l.relation = 'mine.locked'::regclass AND l.granted},
	'1', 90, 'handler stubborn holds its lock');
my $t0 = time();
$node->safe_psql('postgres', q{SET lock_timeout = '60s'; SELECT count(*) FROM mine.locked});
my $waited = time() - $t0;
ok($waited < 30, "the lock was freed at the hard deadline (after ${waited}s)");
poll_ok($node, 'postgres',
	q{SELECT attempts, last_error LIKE '%hard deadline%' FROM txbox.dead_letters WHERE handler = 'stubborn'},
	'2|t', 90, 'two attempts ended at the deadline: a dead letter');
poll_ok($node, 'postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'txbox handler stubborn/0'
	  AND xact_start IS NULL},
	'1', 90, 'the restarted worker is idle behind the dead letter');

done_testing();
