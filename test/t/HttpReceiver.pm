# HttpReceiver -- the TAP tests' webhook receiver (http_receiver.py): start
# and stop it, change what it answers, read what it logged.
package HttpReceiver;

use strict;
use warnings;
use Exporter 'import';
use FindBin;
use HTTP::Tiny;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(receiver_start receiver_stop control requests delivered_ids poll_delivered);

my ($pid, $port, $log);
END { kill 'KILL', $pid if $pid; }

# receiver_start(port, log, secrets...): start it (again: the same
# arguments when none are given), ready when /control answers
my @args;
sub receiver_start
{
	@args = @_ if @_;
	($port, $log) = @args;
	$pid = fork();
	if ($pid == 0)
	{
		exec('python3', "$FindBin::RealBin/http_receiver.py", @args) or die "exec: $!";
	}
	my $deadline = time() + 30;
	until (control({}))
	{
		die 'receiver did not start' if time() > $deadline;
		usleep(100_000);
	}
}

sub receiver_stop
{
	kill 'KILL', $pid;
	waitpid($pid, 0);
	$pid = undef;
}

# control({...}): what the receiver answers next (http_receiver.py)
sub control
{
	my $r = HTTP::Tiny->new(timeout => 5)->post("http://127.0.0.1:$port/control",
		{ content => encode_json(shift) });
	return $r->{success};
}

# the receiver's log: one hash per request (read on from where it was)
my (@requests, $log_offset);
sub requests
{
	open(my $fh, '<', $log) or return ();
	seek($fh, $log_offset // 0, 0);
	while (my $line = <$fh>)
	{
		last unless $line =~ /\}\n$/;
		push @requests, decode_json($line);
		$log_offset = tell($fh);
	}
	close $fh;
	return @requests;
}

# message id => how many times it was answered 200
sub delivered_ids
{
	my %ids;
	$ids{ $_->{id} }++ for grep { $_->{status} == 200 } requests();
	return \%ids;
}

# wait until the receiver answered 200 to n distinct messages of topic
sub poll_delivered
{
	my ($topic, $n, $secs, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $deadline = time() + $secs;
	my $got;
	for (;;)
	{
		my %ids;
		$ids{ $_->{id} } = 1
		  for grep { $_->{status} == 200 && $_->{topic} eq $topic } requests();
		$got = scalar keys %ids;
		return pass($name) if $got >= $n;
		last if time() > $deadline;
		usleep(100_000);
	}
	fail($name);
	diag "$got of $n delivered";
	return 0;
}

1;
