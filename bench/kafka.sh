#!/usr/bin/env bash
# bench/kafka.sh -- the kafka relay benchmark: relay throughput into
# librdkafka's mock cluster (test/kafka_mock.c) as a ratio of a plain
# librdkafka producer (bench/kafka/plain.c) sending the same records from
# the same machine, round by round: a running relay, from the commit of
# the messages to the save of its last position.  Never run as root: bash
# bench/run kafka prepares everything.  Report on stdout, progress on
# stderr.
#
# Settings (environment):
#   KAFKA_MESSAGES=100000   messages per run (value ~220 bytes, 1000 keys,
#                           one header of their own)
#   KAFKA_ROUNDS=3          rounds (relay then plain in each), after a
#                           round of each not counted (a warm-up)
#   KAFKA_WARMUP=400000     messages the relay delivers in the warm-up:
#                           more than shared_buffers holds, so that the
#                           timed rounds read buffers the relay has mapped
#                           before, as a relay that has run for a while does
#                           (mapping a buffer's memory costs a page fault)
#   KAFKA_RELAY_OPTIONS='{}'   more relay options (e.g. '{"exactly_once": true}')
set -euo pipefail
source "$(dirname "$0")/../tools/common.sh"
source "$TXBOX_ROOT/tools/cluster.sh"
export PATH="$TXBOX_BINDIR:$PATH"
N=${KAFKA_MESSAGES:-100000}
ROUNDS=${KAFKA_ROUNDS:-3}
WARMUP=${KAFKA_WARMUP:-400000}
OPTS=${KAFKA_RELAY_OPTIONS:-'{}'}
log() { printf '.. %s\n' "$*" >&2; }
now() { date +%s.%N; }

dir=$(mktemp -d /tmp/txbox-kafka.XXXXXX)
cc -O2 -o "$dir/kafka_mock" "$TXBOX_ROOT/test/kafka_mock.c" -lrdkafka
cc -O2 -o "$dir/plain" "$TXBOX_ROOT/bench/kafka/plain.c" -lrdkafka
mkfifo "$dir/mock.in"
"$dir/kafka_mock" 3 orders:4 plain:4 txbox.positions:1 <"$dir/mock.in" >"$dir/mock.out" 2>/dev/null &
mock=$!
exec 3>"$dir/mock.in"
until grep -q '^bootstrap ' "$dir/mock.out"; do sleep 0.1; done
bootstrap=$(sed -n 's/^bootstrap //p' "$dir/mock.out")

# (synchronous_commit as by default: the publishing transaction's commit
# is on disk when it ends; committed asynchronously, the relay would first
# flush the WAL up to it, relay_flush_commits, 1-24 ms of a round here)
txbox_cluster_start "$dir" 54341 "autovacuum = off" \
	"txbox.poll_interval = '100ms'" "txbox.outbox_retention = '1d'"
trap "echo quit >&3; wait $mock; pg_ctl -D '$dir/data' -m immediate stop >/dev/null 2>&1; rm -rf '$dir'" EXIT
createdb shop
psql -X -q -v ON_ERROR_STOP=1 -d shop <<SQL
CREATE EXTENSION txbox;
CREATE SERVER events FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers '$bootstrap', allow_private 'true');
CREATE USER MAPPING FOR CURRENT_USER SERVER events;
SQL
val() { psql -X -At -d shop -c "$1"; }

load0=$(cut -d' ' -f1-3 /proc/loadavg)
relay_s=() plain_s=() relay_cpu=() plain_cpu=() relay_faults=()
hz=$(getconf CLK_TCK)
# cpu PID -- CPU seconds (user + system, all threads) PID has used so far
cpu() { awk -v hz="$hz" '{ i = index($0, ") "); split(substr($0, i + 2), f, " "); printf "%.2f", (f[12] + f[13]) / hz }' "/proc/$1/stat"; }
# faults PID -- minor page faults PID has taken so far
faults() { awk '{ i = index($0, ") "); split(substr($0, i + 2), f, " "); print f[8] }' "/proc/$1/stat"; }
# The relay runs throughout: created once and warmed up with one message
# (its worker started, its producer connected, the topic's metadata known:
# one-off costs of a worker's start, not throughput).
val "SELECT txbox.create_relay('k', 'kafka', ARRAY['orders'],
	'{\"server\": \"events\"}'::jsonb || '$OPTS'::jsonb)" >/dev/null
# publish N -- publish N messages in one transaction; prints its txid and
# the server's clock at its end
publish() {
	val "SELECT count(txbox.publish('orders', jsonb_build_object('n', g, 'pad', repeat('x', 200)),
		'customer-' || g % 1000, jsonb_build_object('trace', 't-' || g))), pg_current_xact_id()
		FROM generate_series(1, $1) g; SELECT extract(epoch FROM clock_timestamp())" |
		tail -n 2 | awk -F'|' 'NR == 1 { txid = $2 } NR == 2 { print txid, $1 }'
}
read -r txid t0 < <(publish 1)
txbox_wait_relayed k "$txid" -d shop
relay_pid=$(val "SELECT pid FROM pg_stat_activity WHERE application_name = 'txbox relay k'")
# relay_round N -- the relay delivers N messages published in one
# transaction, from its commit (t0: the server's clock at its end) until
# the last page's position is saved (last_delivered_at: not this polling's
# granularity); prints the seconds, the worker's CPU seconds and its minor
# page faults
relay_round() {
	local c0 f0 txid t0 t
	c0=$(cpu "$relay_pid")
	f0=$(faults "$relay_pid")
	read -r txid t0 < <(publish "$1")
	txbox_wait_relayed k "$txid" -d shop
	t=$(val "SELECT round(extract(epoch FROM last_delivered_at) - $t0, 3) FROM txbox.relays WHERE name = 'k'")
	echo "$t $(awk -v a="$(cpu "$relay_pid")" -v b="$c0" 'BEGIN { printf "%.2f", a - b }') $(($(faults "$relay_pid") - f0))"
}
# plain_round -- the plain producer sends N records: seconds, CPU seconds
plain_round() { "$dir/plain" "$bootstrap" plain "$N"; }

log "warm-up: the relay delivers $WARMUP messages, the plain producer $N"
read -r t c f < <(relay_round "$WARMUP")
read -r s pc < <(plain_round)
warmup="relay $WARMUP messages $t s (CPU $c s, $f page faults), plain producer $N $s s (CPU $pc s);"
warmup+=" outbox then $(val "SELECT pg_size_pretty(sum(pg_total_relation_size(relid)))
	FROM pg_partition_tree('txbox.outbox')"), shared_buffers $(val "SHOW shared_buffers")"
for ((r = 1; r <= ROUNDS; r++)); do
	log "round $r: relay"
	read -r t c f < <(relay_round "$N")
	relay_s+=("$t")
	relay_cpu+=("$c")
	relay_faults+=("$f")
	log "round $r: plain producer"
	read -r s c < <(plain_round)
	plain_s+=("$s")
	plain_cpu+=("$c")
done

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
rm=$(median "${relay_s[@]}")
pm=$(median "${plain_s[@]}")
echo "kafka relay throughput into librdkafka's mock cluster (3 brokers, 4 partitions)"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "$N messages per run (~220-byte JSON values, 1000 keys, 4 headers), $ROUNDS rounds, relay options $OPTS"
echo "warm-up round, not counted: $warmup"
printf '%-28s %8s s %8s msg/s   runs: %s s; CPU: %s s\n' "relay (running, from commit)" "$rm" \
	"$(awk -v n="$N" -v s="$rm" 'BEGIN { printf "%d", n / s }')" "${relay_s[*]}" "${relay_cpu[*]}"
printf '%-28s %8s s %8s msg/s   runs: %s s; CPU: %s s\n' "plain librdkafka producer" "$pm" \
	"$(awk -v n="$N" -v s="$pm" 'BEGIN { printf "%d", n / s }')" "${plain_s[*]}" "${plain_cpu[*]}"
echo "relay worker's minor page faults per round: ${relay_faults[*]}"
echo "(CPU: the relay worker's, all its threads, from the publish to caught up; the plain"
echo " producer's, all its threads, until it printed its time)"
# the rounds' ratios (each round's relay and plain producer ran one after
# the other, in the same state of the machine), and their median
ratios=()
for ((i = 0; i < ${#relay_s[@]}; i++)); do
	ratios+=("$(txbox_ratio "${plain_s[$i]}" "${relay_s[$i]}")")
done
echo "ratio relay/plain: $(median "${ratios[@]}")x, the median of the rounds' (${ratios[*]}) (goal >= 0.7x)"
