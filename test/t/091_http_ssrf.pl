# The http target refuses, at connect time, every address inside the
# database server's network unless the server has allow_private (which only
# a superuser may set, sql/http.sql): a name resolving to 127.0.0.1
# (localhost) and an IP literal in each denied range.  One relay per
# address, all at once; nothing listens on port 9, so an address that were
# not refused would fail differently ("could not deliver").
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;

my %denied = (
	'localhost' => 'loopback',
	'127.0.0.1' => 'loopback',
	'0.0.0.0' => '"this network" (0.0.0.0/8)',
	'10.1.2.3' => 'private (RFC 1918)',
	'172.16.0.1' => 'private (RFC 1918)',
	'192.168.1.1' => 'private (RFC 1918)',
	'169.254.169.254' => 'link-local (169.254.0.0/16, cloud metadata)',
	'100.64.0.1' => 'shared (CGNAT, 100.64.0.0/10)',
	'224.0.0.1' => 'multicast',
	'255.255.255.255' => 'reserved (240.0.0.0/4)',
	'[::1]' => 'loopback',
	'[fd00::1]' => 'unique local (fc00::/7)',
	'[fe80::1]' => 'link-local (fe80::/10)',
	'[::ffff:127.0.0.1]' => 'loopback',
	'[::ffff:169.254.169.254]' => 'link-local (169.254.0.0/16, cloud metadata)',);

my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
$node->append_conf('postgresql.conf', "max_worker_processes = 32\ntxbox.max_workers = 24");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE shop');
$node->safe_psql('shop', 'CREATE EXTENSION txbox');

my $i = 0;
my %relay;
for my $host (sort keys %denied)
{
	$i++;
	$relay{$host} = "r$i";
	$node->safe_psql(
		'shop', qq{
		CREATE SERVER s$i FOREIGN DATA WRAPPER txbox_http OPTIONS (url 'http://$host:9/hook');
		CREATE USER MAPPING FOR CURRENT_USER SERVER s$i;
		SELECT txbox.create_relay('r$i', 'http', ARRAY['t$i'],
			'{"server": "s$i", "backoff_max": "1s", "connect_timeout": "2s"}');
		SELECT txbox.publish('t$i', '{}');});
}

for my $host (sort keys %denied)
{
	my $kind = $denied{$host};
	poll_ok(
		$node, 'shop',
		qq{SELECT state, last_error LIKE 'refused to connect to %, a ' || '$kind' || ' address%',
				  delivered, dead_lettered
			 FROM txbox.relay_status WHERE name = '$relay{$host}'},
		"failed|t|0|0", 60, "$host refused: $kind");
}
like(
	$node->safe_psql('shop', q{SELECT last_error FROM txbox.relay_status WHERE name = 'r1'}),
	qr/allow_private|database server's network/,
	'the error says why');

$node->stop;
done_testing();
