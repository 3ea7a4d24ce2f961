# bench/relay/profile.sh -- sourced by bench/relay/run.sh when
# RELAY_SECTIONS contains "profile" (the cluster then preloads
# pg_stat_statements): one relay run of every message in shop's outbox,
# with pg_stat_statements tracking the relay's own statements (track = all)
# and, when perf may profile our processes, perf sampling the relay worker
# and the target backend that receives its pages.  Writes $dir/profile.txt.

prof_out="$dir/profile.txt"
rb_psql postgres -c "ALTER SYSTEM SET pg_stat_statements.track = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
rb_psql shop -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
m=$(rb_val shop "SELECT count(*) FROM txbox.outbox")
if [ "$m" = 0 ]; then
	rb_log "profile: publishing $N messages"
	rb_publish "$N" "$CHUNK" orders
	rb_psql shop -c "VACUUM (ANALYZE) txbox.outbox"
	m=$N
fi
rb_log "profile: one relay run of $m messages"
rb_relay_prepare bench default NULL >/dev/null
rb_psql shop -c "SELECT pg_stat_statements_reset()" >/dev/null

rb_cpu_begin
t0=$(rb_now)
rb_psql shop -c "SELECT txbox.resume_relay('bench')" >/dev/null
# the worker, then the backend serving its connection in billing
wpid="" tpid=""
for ((i = 0; i < 200; i++)); do
	[ -z "$tpid" ] || break
	sleep 0.05
	wpid=$(rb_val shop "SELECT pid FROM pg_stat_activity WHERE backend_type = 'txbox relay'")
	tpid=$(rb_val billing "SELECT pid FROM pg_stat_activity
		WHERE application_name = 'txbox relay bench' AND datname = 'billing'")
done
perf_ok=0
if [ -n "$tpid" ] && command -v perf >/dev/null &&
	perf record -q -o "$dir/perf.probe" -p "$wpid" -- sleep 0.1 >/dev/null 2>&1; then
	perf_ok=1
	secs_prof=$(awk -v m="$m" 'BEGIN { s = m / 4000; if (s > 20) s = 20; if (s < 3) s = 3; printf "%d", s }')
	perf record -q -F 499 -g -o "$dir/perf.worker" -p "$wpid" -- sleep "$secs_prof" >/dev/null 2>&1 &
	p1=$!
	perf record -q -F 499 -g -o "$dir/perf.target" -p "$tpid" -- sleep "$secs_prof" >/dev/null 2>&1 &
	p2=$!
fi
rb_relay_wait bench "$m" "$RB_TIMEOUT"
t1=$(rb_val shop "SELECT extract(epoch FROM last_delivered_at) FROM txbox.relays WHERE name = 'bench'")
# CPU of the two processes, before they leave
proc_cpu() { awk -v hz="$RB_HZ" '{ i = index($0, ") "); split(substr($0, i + 2), f, " ");
	printf "%.2f", (f[12] + f[13]) / hz }' "/proc/$1/stat"; }
wcpu=$(proc_cpu "$wpid")
tcpu=$(proc_cpu "$tpid")
rb_cpu_end
[ "$perf_ok" = 0 ] || wait "$p1" "$p2" || true
secs_run=$(rb_sub "$t1" "$t0")

{
	echo "Profile: one relay run (default batch_size) of $m messages: ${secs_run}s,"
	echo "  $(rb_div "$m" "$secs_run" %.0f) msg/s; CPU: relay worker ${wcpu}s, target backend ${tcpu}s,"
	echo "  whole cluster ${RB_SERVER_S}s (pg_stat_statements on, track = all, so a little slower)"
	echo
	echo "  statements by total time (the relay's, run through SPI, and the target's):"
	rb_psql shop -P pager=off -c "SELECT calls, round(total_exec_time::numeric) AS total_ms,
			round(mean_exec_time::numeric, 2) AS mean_ms, rows,
			left(regexp_replace(query, '\\s+', ' ', 'g'), 70) AS query
		FROM pg_stat_statements WHERE calls > 1 AND dbid IN
			(SELECT oid FROM pg_database WHERE datname IN ('shop', 'billing'))
		ORDER BY total_exec_time DESC LIMIT 10" | sed 's/^/  /'
	if [ "$perf_ok" = 1 ]; then
		for w in worker target; do
			echo "  perf, $w (${secs_prof}s sampled; self time by symbol, top 25):"
			# (awk reads all: head would end perf with SIGPIPE, which pipefail reports)
			perf report -i "$dir/perf.$w" --no-children -g none --sort symbol --stdio 2>/dev/null |
				awk '/^ +[0-9.]+%/ && n++ < 25 { print "  " $0 }'
			echo
		done
	else
		echo "  (perf not available or not permitted: no CPU profile)"
	fi
} >"$prof_out"
rb_psql shop -c "SELECT txbox.drop_relay(name) FROM txbox.relays" >/dev/null
