#!/usr/bin/env bash
# bench/relay/run.sh -- the relay benchmarks (bench/RELAY.md).  Never run as
# root (initdb refuses it): bash bench/relay.sh installs what is missing and
# calls this as an unprivileged user.
#
# On a throwaway cluster with databases shop (source) and billing (target):
#   throughput   N messages in shop's outbox moved to billing by a relay
#                (default batch size, and batch_size 5000) and by two
#                client baselines (one COPY; 1000-row INSERT round trips),
#                interleaved round by round
#   latency      commit in shop to commit in billing, at fixed rates (a curve)
#   pgq_insert   txbox.publish vs pgq.insert_event in a business transaction
#   pgq_consume  a PgQ consumer vs a relay moving the same messages
#   profile      (not by default) one relay run under perf and
#                pg_stat_statements: where the time goes
# The report goes to stdout, progress to stderr.
#
# Settings (environment):
#   RELAY_MESSAGES=100000   N, messages of the throughput runs
#   RELAY_ROUNDS=3          rounds of the throughput and PgQ comparisons
#   RELAY_VARIANTS="relay relay5000 copy chunked"   throughput variants;
#                           also relay_lz4, copy_lz4: billing compressing
#                           with lz4 instead of pglz (what-if)
#   RELAY_CHUNK=50000       messages per publishing transaction
#   RELAY_KEYS=200          keys per payload (200: 2.2 kB as text, 3.6 kB as
#                           jsonb, 1.2 kB stored compressed)
#   RELAY_LATENCY_RATES="1000 2000 5000" RELAY_LATENCY_SECONDS=30
#   RELAY_LATENCY_CLIENTS=4 (16 from 2000/s on)
#   RELAY_LATENCY_RUNS=3    runs per rate (latency messages: a small order event)
#   RELAY_PGQ_MESSAGES=50000   messages of the PgQ consumer comparison
#   RELAY_PGQ_BATCHES=1000     batch sizes compared there ("1000 5000": both)
#   RELAY_PGQ_SECONDS=10 RELAY_PGQ_CLIENTS=8   the publish comparison
#   RELAY_SECTIONS="throughput latency pgq_insert pgq_consume"  (add profile)
#   RELAY_TIMEOUT=1800      seconds a relay may take for one run
#   RELAY_KEEP=0            1: keep the cluster directory
set -euo pipefail
source "$(dirname "$0")/../../tools/common.sh"
source "$TXBOX_ROOT/tools/cluster.sh"
source "$TXBOX_ROOT/bench/relay/lib.sh"
export PATH="$TXBOX_BINDIR:$PATH"
[ "$(id -u)" -ne 0 ] || rb_die "do not run this as root; run bash bench/relay.sh"

N=${RELAY_MESSAGES:-100000}
ROUNDS=${RELAY_ROUNDS:-3}
CHUNK=${RELAY_CHUNK:-50000}
KEYS=${RELAY_KEYS:-200}
LAT_RATES=${RELAY_LATENCY_RATES:-1000 2000 5000}
LAT_SECONDS=${RELAY_LATENCY_SECONDS:-30}
LAT_CLIENTS=${RELAY_LATENCY_CLIENTS:-}
LAT_RUNS=${RELAY_LATENCY_RUNS:-3}
PGQ_N=${RELAY_PGQ_MESSAGES:-50000}
PGQ_BATCHES=${RELAY_PGQ_BATCHES:-1000}
PGQ_SECONDS=${RELAY_PGQ_SECONDS:-10}
PGQ_CLIENTS=${RELAY_PGQ_CLIENTS:-8}
SECTIONS=${RELAY_SECTIONS:-throughput latency pgq_insert pgq_consume}
RB_TIMEOUT=${RELAY_TIMEOUT:-1800}
RB_HZ=$(getconf CLK_TCK)
TARGET_RATIO=0.9   # issue 13: relay throughput >= 0.9x a COPY mover
has() { [[ " $SECTIONS " == *" $1 "* ]]; }

# --- the cluster ------------------------------------------------------------
dir=$(mktemp -d /tmp/txbox-relay.XXXXXX)
preload="txbox"
! has profile || preload="txbox,pg_stat_statements"
# A 2-core machine.  synchronous_commit stays on (the default) except
# where a section says otherwise.  autovacuum off: every run starts from a
# truncated target and a vacuumed source instead.  The outbox keeps its
# messages for a day, so that every run re-delivers the same ones.
txbox_cluster_start "$dir" 54331 \
	"shared_preload_libraries = '$preload'" \
	"shared_buffers = 1GB" \
	"max_worker_processes = 16" \
	"track_commit_timestamp = on" \
	"wal_buffers = 64MB" \
	"max_wal_size = 8GB" \
	"min_wal_size = 1GB" \
	"checkpoint_timeout = 30min" \
	"autovacuum = off" \
	"jit = off" \
	"txbox.outbox_retention = '1d'"
RB_DATA="$dir/data"
RB_TMP=$dir
if [ "${RELAY_KEEP:-0}" = 1 ]; then
	trap "pg_ctl -D '$RB_DATA' -m fast stop >/dev/null 2>&1; echo 'cluster directory kept: $dir' >&2" EXIT
fi
createdb shop
createdb billing
rb_psql billing -f "$RB_DIR/billing.sql" >/dev/null
rb_psql shop -v keys="$KEYS" -v host="$PGHOST" -v port="$PGPORT" -v user="$PGUSER" \
	-f "$RB_DIR/shop.sql" >/dev/null

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$(rb_now)

declare -A secs srv cli
# rb_record VARIANT -- file the last run's figures under VARIANT
rb_record() {
	secs[$1]="${secs[$1]:-} $RB_SECONDS"
	srv[$1]="${srv[$1]:-} $RB_SERVER_S"
	cli[$1]="${cli[$1]:-} $RB_CLIENT_S"
}

# --- 1. throughput ------------------------------------------------------------
# rb_publish N CHUNK TOPIC -- publish N messages in transactions of CHUNK
rb_publish() {
	local n=$1 chunk=$2 topic=$3 lo hi
	for ((lo = 1; lo <= n; lo += chunk)); do
		hi=$((lo + chunk - 1))
		[ "$hi" -le "$n" ] || hi=$n
		echo "SELECT count(txbox.publish('$topic', p.p, key => 'customer-' || g % 1000))
			FROM generate_series($lo, $hi) g JOIN payloads p ON p.id = g % 1000;"
	done | rb_psql shop -f - >/dev/null
}

read -r -a tp_variants <<<"${RELAY_VARIANTS:-relay relay5000 copy chunked}"
declare -A tp_label=(
	[relay]="relay, default batch_size (1000)"
	[relay5000]="relay, batch_size 5000"
	[copy]="baseline: COPY | COPY + INSERT"
	[chunked]="baseline: 1000-row INSERTs"
	[relay_lz4]="what-if: relay, billing lz4"
	[copy_lz4]="what-if: COPY baseline, billing lz4"
)
# the what-if variants: billing compresses with lz4 instead of pglz (new
# sessions there; the relay connects anew for each run)
rb_lz4() { rb_psql postgres -c "ALTER DATABASE billing ${1:-SET default_toast_compression = 'lz4'}" >/dev/null; }
if has throughput; then
	rb_log "publishing $N messages in transactions of $CHUNK"
	t0=$(rb_now)
	rb_publish "$N" "$CHUNK" orders
	publish_s=$(rb_sub "$(rb_now)" "$t0")
	rb_psql shop -c "VACUUM (ANALYZE) txbox.outbox"
	payload_info=$(rb_val shop "SELECT round(avg(length(p::text))) || ' bytes as text, '
			|| round(avg(pg_column_size(p || '{}'::jsonb))) || ' as jsonb, '
			|| (SELECT round(avg(pg_column_size(payload))) FROM (SELECT payload FROM txbox.outbox LIMIT 10000) s)
			|| ' as stored (compressed in place when the row exceeds 2 kB)'
		FROM payloads")
	outbox_size=$(rb_val shop "SELECT pg_size_pretty(sum(pg_total_relation_size(relid)))
		FROM pg_partition_tree('txbox.outbox')")
	rb_log "published in ${publish_s}s; outbox $outbox_size; payload $payload_info"

	nv=${#tp_variants[@]}
	run=0
	for ((r = 1; r <= ROUNDS; r++)); do
		for ((k = 0; k < nv; k++)); do
			v=${tp_variants[$(((k + r - 1) % nv))]}
			run=$((run + 1))
			case $v in
			relay)
				rb_relay_prepare bench default NULL >/dev/null
				rb_relay_run bench "$N"
				;;
			relay5000)
				rb_relay_prepare bench 5000 NULL >/dev/null
				rb_relay_run bench "$N"
				;;
			copy)
				rb_baseline_prepare >/dev/null
				rb_copy_run "$N"
				;;
			chunked)
				rb_baseline_prepare >/dev/null
				rb_chunked_run "$N"
				;;
			relay_lz4)
				rb_lz4
				rb_relay_prepare bench default NULL >/dev/null
				rb_relay_run bench "$N"
				rb_psql shop -c "SELECT txbox.drop_relay('bench')" >/dev/null
				rb_lz4 "RESET default_toast_compression"
				;;
			copy_lz4)
				rb_lz4
				rb_baseline_prepare >/dev/null
				rb_copy_run "$N"
				rb_lz4 "RESET default_toast_compression"
				;;
			*) rb_die "unknown throughput variant $v" ;;
			esac
			rb_record "$v"
			rb_log "[$run/$((ROUNDS * nv))] round $r $v: ${RB_SECONDS}s, $(rb_div "$N" "$RB_SECONDS" %.0f) msg/s," \
				"CPU ${RB_SERVER_S}s server + ${RB_CLIENT_S}s client (load $(cut -d' ' -f1 /proc/loadavg))"
		done
	done
	rb_psql shop -c "SELECT txbox.drop_relay(name) FROM txbox.relays" >/dev/null
fi

# --- 2. latency -------------------------------------------------------------
declare -a lat_rows
if has latency; then
	rb_log "latency: relay 'lat' (topic lat), pgbench -R ($LAT_RATES) for ${LAT_SECONDS}s x $LAT_RUNS each"
	rb_psql shop -c "SELECT txbox.drop_relay(name) FROM txbox.relays" \
		-c "SELECT txbox.create_relay('lat', 'postgres', ARRAY['lat'], '{\"server\": \"billing\"}')" >/dev/null
	rb_psql billing -c "TRUNCATE txbox.inbox"
	# one message first: the worker is started and connected
	rb_psql shop -c "SELECT txbox.publish('lat', p) FROM payloads WHERE id = 0" >/dev/null
	rb_relay_wait lat 1 60
	for rate in $LAT_RATES; do
		# each client waits for its own commit's flush: more clients for higher rates
		clients=${LAT_CLIENTS:-$((rate >= 2000 ? 16 : 4))}
		for ((r = 1; r <= LAT_RUNS; r++)); do
			id0=$(rb_val shop "SELECT coalesce(max(id), 0) FROM txbox.outbox")
			d0=$(rb_val shop "SELECT delivered FROM txbox.relays WHERE name = 'lat'")
			rb_checkpoint
			out="$dir/latency.$rate.$r.log"
			pgbench -n -R "$rate" -T "$LAT_SECONDS" -c "$clients" -j 2 -M prepared \
				-f "$RB_DIR/pgbench/latency.sql" shop >"$out" 2>&1 || { cat "$out" >&2; rb_die "pgbench failed"; }
			sent=$(awk -F': ' '/^number of transactions actually processed/ { print $2 + 0 }' "$out")
			rb_relay_wait lat $((d0 + sent)) 120
			# commit timestamps are cluster-wide: billing reads those of shop's
			# transactions (xids are cluster-wide too)
			row=$(rb_psql shop -c "COPY (SELECT message_id, txid FROM txbox.outbox
					WHERE topic = 'lat' AND id > $id0) TO STDOUT" |
				rb_psql billing -At -F ' ' \
					-c "CREATE TEMP TABLE src (message_id uuid, txid xid8)" \
					-c "COPY src FROM STDIN" \
					-c "SELECT count(*),
						round(percentile_cont(0.5) WITHIN GROUP (ORDER BY c)::numeric, 2),
						round(percentile_cont(0.9) WITHIN GROUP (ORDER BY c)::numeric, 2),
						round(percentile_cont(0.99) WITHIN GROUP (ORDER BY c)::numeric, 2),
						round(max(c)::numeric, 2),
						round(percentile_cont(0.5) WITHIN GROUP (ORDER BY s)::numeric, 2),
						round(percentile_cont(0.9) WITHIN GROUP (ORDER BY s)::numeric, 2),
						round(percentile_cont(0.99) WITHIN GROUP (ORDER BY s)::numeric, 2),
						round(max(s)::numeric, 2)
					FROM (SELECT 1000 * extract(epoch FROM pg_xact_commit_timestamp(i.xmin)
								- pg_xact_commit_timestamp(src.txid::text::xid)) AS c,
							1000 * extract(epoch FROM i.received_at
								- pg_xact_commit_timestamp(src.txid::text::xid)) AS s
						FROM src JOIN txbox.inbox i USING (message_id)) x")
			read -r n_lat _ <<<"$row"
			[ "$n_lat" = "$sent" ] || rb_die "latency run $r at $rate/s: $sent messages published, $n_lat found in billing"
			tps=$(awk '/^tps = / { printf "%.0f", $3; exit }' "$out")
			plat=$(awk '/^latency average/ { print $4; exit }' "$out")
			lat_rows+=("$rate $clients $row $tps $plat")
			rb_log "[$rate/s $r/$LAT_RUNS] $sent messages at $tps/s; commit to remote commit p50/p90/p99/max (ms): $(cut -d' ' -f2-5 <<<"$row")"
		done
	done
	rb_psql shop -c "SELECT txbox.drop_relay(name) FROM txbox.relays" >/dev/null
fi

# --- 3a. publish: txbox.publish vs pgq.insert_event --------------------------
declare -A ins_tps ins_cpu
if has pgq_insert; then
	rb_log "publish vs pgq.insert_event: pgbench -c $PGQ_CLIENTS for ${PGQ_SECONDS}s x $ROUNDS rounds"
	rb_psql shop -c "SELECT txbox.drop_relay(name) FROM txbox.relays" -c "SELECT pgq.create_queue('orders_q')" >/dev/null
	ins_variants=(txbox pgq)
	for ((r = 1; r <= ROUNDS; r++)); do
		for ((k = 0; k < 2; k++)); do
			v=${ins_variants[$(((k + r - 1) % 2))]}
			rb_psql shop -c "TRUNCATE orders, txbox.outbox" \
				-c "SELECT pgq.drop_queue('orders_q', true)" -c "SELECT pgq.create_queue('orders_q')" \
				-c "VACUUM (ANALYZE) orders, txbox.outbox" >/dev/null
			rb_checkpoint
			script=$RB_DIR/pgbench/txbox_publish.sql
			[ "$v" = txbox ] || script=$RB_DIR/pgbench/pgq_insert.sql
			out="$dir/insert.$v.$r.log"
			rb_cpu_begin
			PGOPTIONS="-c synchronous_commit=off" pgbench -n -c "$PGQ_CLIENTS" -j 2 -T "$PGQ_SECONDS" \
				-M prepared -f "$script" shop >"$out" 2>&1 || { cat "$out" >&2; rb_die "pgbench failed"; }
			rb_cpu_end
			tps=$(awk '/^tps = / { printf "%.0f", $3; exit }' "$out")
			xacts=$(awk -F': ' '/^number of transactions actually processed/ { print $2 + 0 }' "$out")
			ins_tps[$v]="${ins_tps[$v]:-} $tps"
			ins_cpu[$v]="${ins_cpu[$v]:-} $(awk -v s="$RB_SERVER_S" -v x="$xacts" 'BEGIN { printf "%.1f", s * 1e6 / x }')"
			rb_log "[$r/$ROUNDS] $v: $tps tps"
		done
	done
	rb_psql shop -c "SELECT pgq.drop_queue('orders_q', true)" -c "TRUNCATE orders, txbox.outbox" >/dev/null
fi

# --- 3b. consume: a PgQ consumer vs a relay ----------------------------------
declare -A pc_label
pc_variants=()
for b in $PGQ_BATCHES; do
	pc_variants+=("relay_$b" "pgq_$b")
	pc_label[relay_$b]="relay, batch_size $b"
	pc_label[pgq_$b]="PgQ consumer, batches of $b events"
done
if has pgq_consume; then
	rb_log "PgQ consumer vs relay: $PGQ_N messages published to both, batches: $PGQ_BATCHES"
	rb_psql shop -c "SELECT txbox.drop_relay(name) FROM txbox.relays" -c "TRUNCATE txbox.outbox" >/dev/null
	# the first tick after one event: from then on each tick's event_seq is
	# exactly the events before it, so batches hold exactly min_count events
	t0=$(rb_psql shop -At -c "SELECT pgq.create_queue('q')" \
		-c "SELECT pgq.insert_event('q', 'warmup', 'not consumed')" \
		-c "SELECT pgq.ticker('q')" | tail -n 1)
	rb_log "publishing $PGQ_N messages (txbox.publish and pgq.insert_event, same message id) in transactions of 1000, a tick after each"
	for ((lo = 1; lo <= PGQ_N; lo += 1000)); do
		hi=$((lo + 999))
		[ "$hi" -le "$PGQ_N" ] || hi=$PGQ_N
		echo "SELECT count(pgq.insert_event('q', 'orders', p.p::text,
				txbox.publish('orders', p.p, key => 'customer-' || g % 1000)::text,
				'customer-' || g % 1000, NULL, NULL))
			FROM generate_series($lo, $hi) g JOIN payloads p ON p.id = g % 1000;"
		echo "SELECT pgq.ticker('q');"
	done | rb_psql shop -f - >/dev/null
	rb_psql shop -c "VACUUM (ANALYZE)" >/dev/null
	npc=${#pc_variants[@]}
	run=0
	for ((r = 1; r <= ROUNDS; r++)); do
		for ((k = 0; k < npc; k++)); do
			v=${pc_variants[$(((k + r - 1) % npc))]}
			b=${v#*_}
			run=$((run + 1))
			case $v in
			relay_*)
				rb_relay_prepare bench "$b" NULL >/dev/null
				rb_relay_run bench "$PGQ_N"
				;;
			pgq_*)
				rb_psql shop -c "SELECT pgq.unregister_consumer('q', 'c')
						WHERE EXISTS (SELECT 1 FROM pgq.get_consumer_info('q') WHERE consumer_name = 'c')" \
					-c "SELECT pgq.register_consumer_at('q', 'c', $t0)" >/dev/null
				rb_psql billing -c "TRUNCATE pgq_inbox"
				rb_checkpoint
				rb_cpu_begin
				t1=$(rb_now)
				bash "$RB_DIR/pgq_consumer.sh" q c "$b" $((PGQ_N / b + 10))
				RB_SECONDS=$(rb_sub "$(rb_now)" "$t1")
				rb_cpu_end
				got=$(rb_val billing "SELECT count(*) FROM pgq_inbox")
				[ "$got" = "$PGQ_N" ] || rb_die "PgQ consumer: pgq_inbox holds $got rows, expected $PGQ_N"
				;;
			esac
			rb_record "$v"
			rb_log "[$run/$((ROUNDS * npc))] round $r $v: ${RB_SECONDS}s, $(rb_div "$PGQ_N" "$RB_SECONDS" %.0f) msg/s," \
				"CPU ${RB_SERVER_S}s server + ${RB_CLIENT_S}s client"
		done
	done
	rb_psql shop -c "SELECT txbox.drop_relay(name) FROM txbox.relays" >/dev/null
fi

# --- profile ------------------------------------------------------------------
if has profile; then
	source "$RB_DIR/profile.sh"
fi

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
total_s=$(rb_sub "$(rb_now)" "$t_start")

# --- report -------------------------------------------------------------------
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
pgver=$(rb_val postgres "SHOW server_version")

# rb_tp_table VARIANTS... -- one line per variant: throughput and CPU
rb_tp_table() {
	local n=$1 v med_s
	shift
	printf '  %-38s %9s %11s %8s %9s %9s\n' "" "msg/s" "min-max" "seconds" "server" "client"
	printf '  %-38s %9s %11s %8s %9s %9s\n' "" "(median)" "msg/s" "" "us/msg" "us/msg"
	for v in "$@"; do
		med_s=$(rb_median "${secs[$v]}")
		rates=$(for s in ${secs[$v]}; do rb_div "$n" "$s" %.0f; echo -n " "; done)
		printf '  %-38s %9.0f %11s %8.1f %9.0f %9.0f\n' "${tp_label[$v]:-${pc_label[$v]:-$v}}" \
			"$(rb_div "$n" "$med_s")" "$(rb_spread "$rates")" "$med_s" \
			"$(awk -v c="$(rb_median "${srv[$v]}")" -v n="$n" 'BEGIN { print c * 1e6 / n }')" \
			"$(awk -v c="$(rb_median "${cli[$v]}")" -v n="$n" 'BEGIN { print c * 1e6 / n }')"
	done
}
# rb_ratio_line LABEL X Y TARGET -- throughput of X over Y: of the medians,
# paired by round, and total CPU per message of Y over X
rb_ratio_line() {
	local label=$1 x=$2 y=$3 target=$4 med paired cpu result="-"
	[ -n "${secs[$x]:-}" ] && [ -n "${secs[$y]:-}" ] || return 0
	med=$(rb_div "$(rb_median "${secs[$y]}")" "$(rb_median "${secs[$x]}")")
	paired=$(rb_paired "${secs[$y]}" "${secs[$x]}")
	cpu=$(awk -v xs="$(rb_median "${srv[$x]}")" -v xc="$(rb_median "${cli[$x]}")" \
		-v ys="$(rb_median "${srv[$y]}")" -v yc="$(rb_median "${cli[$y]}")" \
		'BEGIN { printf "%.2f", (ys + yc) / (xs + xc) }')
	[ "$target" = "-" ] || result=$(awk -v q="$med" -v t="$target" 'BEGIN { print (q >= t ? "met" : "MISSED") }')
	printf '  %-44s %7s %7s %7s   %s\n' "$label" "$med" "$paired" "$cpu" "${target/#-/} $result"
}

echo "txbox relay benchmarks (bench/relay.sh)"
echo "date:      $started, $(awk -v s="$total_s" 'BEGIN { printf "%.0f", s / 60 }') min"
echo "machine:   $(nproc) CPUs ($cpu_model), $mem RAM, $(uname -sr)"
echo "load avg:  $load_start at start, $load_end at end (1, 5, 15 min)"
if awk -v l="${load_start%% *}" -v c="$(nproc)" 'BEGIN { exit !(l > c / 2) }'; then
	echo "           the machine was busy with other work: wall-clock figures are low and noisy;"
	echo "           compare the paired ratios and the CPU per message"
fi
echo "server:    PostgreSQL $pgver, one cluster, unix socket; shared_buffers=1GB,"
echo "           track_commit_timestamp=on, max_wal_size=8GB, autovacuum=off,"
echo "           synchronous_commit=on unless said otherwise"
echo

if has throughput; then
	echo "1. Relay throughput: $N messages in shop's outbox (published in transactions of $CHUNK"
	echo "   in ${publish_s}s: $(rb_div "$N" "$publish_s" %.0f) msg/s) to billing, $ROUNDS rounds, variants interleaved"
	echo "   payload: $KEYS keys, $payload_info; outbox $outbox_size"
	rb_tp_table "$N" "${tp_variants[@]}"
	echo
	printf '  %-44s %7s %7s %7s   %s\n' "ratio (throughput)" "medians" "paired" "CPU" "target"
	rb_ratio_line "relay / COPY baseline" relay copy "$TARGET_RATIO"
	rb_ratio_line "relay batch_size 5000 / COPY baseline" relay5000 copy "$TARGET_RATIO"
	rb_ratio_line "relay / 1000-row INSERT baseline" relay chunked "$TARGET_RATIO"
	rb_ratio_line "relay batch_size 5000 / 1000-row INSERT baseline" relay5000 chunked "$TARGET_RATIO"
	rb_ratio_line "what-if, both lz4: relay / COPY baseline" relay_lz4 copy_lz4 "$TARGET_RATIO"
	rb_ratio_line "what-if: relay with lz4 / relay" relay_lz4 relay -
	echo "  (relay: from resume_relay to the relay's last_delivered_at; baselines: the"
	echo "   client pipeline's wall clock.  server/client us/msg: CPU per message of the"
	echo "   whole cluster (relay worker, target backend, background writers) and of the"
	echo "   client processes.  medians: ratio of the median times; paired: median over"
	echo "   the rounds of the ratio within a round; CPU: total CPU per message of the"
	echo "   baseline over the relay's, which other load on the machine does not skew)"
	echo "  seconds per run, in round order:"
	for v in "${tp_variants[@]}"; do printf '    %-10s %s\n' "$v" "${secs[$v]}"; done
	echo
fi

if has latency; then
	echo "2. Latency: commit in shop to commit in billing, pgbench -R RATE -T $LAT_SECONDS,"
	echo "   one message per transaction, synchronous_commit=on, $LAT_RUNS runs per rate (ms)"
	printf '  %-6s %7s %7s %6s %8s %7s %7s %7s %8s   %7s %7s %7s %8s\n' rate clients messages "rate" "publish" \
		p50 p90 p99 max p50 p90 p99 max
	printf '  %-6s %7s %7s %6s %8s %31s   %31s\n' "/s" "" "" "/s" "lat ms" \
		"-- to the remote commit --" "-- to received_at --"
	for rate in $LAT_RATES; do
		p50s="" p99s="" rates=""
		for ((r = 0; r < ${#lat_rows[@]}; r++)); do
			read -r lr clients n c50 c90 c99 cmax s50 s90 s99 smax tps plat <<<"${lat_rows[$r]}"
			[ "$lr" = "$rate" ] || continue
			printf '  %-6s %7s %7s %6s %8s %7s %7s %7s %8s   %7s %7s %7s %8s\n' "$rate" "$clients" "$n" "$tps" "$plat" \
				"$c50" "$c90" "$c99" "$cmax" "$s50" "$s90" "$s99" "$smax"
			p50s="$p50s $c50" p99s="$p99s $c99" rates="$rates $tps"
		done
		m50=$(rb_median "$p50s")
		m99=$(rb_median "$p99s")
		reached=$(awk -v r="$(rb_median "$rates")" -v t="$rate" 'BEGIN { print (r < 0.95 * t ? " (pgbench did not reach the rate)" : "") }')
		echo "  at $rate/s, median over the runs: p50 $m50 ms (goal <= 2: $(awk -v x="$m50" 'BEGIN { print (x <= 2 ? "met" : "MISSED") }')), p99 $m99 ms (goal <= 10: $(awk -v x="$m99" 'BEGIN { print (x <= 10 ? "met" : "MISSED") }'))$reached"
	done
	echo "  (remote commit: pg_xact_commit_timestamp of the inbox row's xmin minus that of"
	echo "   the publishing transaction; both are taken when the commit record is written,"
	echo "   before its WAL flush, so the source's flush wait is inside, the target's is"
	echo "   not.  received_at: now() of the target transaction, i.e. its start)"
	echo
fi

if has pgq_insert; then
	echo "3a. Publishing: a business transaction (1 order row) + its event, pgbench -c $PGQ_CLIENTS -j 2"
	echo "    -T $PGQ_SECONDS -M prepared, synchronous_commit=off (CPU cost, not fsync), $ROUNDS rounds"
	printf '  %-44s %9s %12s %14s\n' "" "tps" "min-max" "server CPU"
	printf '  %-44s %9s %12s %14s\n' "" "(median)" "" "us/xact"
	for v in txbox pgq; do
		label="+ txbox.publish('orders', jsonb)"
		[ "$v" = txbox ] || label="+ pgq.insert_event('orders_q', 'orders', text)"
		printf '  %-44s %9.0f %12s %14.1f\n' "$label" "$(rb_median "${ins_tps[$v]}")" \
			"$(rb_spread "${ins_tps[$v]}")" "$(rb_median "${ins_cpu[$v]}")"
	done
	echo "  txbox / PgQ: tps $(rb_div "$(rb_median "${ins_tps[txbox]}")" "$(rb_median "${ins_tps[pgq]}")")" \
		"(paired $(rb_paired "${ins_tps[txbox]}" "${ins_tps[pgq]}")), CPU per transaction" \
		"$(rb_div "$(rb_median "${ins_cpu[txbox]}")" "$(rb_median "${ins_cpu[pgq]}")")"
	echo
fi

if has pgq_consume; then
	echo "3b. Consuming: $PGQ_N messages (published in transactions of 1000 to both, same message"
	echo "    ids, a PgQ tick after each) moved to billing, deduplicated there by message_id;"
	echo "    $ROUNDS rounds, interleaved"
	rb_tp_table "$PGQ_N" "${pc_variants[@]}"
	echo
	printf '  %-44s %7s %7s %7s\n' "ratio (throughput)" "medians" "paired" "CPU"
	for b in $PGQ_BATCHES; do
		rb_ratio_line "relay / PgQ consumer, batches of $b" "relay_$b" "pgq_$b" -
	done
	echo "  (PgQ consumer: psql on shop running next_batch_custom / get_batch_events /"
	echo "   finish_batch, streaming each batch as COPY data to a psql on billing that"
	echo "   stages it and INSERTs ... ON CONFLICT DO NOTHING, acknowledging each commit"
	echo "   before the batch is finished; bench/relay/pgq_consumer.sh)"
	echo "  seconds per run, in round order:"
	for v in "${pc_variants[@]}"; do printf '    %-10s %s\n' "$v" "${secs[$v]}"; done
	echo
fi

if has profile; then
	cat "$dir/profile.txt"
fi
