# pg_dump and pg_restore of a source and a target database, mid-stream,
# into a new pair of clusters (SPEC 4): everything configured comes back
# (relays, handlers, consumers, dead letters, idempotency keys, sequences),
# restored relays and handlers wait paused until resumed, and every message
# has exactly one effect at the restored target.
#
# The old source burned a few thousand xids, so its relay's saved position
# lies far above the new cluster's xids: a relay that used it would take
# every message of the new cluster as delivered.  The dumps are taken so that
# the restored target lacks messages the restored source's relay had
# delivered (the target was dumped first), holds messages delivered but not
# processed (its handler was paused), and the restored source holds messages
# never delivered (the target was down).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;

my $conf = qq{max_worker_processes = 16\n};

sub new_node
{
	my ($name, $db, %init) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%init);
	$node->append_conf('postgresql.conf', $conf);
	$node->start;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	return $node;
}

# publish messages n = from .. to (one transaction), recorded in public.sent
sub publish
{
	my ($node, $from, $to) = @_;
	$node->safe_psql('shop',
		qq{INSERT INTO public.sent (message_id, n, poison)
		   SELECT txbox.publish('orders', jsonb_build_object('n', g), 'k' || g % 3), g, false
			 FROM generate_series($from, $to) g});
}

######################################################################
# The old pair: target billing (a handler writing effects, an SQL
# consumer), source shop (a relay to billing, idempotency keys).
######################################################################

my $tgt1 = new_node('tgt1', 'billing');
$tgt1->safe_psql(
	'billing', q{
	CREATE EXTENSION txbox;
	-- no unique constraint: a second effect of a message must be countable
	CREATE TABLE public.effects (message_id uuid NOT NULL, n int NOT NULL);
	CREATE FUNCTION public.apply(m txbox.message) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
	BEGIN
		IF m.payload ? 'poison' THEN
			RAISE EXCEPTION 'poison message refused';
		END IF;
		INSERT INTO public.effects (message_id, n) VALUES (m.message_id, (m.payload->>'n')::int);
	END $f$;
	SELECT txbox.create_handler('apply', ARRAY['orders'], 'public.apply(txbox.message)',
								'{"max_attempts": 1}');
	SELECT count(*) FROM txbox.inbox_fetch('audit', ARRAY['audit']);});

my $src1 = new_node('src1', 'shop');
$src1->safe_psql(
	'shop', sprintf(
		q{
	CREATE EXTENSION txbox;
	CREATE TABLE public.sent (message_id uuid PRIMARY KEY, n int NOT NULL, poison boolean NOT NULL);
	CREATE SERVER billing FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host '%s', port '%s', dbname 'billing');
	CREATE USER MAPPING FOR CURRENT_USER SERVER billing;
	SELECT txbox.create_relay('to_billing', 'postgres', ARRAY['orders'],
							  '{"server": "billing", "backoff_max": "1s", "batch_size": 4}');
	BEGIN;
	SELECT state FROM txbox.idempotency_begin('api', 'req-1');
	SELECT txbox.idempotency_complete('api', 'req-1', '{"order": 7}', 201);
	COMMIT;},
		$tgt1->host, $tgt1->port));

# the old source's xids run far ahead of the new cluster's
$src1->safe_psql('shop',
	q{DO $$ BEGIN FOR i IN 1..5000 LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$});

# A: delivered and processed before the target's dump (one poison message,
# a dead letter at the target)
publish($src1, 1, 10);
$src1->safe_psql('shop',
	q{INSERT INTO public.sent SELECT txbox.publish('orders', '{"n": 0, "poison": true}', 'p'), 0, true});
poll_ok($tgt1, 'billing',
	q{SELECT (SELECT count(*) FROM effects) || ' ' || (SELECT count(*) FROM txbox.dead_letters)},
	'10 1', 90, 'old pair: 10 effects and the poison message dead-lettered');

# B: delivered, not processed (the handler is paused) when the target is dumped
$tgt1->safe_psql('billing', q{SELECT txbox.pause_handler('apply')});
publish($src1, 11, 20);
poll_ok($tgt1, 'billing', 'SELECT count(*) FROM txbox.inbox', '21', 90,
	'old pair: 10 more messages delivered, not processed');
my $tgt_dump = $tgt1->basedir . '/billing.dump';
$tgt1->command_ok([ 'pg_dump', '-Fc', '-d', 'billing', '-f', $tgt_dump ], 'pg_dump of the target');

# C: delivered after the target's dump (the restored target lacks them)
publish($src1, 21, 30);
poll_ok($src1, 'shop', q{SELECT lag_messages || ' ' || delivered FROM txbox.relay_status},
	'0 31', 90, 'old pair: delivered after the target dump');

# D: never delivered (the target is down)
$tgt1->stop;
publish($src1, 31, 40);
my $src_dump = $src1->basedir . '/shop.dump';
$src1->command_ok([ 'pg_dump', '-Fc', '-d', 'shop', '-f', $src_dump ], 'pg_dump of the source');
my $sysid1 = $src1->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()');
$src1->stop;

# every message of public.sent at src (poison excepted) has exactly one
# effect at tgt, once the handler has processed all it can (the poison
# message stays a dead letter)
sub check_effects
{
	my ($src, $tgt, $n, $what) = @_;
	poll_ok($tgt, 'billing',
		q{SELECT (SELECT count(*) FROM effects) || ' ' || lag_messages FROM txbox.handler_status WHERE name = 'apply'},
		"$n 1", 90, "$what: the handler processed every message");
	my %sent = map { $_ => 0 } split /\n/, $src->safe_psql('shop',
		'SELECT message_id FROM public.sent WHERE NOT poison');
	my ($doubled, $foreign) = (0, 0);
	for my $id (split /\n/, $tgt->safe_psql('billing', 'SELECT message_id FROM public.effects'))
	{
		if (!exists $sent{$id}) { $foreign++; next; }
		$doubled++ if $sent{$id}++;
	}
	my $missing = grep { $_ == 0 } values %sent;
	is("$missing missing, $doubled doubled, $foreign not sent", '0 missing, 0 doubled, 0 not sent',
		"$what: exactly one effect per message sent (" . scalar(keys %sent) . ')');
}

######################################################################
# The new pair, restored from the dumps as a user would
######################################################################

my $tgt2 = new_node('tgt2', 'billing');
$tgt2->command_ok([ 'pg_restore', '-d', 'billing', $tgt_dump ], 'pg_restore of the target');
my $src2 = new_node('src2', 'shop', allows_streaming => 1);
$src2->command_ok([ 'pg_restore', '-d', 'shop', $src_dump ], 'pg_restore of the source');

isnt($src2->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()'),
	$sysid1, 'the new source is another cluster');

is( $tgt2->safe_psql(
		'billing', q{
		SELECT (SELECT string_agg(name || ':' || state, ',') FROM txbox.handler_status)
			|| ' ' || (SELECT string_agg(consumer, ',' ORDER BY consumer) FROM txbox.consumers)
			|| ' ' || (SELECT count(*) FROM txbox.dead_letters WHERE handler = 'apply' AND payload ? 'poison')
			|| ' ' || (SELECT count(*) FROM txbox.inbox)
			|| ' ' || (SELECT count(*) FROM public.effects)}),
	'apply:paused apply,audit 1 21 10',
	'target restored: handler (paused), consumers, dead letter, inbox, effects');
is( $src2->safe_psql(
		'shop', q{
		SELECT (SELECT string_agg(name || ':' || state || ':' || (options->>'server'), ',')
				  FROM txbox.relay_status)
			|| ' ' || (SELECT count(*) FROM txbox.outbox)
			|| ' ' || (SELECT state || ':' || response::text || ':' || response_status
						 FROM txbox.idempotency_begin('api', 'req-1'))}),
	'to_billing:paused:billing 41 completed:{"order": 7}:201',
	'source restored: relay (paused), undelivered messages, idempotency key');

# point the relay at the new target, resume both, publish more (E)
$src2->safe_psql('shop',
	sprintf(q{ALTER SERVER billing OPTIONS (SET host '%s', SET port '%s');
			  SELECT txbox.resume_relay('to_billing');},
		$tgt2->host, $tgt2->port));
$tgt2->safe_psql('billing', q{SELECT txbox.resume_handler('apply')});
publish($src2, 41, 50);

# the relay delivered everything again; the restored target dropped what
# it had (A and B)
poll_ok($src2, 'shop', q{SELECT lag_messages = 0 AND duplicates >= 21 FROM txbox.relay_status},
	't', 90, 'new pair: relay done, the restored target dropped the redelivered messages');
ok($src2->log_contains(qr/txbox relay "to_billing": position saved on cluster:timeline/),
	'the relay adopted its position from another cluster');
check_effects($src2, $tgt2, 50, 'new pair');
is( $src2->safe_psql(
		'shop', q{SELECT min(id) > (SELECT max(id) FROM txbox.outbox o JOIN public.sent s USING (message_id) WHERE s.n <= 40)
				  FROM txbox.outbox o JOIN public.sent s USING (message_id) WHERE s.n > 40}),
	't', 'the outbox id sequence continues after the restored messages');

# a new relay and handler after the restore (their id sequences came back)
$tgt2->safe_psql('billing',
	q{SELECT txbox.create_handler('apply2', ARRAY['other'], 'public.apply(txbox.message)')});
is($tgt2->safe_psql('billing', q{SELECT handler_id FROM txbox.handlers WHERE name = 'apply2'}),
	'2', 'new handler after the restore');

######################################################################
# Failover: a streaming standby of the restored source is promoted (a new
# timeline); its relay starts again from what the outbox retains.
######################################################################

$src2->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('src2_standby');
$standby->init_from_backup($src2, 'bk', has_streaming => 1);
$standby->start;
publish($src2, 51, 55);
$src2->wait_for_catchup($standby);
$src2->stop('immediate');
$standby->promote;
publish($standby, 56, 60);
poll_ok($standby, 'shop', q{SELECT lag_messages = 0 AND delivered > 51 FROM txbox.relay_status},
	't', 90, 'after failover: the relay delivers again');
ok($standby->log_contains(qr/txbox relay "to_billing": position saved on cluster:timeline \d+:1, this is \d+:2/),
	'after failover: the relay adopted its position from the old timeline');
check_effects($standby, $tgt2, 60, 'after failover');

$standby->stop;
$tgt2->stop;
done_testing();
