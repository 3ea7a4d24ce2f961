# Outbox retention: delivered messages leave in bulk (a whole generation
# truncated) once every relay delivered them and outbox_retention passed;
# a paused relay holds retention back, and no undelivered message is ever
# removed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
$node->append_conf('postgresql.conf', qq{txbox.outbox_retention = '2s'\ntxbox.poll_interval = '200ms'\n});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION txbox;
	SELECT txbox.create_relay('r', 'notify', NULL, '{"channel": "c"}');
});

$node->safe_psql('postgres', q{SELECT txbox.publish('t', '{"m": "A"}')});
ok($node->poll_query_until('postgres', q{SELECT delivered = 1 FROM txbox.relay_status}),
	'A delivered');
$node->safe_psql('postgres', q{SELECT txbox.pause_relay('r')});
$node->safe_psql('postgres', q{SELECT txbox.publish('t', '{"m": "B"}')});

# the manager rotates through the empty generations, then must stop at the
# one holding B, which the paused relay has not delivered
ok( $node->poll_query_until(
		'postgres', q{SELECT count(*) = 2 FROM txbox._generation_end WHERE relname = 'outbox'}),
	'the outbox rotated through its empty generations');
sleep 4;
is($node->safe_psql('postgres', q{SELECT string_agg(payload->>'m', ',' ORDER BY id) FROM txbox.outbox}),
	'A,B', 'a paused relay holds retention back: nothing is removed');
is($node->safe_psql('postgres', q{SELECT lag_messages FROM txbox.relay_status}),
	'1', 'and its lag shows it');

$node->safe_psql('postgres', q{SELECT txbox.resume_relay('r')});
ok($node->poll_query_until('postgres', q{SELECT delivered = 2 FROM txbox.relay_status}),
	'B delivered after resume');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM txbox.outbox}),
	'then the delivered generation is truncated');
ok( $node->safe_psql(
		'postgres', q{SELECT n_tup_del FROM pg_stat_user_tables WHERE relname LIKE 'outbox_%' ORDER BY n_tup_del DESC LIMIT 1})
	  == 0,
	'never by DELETE');

# with no relay at all, messages leave after the retention too
$node->safe_psql('postgres', q{SELECT txbox.drop_relay('r')});
$node->safe_psql('postgres', q{SELECT txbox.publish('t', '{"m": "C"}')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM txbox.outbox}),
	'without relays, messages leave after outbox_retention');
$node->stop;
done_testing();
