# Relay credentials (issue 9, items 8 and 9), postgres_fdw's rules as the
# floor: a non-superuser's relay never borrows the source server account's
# credentials (here its .pgpass), libpq options that name a file on the
# source server are superuser-only, and the remote session is pinned
# whatever the receiving role's own defaults are.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;

my $tsuper_pw = 'Tsuper-Secret-4b1e07';
my $recv_pw = 'Recv-Secret-93ad2c';
my $receive_args = 'source text, message_ids uuid[], topics text[], keys text[],'
  . ' headers jsonb[], payloads jsonb[], payloads_bytes bytea[], published_at timestamptz[]';

# Target: its superuser regress_tsuper and the relay's login regress_recv
# must authenticate with scram; regress_recv's own defaults are all unlike
# what a relay needs.
my $target = PostgreSQL::Test::Cluster->new('target');
$target->init;
$target->append_conf('postgresql.conf', "password_encryption = 'scram-sha-256'");
$target->start;
$target->safe_psql(
	'postgres', qq{SET log_statement = 'none';
	  CREATE ROLE regress_tsuper SUPERUSER LOGIN PASSWORD '$tsuper_pw';
	  CREATE ROLE regress_recv LOGIN PASSWORD '$recv_pw';});
$target->safe_psql(
	'postgres', q{ALTER ROLE regress_recv SET search_path = public;
	  ALTER ROLE regress_recv SET TimeZone = 'Asia/Tokyo';
	  ALTER ROLE regress_recv SET DateStyle = 'SQL, DMY';
	  ALTER ROLE regress_recv SET IntervalStyle = 'sql_standard';
	  ALTER ROLE regress_recv SET extra_float_digits = 0;
	  ALTER ROLE regress_recv SET client_encoding = 'LATIN1';
	  ALTER ROLE regress_recv SET synchronous_commit = off;
	  ALTER ROLE regress_recv SET default_transaction_isolation = 'serializable';
	  CREATE DATABASE inboxdb ENCODING 'UTF8' LOCALE 'C' TEMPLATE template0;});
# _inbox_receive wrapped to record the session the relay's statement runs in
$target->safe_psql(
	'inboxdb', qq{CREATE EXTENSION txbox;
	  GRANT USAGE ON SCHEMA txbox TO regress_recv;
	  CREATE TABLE public.seen (login name, search_path text, timezone text, datestyle text,
		intervalstyle text, extra_float_digits text, client_encoding text,
		synchronous_commit text, transaction_isolation text);
	  GRANT INSERT ON public.seen TO regress_recv;
	  ALTER FUNCTION txbox._inbox_receive($receive_args) RENAME TO _inbox_receive_real;
	  GRANT EXECUTE ON FUNCTION txbox._inbox_receive_real($receive_args) TO regress_recv;
	  CREATE FUNCTION txbox._inbox_receive($receive_args) RETURNS integer
	  LANGUAGE plpgsql AS \$\$
	  BEGIN
		INSERT INTO public.seen VALUES (session_user, current_setting('search_path'),
		  current_setting('TimeZone'), current_setting('DateStyle'),
		  current_setting('IntervalStyle'), current_setting('extra_float_digits'),
		  current_setting('client_encoding'), current_setting('synchronous_commit'),
		  current_setting('transaction_isolation'));
		RETURN txbox._inbox_receive_real(source, message_ids, topics, keys, headers,
		  payloads, payloads_bytes, published_at);
	  END \$\$;});
my $hba_file = $target->data_dir . '/pg_hba.conf';
my $hba = slurp_file($hba_file);
open my $fh, '>', $hba_file or die "cannot write $hba_file: $!";
print $fh "local all regress_tsuper scram-sha-256\n"
  . "local all regress_recv scram-sha-256\n"
  . $hba;
close $fh;
$target->reload;

# Source: its postmaster (so every relay worker) finds regress_tsuper's
# password in the server account's password file.
my $pgpass = "$PostgreSQL::Test::Utils::tmp_check/pgpass";
open $fh, '>', $pgpass or die "cannot write $pgpass: $!";
print $fh "*:*:*:regress_tsuper:$tsuper_pw\n";
close $fh;
chmod 0600, $pgpass;
my $source = PostgreSQL::Test::Cluster->new('source');
$source->init;
$source->append_conf('postgresql.conf', 'max_worker_processes = 16');
{
	local $ENV{PGPASSFILE} = $pgpass;
	$source->start;
}
my ($host, $port) = ($target->host, $target->port);
$source->safe_psql('postgres',
	q{CREATE DATABASE shop ENCODING 'UTF8' LOCALE 'C' TEMPLATE template0});
$source->safe_psql(
	'shop', qq{CREATE EXTENSION txbox;
	  CREATE ROLE regress_owner LOGIN;
	  GRANT USAGE ON SCHEMA txbox TO regress_owner;
	  GRANT EXECUTE ON FUNCTION txbox.create_relay(text, text, text[], jsonb) TO regress_owner;
	  GRANT USAGE ON FOREIGN DATA WRAPPER txbox_fdw TO regress_owner;
	  CREATE SERVER srv FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host '$host', port '$port', dbname 'inboxdb');
	  CREATE SERVER srv_pinned FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host '$host', port '$port', dbname 'inboxdb');
	  CREATE SERVER srv_sslcert FOREIGN DATA WRAPPER txbox_fdw OPTIONS (host '$host');
	  CREATE SERVER srv_sslkey FOREIGN DATA WRAPPER txbox_fdw OPTIONS (host '$host');
	  GRANT USAGE ON FOREIGN SERVER srv, srv_pinned TO regress_owner;
	  SET log_statement = 'none';
	  CREATE USER MAPPING FOR regress_owner SERVER srv_pinned
		OPTIONS (user 'regress_recv', password '$recv_pw');
	  -- a superuser's relay may use the server account's credentials
	  CREATE USER MAPPING FOR CURRENT_USER SERVER srv OPTIONS (user 'regress_tsuper');
	  SELECT txbox.create_relay('r_super', 'postgres', ARRAY['super'],
		'{"server": "srv", "backoff_max": "1s"}');});

# run sql as regress_owner; returns psql's stderr, SQLSTATEs shown
sub as_owner
{
	my $sql = shift;
	my ($ret, $out, $err) = $source->psql('shop', $sql,
		extra_params => [ '-U', 'regress_owner', '-v', 'VERBOSITY=verbose' ]);
	return $err;
}

# 9.8: the attack -- an empty password for the target's superuser.
is( as_owner(
		q{CREATE USER MAPPING FOR regress_owner SERVER srv
		  OPTIONS (user 'regress_tsuper', password '');
		  SELECT txbox.create_relay('r_borrow', 'postgres', ARRAY['borrow'],
			'{"server": "srv", "backoff_max": "1s"}');}),
	'', 'non-superuser maps itself to the target superuser, empty password');
$source->safe_psql('shop',
	q{SELECT txbox.publish(t, '{"x": 1}') FROM unnest(ARRAY['super', 'borrow']) t});
poll_ok($target, 'inboxdb', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'super'},
	'1', 60, 'the superuser relay connects through the server account\'s .pgpass');
poll_ok($source, 'shop',
	q{SELECT state || ': ' || last_error FROM txbox.relay_status WHERE name = 'r_borrow'},
	'failed: password is required', 60,
	'empty password: the non-superuser relay fails with "password is required"');
is( $target->safe_psql(
		'inboxdb', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'borrow'}),
	'0', 'nothing delivered as the target superuser');
is( $target->safe_psql(
		'postgres', q{SELECT count(*) FROM pg_stat_activity
					  WHERE application_name = 'txbox relay r_borrow'}),
	'0', 'no session of r_borrow on the target');

# 9.9: options naming a file on the source server are superuser-only, on
# servers and on user mappings; a superuser may set them.
for my $opt ('passfile', 'service', 'sslrootcert', 'sslcrl', 'sslcrldir')
{
	my $sql = qq{CREATE SERVER srv_$opt FOREIGN DATA WRAPPER txbox_fdw
				 OPTIONS (host '$host', dbname 'inboxdb', $opt '/etc/passwd')};
	like(as_owner($sql), qr/ERROR:  42501: option "$opt" is superuser-only\nDETAIL:  [^\n]*\nHINT:  [^\n]*superuser/,
		"a non-superuser may not set $opt on a server (42501)");
	is($source->psql('shop', $sql), 0, "a superuser may set $opt on a server");
}
for my $opt ('sslcert', 'sslkey')
{
	like(
		as_owner(
			qq{ALTER USER MAPPING FOR regress_owner SERVER srv_pinned
			   OPTIONS (ADD $opt '/etc/passwd')}),
		qr/ERROR:  42501: option "$opt" is superuser-only\nDETAIL:  [^\n]*\nHINT:  [^\n]*superuser/,
		"a non-superuser may not set $opt on a user mapping (42501)");
	is( $source->psql(
			'shop', qq{CREATE USER MAPPING FOR regress_owner SERVER srv_$opt
					   OPTIONS (user 'regress_recv', $opt '/etc/passwd')}),
		0, "a superuser may set $opt on a user mapping");
}
is( $source->safe_psql(
		'shop', q{SELECT string_agg(srvname || ': ' || array_to_string(umoptions, ','), '; '
						ORDER BY srvname)
				  FROM pg_user_mappings WHERE srvname LIKE 'srv\_ssl%'}),
	'srv_sslcert: user=regress_recv,sslcert=/etc/passwd; '
	  . 'srv_sslkey: user=regress_recv,sslkey=/etc/passwd',
	'the superuser\'s user mappings are stored');

# 9.9: the remote session is pinned, whatever regress_recv's defaults.
$source->safe_psql(
	'shop', q{SET ROLE regress_owner;
	  SELECT txbox.create_relay('r_pinned', 'postgres', ARRAY['pinned'],
		'{"server": "srv_pinned", "backoff_max": "1s"}');
	  RESET ROLE;
	  SELECT txbox.publish('pinned', '{"x": 1}', key => U&'cl\00e9');});
poll_ok($target, 'inboxdb', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'pinned'},
	'1', 60, 'r_pinned delivers');
is( $target->safe_psql(
		'inboxdb',
		q{SELECT DISTINCT search_path || ' | ' || timezone || ' | ' || datestyle || ' | '
			|| intervalstyle || ' | ' || extra_float_digits || ' | ' || client_encoding
			|| ' | ' || synchronous_commit || ' | ' || transaction_isolation
		  FROM public.seen WHERE login = 'regress_recv'}),
	'pg_catalog | UTC | ISO, MDY | postgres | 3 | UTF8 | on | read committed',
	'remote session: search_path, TimeZone, DateStyle, IntervalStyle, '
	  . 'extra_float_digits, client_encoding, synchronous_commit, isolation pinned');
is( $target->safe_psql(
		'inboxdb', q{SELECT key = U&'cl\00e9' FROM txbox.inbox WHERE topic = 'pinned'}),
	't', 'a non-ASCII key arrives intact (client_encoding is the source\'s)');

$source->stop;
$target->stop;
done_testing();
