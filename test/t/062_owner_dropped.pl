# DROP ROLE of the owner of a relay and of a handler (issue 9 item 14),
# run from another database (it cannot see their rows): both show failed,
# "owner role <oid> was dropped", and their workers stop (they still hold
# the outbox retention: nothing is lost).  What the DBA then does: a
# superuser drops one, and gives the other a new owner, which runs again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;

my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
$node->append_conf('postgresql.conf', 'max_worker_processes = 16');
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE two');
$node->safe_psql(
	'two', q{
	CREATE EXTENSION txbox;
	CREATE ROLE carol LOGIN;
	GRANT USAGE ON SCHEMA txbox TO carol;
	GRANT EXECUTE ON FUNCTION txbox.create_handler(text, text[], regprocedure, jsonb),
	                          txbox.create_relay(text, text, text[], jsonb) TO carol;
	CREATE FUNCTION public.h(m txbox.message) RETURNS void LANGUAGE sql AS 'SELECT';});

$node->safe_psql(
	'two', q{
	-- notify relays are superuser-only: a superuser creates it and hands it
	-- to carol (README's reassignment)
	BEGIN;
	SELECT txbox.create_relay('c1', 'notify', NULL, '{"channel": "c1"}');
	UPDATE txbox.relays SET owner = 'carol' WHERE name = 'c1';
	COMMIT;
	SET ROLE carol;
	SELECT txbox.create_handler('ch', NULL, 'public.h(txbox.message)');});
poll_ok($node, 'two',
	q{SELECT count(*) FROM pg_stat_activity WHERE datname = 'two' AND usename = 'carol'
	    AND backend_type IN ('txbox relay', 'txbox handler')},
	'2', 90, "carol's relay and handler run");
my $carol = $node->safe_psql('two', q{SELECT 'carol'::regrole::oid});
$node->safe_psql('two', q{DROP OWNED BY carol});
$node->safe_psql('postgres', q{DROP ROLE carol});
poll_ok(
	$node, 'two',
	q{SELECT state || ': ' || last_error FROM txbox.relay_status
	  UNION ALL SELECT state || ': ' || last_error FROM txbox.handler_status},
	"failed: owner role $carol was dropped\nfailed: owner role $carol was dropped", 90,
	'relay and handler of a dropped owner show failed, and why');
poll_ok($node, 'two',
	q{SELECT count(*) FROM pg_stat_activity WHERE datname = 'two'
	    AND backend_type IN ('txbox relay', 'txbox handler')},
	'0', 90, 'their workers stopped');

# what the DBA does: drop one, give the other a new owner
$node->safe_psql(
	'two', q{
	SELECT txbox.drop_handler('ch');
	CREATE ROLE dave LOGIN;
	UPDATE txbox.relays SET owner = 'dave' WHERE name = 'c1';});
poll_ok($node, 'two', q{SELECT state FROM txbox.relay_status}, 'running', 90,
	'a relay given a new owner runs again');
poll_ok($node, 'two',
	q{SELECT count(*) FROM pg_stat_activity WHERE datname = 'two' AND usename = 'dave'
	    AND backend_type = 'txbox relay'},
	'1', 90, 'as its new owner');
is($node->safe_psql('two', q{SELECT count(*) FROM txbox.handler_status}), '0',
	'a superuser drops the handler of a dropped owner');
is( $node->safe_psql(
		'two', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'txbox manager' AND datname = 'two'}),
	'1', 'the manager lived through it');

$node->stop;
done_testing();
