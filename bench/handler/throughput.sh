#!/usr/bin/env bash
# bench/handler/throughput.sh -- messages per second of a txbox handler with
# a trivial handler (one INSERT) against a hand-written consumer loop doing
# the same work on a plain queue table.  Run by bench/handler.sh (as an
# unprivileged user); the report goes to stdout, progress to stderr.
#
# Each run starts from the same state: N messages waiting (in txbox.inbox,
# placed with txbox._inbox_receive in pages of 1000 as a relay does; or in
# the plain table queue), nothing processed, tables vacuumed and analyzed,
# a CHECKPOINT.  Then the clock runs until all N have their effect:
#   baseline    CALL bench_consume(100) in one session: per transaction,
#               100 rows FOR UPDATE SKIP LOCKED, INSERT INTO effects, UPDATE
#               queue SET processed, all set-based (bench/handler/throughput.sql)
#   baseline2   the same loop in two concurrent sessions
#   baseline_each  CALL bench_consume_each(100): the same rows, but for each
#               one the per-message function bench_handle and an UPDATE
#   handler_w1  txbox.create_handler(..., 'bench_handle_window(txbox.message[])',
#               '{"batch": 100, "parallel": 1}'): a window of up to 100
#               messages per call, one INSERT for all of them; clock from
#               just before create_handler until txbox.handlers.processed
#               = N (polled every 10 ms)
#   handler_w2  the same with "parallel": 2
#   handler_p1  the per-message handler bench_handle(txbox.message), one
#               call (one INSERT) per message, "batch": 100, "parallel": 1
#   handler_p2  the same with "parallel": 2
# Variants run interleaved, HANDLER_ROUNDS rounds, the order rotating by one
# each round; medians per variant.
#
# Settings (environment):
#   HANDLER_MESSAGES  200000  messages per run
#   HANDLER_ROUNDS    3
#   HANDLER_TIMEOUT   300     seconds before a run is given up (DNF); its
#                             rate is then what it processed / the timeout
#   HANDLER_RERUN_DNF 0       1: run a variant again in later rounds after
#                             it did not finish (default: skip it)
#   HANDLER_VARIANTS  all     the variants to run, e.g. "baseline handler_w1"
#   HANDLER_DIAG      0       1: where the time goes.  Adds the variant
#                             fetch_done (txbox's SQL consumer API in the
#                             same loop: inbox_fetch, INSERT, inbox_done per
#                             100) to the rounds, and after them one more
#                             run each of baseline, handler_w1 and
#                             handler_p1 with pg_stat_statements tracking
#                             every statement (nested ones too: the
#                             handler's SPI queries) and a perf profile of
#                             the handler worker in the handler runs
#                             (HANDLER_PROFILE_SECONDS, default 15).  These
#                             extra runs are not in the medians.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=${HANDLER_MESSAGES:-200000}
ROUNDS=${HANDLER_ROUNDS:-3}
TIMEOUT=${HANDLER_TIMEOUT:-300}
RERUN_DNF=${HANDLER_RERUN_DNF:-0}
DIAG=${HANDLER_DIAG:-0}
PROFILE_SECONDS=${HANDLER_PROFILE_SECONDS:-15}

read -r -a variants <<<"${HANDLER_VARIANTS:-baseline baseline2 baseline_each handler_w1 handler_w2 handler_p1 handler_p2}"
[ "$DIAG" = 1 ] && variants+=(fetch_done)

declare -A label=(
	[baseline]="hand-written loop, 1 session, 100 per transaction"
	[baseline2]="hand-written loop, 2 sessions, 100 per transaction"
	[baseline_each]="hand-written loop calling the per-message function, 1 session, 100 per transaction"
	[handler_w1]="txbox handler taking txbox.message[], batch 100, parallel 1"
	[handler_w2]="txbox handler taking txbox.message[], batch 100, parallel 2"
	[handler_p1]="txbox handler taking txbox.message, batch 100, parallel 1"
	[handler_p2]="txbox handler taking txbox.message, batch 100, parallel 2"
	[fetch_done]="inbox_fetch + INSERT + inbox_done, 1 session, 100 per transaction (diagnostic)"
)

if [ "$DIAG" = 1 ]; then
	# loaded but idle (track = none) during the rounds
	hb_cluster_start "autovacuum = on" "shared_preload_libraries = 'txbox,pg_stat_statements'" \
		"pg_stat_statements.track = 'none'" "pg_stat_statements.max = 1000"
else
	hb_cluster_start "autovacuum = on"
fi
createdb billing
hb_psql -d billing -c "CREATE EXTENSION txbox" -f "$HB_DIR/throughput.sql" >/dev/null
[ "$DIAG" = 1 ] && hb_psql -d billing -c "CREATE EXTENSION pg_stat_statements" >/dev/null
export PGDATABASE=billing
q() { hb_psql -At "$@"; }

echo "txbox handler throughput (bench/handler.sh)"
echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "txbox:    ${HB_REVISION:-unknown revision}"
hb_machine
echo "settings: $N messages per run, $ROUNDS rounds, timeout ${TIMEOUT}s per run;" \
	"shared_buffers 1GB, synchronous_commit off, autovacuum on"
echo

# --- one run ------------------------------------------------------------
# reset_and_load VARIANT: nothing processed, N messages waiting.
reset_and_load() {
	q -c "SELECT txbox.drop_handler(name) FROM txbox.handlers" >/dev/null
	q -c "SELECT txbox.drop_consumer(consumer) FROM txbox.consumers WHERE handler_id IS NULL" >/dev/null
	# the dropped handler's workers end at commit; TRUNCATE waits for them
	q -c "TRUNCATE effects, queue, txbox.inbox, txbox.inbox_dedup, txbox.handler_failures" \
		-c "ALTER SEQUENCE queue_id_seq RESTART" >/dev/null
	case $1 in
	baseline*)
		q -c "INSERT INTO queue (message_id, key, payload)
			  SELECT message_id, key, payload FROM bench_messages($N) ORDER BY g" >/dev/null ;;
	*)
		q -c "CALL bench_load_inbox($N)" >/dev/null ;;
	esac
	q -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
}

# progress_sampler QUERY FILE T0: "seconds done" every second into FILE
progress_sampler() {
	local query=$1 file=$2 t0=$3 now done
	: >"$file"
	while :; do
		sleep 1
		done=$(q -c "$query" 2>/dev/null) || continue
		now=$(date +%s.%N)
		awk -v a="$now" -v b="$t0" -v d="$done" 'BEGIN { printf "%.3f %s\n", a - b, d }' >>"$file"
	done
}

# sessions N PROCEDURE_CALL: run the call in N concurrent sessions (each
# given up after TIMEOUT), wait for all
sessions() {
	local n=$1 call=$2 pids=() p
	for ((s = 0; s < n; s++)); do
		timeout "$TIMEOUT" psql -X -q -v ON_ERROR_STOP=1 -c "$call" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || true; done
}

# run VARIANT TAG [PROFILE]: prints "seconds done" (done < N: did not
# finish); progress samples in $HB_TMP/progress-TAG.txt; with PROFILE, a
# perf profile of the handler worker in $HB_TMP/profile.txt
run() {
	local v=$1 tag=$2 profile=${3:-} t0 t1 sampler secs done par
	local prog="$HB_TMP/progress-$tag.txt"
	reset_and_load "$v"
	case $v in
	baseline | baseline2 | baseline_each | fetch_done)
		t0=$(date +%s.%N)
		case $v in
		fetch_done)
			progress_sampler "SELECT count(*) FROM effects" "$prog" "$t0" &
			sampler=$!
			sessions 1 "CALL bench_fetch_done(100)"
			done=$(q -c "SELECT count(*) FROM effects")
			;;
		*)
			progress_sampler "SELECT $N - count(*) FROM queue WHERE NOT processed" "$prog" "$t0" &
			sampler=$!
			case $v in
			baseline) sessions 1 "CALL bench_consume(100)" ;;
			baseline2) sessions 2 "CALL bench_consume(100)" ;;
			baseline_each) sessions 1 "CALL bench_consume_each(100)" ;;
			esac
			done=$(q -c "SELECT count(*) FROM queue WHERE processed")
			;;
		esac
		t1=$(date +%s.%N)
		kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
		secs=$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')
		;;
	handler_*)
		par=${v#handler_?}
		fn=$([ "${v#handler_}" = "p$par" ] && echo 'bench_handle(txbox.message)' ||
			echo 'bench_handle_window(txbox.message[])')
		t0=$(date +%s.%N)
		progress_sampler "SELECT processed FROM txbox.handlers WHERE name = 'h'" "$prog" "$t0" &
		sampler=$!
		[ -z "$profile" ] || profile_handler &
		q -F ' ' >"$HB_TMP/wait.out" <<-SQL
			SELECT clock_timestamp() AS t0 \gset
			SELECT txbox.create_handler('h', ARRAY['orders'], '$fn',
										'{"batch": 100, "parallel": $par}') \g /dev/null
			CALL bench_wait('SELECT processed FROM txbox.handlers WHERE name = ''h''',
							$N, :'t0', $TIMEOUT);
		SQL
		read -r secs done <"$HB_TMP/wait.out"
		kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
		wait # the profiler, if any
		q -c "SELECT txbox.drop_handler('h')" >/dev/null
		;;
	esac
	echo "$secs $done" >>"$prog"
	# exactly one effect per processed message
	if [ "$(q -c "SELECT count(*) = count(DISTINCT message_id) FROM effects")" != t ]; then
		echo "bench: $v: a message had two effects" >&2
		exit 1
	fi
	echo "$secs $done"
}

# profile_handler: perf profile of the handler worker (user space, DWARF
# call graphs) for PROFILE_SECONDS, from 2 s into the run
profile_handler() {
	local out="$HB_TMP/profile.txt" data="$HB_TMP/handler.perf" pid
	command -v perf >/dev/null || { echo "(perf is not installed)" >"$out"; return; }
	sleep 2
	pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'txbox handler' LIMIT 1")
	[ -n "$pid" ] || { echo "(no handler worker found)" >"$out"; return; }
	if perf record -q -e cpu-clock:u --call-graph dwarf,16384 -F 499 -p "$pid" -o "$data" \
		-- sleep "$PROFILE_SECONDS" >"$HB_TMP/perf.log" 2>&1; then
		{
			echo "self time (top 25 symbols):"
			perf report -i "$data" --stdio --no-children --sort symbol -g none 2>/dev/null |
				grep -v -e '^#' -e '^$' | head -n 25 || true
			echo
			echo "inclusive time, callees included (named functions over 3%):"
			perf report -i "$data" --stdio --children --sort symbol -g none 2>/dev/null |
				grep -v -e '^#' -e '^$' -e '\] 0x0000' | awk '$1 + 0 >= 3' | head -n 60 || true
		} >"$out"
	else
		{ echo "(perf record failed)"; cat "$HB_TMP/perf.log"; } >"$out"
	fi
	rm -f "$data"
}

# statements: what pg_stat_statements recorded (every statement, nested
# ones too), by total time
statements() {
	hb_psql -P footer=off -c "
		SELECT calls, round(total_exec_time) AS total_ms,
			   round((1000 * total_exec_time / calls)::numeric, 1) AS mean_us, rows,
			   left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS query
		  FROM pg_stat_statements
		 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		   AND query !~* 'pg_stat_statements|bench_wait|processed FROM txbox.handlers|NOT processed'
		 ORDER BY total_exec_time DESC LIMIT 14"
}

# --- rounds -------------------------------------------------------------
declare -A results=() dnf=()
echo "runs (seconds until all $N messages had their effect; msg/s):"
for ((r = 1; r <= ROUNDS; r++)); do
	n=${#variants[@]}
	for ((i = 0; i < n; i++)); do
		v=${variants[$(((i + r - 1) % n))]}
		if [ -n "${dnf[$v]:-}" ] && [ "$RERUN_DNF" != 1 ]; then
			hb_log "round $r: $v skipped (did not finish before)"
			continue
		fi
		hb_log "round $r: $v"
		run "$v" "$v-$r" >"$HB_TMP/run.out"
		read -r secs done <"$HB_TMP/run.out"
		if [ "$done" -ge "$N" ]; then
			rate=$(awk -v n="$N" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
			printf '  round %d  %-12s %8.2f s  %9.1f msg/s\n' "$r" "$v" "$secs" "$rate"
		else
			dnf[$v]=1
			rate=$(awk -v n="$done" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
			printf '  round %d  %-12s DNF: %d of %d in %.0f s, %.1f msg/s\n' "$r" "$v" "$done" "$N" "$secs" "$rate"
		fi
		results[$v]="${results[$v]:-} $rate"
		[ -f "$HB_TMP/progress-$v.first" ] || cp "$HB_TMP/progress-$v-$r.txt" "$HB_TMP/progress-$v.first"
	done
done
echo

median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
declare -A med=()
echo "median msg/s (DNF: messages processed / timeout, an upper bound of the rate over all $N):"
for v in "${variants[@]}"; do
	med[$v]=$(echo "${results[$v]:-}" | median)
	printf '  %-12s %9.1f  %s%s\n' "$v" "${med[$v]}" "${label[$v]}" "${dnf[$v]:+  (DNF)}"
done
echo
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
ok() { awk -v r="$1" 'BEGIN { print (r >= 1.0) ? "met" : "MISSED" }'; }
echo "ratios of medians (target >= 1.0):"
for pair in handler_w1/baseline handler_w2/baseline2 handler_p1/baseline_each handler_p1/baseline \
	handler_p2/baseline2; do
	[ -n "${med[${pair%/*}]:-}" ] && [ -n "${med[${pair#*/}]:-}" ] || continue
	r=$(ratio "${med[${pair%/*}]}" "${med[${pair#*/}]}")
	printf '  %-26s %s  %s\n' "${pair/\// \/ }" "$r" "$(ok "$r")"
done
[ "$DIAG" != 1 ] || echo "  fetch_done / baseline    $(ratio "${med[fetch_done]}" "${med[baseline]}")  (diagnostic)"
echo

# progress of each variant's first run: rate per tenth of the messages
echo "progress of each variant's first run: seconds at which each tenth of the $N messages was done,"
echo "and the rate within that tenth (msg/s); samples every second"
for v in "${variants[@]}"; do
	f="$HB_TMP/progress-$v.first"
	[ -s "$f" ] || continue
	printf '  %-12s' "$v"
	awk -v n="$N" '
		{ t[NR] = $1; d[NR] = $2 }
		END {
			k = 1; pt = 0
			for (i = 1; i <= NR && k <= 10; i++)
				while (k <= 10 && d[i] >= k * n / 10) {
					# interpolate the crossing time within the sample interval
					tc = (i > 1 && d[i] > d[i-1]) ? t[i-1] + (t[i] - t[i-1]) * (k * n / 10 - d[i-1]) / (d[i] - d[i-1]) : t[i]
					if (tc > pt) printf " %6.1fs/%-7.0f", tc, (n / 10) / (tc - pt)
					else printf " %6.1fs/%-7s", tc, "-"
					pt = tc; k++
				}
			if (k <= 10 && NR > 0)
				printf "  ... then %d done at %.0fs; last 10 s: %.0f msg/s", d[NR], t[NR], (NR > 10) ? (d[NR] - d[NR-10]) / (t[NR] - t[NR-10]) : 0
			printf "\n"
		}' "$f"
done

if [ "$DIAG" = 1 ]; then
	q -c "ALTER SYSTEM SET pg_stat_statements.track = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
	for v in baseline handler_w1 handler_p1; do
		hb_log "diagnostics: $v with pg_stat_statements"
		q -c "SELECT pg_stat_statements_reset()" >/dev/null
		run "$v" "diag-$v" $([ "$v" != baseline ] && echo profile) >"$HB_TMP/run.out"
		[ "$v" = baseline ] || cp "$HB_TMP/profile.txt" "$HB_TMP/profile-$v.txt" 2>/dev/null || true
		read -r secs done <"$HB_TMP/run.out"
		echo
		echo "--- diagnostics: $v once more, pg_stat_statements.track = all: $done messages in $secs s" \
			"($(awk -v n="$done" -v s="$secs" 'BEGIN { printf "%.0f", n / s }') msg/s, tracking included) ---"
		statements
	done
	echo
	for v in handler_w1 handler_p1; do
		echo "--- diagnostics: perf profile of the handler worker, ${PROFILE_SECONDS}s from 2 s into that $v run ---"
		cat "$HB_TMP/profile-$v.txt" 2>/dev/null || echo "(none)"
	done
fi
echo
echo "uptime at end: $(uptime)"
