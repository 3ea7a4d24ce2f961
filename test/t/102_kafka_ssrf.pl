# The kafka target refuses, at connect time, every address inside the
# database server's network unless the server has allow_private (which only
# a superuser may set, sql/kafka.sql), as the http target does (091): a
# relay to the mock cluster by its IP (127.0.0.1) and one by a name
# resolving to loopback (localhost) deliver nothing and retry with the
# refusal and its remedy as their error; once a superuser adds
# allow_private to their servers, they deliver everything.  An
# exactly-once relay (its transactional producer and position consumer)
# likewise, failing while it cannot read its position from Kafka.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxboxTest;
use KafkaMock;

my $kafka = KafkaMock->new(1, 'ip:1', 'name:1', 'eos:1', 'txbox.positions:1');
my ($port) = $kafka->bootstrap =~ /:(\d+)$/;
my $node = $kafka->shop_node('');

my %host = (ip => '127.0.0.1', name => 'localhost');
for my $r (sort keys %host)
{
	$node->safe_psql(
		'shop', qq{
		CREATE SERVER s_$r FOREIGN DATA WRAPPER txbox_kafka
		  OPTIONS (bootstrap_servers '$host{$r}:$port');
		CREATE USER MAPPING FOR CURRENT_USER SERVER s_$r;
		SELECT txbox.create_relay('$r', 'kafka', ARRAY['orders'],
			'{"server": "s_$r", "topic_map": {"orders": "$r"}, "statement_timeout": "2s",
			  "connect_timeout": "2s", "backoff_max": "1s"}');});
}
$node->safe_psql('shop',
	q{SELECT txbox.create_relay('eos', 'kafka', ARRAY['orders'],
		'{"server": "s_ip", "topic_map": {"orders": "eos"}, "exactly_once": true,
		  "statement_timeout": "2s", "connect_timeout": "2s", "backoff_max": "1s"}');});
$node->safe_psql('shop',
	q{SELECT txbox.publish('orders', jsonb_build_object('n', g), 'k' || g) FROM generate_series(1, 10) g});

for my $r (sort keys %host)
{
	poll_ok(
		$node, 'shop',
		qq{SELECT state, last_error LIKE 'refused to connect to %, a loopback address (server "s_$r" leads into the database server''s network).%'
				  AND last_error LIKE '%ALTER SERVER s_$r OPTIONS (ADD allow_private ''true'')%',
				  delivered, lag_messages
			 FROM txbox.relay_status WHERE name = '$r'},
		"retrying|t|0|10", 90, "$host{$r}: refused, retrying, the error says how to allow it");
	is(scalar($kafka->records($r)), 0, "$host{$r}: nothing reached Kafka");
}
poll_ok(
	$node, 'shop',
	q{SELECT state, last_error LIKE 'could not read relay "eos"''s position from Kafka: refused to connect to %, a loopback address%allow_private%',
			  delivered, lag_messages
		 FROM txbox.relay_status WHERE name = 'eos'},
	"failed|t|0|10", 90, 'exactly once: refused, the error says how to allow it');
is(scalar($kafka->records('eos', 'read_uncommitted')), 0, 'exactly once: nothing reached Kafka');

$node->safe_psql('shop',
	q{ALTER SERVER s_ip OPTIONS (ADD allow_private 'true');
	  ALTER SERVER s_name OPTIONS (ADD allow_private 'true')});
for my $r ('eos', sort keys %host)
{
	poll_ok($node, 'shop',
		qq{SELECT state, delivered, lag_messages FROM txbox.relay_status WHERE name = '$r'},
		'running|10|0', 90, "$r: allow_private added: everything delivered");
	is(scalar($kafka->records($r)), 10, "$r: Kafka has the 10 records");
}

$node->stop;
$kafka->stop;
done_testing();
