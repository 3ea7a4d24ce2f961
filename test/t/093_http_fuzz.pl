# The http target's answer reader (http_parse), fuzzed outside the server
# by test/http_fuzz.c with AddressSanitizer and UBSan: a fixed seed and
# number of runs (the same inputs each time), from seeds of every framing.
# Skipped where clang has no libFuzzer.
use strict;
use warnings;
use File::Basename;
use File::Path qw(make_path);
use PostgreSQL::Test::Utils;
use Test::More;

my $root = dirname(__FILE__) . '/../..';
my $dir = "${PostgreSQL::Test::Utils::tmp_check}/http_fuzz";
make_path("$dir/corpus", "$dir/new");

# the server's headers and static libraries: those of this pg_config's
# major version (a private copy of PostgreSQL has neither)
my ($major) = `pg_config --version` =~ /(\d+)/;
my ($include, $lib) = map { chomp(my $d = `$_`); $d }
  ("/usr/lib/postgresql/$major/bin/pg_config --includedir-server",
	"/usr/lib/postgresql/$major/bin/pg_config --pkglibdir");
my @cc = (
	'clang', '-g', '-O1', '-w', '-fsanitize=fuzzer,address,undefined',
	'-fno-sanitize-recover=all', "-I$include", "-I$root/src", "-I$root/src/targets",
	"$root/test/http_fuzz.c", "$dir/stubs.c", '-o', "$dir/http_fuzz",
	"$lib/libpgcommon.a", "$lib/libpgport.a", '-lcurl', '-lcrypto');

# stubs for what http.c calls of the server (never reached by the reader)
sub build
{
	my ($stubs) = @_;
	open(my $fh, '>', "$dir/stubs.c") or die $!;
	print $fh "#include <stdlib.h>\n";
	print $fh "void $_(void) { abort(); }\n" for grep { !/^(CurrentMemoryContext|TopMemoryContext|MyLatch)$/ } @$stubs;
	print $fh "void *$_;\n" for grep { /^(CurrentMemoryContext|TopMemoryContext|MyLatch)$/ } @$stubs;
	close $fh;
	return scalar `@cc 2>&1`;
}
my $out = build([]);
plan skip_all => "clang cannot build a libFuzzer harness here:\n$out"
  if $out !~ /undefined reference/;
my %undefined = map { $_ => 1 } $out =~ /undefined reference to `([A-Za-z_0-9]+)'/g;
$out = build([ sort keys %undefined ]);
is($out, '', 'the harness builds');

my %seeds = (
	length => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
	chunked => "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 E\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
	  . "5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
	close => "HTTP/1.0 503 X\nRetry-After: 120\nConnection: keep-alive\n\nbody",
	date => "HTTP/1.1 429 X\r\nRetry-After: Wed, 21 Oct 2099 07:28:00 GMT\r\nContent-Length: 0\r\n\r\n",
	empty => "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\nConnection: close\r\n\r\n");
my $i = 0;
for my $name (sort keys %seeds)
{
	open(my $fh, '>', "$dir/corpus/$name") or die $!;
	print $fh chr(++$i * 37), $seeds{$name};
	close $fh;
}
my $ok = system("$dir/http_fuzz -seed=1 -runs=100000 -max_len=20000 -artifact_prefix=$dir/ "
	  . "$dir/new $dir/corpus > $dir/fuzz.log 2>&1") == 0;
my $log = slurp_file("$dir/fuzz.log");
ok($ok, 'no finding in 100,000 runs');
diag $log unless $ok;
note(($log =~ /^(Done .*)$/m)[0] // '');

done_testing();
