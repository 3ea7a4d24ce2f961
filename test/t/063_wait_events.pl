# What pg_stat_activity says a waiting txbox worker waits for: its own
# named wait event on PostgreSQL 17 and later (src/compat.h), "Extension"
# before.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;

my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
$node->start;
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION txbox;
	SELECT txbox.create_relay('events', 'notify', ARRAY['shipping'], '{"channel": "shipping_events"}');
	CREATE FUNCTION public.apply(m txbox.message) RETURNS void
		LANGUAGE sql SET search_path = pg_catalog, pg_temp AS 'SELECT';
	SELECT txbox.create_handler('apply', ARRAY['orders'], 'public.apply(txbox.message)');
});

my $named = $node->pg_version >= 17;
for my $worker ('launcher', 'manager', 'relay', 'handler')
{
	my $event = $named ? 'Txbox' . ucfirst($worker) . 'Main' : 'Extension';
	# idle workers wait nearly all the time: poll until one is seen waiting
	poll_ok(
		$node, 'postgres',
		qq{SELECT wait_event_type || ' ' || wait_event FROM pg_stat_activity
		   WHERE backend_type = 'txbox $worker' AND wait_event = '$event' LIMIT 1},
		"Extension $event", 90, "the $worker waits in $event");
}

$node->stop;
done_testing();
