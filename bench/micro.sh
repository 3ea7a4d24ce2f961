#!/usr/bin/env bash
# bench/micro.sh -- where the time of txbox.publish and txbox.inbox_claim
# goes, in microseconds per call.  Never run as root: `bash bench/run micro`
# prepares everything and calls this as an unprivileged user.
#
# Each operation of bench/micro.sql runs BENCH_MICRO_CALLS times in a
# server-side loop (one backend, one transaction, no client), repeated
# BENCH_MICRO_REPS times with the operations interleaved.  The minimum over
# the repetitions is reported (the run least disturbed by anything else on
# the machine), with the median beside it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

calls=${BENCH_MICRO_CALLS:-20000}
reps=${BENCH_MICRO_REPS:-7}
[ "$bench_preclaimed" -ge "$calls" ] || bench_preclaimed=$calls

# op|group|label
ops=(
	"fn_plain|publish|trivial function, no attributes"
	"fn_secdef|publish|  + SECURITY DEFINER"
	"fn_set|publish|  + SET search_path only"
	"fn_secdef_set|publish|  + SECURITY DEFINER + SET search_path"
	"outbox_insert|publish|(b) hand-made outbox INSERT"
	"outbox_parent_sql|publish|txbox.outbox INSERT by SQL, via parent"
	"outbox_partition_sql|publish|txbox.outbox INSERT by SQL, into partition"
	"publish_plain|publish|txbox_publish, no SECDEF/SET"
	"publish|publish|(c) txbox.publish"
	"dedup_insert_new|claim|(d) dedup INSERT ON CONFLICT, new"
	"claim_parent_sql_new|claim|claim INSERT by SQL, via parent, new"
	"claim_partition_sql_new|claim|claim INSERT by SQL, into partition, new"
	"older_probe_ne|claim|older-generation probe, gen <> current"
	"older_probe_eq|claim|older-generation probe, gen = older"
	"claim_plain_new|claim|txbox_inbox_claim, no wrapper, new"
	"claim_new|claim|(e) txbox.inbox_claim, new"
	"claim_new_rot|claim_rotated|(e) inbox_claim after a rotation, new"
	"dedup_insert_unord|claim|(d) dedup INSERT ON CONFLICT, new, unordered"
	"claim_unord_rot|claim_rotated|(e) after a rotation, new, unordered"
	"dedup_insert_dup|claim|(d) dedup INSERT ON CONFLICT, duplicate"
	"claim_dup|claim|(e) txbox.inbox_claim, duplicate"
)
field() { echo "$1" | cut -d'|' -f"$2"; }

bench_cluster_start
bench_psql -f "$BENCH_DIR/micro.sql" >/dev/null
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')

declare -A us_of
for ((r = 1; r <= reps; r++)); do
	bench_log "repetition $r of $reps"
	for o in "${ops[@]}"; do
		op=$(field "$o" 1)
		bench_reset "$(field "$o" 2)" >/dev/null
		us=$(bench_psql -At -c "SELECT round(bench.micro('$op', $calls)::numeric, 2)")
		us_of[$op]="${us_of[$op]:-} $us"
	done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

stat() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END {
	printf "%8.2f %8.2f", v[1], (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A best
for o in "${ops[@]}"; do
	op=$(field "$o" 1)
	best[$op]=$(echo "${us_of[$op]}" | tr ' ' '\n' | grep . | sort -g | head -n 1)
done
delta() { awk -v x="${best[$1]}" -v y="${best[$2]}" 'BEGIN { printf "%8.2f", x - y }'; }

echo "txbox micro-benchmark: microseconds per call (bench/micro.sh)"
echo "date:     $started"
echo "machine:  $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), PostgreSQL $(bench_psql -At -c 'SHOW server_version')"
echo "method:   $calls calls in a PL/pgSQL loop, one backend, one transaction; $reps repetitions interleaved"
echo "load avg: $load_start at start, $load_end at end"
if awk -v l="${load_start%% *}" 'BEGIN { exit !(l > 1.0) }'; then
	echo "warning:  the machine was busy before the run started (load ${load_start%% *}): other work"
	echo "          competed for the CPUs, so the figures are noisy and lower than on a quiet machine"
fi
echo
printf '%-46s %8s %8s\n' "operation" "min us" "median"
for o in "${ops[@]}"; do
	op=$(field "$o" 1)
	printf '%-46s %s\n' "$(field "$o" 3)" "$(echo "${us_of[$op]}" | stat)"
done
echo
echo "differences of the minima (us per call):"
printf '  %-52s %s\n' "SECURITY DEFINER alone" "$(delta fn_secdef fn_plain)"
printf '  %-52s %s\n' "SET search_path alone" "$(delta fn_set fn_plain)"
printf '  %-52s %s\n' "SECURITY DEFINER + SET search_path" "$(delta fn_secdef_set fn_plain)"
printf '  %-52s %s\n' "publish: txbox.outbox's shape and index, via parent" "$(delta outbox_parent_sql outbox_insert)"
printf '  %-52s %s\n' "publish: tuple routing (parent - partition)" "$(delta outbox_parent_sql outbox_partition_sql)"
printf '  %-52s %s\n' "publish: C function + SPI (vs SQL via parent)" "$(delta publish_plain outbox_parent_sql)"
printf '  %-52s %s\n' "publish: SECURITY DEFINER (+ pin if any)" "$(delta publish publish_plain)"
printf '  %-52s %s\n' "publish: total, (c) - (b)" "$(delta publish outbox_insert)"
printf '  %-52s %s\n' "claim: partitioned table, via parent (vs (d))" "$(delta claim_parent_sql_new dedup_insert_new)"
printf '  %-52s %s\n' "claim: tuple routing (parent - partition)" "$(delta claim_parent_sql_new claim_partition_sql_new)"
printf '  %-52s %s\n' "claim: older-generation probe as written" "$(delta older_probe_ne fn_plain)"
printf '  %-52s %s\n' "claim: probe naming the older generation" "$(delta older_probe_eq fn_plain)"
printf '  %-52s %s\n' "claim: C function + SPI + probe (vs SQL via parent)" "$(delta claim_plain_new claim_parent_sql_new)"
printf '  %-52s %s\n' "claim: txbox_api wrapper (+ pin if any)" "$(delta claim_new claim_plain_new)"
printf '  %-52s %s\n' "claim: total for a new id, (e) - (d)" "$(delta claim_new dedup_insert_new)"
printf '  %-52s %s\n' "claim: total for a duplicate, (e) - (d)" "$(delta claim_dup dedup_insert_dup)"
printf '  %-52s %s\n' "claim after a rotation, new: (e) - (e) young table" "$(delta claim_new_rot claim_new)"
printf '  %-52s %s\n' "claim after a rotation, new, unordered: (e) - (d)" "$(delta claim_unord_rot dedup_insert_unord)"
