# KafkaMock -- a librdkafka mock cluster for the kafka TAP tests: builds
# and runs test/kafka_mock.c, sends it commands, reads topics back.
package KafkaMock;

use strict;
use warnings;
use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# KafkaMock->new(brokers, 'topic:partitions', ...): a running cluster
sub new
{
	my ($class, $brokers, @topics) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir;
	my $src = dirname(__FILE__) . '/../kafka_mock.c';
	system('cc', '-O2', '-o', "$dir/kafka_mock", $src, '-lrdkafka') == 0
	  or die "cannot build $src";
	my $self = bless { dir => $dir, in => '', out => '' }, $class;
	$self->{timer} = IPC::Run::timer(120);
	$self->{h} = IPC::Run::start([ "$dir/kafka_mock", $brokers, @topics ],
		'<', \$self->{in}, '>', \$self->{out}, '2>', "$dir/stderr",
		$self->{timer});
	$self->{h}->pump until $self->{out} =~ /^bootstrap (\S+)\n/m;
	$self->{bootstrap} = $1;
	$self->{out} = '';
	return $self;
}

sub bootstrap { return $_[0]->{bootstrap}; }

# shop_node(server_options): a started node with database shop, txbox, the
# txbox_kafka server events for this cluster (plus server_options, e.g.
# q{, "linger.ms" '5'}) and a user mapping for the test's role
sub shop_node
{
	my ($self, $server_options) = @_;
	my $node = PostgreSQL::Test::Cluster->new('shop');
	$node->init;
	$node->append_conf('postgresql.conf',
		"max_worker_processes = 16\ntxbox.poll_interval = '200ms'\nrestart_after_crash = on");
	$node->start;
	$node->safe_psql('postgres', 'CREATE DATABASE shop');
	$node->safe_psql('shop',
		"CREATE EXTENSION txbox;
		 CREATE SERVER events FOREIGN DATA WRAPPER txbox_kafka
		   OPTIONS (bootstrap_servers '$self->{bootstrap}', allow_private 'true'$server_options);
		 CREATE USER MAPPING FOR CURRENT_USER SERVER events;");
	return $node;
}

# command(line): run one command; dies unless it answers ok
sub command
{
	my ($self, $line) = @_;
	$self->{in} .= "$line\n";
	$self->{timer}->start(120);
	$self->{h}->pump until $self->{out} =~ /^(ok|error.*)\n/m;
	my $answer = $1;
	$self->{out} = '';
	die "kafka_mock: $line: $answer" unless $answer eq 'ok';
	return;
}

# records(topic, isolation): every record of topic, as hashes with
# partition, offset, key (undef: none), headers {name => value}, value
sub records
{
	my ($self, $topic, $isolation) = @_;
	my $file = "$self->{dir}/dump";
	$self->command("dump $topic $file " . ($isolation // 'read_committed'));
	my @records;
	open my $fh, '<', $file or die "$file: $!";
	while (my $line = <$fh>)
	{
		chomp $line;
		my ($p, $o, $k, $h, $v) = split /\t/, $line, -1;
		my %h = map { my ($n, $x) = split /=/, $_, 2; ($n => pack('H*', $x)) }
		  grep { $_ ne '' } split /,/, $h;
		push @records, {
			partition => $p,
			offset => $o,
			key => $k eq '\N' ? undef : $k,
			headers => \%h,
			value => pack('H*', $v)
		};
	}
	close $fh;
	return @records;
}

sub stop
{
	my $self = shift;
	$self->{in} .= "quit\n";
	$self->{h}->finish;
	return;
}

# murmur2(key) as the Java client computes it, and its partition of n
sub partition
{
	my ($key, $n) = @_;
	use integer;
	my @b = unpack('C*', $key);
	my $len = scalar @b;
	my $m = 0x5bd1e995;
	my $mul = sub { return ($_[0] * $_[1]) & 0xffffffff; };
	my $h = (0x9747b28c ^ $len) & 0xffffffff;
	my $i = 0;
	for (; $i + 4 <= $len; $i += 4)
	{
		my $k = $b[$i] | ($b[ $i + 1 ] << 8) | ($b[ $i + 2 ] << 16) | ($b[ $i + 3 ] << 24);
		$k = $mul->($k, $m);
		$k ^= $k >> 24;
		$k = $mul->($k, $m);
		$h = $mul->($h, $m);
		$h ^= $k;
	}
	my $rest = $len % 4;
	$h ^= $b[ $i + 2 ] << 16 if $rest >= 3;
	$h ^= $b[ $i + 1 ] << 8 if $rest >= 2;
	if ($rest >= 1)
	{
		$h ^= $b[$i];
		$h = $mul->($h, $m);
	}
	$h ^= $h >> 13;
	$h = $mul->($h, $m);
	$h ^= $h >> 15;
	return ($h & 0x7fffffff) % $n;
}

1;
