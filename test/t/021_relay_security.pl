# Relay workers and credentials: relays run as the role that created them;
# a non-superuser's relay must authenticate with a password (as
# postgres_fdw requires), and no password ever shows in the server log,
# txbox.relay_status or pg_stat_activity.
use strict;
use warnings;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;


sub lit
{
	my $s = shift;
	$s =~ s/'/''/g;
	return "'$s'";
}

sub status
{
	my ($node, $relay, $cols) = @_;
	return $node->safe_psql('shop',
		"SELECT $cols FROM txbox.relay_status WHERE name = '$relay'");
}

my $right = 'Right-Secret-7c3f9a';
my $wrong = 'Wrong-Secret-51d2e8';

# Target: scram for regress_relay everywhere except in trustdb.
my $target = PostgreSQL::Test::Cluster->new('target');
$target->init;
$target->append_conf('postgresql.conf', "password_encryption = 'scram-sha-256'");
$target->start;
# statements carrying a password are kept out of the log (log_statement = all)
$target->safe_psql(
	'postgres', qq{SET log_statement = 'none';
	  CREATE ROLE regress_relay LOGIN PASSWORD '$right';});
for my $db ('scramdb', 'trustdb')
{
	$target->safe_psql('postgres', "CREATE DATABASE $db");
	$target->safe_psql(
		$db, q{CREATE EXTENSION txbox;
		  GRANT USAGE ON SCHEMA txbox TO regress_relay;
		  GRANT EXECUTE ON FUNCTION txbox._inbox_receive(text, uuid[], text[], text[],
			jsonb[], jsonb[], bytea[], timestamptz[]) TO regress_relay;});
}
my $hba_file = $target->data_dir . '/pg_hba.conf';
my $hba = slurp_file($hba_file);
open my $fh, '>', $hba_file or die "cannot write $hba_file: $!";
print $fh "local trustdb regress_relay trust\n"
  . "local all regress_relay scram-sha-256\n"
  . $hba;
close $fh;
$target->reload;

# Source: the non-superuser regress_relay may create relays on three servers.
my $source = PostgreSQL::Test::Cluster->new('source');
$source->init;
$source->append_conf('postgresql.conf', 'max_worker_processes = 16');
$source->start;
$source->safe_psql('postgres', 'CREATE DATABASE shop');
my $host = lit($target->host);
my $port = lit($target->port);
$source->safe_psql(
	'shop', qq{CREATE EXTENSION txbox;
	  CREATE ROLE regress_relay LOGIN;
	  GRANT USAGE ON SCHEMA txbox TO regress_relay;
	  GRANT EXECUTE ON FUNCTION txbox.create_relay(text, text, text[], jsonb) TO regress_relay;
	  CREATE SERVER srv_nopw FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host $host, port $port, dbname 'scramdb');
	  CREATE SERVER srv_trust FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host $host, port $port, dbname 'trustdb');
	  CREATE SERVER srv_scram FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host $host, port $port, dbname 'scramdb');
	  GRANT USAGE ON FOREIGN SERVER srv_nopw, srv_trust, srv_scram TO regress_relay;
	  CREATE USER MAPPING FOR regress_relay SERVER srv_nopw OPTIONS (user 'regress_relay');
	  SET log_statement = 'none';
	  CREATE USER MAPPING FOR regress_relay SERVER srv_trust
		OPTIONS (user 'regress_relay', password '$right');
	  CREATE USER MAPPING FOR regress_relay SERVER srv_scram
		OPTIONS (user 'regress_relay', password '$wrong');});

# create_relay as regress_relay itself (a login of that role)
for my $r (['r_nopw', 'srv_nopw'], ['r_trust', 'srv_trust'], ['r_scram', 'srv_scram'])
{
	my ($relay, $server) = @$r;
	my ($ret, $out, $err) = $source->psql(
		'shop',
		"SELECT txbox.create_relay('$relay', 'postgres', ARRAY['$relay'],
		   '{\"server\": \"$server\", \"backoff_max\": \"1s\"}')",
		extra_params => [ '-U', 'regress_relay' ]);
	is($ret, 0, "non-superuser creates relay $relay") or diag $err;
}
my $created = time();

# An owner that cannot log in (a NOLOGIN role, reached with SET ROLE): either
# create_relay refuses it, or the relay must say why it does not run.
my ($nl_ret, $nl_out, $nl_err) = $source->psql(
	'shop', q{CREATE ROLE regress_nologin NOLOGIN;
	  GRANT USAGE ON SCHEMA txbox TO regress_nologin;
	  GRANT EXECUTE ON FUNCTION txbox.create_relay(text, text, text[], jsonb) TO regress_nologin;
	  SET ROLE regress_nologin;
	  SELECT txbox.create_relay('r_nologin', 'notify', ARRAY['r_nologin'],
		'{"channel": "nologin_events", "backoff_max": "1s"}');});
is( $source->safe_psql('shop',
		q{SELECT string_agg(DISTINCT owner::text, ',') FROM txbox.relay_status
		  WHERE name <> 'r_nologin'}),
	'regress_relay', 'the relays belong to regress_relay');
$source->safe_psql('shop',
	q{SELECT txbox.publish(t, '{"x": 1}')
	  FROM unnest(ARRAY['r_nopw', 'r_trust', 'r_scram', 'r_nologin']) t});

poll_ok(
	$source, 'shop',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'txbox relay'
	  AND application_name = 'txbox relay r_scram' AND usename = 'regress_relay'},
	'1', 30, 'the relay worker runs as its owner, not as a superuser');

# No password in the mapping: refused before connecting.
poll_ok($source, 'shop',
	q{SELECT state || ': ' || last_error FROM txbox.relay_status WHERE name = 'r_nopw'},
	'failed: password is required', 30,
	'mapping without a password: failed, "password is required"');

# A password, but the target does not ask for it (trust).
poll_ok($source, 'shop',
	q{SELECT state || ': ' || last_error FROM txbox.relay_status WHERE name = 'r_trust'},
	'failed: password is required', 30,
	'target that does not request the password: failed, "password is required"');
is($target->safe_psql('trustdb', 'SELECT count(*) FROM txbox.inbox'),
	'0', 'nothing delivered over an unauthenticated connection');

# Only a superuser may waive the rule, as with postgres_fdw.
my ($ret, $out, $err) = $source->psql(
	'shop',
	q{ALTER USER MAPPING FOR regress_relay SERVER srv_trust
	  OPTIONS (ADD password_required 'false')},
	extra_params => [ '-U', 'regress_relay' ]);
like($err, qr/password_required=false is superuser-only/,
	'regress_relay may not set password_required false');
$source->safe_psql('shop',
	q{ALTER USER MAPPING FOR regress_relay SERVER srv_trust
	  OPTIONS (ADD password_required 'false')});
poll_ok($target, 'trustdb', 'SELECT count(*) FROM txbox.inbox', '1', 30,
	'password_required false set by a superuser: delivered');

# A wrong password against a scram target.
poll_ok(
	$source, 'shop',
	q{SELECT state IN ('retrying', 'failed') AND last_error LIKE '%password authentication failed%'
	  FROM txbox.relay_status WHERE name = 'r_scram'},
	't', 30, 'wrong password: retrying with "password authentication failed"');
is($target->safe_psql('scramdb', 'SELECT count(*) FROM txbox.inbox'),
	'0', 'nothing delivered with the wrong password');

# Secrets stay secret.
sub no_secret_anywhere
{
	my ($secret, $what) = @_;
	my %places = (
		'source server log' => slurp_file($source->logfile),
		'target server log' => slurp_file($target->logfile),
		'txbox.relay_status' =>
		  $source->safe_psql('shop', 'SELECT s::text FROM txbox.relay_status s'),
		'txbox.relays' =>
		  $source->safe_psql('shop', 'SELECT r::text FROM txbox.relays r'),
		'source pg_stat_activity' => $source->safe_psql('shop',
			'SELECT a::text FROM pg_stat_activity a WHERE pid <> pg_backend_pid()'),
		'target pg_stat_activity' => $target->safe_psql('postgres',
			'SELECT a::text FROM pg_stat_activity a WHERE pid <> pg_backend_pid()'));
	for my $place (sort keys %places)
	{
		unlike($places{$place}, qr/\Q$secret\E/, "$what not in $place");
	}
}
no_secret_anywhere($wrong, 'the wrong password');
like(status($source, 'r_scram', 'last_error'), qr/regress_relay/,
	'(the error names the role, so it is the real one)');

# The right password: delivered.
$source->safe_psql(
	'shop', qq{SET log_statement = 'none';
	  ALTER USER MAPPING FOR regress_relay SERVER srv_scram OPTIONS (SET password '$right');});
poll_ok($target, 'scramdb', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'r_scram'},
	'1', 30, 'right password: delivered');
poll_ok($source, 'shop',
	q{SELECT state || ' ' || lag_messages FROM txbox.relay_status WHERE name = 'r_scram'},
	'running 0', 30, 'right password: relay running');
is( $target->safe_psql(
		'postgres', q{SELECT usename FROM pg_stat_activity
					  WHERE application_name = 'txbox relay r_scram'}),
	'regress_relay', 'the target sees the owner\'s user mapping role');

# A relay that failed locally ("password is required") still retries at
# least every backoff_max (1s), so fixing the cause takes effect at once.
# Look at a window starting 8 s after creation: capped at 1s it holds 6+
# retries.
my $wait = $created + 8 - time();
sleep $wait if $wait > 0;
my $before = status($source, 'r_nopw', 'retried');
sleep 6;
my $after = status($source, 'r_nopw', 'retried');
cmp_ok($after - $before, '>=', 4,
	"failed relay retries at least every backoff_max (1s): $before -> $after in 6 s");
$source->safe_psql(
	'shop', qq{SET log_statement = 'none';
	  ALTER USER MAPPING FOR regress_relay SERVER srv_nopw OPTIONS (ADD password '$right');});
$wait = time();
poll_ok($target, 'scramdb', q{SELECT count(*) FROM txbox.inbox WHERE topic = 'r_nopw'},
	'1', 30, 'password added: the failed relay delivers');
cmp_ok(time() - $wait, '<', 5, '... within a few backoff_max (1s) rounds');

# (more than 14 s after r_nologin was created)
if ($nl_ret != 0)
{
	like($nl_err, qr/log ?in/i, 'create_relay refuses an owner that cannot log in');
}
else
{
	poll_ok(
		$source, 'shop',
		q{SELECT state || ' ' || (coalesce(last_error, '') <> '')
		  FROM txbox.relay_status WHERE name = 'r_nologin'},
		'failed true', 5,
		'relay whose owner cannot log in: failed, with the reason in last_error');
	note 'r_nologin: '
	  . $source->safe_psql('shop',
		q{SELECT s::text FROM txbox.relay_status s WHERE name = 'r_nologin'});
}

no_secret_anywhere($wrong, 'the wrong password (at the end)');
no_secret_anywhere($right, 'the right password');

$source->stop;
$target->stop;
done_testing();
