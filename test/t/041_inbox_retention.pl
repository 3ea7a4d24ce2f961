# Retention purges what is past its window and nothing else: processed
# inbox messages leave (a whole generation truncated, never a DELETE) while
# the messages an SQL consumer has not processed stay until inbox_done;
# dedup records outlive the inbox rotation (a redelivered message stays a
# duplicate), stay at least txbox.dedup_retention and as long as the inbox
# holds their message (here: held back by dead letters); expired idempotency
# keys leave, unexpired ones stay; resolved dead letters past
# txbox.dead_letter_retention are deleted, unresolved dead letters
# stay.
use strict;
use warnings;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;

my $t_start = time();


# The manager runs retention every second (outbox_retention 2s); the
# idempotency_ttl of the server (2s) is how often the keys may rotate,
# sessions set their keys' own.  dedup_retention is 60s here.
my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{log_statement = none
txbox.inbox_retention = '2s'
txbox.dedup_retention = '60s'
txbox.outbox_retention = '2s'
txbox.idempotency_ttl = '2s'
txbox.dead_letter_retention = '1s'
txbox.poll_interval = '200ms'
});
$node->start;

# The tests' role is named like txbox's schema ("$user" in search_path):
# our own tables go in public explicitly.
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION txbox;
	-- what the handler did, and what we delivered
	CREATE TABLE public.done (message_id uuid NOT NULL, tag text NOT NULL);
	CREATE TABLE public.sent (message_id uuid PRIMARY KEY, topic text NOT NULL, tag text NOT NULL);
	-- deliver messages into the inbox as a relay does (key = tag)
	CREATE FUNCTION public.receive(topic text, tags text[], extra jsonb DEFAULT '{}') RETURNS integer
	LANGUAGE sql AS $$
		WITH m AS (INSERT INTO public.sent SELECT gen_random_uuid(), topic, t FROM unnest(tags) t
				   RETURNING *)
		SELECT txbox._inbox_receive('test', array_agg(m.message_id), array_agg(m.topic),
				array_agg(m.tag), array_agg(NULL::jsonb), array_agg(jsonb_build_object('tag', m.tag) || extra),
				array_agg(NULL::bytea), array_agg(now()))
		  FROM m
	$$;
	-- the same messages again (a redelivery: same ids)
	CREATE FUNCTION public.redeliver(tags text[]) RETURNS integer
	LANGUAGE sql AS $$
		SELECT txbox._inbox_receive('test', array_agg(s.message_id), array_agg(s.topic),
				array_agg(s.tag), array_agg(NULL::jsonb), array_agg(jsonb_build_object('tag', s.tag)),
				array_agg(NULL::bytea), array_agg(now()))
		  FROM public.sent s WHERE s.tag = ANY (tags)
	$$;
	CREATE FUNCTION public.work(m txbox.message) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
	BEGIN
		IF m.payload ? 'poison' THEN
			RAISE EXCEPTION 'poison %', m.key;
		END IF;
		INSERT INTO public.done VALUES (m.message_id, m.key);
	END $$;
	-- an SQL consumer of topic audit: registered by its first fetch
	SELECT count(*) FROM txbox.inbox_fetch('auditor', ARRAY['audit']);
	SELECT txbox.create_handler('h', ARRAY['work'], 'public.work(txbox.message)',
								'{"max_attempts": 1, "backoff": "1s"}');
});
my $dedup_since = $node->safe_psql('postgres',
	q{SELECT extract(epoch FROM switched_at) FROM txbox._generation WHERE relname = 'inbox_dedup'});

sub inbox_count
{
	my $like = shift;
	return "SELECT count(*) FROM txbox.inbox WHERE key LIKE '$like'";
}

sub current_gen
{
	my $table = shift;
	return $node->safe_psql('postgres',
		"SELECT current_gen FROM txbox._generation WHERE relname = '$table'");
}

# wait until table's current generation is not gen
sub wait_gen_moves_from
{
	my ($table, $gen, $name, $secs) = @_;
	poll_ok($node, 'postgres',
		"SELECT current_gen <> $gen FROM txbox._generation WHERE relname = '$table'",
		't', $secs // 20, $name);
}

my @w = map { "w$_" } 1 .. 5;
my @a = map { "a$_" } 1 .. 5;
my $warr = "ARRAY['" . join("','", @w) . "']";
my $aarr = "ARRAY['" . join("','", @a) . "']";

######################################################################
# 1. Inbox: processed messages leave, unprocessed ones stay
######################################################################

my $t_w = time();
is($node->safe_psql('postgres', "SELECT public.receive('work', $warr)"), '5',
	'five messages for the handler arrive');
my $wgen = $node->safe_psql('postgres', q{SELECT string_agg(DISTINCT gen::text, ',') FROM txbox.inbox});
poll_ok($node, 'postgres', 'SELECT count(*) FROM public.done', '5', 20, 'the handler processes them');

# the SQL consumer's messages go into a later generation than the
# handler's (a generation leaves whole, oldest first)
wait_gen_moves_from('inbox', $wgen, 'the inbox rotates');
is($node->safe_psql('postgres', "SELECT public.receive('audit', $aarr)"), '5',
	'five messages for the SQL consumer arrive, after a rotation');
# (not "a generation other than $wgen": by now the inbox may have wrapped
# around to $wgen, once the handler's processed messages left it)
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM (SELECT gen FROM txbox.inbox GROUP BY gen
					  HAVING bool_or(key LIKE 'w%') AND bool_or(key LIKE 'a%')) s}),
	'0', '... in a later generation: none holds messages of both');

poll_ok($node, 'postgres', inbox_count('w%'), '0', 20,
	'the processed messages leave the inbox after inbox_retention');
my $gone = time() - $t_w;
cmp_ok($gone, '>=', 2, sprintf('... not before inbox_retention (2s): gone after %.1f s', $gone));
is($node->safe_psql('postgres', inbox_count('a%')), '5',
	'the SQL consumer\'s unprocessed messages stay');
sleep 4;    # several more retention rounds
is($node->safe_psql('postgres', inbox_count('a%')), '5',
	'... and keep staying while unprocessed');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM txbox.inbox i WHERE i.topic = 'audit'
		  AND NOT EXISTS (SELECT 1 FROM txbox.inbox_dedup d
						   WHERE d.consumer = 'auditor' AND d.message_id = i.message_id::text)}),
	'5', 'they are the SQL consumer\'s backlog');

######################################################################
# 2. Dedup records outlive the inbox rotation
######################################################################

my $w1 = $node->safe_psql('postgres', q{SELECT message_id FROM public.sent WHERE tag = 'w1'});
is( $node->safe_psql(
		'postgres', qq{BEGIN; SELECT txbox.inbox_claim('h', '$w1'); ROLLBACK;}),
	'f', 'a processed message that left the inbox is still a duplicate for its consumer');
is($node->safe_psql('postgres', "SELECT public.redeliver($warr)"), '5',
	'a redelivery of the processed messages is stored again (the inbox no longer has them)');
is($node->safe_psql('postgres', q{SELECT lag_messages FROM txbox.handler_status}),
	'0', 'the redelivered copies count as processed: no lag');
sleep 2;    # rounds of the handler
is( $node->safe_psql(
		'postgres', q{SELECT count(*) || ' ' || count(DISTINCT message_id) FROM public.done}),
	'5 5', 'the redelivery had no second effect');
is($node->safe_psql('postgres', q{SELECT processed FROM txbox.handler_status}),
	'5', 'handler_status: 5 processed');

######################################################################
# 3. The SQL consumer processes its messages: then they leave too
######################################################################

is( $node->safe_psql(
		'postgres', q{BEGIN;
		CREATE TEMP TABLE fetched AS SELECT * FROM txbox.inbox_fetch('auditor', ARRAY['audit']);
		SELECT txbox.inbox_done('auditor', ARRAY(SELECT message_id FROM fetched));
		COMMIT;}),
	'5', 'the SQL consumer fetches its five messages and records them done');
poll_ok($node, 'postgres', inbox_count('a%'), '0', 20,
	'after inbox_done they leave the inbox too');
# the redelivered copies, in a generation after them, could not go before
poll_ok($node, 'postgres', inbox_count('w%'), '0', 20,
	'so do the redelivered copies, as processed messages');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) || ' ' || count(DISTINCT message_id) FROM public.done}),
	'5 5', 'still no second effect of the redelivered messages');

######################################################################
# 4. Idempotency keys: expired ones leave, unexpired ones stay
######################################################################

my $t_s = time();
# one transaction: a rotation cannot split the three keys over two
# generations (a switch waits for writers)
my $short = q{BEGIN; SET LOCAL txbox.idempotency_ttl = '1s';};
$short .= qq{SELECT state FROM txbox.idempotency_begin('api', 'short-$_');
	SELECT txbox.idempotency_complete('api', 'short-$_', '{"n": $_}');}
  for 1 .. 3;
$node->safe_psql('postgres', "$short COMMIT;");
my $sgen = $node->safe_psql('postgres',
	q{SELECT string_agg(DISTINCT gen::text, ',') FROM txbox.idempotency_keys WHERE key LIKE 'short-%'});
wait_gen_moves_from('idempotency_keys', $sgen, 'the idempotency keys rotate');
$node->safe_psql(
	'postgres', q{BEGIN; SET LOCAL txbox.idempotency_ttl = '1h';
	SELECT state FROM txbox.idempotency_begin('api', 'long');
	SELECT txbox.idempotency_complete('api', 'long', '{"kept": true}');
	COMMIT;});
isnt($node->safe_psql('postgres', q{SELECT gen FROM txbox.idempotency_keys WHERE key = 'long'}),
	$sgen, 'a key with a TTL of 1 h, in a later generation');
is($node->safe_psql('postgres', q{SELECT count(*) FROM txbox.idempotency_keys WHERE key = 'long'}),
	'1', 'the long key is stored');
poll_ok($node, 'postgres', q{SELECT count(*) FROM txbox.idempotency_keys WHERE key LIKE 'short-%'},
	'0', 20, 'the expired keys leave');
$gone = time() - $t_s;
cmp_ok($gone, '>=', 1, sprintf('... not before they expired (1s): gone after %.1f s', $gone));
is( $node->safe_psql(
		'postgres', q{SELECT state || ' ' || response FROM txbox.idempotency_begin('api', 'long')}),
	'completed {"kept": true}', 'the unexpired key stays, with its response');

######################################################################
# 5. Dead letters: resolved ones leave after dead_letter_retention,
#    unresolved ones (handlers' and relays') stay
######################################################################

is($node->safe_psql('postgres', q{SELECT public.receive('work', ARRAY['p1', 'p2', 'p3'], '{"poison": true}')}),
	'3', 'three poison messages arrive');
poll_ok($node, 'postgres', q{SELECT count(*) FROM txbox.dead_letters}, '3', 20,
	'each becomes a dead letter (max_attempts 1)');
# other keys flow meanwhile: 500 messages handled after the poison ones
is($node->safe_psql('postgres', q{SELECT public.receive('work', array_agg('b' || g)) FROM generate_series(1, 500) g}),
	'500', 'then 500 messages of other keys arrive');
poll_ok($node, 'postgres', q{SELECT count(*) FROM public.done}, '505', 20,
	'and are handled while the dead letters wait');
# a later message of p1's key, waiting behind p1's dead letter until the
# discard (the worker's floor has moved past both meanwhile)
is($node->safe_psql('postgres', q{SELECT public.receive('work', ARRAY['p1', 'b501'])}), '2',
	'a later message of key p1 arrives, and one of another key');
poll_ok($node, 'postgres', q{SELECT count(*) FROM public.done WHERE tag IN ('p1', 'b501')}, '1', 20,
	'the other key\'s is handled, p1\'s waits behind its dead letter');
# p1 discarded, p3 replayed (and it fails again: a new dead letter), p2 left
is( $node->safe_psql(
		'postgres', q{SELECT txbox.discard_dead_letter(dead_letter_id) IS NOT NULL FROM txbox.dead_letters WHERE key = 'p1';
					  SELECT txbox.replay_dead_letter(dead_letter_id) IS NOT NULL FROM txbox.dead_letters WHERE key = 'p3';}),
	"t\nt", 'one dead letter discarded, one replayed');
# a relay's dead letter (not replayed): relays' dead letters block nothing,
# and stay until resolved (SPEC 1.4) like handlers'
$node->safe_psql(
	'postgres', q{INSERT INTO txbox.dead_letters (relay, message_id, topic, published_at, attempts, last_error)
				  VALUES ('some_relay', gen_random_uuid(), 'work', now(), 10, 'rejected')});
# the handler goes on with new messages after the discard
is($node->safe_psql('postgres', q{SELECT public.receive('work', ARRAY['w6'])}), '1',
	'a new message arrives after the discard and the replay');
poll_ok($node, 'postgres', q{SELECT count(*) FROM public.done WHERE tag = 'w6'}, '1', 15,
	'the handler handles it');
poll_ok($node, 'postgres', q{SELECT count(*) FROM public.done WHERE tag = 'p1'}, '1', 15,
	'the message that waited behind the discarded dead letter is handled');
poll_ok(
	$node, 'postgres',
	q{SELECT string_agg(coalesce(key, relay) || ':' || (replayed_at IS NOT NULL) || ':' || (discarded_at IS NOT NULL), ' '
					   ORDER BY coalesce(key, relay)) FROM txbox.dead_letters},
	'p2:false:false p3:false:false some_relay:false:false', 20,
	'the discarded and the replayed dead letter are deleted; the replayed message failed again');
sleep 3;
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FILTER (WHERE failed_at < now() - interval '2s') FROM txbox.dead_letters}),
	'3', 'the unresolved dead letters (the handler\'s and the relay\'s) stay past dead_letter_retention');
is( $node->safe_psql(
		'postgres', q{SELECT state || ' ' || failing FROM txbox.handler_status}),
	'blocked 2', 'and still block their keys');

######################################################################
# 6. Dedup records stay at least dedup_retention (60s)
######################################################################

my $claims = $node->safe_psql('postgres', q{SELECT count(*) FROM txbox.inbox_dedup});
cmp_ok($claims, '>=', 511, "dedup records of the handler and the SQL consumer ($claims)");
note sprintf('waiting for the dedup records to rotate, %.0f s into the test', time() - $t_start);
# due 60 s after the extension was created: wait up to 75 s from then
my $wait = $node->safe_psql('postgres',
	q{SELECT greatest(ceil(extract(epoch FROM switched_at + interval '75s' - now())), 10)::int
	  FROM txbox._generation WHERE relname = 'inbox_dedup'});
wait_gen_moves_from('inbox_dedup', 0, 'the dedup records rotate once', $wait);
cmp_ok(
	$node->safe_psql(
		'postgres', q{SELECT extract(epoch FROM switched_at) FROM txbox._generation WHERE relname = 'inbox_dedup'})
	  - $dedup_since,
	'>=', 60, 'not before dedup_retention');
is($node->safe_psql('postgres', q{SELECT count(*) FROM txbox.inbox_dedup}),
	$claims, 'the rotation removed none of the younger records');
is( $node->safe_psql(
		'postgres', qq{BEGIN; SELECT txbox.inbox_claim('h', '$w1'); ROLLBACK;}),
	'f', 'a processed message is still a duplicate');
is($node->safe_psql('postgres', q{SELECT count(*) FROM txbox.idempotency_keys WHERE key = 'long'}),
	'1', 'the unexpired idempotency key is still there');

# The dead letters hold the inbox back, and with it every message received
# after them, processed or not.  The next rotation of the dedup records,
# due dedup_retention after the first, would remove the records of
# processed messages the inbox still holds (a handler looking at them again
# would run them twice): it waits until the inbox let go of them.
my $due = $node->safe_psql('postgres',
	q{SELECT ceil(extract(epoch FROM switched_at + interval '64s' - now()))::int
	  FROM txbox._generation WHERE relname = 'inbox_dedup'});
note "waiting ${due}s, past the next rotation of the dedup records";
sleep($due) if $due > 0;
is($node->safe_psql('postgres', q{SELECT current_gen FROM txbox._generation WHERE relname = 'inbox_dedup'}),
	'1', 'past dedup_retention again, the dedup records stay while the inbox holds their messages');
is( $node->safe_psql(
		'postgres', q{SELECT (count(*) >= 503) || ' ' || count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM txbox.inbox_dedup x
					  WHERE x.consumer = 'h' AND x.message_id = i.message_id::text))
					  FROM txbox.inbox i JOIN public.done d USING (message_id)}),
	'true 0', 'every processed message the inbox holds (the 503 after the dead letters) still has its dedup record');
$node->safe_psql('postgres', q{SELECT txbox.discard_dead_letter(dead_letter_id) FROM txbox.dead_letters
							   WHERE handler IS NOT NULL AND discarded_at IS NULL});
wait_gen_moves_from('inbox_dedup', 1, 'once the dead letters are resolved and the inbox drained, the dedup records rotate', 30);
poll_ok($node, 'postgres', q{SELECT count(*) FROM txbox.dead_letters WHERE discarded_at IS NOT NULL},
	'0', 30, '... and the discarded dead letters are deleted past dead_letter_retention');

######################################################################
# 7. All of it without a DELETE on the rotated tables.  The workers'
#    table statistics reach pg_stat_user_tables when they exit: restart.
######################################################################

$node->restart;
is( $node->safe_psql(
		'postgres', q{SELECT coalesce(sum(n_tup_del), 0) FROM pg_stat_user_tables
					  WHERE schemaname = 'txbox' AND relname ~ '^(inbox|inbox_dedup|idempotency_keys|outbox)_[0-9]$'}),
	'0', 'no row of the inbox, dedup records or idempotency keys was deleted one by one');
cmp_ok(
	$node->safe_psql(
		'postgres', q{SELECT n_tup_del FROM pg_stat_user_tables WHERE schemaname = 'txbox' AND relname = 'dead_letters'}),
	'>=', 3, 'while the dead letters\' deletes are counted (the statistics are there)');

note sprintf('total %.1f s', time() - $t_start);
$node->stop;
done_testing();
