# TxboxTest -- helpers shared by txbox's TAP tests (test/t/*.pl).
package TxboxTest;

use strict;
use warnings;
use Exporter 'import';
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(poll_ok);

# poll_ok(node, db, query, expected, seconds, name): poll_query_until with
# a wall-clock deadline of seconds (poll_query_until counts attempts, which
# here take several times longer than its 100 ms sleep): run query until it
# prints expected without error
sub poll_ok
{
	my ($node, $db, $query, $expected, $secs, $name) = @_;
	die "poll_ok: timeout missing" unless $secs =~ /^\d+$/;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $deadline = time() + $secs;
	my ($out, $err) = ('', '');
	for (;;)
	{
		my $ret = $node->psql($db, $query, stdout => \$out, stderr => \$err);
		return pass($name) if defined $ret && $ret == 0 && $out eq $expected && $err eq '';
		last if time() > $deadline;
		usleep(100_000);
	}
	fail($name);
	diag "query: $query\nexpected: $expected\nlast output: $out\nstderr: $err";
	return 0;
}

1;
