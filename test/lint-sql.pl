#!/usr/bin/perl
# test/lint-sql.pl [FILE.c ...] -- every SQL statement written in C must
# resolve nothing through the search_path: workers and SECURITY DEFINER code
# run it as the extension's owner, and a role that controls the search_path
# (ALTER ROLE ... SET search_path, objects in public, temp objects) would
# otherwise get its own operator, function or type called there (issue 9).
#
# Looks at the C string literals that hold SQL (adjacent literals joined,
# starting with an SQL keyword in capitals) in src/*.c and src/targets/*.c
# (or FILEs) and flags
#   - an operator not written OPERATOR(schema.op)      a = b, a || b, x->>'k'
#   - a cast to a type not schema-qualified           $1::uuid[]
#   - a function call not schema-qualified            now(), count(*)
#   - a construct that looks up "=" or another operator by name:
#     IN (...), BETWEEN, LIKE, ILIKE, SIMILAR TO, IS [NOT] DISTINCT FROM,
#     NULLIF, CASE x WHEN (write OPERATOR(pg_catalog.=) ANY (...) etc.)
# SQL syntax that looks like a call (EXISTS (...), ANY (...), VALUES (...),
# ROW, ARRAY, COALESCE, GREATEST, LEAST, ...), SET col = in UPDATE, named
# arguments (=>), SELECT * and f(*), and negative numbers are fine.
# Prints one TAP line per file (ok / not ok, with each finding), so that
# test/suites counts it as the suite "lint".
use strict;
use warnings;

my @files = @ARGV ? @ARGV : sort(glob('src/*.c'), glob('src/targets/*.c'));

# SQL words that may be followed by "(" without being a function call
my %syntax = map { $_ => 1 } qw(
	ALL AND ANY ARRAY AS BY COALESCE CONFLICT CROSS DO EXISTS EXTRACT FILTER
	FROM GREATEST GROUP HAVING INTO JOIN LATERAL LEAST LIMIT NOT OFFSET ON
	OPERATOR OR ORDINALITY OVER RETURNING ROW ROWS SELECT SET SOME THEN USING
	VALUES WHEN WHERE WITH ELSE CASE UNION EXCEPT INTERSECT UPDATE DELETE
	INSERT TABLE ONLY LOCK NOTHING);

# the C string literals of a file: [line, text] for each run of adjacent ones
sub sql_literals
{
	my ($src) = @_;
	my @out;
	my ($cur, $curline, $line) = (undef, 0, 1);
	my $i = 0;
	my $n = length $src;
	while ($i < $n)
	{
		my $c = substr($src, $i, 1);
		if ($c eq "\n") { $line++; $i++; next; }
		if (substr($src, $i, 2) eq '/*')
		{
			my $e = index($src, '*/', $i + 2);
			$e = $n - 2 if $e < 0;
			$line += () = substr($src, $i, $e + 2 - $i) =~ /\n/g;
			$i = $e + 2;
			next;
		}
		if (substr($src, $i, 2) eq '//')
		{
			my $e = index($src, "\n", $i);
			$i = $e < 0 ? $n : $e;
			next;
		}
		if ($c eq "'")
		{
			$i++;
			$i++ while $i < $n && substr($src, $i, 1) ne "'" && ($i += substr($src, $i, 1) eq '\\' ? 1 : 0) >= 0;
			$i++;
			next;
		}
		if ($c eq '"')
		{
			my $s = '';
			$i++;
			while ($i < $n && substr($src, $i, 1) ne '"')
			{
				my $d = substr($src, $i, 1);
				if ($d eq '\\')
				{
					my $e = substr($src, $i + 1, 1);
					$s .= $e eq 'n' ? "\n" : $e eq 't' ? "\t" : $e;
					$i += 2;
					next;
				}
				$s .= $d;
				$i++;
			}
			$i++;
			if (defined $cur) { $cur .= $s; }
			else { ($cur, $curline) = ($s, $line); }
			next;
		}
		if ($c =~ /\s/) { $i++; next; }
		push @out, [ $curline, $cur ] if defined $cur;
		$cur = undef;
		$i++;
	}
	push @out, [ $curline, $cur ] if defined $cur;
	return grep {
		$_->[1] =~ /^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|TRUNCATE|LOCK|CALL|VALUES)\b/
		  || $_->[1] =~ /^\s*(AND|OR|WHERE|FROM|JOIN|ORDER BY|GROUP BY|RETURNING|ON CONFLICT)\b/
	} @out;
}

my $ident = qr/(?:[A-Za-z_][A-Za-z0-9_\$]*|"[^"]*")/;

# findings in one SQL text
sub lint_sql
{
	my ($sql) = @_;
	my @found;
	$sql =~ s/'(?:[^']|'')*'/''/g;				# SQL string literals
	$sql =~ s/%(?:l|ll|z)?[sdui]/_fmt_/g;			# C format placeholders
	my @t;
	while ($sql =~ /\G\s*(::|=>|:=|\$\d+|\d+(?:\.\d+)?|$ident(?:\s*\.\s*(?:$ident|\*))*|[-+*\/<>=~!@#%^&|`?]+|.)/gcs)
	{
		push @t, $1;
	}
	my ($depth, $set_depth) = (0, -1);
	for (my $k = 0; $k < @t; $k++)
	{
		my $tok = $t[$k];
		my $prev = $k > 0 ? $t[ $k - 1 ] : '';
		my $next = $k + 1 < @t ? $t[ $k + 1 ] : '';
		my $up = uc $tok;
		if ($tok eq '(') { $depth++; next; }
		if ($tok eq ')')
		{
			$depth--;
			$set_depth = -1 if $depth < $set_depth;
			next;
		}
		if ($up eq 'OPERATOR' && $next eq '(')
		{
			# OPERATOR(schema.op): fine when qualified
			my ($j, $inner) = ($k + 2, '');
			$inner .= $t[ $j++ ] while $j < @t && $t[$j] ne ')';
			push @found, "OPERATOR($inner) not schema-qualified" unless $inner =~ /\./;
			$k = $j;
			next;
		}
		if ($tok =~ /^$ident/ && $tok !~ /^\$/)
		{
			if ($up eq 'SET' && uc($prev) ne 'DO') { $set_depth = $depth; }
			elsif ($up =~ /^(WHERE|FROM|RETURNING)$/ && $depth == $set_depth) { $set_depth = -1; }
			if ($up =~ /^(BETWEEN|LIKE|ILIKE|SIMILAR)$/) { push @found, "$up looks up an operator by name"; }
			elsif ($up eq 'DISTINCT' && uc($next) eq 'FROM') { push @found, "IS DISTINCT FROM looks up = by name"; }
			elsif ($up eq 'IN' && $next eq '(') { push @found, 'IN (...) looks up = by name (use OPERATOR(pg_catalog.=) ANY)'; }
			elsif ($up eq 'NULLIF') { push @found, 'NULLIF looks up = by name'; }
			elsif ($up eq 'CASE' && uc($next) ne 'WHEN') { push @found, 'CASE x WHEN looks up = by name'; }
			elsif ($next eq '(' && $tok !~ /\./ && !$syntax{$up} && uc($prev) ne 'AS')
			{
				push @found, "function $tok(...) not schema-qualified";
			}
			next;
		}
		if ($tok eq '::')
		{
			push @found, "cast ::$next not schema-qualified" unless $next =~ /\./;
			next;
		}
		next if $tok =~ /^(=>|:=)$/;
		if ($tok =~ /^[-+*\/<>=~!@#%^&|`?]+$/)
		{
			next if $tok eq '*' && ($prev eq '(' || $prev eq ',' || uc($prev) eq 'SELECT');
			next if $tok eq '-' && $next =~ /^\d/ && ($prev =~ /^[-+*\/<>=~!@#%^&|`?(,]+$/ || $prev eq '' || $syntax{ uc $prev });
			next if $tok eq '=' && $set_depth == $depth && $k >= 2 && ($t[ $k - 2 ] eq ',' || uc($t[ $k - 2 ]) eq 'SET');
			push @found, "operator $tok not in OPERATOR(...)";
		}
	}
	return @found;
}

my $n = 0;
my $bad = 0;
for my $f (@files)
{
	open my $fh, '<', $f or die "$f: $!";
	local $/;
	my $src = <$fh>;
	close $fh;
	my @hits;
	for my $lit (sql_literals($src))
	{
		push @hits, "$f:$lit->[0]: $_" for lint_sql($lit->[1]);
	}
	$n++;
	if (@hits)
	{
		$bad++;
		print "not ok $n - $f: SQL resolves through the search_path\n";
		print "#   $_\n" for @hits;
	}
	else
	{
		print "ok $n - $f\n";
	}
}
print "1..$n\n";
exit($bad ? 1 : 0);
