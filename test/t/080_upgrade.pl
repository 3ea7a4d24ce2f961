# Upgrade path (README "Upgrading"): databases on txbox 0.1.0 with relays,
# handlers and messages at every stage (waiting in the outbox behind a paused
# relay, waiting in the inbox behind a paused handler, a dead letter, an
# idempotency key, an inbox claim) are updated with ALTER EXTENSION txbox
# UPDATE while their workers run.  Nothing is lost, every message is handled
# exactly once, and the workers carry on.  Then each updated catalog must
# equal a fresh install of the default version: a schema change in src/sql/
# without its step in the upgrade script fails here.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;

my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
$node->append_conf('postgresql.conf', qq{max_worker_processes = 32
txbox.poll_interval = '200ms'
});
$node->start;

my $default_version = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'txbox'});
for my $db ('shop', 'billing', 'fresh')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
}
$node->safe_psql('fresh', 'CREATE EXTENSION txbox');

######################################################################
# 1. On 0.1.0: a relay delivering orders to billing, whose handler applies
# them; a second relay for audit messages that keeps running throughout
######################################################################

# The tests' role is named like txbox's schema: our objects go in public.
$node->safe_psql(
	'billing', q{
	CREATE EXTENSION txbox VERSION '0.1.0';
	CREATE TABLE public.effects (n int NOT NULL);
	CREATE FUNCTION public.apply(m txbox.message) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
	BEGIN
		IF m.payload ? 'poison' THEN
			RAISE EXCEPTION 'poison';
		END IF;
		INSERT INTO public.effects VALUES ((m.payload->>'n')::int);
	END $$;
	SELECT txbox.create_handler('apply', ARRAY['orders'], 'public.apply(txbox.message)',
								'{"max_attempts": 1, "backoff": "1s"}');});
$node->safe_psql(
	'shop', sprintf(
		q{
	CREATE EXTENSION txbox VERSION '0.1.0';
	CREATE SERVER billing FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host '%s', port '%s', dbname 'billing');
	CREATE USER MAPPING FOR CURRENT_USER SERVER billing;
	SELECT txbox.create_relay('orders', 'postgres', ARRAY['orders'],
							  '{"server": "billing", "backoff_max": "1s"}');
	SELECT txbox.create_relay('audit', 'postgres', ARRAY['audit'],
							  '{"server": "billing", "backoff_max": "1s"}');},
		$node->host, $node->port));
is($node->safe_psql('shop', q{SELECT extversion FROM pg_extension WHERE extname = 'txbox'}),
	'0.1.0', 'shop runs txbox 0.1.0');

# publish n = first..last on topic, one transaction
sub publish
{
	my ($topic, $first, $last) = @_;
	$node->safe_psql('shop',
		"SELECT txbox.publish('$topic', jsonb_build_object('n', g)) FROM generate_series($first, $last) g"
	);
}

sub effects { return $node->safe_psql('billing', 'SELECT count(*), count(DISTINCT n) FROM public.effects'); }

publish('orders', 1, 2);
publish('audit', 1, 1);
poll_ok($node, 'billing', 'SELECT count(*) FROM public.effects', '2', 90,
	'0.1.0: the relay delivers and the handler applies');
poll_ok($node, 'billing', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'audit'}, '1', 90,
	'0.1.0: the audit relay delivers');

# a dead letter: the handler raises for it (max_attempts 1)
$node->safe_psql('shop', q{SELECT txbox.publish('orders', '{"poison": true, "n": 0}')});
poll_ok($node, 'billing', q{SELECT count(*) FROM txbox.dead_letters WHERE handler = 'apply'},
	'1', 90, '0.1.0: the poison message is a dead letter');

# messages in the inbox behind the paused handler: 3..5
$node->safe_psql('billing', q{SELECT txbox.pause_handler('apply')});
publish('orders', 3, 5);
poll_ok($node, 'billing', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'orders'}, '6', 90,
	'0.1.0: 3 messages wait in the inbox behind the paused handler');

# messages in the outbox behind the paused relay: 6..8
$node->safe_psql('shop', q{SELECT txbox.pause_relay('orders')});
publish('orders', 6, 8);
is($node->safe_psql('shop', q{SELECT lag_messages FROM txbox.relay_status WHERE name = 'orders'}),
	'3', '0.1.0: 3 messages wait in the outbox behind the paused relay');

# an idempotency key with its response, an inbox claim
$node->safe_psql(
	'shop', q{BEGIN;
	SELECT state FROM txbox.idempotency_begin('payments', 'k1');
	SELECT txbox.idempotency_complete('payments', 'k1', '{"paid": 42}');
	COMMIT;});
is($node->safe_psql('shop', q{SELECT txbox.inbox_claim('mailer', 'm1')}),
	't', '0.1.0: first claim');

######################################################################
# 2. ALTER EXTENSION txbox UPDATE while the workers run
######################################################################

my $audit_pid_sql = q{SELECT pid FROM pg_stat_activity
  WHERE backend_type = 'txbox relay' AND application_name = 'txbox relay audit'};
my $audit_pid = $node->safe_psql('shop', $audit_pid_sql);
like($audit_pid, qr/^\d+$/, 'the audit relay has a worker');
for my $db ('billing', 'shop')
{
	$node->safe_psql($db, 'ALTER EXTENSION txbox UPDATE');
	is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'txbox'}),
		$default_version, "$db: updated to $default_version");
}

######################################################################
# 3. Nothing lost, everything carries on
######################################################################

publish('audit', 2, 3);
poll_ok($node, 'billing', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'audit'}, '3', 90,
	'updated: the audit relay delivers what is published after the update');
is($node->safe_psql('shop', $audit_pid_sql), $audit_pid,
	'updated: by the same worker (the update did not disturb it)');

$node->safe_psql('shop', q{SELECT txbox.resume_relay('orders')});
$node->safe_psql('billing', q{SELECT txbox.resume_handler('apply')});
publish('orders', 9, 10);
poll_ok($node, 'billing', 'SELECT count(*) FROM public.effects', '10', 90,
	'updated: the waiting messages and new ones are applied');
is(effects(), '10|10', 'updated: each of 1..10 exactly once');
is( $node->safe_psql(
		'shop', q{SELECT name || ' ' || state || ' ' || lag_messages FROM txbox.relay_status ORDER BY name}),
	"audit running 0\norders running 0",
	'updated: both relays run with nothing left');

# the dead letter survived; replayed after the fix, it is applied
$node->safe_psql(
	'billing', q{
	CREATE OR REPLACE FUNCTION public.apply(m txbox.message) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
	BEGIN
		INSERT INTO public.effects VALUES ((m.payload->>'n')::int);
	END $$;
	SELECT txbox.replay_dead_letter(dead_letter_id) FROM txbox.dead_letters WHERE handler = 'apply';});
poll_ok($node, 'billing', 'SELECT count(*) FROM public.effects', '11', 90,
	'updated: the replayed dead letter is applied');
is(effects(), '11|11', 'updated: still each message once');

is( $node->safe_psql(
		'shop', q{SELECT state || ' ' || response::text FROM txbox.idempotency_begin('payments', 'k1')}),
	'completed {"paid": 42}',
	'updated: the idempotency key keeps its response');
is($node->safe_psql('shop', q{SELECT txbox.inbox_claim('mailer', 'm1')}),
	'f', 'updated: the claim is kept (a duplicate)');

######################################################################
# 4. The updated catalogs equal a fresh install
######################################################################

# One line per property of every object of the extension and of schema
# txbox, without OIDs (names instead); the data of its tables is not
# compared.  Function bodies must be the same text: an upgrade script
# repeats a changed function exactly as src/sql/ has it.
my $catalog = q{
SET search_path = pg_catalog;
WITH ext AS (SELECT * FROM pg_extension WHERE extname = 'txbox'),
nsp AS (SELECT oid FROM pg_namespace WHERE nspname = 'txbox'),
member AS (SELECT d.classid, d.objid FROM pg_depend d, ext
			WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid
			  AND d.deptype = 'e'),
rel AS (SELECT c.* FROM pg_class c, nsp WHERE c.relnamespace = nsp.oid),
line(l) AS (
	SELECT 'extension ' || extversion || ' relocatable=' || extrelocatable
		   || ' schema=' || extnamespace::regnamespace FROM ext
	UNION ALL
	SELECT 'requires ' || pg_describe_object(d.refclassid, d.refobjid, 0)
	  FROM pg_depend d, ext
	 WHERE d.classid = 'pg_extension'::regclass AND d.objid = ext.oid
	   AND d.refclassid = 'pg_extension'::regclass
	UNION ALL
	SELECT 'config ' || c::regclass || ' ' || coalesce(w, '')
	  FROM ext, unnest(extconfig, extcondition) AS u(c, w)
	UNION ALL
	SELECT 'member ' || pg_describe_object(classid, objid, 0) FROM member
	UNION ALL
	SELECT 'schema ' || nspname || ' owner=' || pg_get_userbyid(nspowner) || ' acl=' || coalesce(nspacl::text, '')
	  FROM pg_namespace WHERE nspname = 'txbox'
	UNION ALL
	SELECT 'relation ' || oid::regclass || ' kind=' || relkind::text || ' owner=' || pg_get_userbyid(relowner)
		   || ' persistence=' || relpersistence::text || ' options=' || coalesce(reloptions::text, '')
		   || ' acl=' || coalesce(relacl::text, '') || ' rls=' || relrowsecurity || '/' || relforcerowsecurity
		   || ' replident=' || relreplident::text
		   || ' partkey=' || CASE WHEN relkind = 'p' THEN pg_get_partkeydef(oid) ELSE '' END
		   || ' partbound=' || coalesce(pg_get_expr(relpartbound, oid), '')
		   || ' parents=' || coalesce((SELECT string_agg(inhparent::regclass::text, ',' ORDER BY inhseqno)
										 FROM pg_inherits WHERE inhrelid = rel.oid), '')
		   || ' index=' || CASE WHEN relkind IN ('i', 'I') THEN pg_get_indexdef(oid) ELSE '' END
		   || ' view=' || CASE WHEN relkind IN ('v', 'm') THEN pg_get_viewdef(oid) ELSE '' END
	  FROM rel
	UNION ALL
	SELECT 'column ' || a.attrelid::regclass || ' #'
		   || row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) || ' ' || a.attname
		   || ' ' || format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull
		   || ' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
		   || ' identity=' || a.attidentity::text || ' generated=' || a.attgenerated::text
		   || ' collation=' || CASE WHEN a.attcollation <> 0 THEN a.attcollation::regcollation::text ELSE '' END
		   || ' local=' || a.attislocal || ' inherited=' || a.attinhcount
		   || ' acl=' || coalesce(a.attacl::text, '') || ' compression=' || a.attcompression::text
		   -- some builds keep a per-column version (pg_attver) among the options
		   || ' options=' || array(SELECT o FROM unnest(a.attoptions) o
									 WHERE o NOT LIKE 'pg\_attver=%' ORDER BY o)::text
	  FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
		   LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	 WHERE a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT 'sequence ' || seqrelid::regclass || ' ' || format_type(seqtypid, NULL) || ' start=' || seqstart
		   || ' increment=' || seqincrement || ' min=' || seqmin || ' max=' || seqmax
		   || ' cache=' || seqcache || ' cycle=' || seqcycle
		   || ' owned_by=' || coalesce((SELECT refobjid::regclass || '.' || attname
										  FROM pg_depend d JOIN pg_attribute a
											ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
										 WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
										   AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'), '')
	  FROM pg_sequence s JOIN rel ON rel.oid = s.seqrelid
	UNION ALL
	SELECT 'constraint ' || coalesce(conrelid::regclass::text, contypid::regtype::text) || ' ' || conname
		   || ' ' || pg_get_constraintdef(c.oid) || ' local=' || conislocal || ' inherited=' || coninhcount
	  FROM pg_constraint c, nsp WHERE c.connamespace = nsp.oid
	UNION ALL
	SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled=' || tgenabled::text
	  FROM pg_trigger t JOIN rel ON rel.oid = t.tgrelid WHERE NOT t.tgisinternal
	UNION ALL
	SELECT 'policy ' || polrelid::regclass || ' ' || polname || ' cmd=' || polcmd::text
		   || ' permissive=' || polpermissive || ' roles=' || polroles::regrole[]::text
		   || ' using=' || coalesce(pg_get_expr(polqual, polrelid), '')
		   || ' check=' || coalesce(pg_get_expr(polwithcheck, polrelid), '')
	  FROM pg_policy p JOIN rel ON rel.oid = p.polrelid
	UNION ALL
	SELECT 'rule ' || pg_get_ruledef(r.oid)
	  FROM pg_rewrite r JOIN rel ON rel.oid = r.ev_class WHERE r.rulename <> '_RETURN'
	UNION ALL
	SELECT 'function ' || CASE WHEN p.prokind = 'a'
							   THEN 'aggregate ' || p.oid::regprocedure || ' ' || pg_get_function_result(p.oid)
							   ELSE pg_get_functiondef(p.oid) END
		   || ' owner=' || pg_get_userbyid(p.proowner) || ' acl=' || coalesce(p.proacl::text, '')
	  FROM pg_proc p, nsp WHERE p.pronamespace = nsp.oid
	UNION ALL
	SELECT 'type ' || t.oid::regtype || ' kind=' || t.typtype::text || ' owner=' || pg_get_userbyid(t.typowner)
		   || ' base=' || CASE WHEN t.typbasetype <> 0 THEN format_type(t.typbasetype, t.typtypmod) ELSE '' END
		   || ' notnull=' || t.typnotnull || ' default=' || coalesce(t.typdefault, '')
		   || ' labels=' || coalesce((SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder)
										FROM pg_enum WHERE enumtypid = t.oid), '')
		   || ' acl=' || coalesce(t.typacl::text, '')
	  FROM pg_type t, nsp WHERE t.typnamespace = nsp.oid
	UNION ALL
	SELECT 'fdw ' || fdwname || ' owner=' || pg_get_userbyid(fdwowner)
		   || ' handler=' || fdwhandler::regproc || ' validator=' || fdwvalidator::regproc
		   || ' options=' || coalesce(fdwoptions::text, '') || ' acl=' || coalesce(fdwacl::text, '')
	  FROM pg_foreign_data_wrapper f JOIN member m
		ON m.classid = 'pg_foreign_data_wrapper'::regclass AND m.objid = f.oid
	UNION ALL
	SELECT 'event trigger ' || evtname || ' ' || evtevent || ' ' || evtfoid::regproc
		   || ' enabled=' || evtenabled::text || ' tags=' || coalesce(evttags::text, '')
	  FROM pg_event_trigger e JOIN member m
		ON m.classid = 'pg_event_trigger'::regclass AND m.objid = e.oid
	UNION ALL
	SELECT 'comment ' || pg_describe_object(d.classoid, d.objoid, d.objsubid) || ': ' || d.description
	  FROM pg_description d
	 WHERE (d.classoid, d.objoid) IN (SELECT classid, objid FROM member
									  UNION ALL SELECT 'pg_class'::regclass, oid FROM rel)
	UNION ALL
	SELECT 'initprivs ' || pg_describe_object(i.classoid, i.objoid, i.objsubid) || ' ' || i.privtype::text
		   || ' ' || i.initprivs::text
	  FROM pg_init_privs i
	 WHERE (i.classoid, i.objoid) IN (SELECT classid, objid FROM member
									  UNION ALL SELECT 'pg_class'::regclass, oid FROM rel)
)
SELECT replace(l, chr(10), ' NL ') FROM line};

my %fresh = map { $_ => 1 } split /\n/, $node->safe_psql('fresh', $catalog);
cmp_ok(scalar(keys %fresh), '>', 500, 'the catalog description of a fresh install has content');
for my $db ('shop', 'billing')
{
	my %updated = map { $_ => 1 } split /\n/, $node->safe_psql($db, $catalog);
	my @missing = grep { !$updated{$_} } sort keys %fresh;
	my @extra = grep { !$fresh{$_} } sort keys %updated;
	ok(!@missing && !@extra,
		"$db: the updated catalog equals a fresh $default_version install");
	diag "only in a fresh install (missing from the upgrade script?):\n  "
	  . join("\n  ", @missing) if @missing;
	diag "only after the update:\n  " . join("\n  ", @extra) if @extra;
}

done_testing();
