use strict;
use warnings;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
my $n = PostgreSQL::Test::Cluster->new('small');
$n->init;
$n->append_conf('postgresql.conf', "txbox.max_workers = 3");
$n->start;
for my $i (1..3) {
  $n->safe_psql('postgres', "CREATE DATABASE c$i");
  $n->safe_psql("c$i", q{CREATE EXTENSION txbox; SELECT txbox.create_relay('r', 'notify', NULL, '{"channel": "c"}'); SELECT txbox.publish('t', '{}');});
  my $ok = 0;
  for (1..100) { my $d = $n->safe_psql("c$i", "SELECT delivered FROM txbox.relay_status"); if ($d eq '1') { $ok = 1; last; } usleep(100000); }
  ok($ok, "cycle $i delivered");
  $n->safe_psql('postgres', "DROP DATABASE c$i");
}
ok(0, 'keep');
done_testing();
