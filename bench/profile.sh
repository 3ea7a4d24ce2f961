#!/usr/bin/env bash
# bench/profile.sh VARIANT... -- where the backends spend their CPU time in
# benchmark variants (names as in bench/lib.sh: a, b, c, d_new, e_new,
# d_dup, e_dup, c_plain, e_pinned_new, ...).  Never run as root: `bash
# bench/run profile VARIANT...` prepares everything.
#
# For each variant: runs it with pgbench as bench/publish_claim.sh does and
# records the client backends' user-space CPU with `perf record` for
# BENCH_SECONDS (default 10).  Prints the top BENCH_TOP (default 40)
# symbols by self time.  With BENCH_CALLGRAPH=dwarf it prints instead the
# inclusive share (callees included) of the functions that tell where
# txbox's time goes, one column per variant.  Shares of samples do not
# depend on what else the machine is doing, unlike tps.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

secs=${BENCH_SECONDS:-10}
top=${BENCH_TOP:-40}
callgraph=${BENCH_CALLGRAPH:-}
[ $# -gt 0 ] || { echo "usage: bash bench/run profile VARIANT..." >&2; exit 2; }
command -v perf >/dev/null || { echo "bench: perf is not installed" >&2; exit 1; }
for name in "$@"; do bench_variant "$name" >/dev/null; done

bench_cluster_start
mkdir -p "$BENCH_TMP/logs"
echo "txbox profile: perf record -e cpu-clock:u${callgraph:+ --call-graph $callgraph} of the client backends (bench/profile.sh)"
echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine:  $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), PostgreSQL $(bench_psql -At -c 'SHOW server_version')"
echo "pgbench:  as bench/publish_claim.sh, ${secs}s recorded per variant; load avg $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo
for name in "$@"; do
	v=$(bench_variant "$name")
	bench_reset "$(bench_field "$v" 2)" >/dev/null
	bench_pgbench "$v" $((secs + 3)) "$BENCH_TMP/logs/$name.log" &
	pgb=$!
	sleep 1.5
	pids=$(bench_psql -At -c "SELECT string_agg(pid::text, ',') FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
	bench_log "$name: recording backends $pids for ${secs}s"
	cg=()
	[ -z "$callgraph" ] || cg=(--call-graph "$callgraph")
	if ! perf record -q -e cpu-clock:u "${cg[@]}" -p "$pids" -o "$BENCH_TMP/$name.perf" \
		-- sleep "$secs" >"$BENCH_TMP/$name.perf.log" 2>&1 || [ ! -s "$BENCH_TMP/$name.perf" ]; then
		cat "$BENCH_TMP/$name.perf.log" >&2
		echo "bench: perf record failed (kernel.perf_event_paranoid is $(cat /proc/sys/kernel/perf_event_paranoid))" >&2
		exit 1
	fi
	wait "$pgb"
	echo "=== $name: $(bench_field "$v" 5): $(awk '/^tps = /{print $3; exit}' "$BENCH_TMP/logs/$name.log") tps"
	if [ -z "$callgraph" ]; then
		perf report -i "$BENCH_TMP/$name.perf" --stdio --no-children --sort dso,symbol \
			>"$BENCH_TMP/$name.txt" 2>/dev/null
	else
		# inclusive time ("children") of each function, callers included
		perf report -i "$BENCH_TMP/$name.perf" --stdio --children --sort symbol \
			-g none >"$BENCH_TMP/$name.txt" 2>/dev/null
	fi
	[ "${BENCH_KEEP:-0}" = 1 ] || rm -f "$BENCH_TMP/$name.perf"
	if [ -z "$callgraph" ]; then
		grep -v -e '^#' -e '^$' "$BENCH_TMP/$name.txt" | head -n "$top" || true
		echo
	fi
done

[ -n "$callgraph" ] || exit 0
# inclusive share of each function, per variant
keys=(
	PortalRun CommitTransactionCommand
	fmgr_security_definer ProcessGUCArray AtEOXact_GUC OverrideSearchPathMatchesCurrent
	txbox_api LookupFuncName fmgr_info_cxt SPI_connect SPI_finish
	txbox_inbox_claim txbox_exec SPI_execute_plan SPI_execute_snapshot GetCachedPlan
	index_getnext_slot GetLatestSnapshot
	txbox_current_generation txbox_uuid7_generate pg_strong_random
	ExecFindPartition ExecSetupPartitionTupleRouting ExecCleanupTupleRouting
	ExecInitAppend ExecInitPartitionPruning ExecConstraints
	standard_ExecutorStart ExecInitModifyTable heap_insert ExecInsertIndexTuples
	ExecCheckIndexConstraints XLogInsert
)
echo "inclusive share of the backends' user CPU (callees included), per variant:"
printf '%-34s' "function"
for name in "$@"; do printf ' %8s' "$name"; done
echo
for k in "${keys[@]}"; do
	printf '%-34s' "$k"
	for name in "$@"; do
		x=$(awk -v k="$k" '$1 ~ /%$/ && $4 == k { print $1; exit }' "$BENCH_TMP/$name.txt")
		printf ' %8s' "${x:--}"
	done
	echo
done
