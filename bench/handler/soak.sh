#!/usr/bin/env bash
# bench/handler/soak.sh OUTDIR [NAME] -- sustained load: do the txbox tables stay
# flat and do relay and handler keep up?  Run by bench/soak.sh (as an
# unprivileged user).  Report on stdout, progress on stderr; the samples
# (NAME.dat) and the plot (NAME.png) go to OUTDIR (NAME: soak).
#
# One throwaway cluster, databases shop and billing, both with txbox.  A
# relay shop -> billing (topic orders, postgres target over the unix
# socket) and, in billing, a handler doing one INSERT per message (batch
# 100, parallel 1).  Retention short enough to rotate every table several
# times: txbox.outbox_retention and txbox.inbox_retention 30s,
# txbox.dedup_retention 1min (the dedup records, between one and two
# minutes of them, reach their steady size by minute 2).
#
#  1. The maximum publish+relay rate (unless SOAK_RATE is given): pgbench
#     publishing one message per transaction, unthrottled, for
#     SOAK_CALIBRATE_SECONDS with 4 clients; the rate is the messages
#     published divided by the time until the relay has delivered them all.
#     Then billing's inbox is emptied, and the handler created.
#  2. SOAK_MINUTES of pgbench -R at a third of that rate (SOAK_CLIENTS
#     clients: the handler, not calibrated, needs its share of the CPUs
#     too; at half, on 2 CPUs, pgbench fell 37 s behind its schedule and
#     the sizes followed its catching up, not txbox),
#     sampling every SOAK_SAMPLE_SECONDS: the size of every txbox table
#     (pg_total_relation_size, partitions summed) in both databases, relay
#     and handler lag_messages, dead and deleted rows of the txbox tables,
#     the current generation of each rotated table.
#  3. Load stops; wait up to SOAK_DRAIN_SECONDS for zero lag.
#
# Settings (environment): SOAK_MINUTES 10, SOAK_RATE (messages/s; default
# a third of the measured maximum), SOAK_CLIENTS 2, SOAK_SAMPLE_SECONDS 10,
# SOAK_CALIBRATE_SECONDS 20, SOAK_DRAIN_SECONDS 60.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

OUTDIR=${1:?usage: soak.sh OUTDIR [NAME]}
NAME=${2:-soak}
MINUTES=${SOAK_MINUTES:-10}
RATE=${SOAK_RATE:-}
CLIENTS=${SOAK_CLIENTS:-2}
SAMPLE=${SOAK_SAMPLE_SECONDS:-10}
CALIBRATE=${SOAK_CALIBRATE_SECONDS:-20}
DRAIN=${SOAK_DRAIN_SECONDS:-60}
[ "$MINUTES" -ge 4 ] || { echo "bench: SOAK_MINUTES must be at least 4" >&2; exit 2; }
command -v gnuplot >/dev/null || { echo "bench: gnuplot is not installed (Debian: gnuplot-nox)" >&2; exit 1; }
mkdir -p "$OUTDIR"

hb_cluster_start "autovacuum = on" \
	"txbox.outbox_retention = '30s'" \
	"txbox.inbox_retention = '30s'" \
	"txbox.dedup_retention = '1min'"
createdb shop
createdb billing
for db in shop billing; do
	hb_psql -d "$db" -c "CREATE EXTENSION txbox" -f "$HB_DIR/soak.sql" >/dev/null
done
hb_psql -d billing -f "$HB_DIR/soak_billing.sql" >/dev/null
hb_psql -d shop >/dev/null <<-SQL
	CREATE SERVER billing FOREIGN DATA WRAPPER txbox_fdw
		OPTIONS (host '$PGHOST', port '$PGPORT', dbname 'billing');
	CREATE USER MAPPING FOR CURRENT_USER SERVER billing OPTIONS (user '$PGUSER');
	SELECT txbox.create_relay('to_billing', 'postgres', ARRAY['orders'], '{"server": "billing"}');
SQL
# monitoring queries never hang the benchmark
mon_opts="-c statement_timeout=20s -c lock_timeout=2s"
qs() { PGOPTIONS="$mon_opts" hb_psql -At -d shop "$@"; }
qb() { PGOPTIONS="$mon_opts" hb_psql -At -d billing "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.1f", a - b }'; }

for ((i = 0; i < 100; i++)); do
	[ "$(qs -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'txbox relay'")" = 1 ] && break
	sleep 0.1
done

echo "txbox soak: relay shop -> billing and a handler in billing under steady load (bench/soak.sh)"
echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "txbox:    ${HB_REVISION:-unknown revision}"
hb_machine
echo "settings: txbox.outbox_retention 30s, txbox.inbox_retention 30s, txbox.dedup_retention 1min;"
echo "          shared_buffers 1GB, synchronous_commit off, autovacuum on; relay batch_size 1000 (default);"
echo "          handler batch 100, parallel 1; pgbench one txbox.publish per transaction (bench/handler/publish.pgbench)"

# --- 1. maximum publish+relay rate ----------------------------------------
delivered() { qs -c "SELECT delivered FROM txbox.relays WHERE name = 'to_billing'"; }
if [ -z "$RATE" ]; then
	hb_log "measuring the maximum publish+relay rate (${CALIBRATE}s)"
	d0=$(delivered)
	t0=$(now)
	pgbench -n -c 4 -j 2 -T "$CALIBRATE" -f "$HB_DIR/publish.pgbench" shop >"$HB_TMP/calibrate.log" 2>&1 ||
		{ cat "$HB_TMP/calibrate.log" >&2; exit 1; }
	published=$(awk '/number of transactions actually processed/ { split($NF, a, "/"); print a[1] }' "$HB_TMP/calibrate.log")
	tpub=$(since "$t0")
	while [ $(($(delivered) - d0)) -lt "$published" ]; do
		[ "$(awk -v s="$(since "$t0")" -v c="$CALIBRATE" 'BEGIN { print (s > c + 300) }')" = 0 ] ||
			{ echo "bench: the relay did not deliver the calibration messages" >&2; exit 1; }
		sleep 0.2
	done
	tall=$(since "$t0")
	max=$(awk -v n="$published" -v s="$tall" 'BEGIN { printf "%.0f", n / s }')
	RATE=$((max / 3))
	echo "maximum:  $published messages published in ${tpub}s ($(awk -v n="$published" -v s="$tpub" 'BEGIN { printf "%.0f", n / s }')/s)," \
		"all relayed after ${tall}s: $max messages/s published+relayed"
	# start the soak with an empty inbox in billing (the handler is created
	# next and would first work through the calibration messages)
	hb_psql -d billing -c "TRUNCATE txbox.inbox"
else
	echo "maximum:  not measured (SOAK_RATE given)"
fi
[ "$RATE" -ge 1 ] || { echo "bench: rate $RATE is too low" >&2; exit 1; }
echo "load:     $RATE messages/s (pgbench -R $RATE, $CLIENTS clients) for $MINUTES minutes; samples every ${SAMPLE}s"
qb -c "SELECT txbox.create_handler('soak', ARRAY['orders'], 'soak_handle(txbox.message)', '{\"batch\": 100, \"parallel\": 1}')" >/dev/null
echo

# --- 2. steady load, samples ---------------------------------------------
dat="$OUTDIR/$NAME.dat"
cols="t phase"
for db in shop billing; do
	for t in outbox inbox inbox_dedup idempotency_keys relays handlers handler_failures dead_letters other; do
		cols+=" ${db}_$t"
	done
done
cols+=" relay_lag handler_lag delivered processed shop_dead shop_del billing_dead billing_del shop_gens billing_gens"
echo "# $cols" >"$dat"

# sizes DB: bytes of the files (all forks, all segments) of each txbox table
# (bench/handler/soak.sql, bench_txbox_files: 9 groups), without locks
sizes() {
	local db=$1 ord path i out="" total
	local -a files=()
	while read -r ord path; do
		files[ord]+=" $HB_DATA/$path ${HB_DATA}/${path}_fsm ${HB_DATA}/${path}_vm $(compgen -G "$HB_DATA/$path.[0-9]*" | tr '\n' ' ')"
	done < <(PGOPTIONS="$mon_opts" hb_psql -At -F ' ' -d "$db" -c "SELECT ord, path FROM bench_txbox_files()")
	for ((i = 1; i <= 9; i++)); do
		total=0
		# shellcheck disable=SC2086 # a list of paths without spaces
		[ -z "${files[i]:-}" ] || total=$({ stat -c %s ${files[i]} 2>/dev/null || true; } | awk '{ s += $1 } END { printf "%.0f", s }')
		out+="$total "
	done
	echo "${out% }"
}

# sample T PHASE: one line of NAME.dat ("NA": timed out or waited for a lock)
sample() {
	local s b rl hl dl pr cs cb
	s=$(sizes shop 2>/dev/null) || s=$(printf 'NA %.0s' {1..9})
	b=$(sizes billing 2>/dev/null) || b=$(printf 'NA %.0s' {1..9})
	rl=$(qs -c "SELECT lag_messages FROM txbox.relay_status WHERE name = 'to_billing'" 2>/dev/null) || rl=NA
	hl=$(qb -c "SELECT lag_messages FROM txbox.handler_status WHERE name = 'soak'" 2>/dev/null) || hl=NA
	dl=$(delivered 2>/dev/null) || dl=NA
	pr=$(qb -c "SELECT processed FROM txbox.handlers WHERE name = 'soak'" 2>/dev/null) || pr=NA
	cs=$(qs -c "SELECT bench_txbox_churn()" 2>/dev/null) || cs="NA NA NA"
	cb=$(qb -c "SELECT bench_txbox_churn()" 2>/dev/null) || cb="NA NA NA"
	read -r sd sdel sg <<<"$cs"
	read -r bd bdel bg <<<"$cb"
	echo "$1 $2 $s $b ${rl:-NA} ${hl:-NA} ${dl:-NA} ${pr:-NA} $sd $sdel $bd $bdel $sg $bg" >>"$dat"
}

# watch: every second, in both databases, the txbox workers' transactions
# open for more than a second (with the relation locks a manager holds
# meanwhile) and every session waiting for a lock (with its blocker)
watch_sql="SELECT current_database(), a.backend_type, round(extract(epoch FROM now() - a.xact_start)::numeric, 1),
		CASE WHEN a.backend_type = 'txbox manager' THEN (SELECT string_agg(l.relation::regclass || ':' || l.mode, ',' ORDER BY 1)
			FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'relation' AND l.mode IN ('ShareLock', 'AccessExclusiveLock')) END
	 FROM pg_stat_activity a
	WHERE a.datname = current_database() AND a.backend_type LIKE 'txbox%' AND a.xact_start < now() - interval '1 s'
	UNION ALL
	SELECT current_database(), 'WAIT ' || a.backend_type, round(extract(epoch FROM now() - a.query_start)::numeric, 1),
		   'blocked by ' || b.backend_type || ' (' || left(regexp_replace(coalesce(b.query, ''), '\s+', ' ', 'g'), 50) || ')'
	 FROM pg_stat_activity a CROSS JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS bp(pid)
	 JOIN pg_stat_activity b ON b.pid = bp.pid
	WHERE a.datname = current_database() AND a.wait_event_type = 'Lock'"
watch_loop() {
	while :; do
		for db in shop billing; do
			PGOPTIONS="$mon_opts" hb_psql -At -F '|' -d "$db" -c "$watch_sql" 2>/dev/null |
				sed "s/^/$(since "$t0")|/" >>"$HB_TMP/watch.log" || true
		done
		sleep 1
	done
}

load_s=$((MINUTES * 60))
hb_log "load: $RATE messages/s for $MINUTES minutes"
t0=$(now)
: >"$HB_TMP/watch.log"
watch_loop &
watcher=$!
pgbench -n -c "$CLIENTS" -j "$CLIENTS" -R "$RATE" -T "$load_s" -P 60 \
	-f "$HB_DIR/publish.pgbench" shop >"$HB_TMP/load.log" 2>"$HB_TMP/load.progress" &
pgb=$!
k=0
while :; do
	t=$(since "$t0")
	if awk -v t="$t" -v l="$load_s" 'BEGIN { exit !(t < l) }'; then
		sample "$t" load
		[ $((k % (60 / SAMPLE > 0 ? 60 / SAMPLE : 1))) -ne 0 ] || hb_log "$(tail -n 1 "$dat" | awk '{ print "t=" $1 "s relay lag " $21 ", handler lag " $22 }')"
		k=$((k + 1))
		# next sample at t0 + k * SAMPLE
		sleep "$(awk -v t0="$t0" -v k="$k" -v s="$SAMPLE" -v n="$(now)" 'BEGIN { d = t0 + k * s - n; printf "%.3f", (d > 0 ? d : 0) }')"
	else
		break
	fi
done
wait "$pgb" || { cat "$HB_TMP/load.log" "$HB_TMP/load.progress" >&2; echo "bench: pgbench failed" >&2; exit 1; }
t_load_end=$(since "$t0")
sample "$t_load_end" load

# --- 3. drain -------------------------------------------------------------
hb_log "load stopped; waiting up to ${DRAIN}s for zero lag"
drained=""
while :; do
	sleep 5
	t=$(since "$t0")
	sample "$t" drain
	read -r rl hl <<<"$(tail -n 1 "$dat" | awk '{ print $21, $22 }')"
	if [ "$rl" = 0 ] && [ "$hl" = 0 ]; then
		drained=$(awk -v t="$t" -v e="$t_load_end" 'BEGIN { printf "%.0f", t - e }')
		break
	fi
	awk -v t="$t" -v e="$t_load_end" -v d="$DRAIN" 'BEGIN { exit !(t - e >= d) }' && break
done
kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null || true

# --- report -----------------------------------------------------------------
published=$(awk '/number of transactions actually processed/ { split($NF, a, "/"); print a[1] }' "$HB_TMP/load.log")
achieved=$(awk '/^tps = / { printf "%.0f", $3 }' "$HB_TMP/load.log")
echo "achieved: $achieved messages/s published on average (target $RATE)"
echo "pgbench:  $(grep -E '^(number of transactions actually processed|latency average|rate limit schedule lag|tps)' "$HB_TMP/load.log" | tr '\n' ';' | sed 's/;$//; s/;/; /g')"
# a load that fell behind its schedule was not steady: pgbench then
# publishes as fast as it can to catch up, and the sizes follow that
sched_lag=$(awk '/^rate limit schedule lag:/ { print int($6) }' "$HB_TMP/load.log")
[ "${sched_lag:-0}" -le 1000 ] ||
	echo "WARNING:  not a steady load: pgbench fell ${sched_lag} ms behind its schedule on average (the machine could not keep up; lower SOAK_RATE)"
echo

# per-minute samples: the last sample at or before each whole minute
echo "sizes (kB: the files of heap, indexes, TOAST, all forks, partitions summed, as pg_total_relation_size"
echo "counts them, but read from disk so that no lock delays a sample) and lags, at each minute:"
awk -v m="$MINUTES" '
	BEGIN {
		printf "  %4s %9s %9s %9s %9s %9s %9s %9s %10s %10s %9s %9s %11s\n", "min", "outbox", "relays", "shop.oth",
			"inbox", "dedup", "handlers", "bill.oth", "shop.total", "bill.total", "relay lag", "hndlr lag", "processed"
	}
	/^#/ { next }
	$2 == "load" && $3 != "NA" && $12 != "NA" { for (i = 1; i <= m; i++) if ($1 <= i * 60 + 1) row[i] = $0; if ($1 <= 1) row[0] = $0 }
	END {
		for (i = 0; i <= m; i++) {
			if (!(i in row)) continue
			n = split(row[i], f, " ")
			# shop: 3..11, billing: 12..20 (outbox inbox inbox_dedup idempotency_keys relays handlers handler_failures dead_letters other)
			st = 0; for (j = 3; j <= 11; j++) st += f[j]
			bt = 0; for (j = 12; j <= 20; j++) bt += f[j]
			so = st - f[3] - f[7]
			bo = bt - f[13] - f[14] - f[17]
			printf "  %4d %9.0f %9.0f %9.0f %9.0f %9.0f %9.0f %9.0f %10.0f %10.0f %9s %9s %11s\n", i, f[3]/1024, f[7]/1024, so/1024,
				f[13]/1024, f[14]/1024, f[17]/1024, bo/1024, st/1024, bt/1024, f[21], f[22], f[24]
		}
	}' "$dat"
echo "  (shop.oth: the other txbox tables of shop; bill.oth: billing's other than inbox, inbox_dedup, handlers)"
echo

# targets
within() { awk -v a="$1" -v b="$2" 'BEGIN { d = b ? (a - b) / b : 1; print (d <= 0.15 && d >= -0.15) ? "met" : "MISSED" }'; }
echo "targets (issue 13: within 15%):"
echo "  size at the last minute within 15% of minute 3 (kB; the rotated tables are a sawtooth whose longest"
echo "  period is the dedup rotation, 1 min: besides single samples, whole 2-minute windows are compared,"
echo "  minutes 2-4 against $((MINUTES - 2))-$MINUTES, by mean and peak):"
printf '    %-30s %23s %23s %23s\n' "" "sample min 3 -> $MINUTES" "mean min 2-4 -> $((MINUTES - 2))-$MINUTES" "peak min 2-4 -> $((MINUTES - 2))-$MINUTES"
verdict=met
for spec in "total, both databases|3-20" "shop outbox|3" "billing inbox|13" "billing inbox_dedup|14" "all other txbox tables|4-12,15-20"; do
	name=${spec%|*}
	range=${spec#*|}
	line="    $(printf '%-30s' "$name")"
	col=0
	while read -r a b; do
		col=$((col + 1))
		ok=$(within "$b" "$a")
		line+=$(printf ' %9d->%-9d %-3s' $((a / 1024)) $((b / 1024)) "$ok")
		# the verdict: the total's mean and peak over whole rotation periods
		# (a single sample measures where in its sawtooth each table is)
		[ "$name" != "total, both databases" ] || [ $col -eq 1 ] || [ "$ok" = met ] || verdict=MISSED
	done < <(awk -v c="$range" -v l="$load_s" '
		function val(   n, i, r, k, x, t) { t = 0; n = split(c, r, ","); for (i = 1; i <= n; i++) { split(r[i], x, "-"); if (x[2] == "") x[2] = x[1]; for (k = x[1]; k <= x[2]; k++) t += $k }; return t }
		!/^#/ && $2 == "load" && $3 != "NA" && $12 != "NA" {
			v = val()
			if ($1 <= 181) p3 = v
			if ($1 <= l + 1) pl = v
			if ($1 > 121 && $1 <= 241) { s3 += v; n3++; if (v > x3) x3 = v }
			if ($1 > l - 119 && $1 <= l + 1) { sl += v; nl++; if (v > xl) xl = v }
		}
		END { printf "%.0f %.0f\n%.0f %.0f\n%.0f %.0f\n", p3, pl, s3 / n3, sl / nl, x3, xl }' "$dat")
	echo "$line"
done
echo "    => $verdict (judged on the total's mean and peak over the 2-minute windows, which hold whole rotation"
echo "       periods; single samples and single tables are shown for what they are: where in its sawtooth each"
echo "       table was at that moment; 'met' per column means within 15%)"
echo "  the total's mean over every 2-minute window after warm-up (kB), and the largest deviation of one"
echo "  from their average:"
awk -v l="$load_s" '!/^#/ && $2 == "load" && $3 != "NA" && $12 != "NA" && $1 > 121 && $1 <= l + 1 {
		w = int(($1 - 121) / 120); t = 0; for (j = 3; j <= 20; j++) t += $j
		s[w] += t; n[w]++; if (w > m) m = w
	}
	END {
		line = "   "
		for (w = 0; w <= m; w++) if (n[w] >= 3) { a[++k] = s[w] / n[w]; sum += a[k]; line = line sprintf(" %.0f", a[k] / 1024) }
		for (i = 1; i <= k; i++) { d = a[i] / (sum / k) - 1; if (d < 0) d = -d; if (d > x) x = d }
		printf "%s\n    largest deviation %.1f%% (%s)\n", line, 100 * x, x <= 0.15 ? "met" : "MISSED"
	}' "$dat"
echo "  the sawtooth's peaks: the sample before each rotation of billing's inbox_dedup (the largest table;"
echo "  it rotates every dedup_retention, so it is full only after 2 x 1 min; kB):"
awk -v l="$load_s" '!/^#/ && $2 == "load" && $3 != "NA" && $12 != "NA" {
		g = $30; sub(/.*inbox_dedup=/, "", g); sub(/,.*/, "", g)
		t = 0; for (j = 3; j <= 20; j++) t += $j
		if (n++ && g != pg) printf "    %5.0f s  total %9.0f  inbox_dedup %9.0f%s\n", pt, ptot / 1024, pded / 1024, pt < 120 ? "  (warm-up)" : ""
		pg = g; pt = $1; ptot = t; pded = $14
	}' "$dat"
read -r rl hl <<<"$(tail -n 1 "$dat" | awk '{ print $21, $22 }')"
if [ -n "$drained" ]; then
	echo "  zero lag at the end (within ${DRAIN}s after the load):   relay 0, handler 0 after ${drained}s  met"
else
	echo "  zero lag at the end (within ${DRAIN}s after the load):   relay $rl, handler $hl after ${DRAIN}s  MISSED"
fi
echo

# rotations, from the generation numbers sampled
echo "rotations seen (changes of the current generation between samples; at most one per sample interval):"
awk '!/^#/ { n = split($29 "," $30, g, ","); for (i = 1; i <= n; i++) { split(g[i], kv, "="); k = (i <= split($29, x, ",") ? "shop." : "billing.") kv[1]
		if (k in last && last[k] != kv[2]) rot[k]++; last[k] = kv[2] } }
	END { for (k in last) printf "  %-28s %d\n", k, rot[k] + 0 }' "$dat" | sort
echo

echo "n_dead_tup and n_tup_del summed over the txbox tables, at each minute (shop, billing):"
awk -v m="$MINUTES" '!/^#/ && $2 == "load" { for (i = 1; i <= m; i++) if ($1 <= i * 60 + 1) row[i] = $25 " " $26 " " $27 " " $28 }
	END { for (i = 1; i <= m; i++) if (i in row) { split(row[i], f, " "); printf "  min %2d  shop dead %6s del %6s   billing dead %6s del %6s\n", i, f[1], f[2], f[3], f[4] } }' "$dat"
echo
echo "what pg_stat_all_tables knows of the writes to the txbox tables at the end (partitions summed):"
echo "  shop:"
qs -F ' | ' -P footer=off -c "SELECT * FROM bench_txbox_stats" | sed 's/^/    /'
echo "  billing:"
qb -F ' | ' -P footer=off -c "SELECT * FROM bench_txbox_stats" | sed 's/^/    /'
echo "  (columns: table | ins | upd | hot_upd | del | live | dead | vacuums | analyzes)"
echo "  relay delivered $(delivered), handler processed $(qb -c "SELECT processed FROM txbox.handlers WHERE name = 'soak'")"
echo

echo "relay and handler at the end:"
qs -F ' | ' -c "SELECT 'relay ' || name, state, 'delivered ' || delivered, 'retried ' || retried,
	'duplicates ' || duplicates, 'last error: ' || coalesce(last_error || ' (' || round(extract(epoch FROM now() - last_error_at)) || ' s ago)', 'none')
	FROM txbox.relay_status" | sed 's/^/  /'
qb -F ' | ' -c "SELECT 'handler ' || name, state, 'processed ' || processed, 'retried ' || retried,
	'dead-lettered ' || dead_lettered, 'last error: ' || coalesce(last_error, 'none')
	FROM txbox.handler_status" | sed 's/^/  /'
echo

echo "server log: errors, warnings and txbox lines (numbers replaced by N), by count:"
sed -E 's/^[0-9-]+ [0-9:.]+ [A-Z]+ \[[0-9]+\] //' "$HB_TMP/server.log" |
	grep -E '^(ERROR|FATAL|PANIC|WARNING):|txbox' | grep -v -E '^(STATEMENT|DETAIL|CONTEXT):' |
	sed -E 's/[0-9A-F]+\/[0-9A-F]+/N/g; s/[0-9]+(\.[0-9]+)?/N/g' | sort | uniq -c | sort -rn | head -n 12 | sed 's/^/  /' || true
[ -n "$(grep -E 'ERROR|FATAL|PANIC|WARNING|txbox' "$HB_TMP/server.log" | head -n 1)" ] || echo "  none"
echo

echo "long transactions of the txbox workers and lock waits (sampled every second, both databases):"
if [ -s "$HB_TMP/watch.log" ]; then
	awk -F'|' '
		$3 !~ /^WAIT/ { k = $2 " " $3; n[k]++; if ($4 + 0 > mx[k]) { mx[k] = $4 + 0; info[k] = $5 } }
		$3 ~ /^WAIT/ { k = $2 " " substr($3, 6) " " $5; w[k]++; if ($4 + 0 > wmx[k]) wmx[k] = $4 + 0 }
		END {
			for (k in n) printf "  %-32s open > 1 s in %4d samples, longest %6.1f s%s\n", k, n[k], mx[k], info[k] != "" ? "; holding " info[k] : ""
			for (k in w) printf "  WAIT %s: %d samples, longest %.1f s\n", k, w[k], wmx[k]
		}' "$HB_TMP/watch.log" | sort
else
	echo "  none"
fi
echo

echo "txbox._generation at the end (when each rotated table last switched; retention 30s/30s/1min):"
for db in shop billing; do
	PGOPTIONS="-c statement_timeout=20s" hb_psql -At -F ' ' -d "$db" -c "SELECT '  $db', relname, 'gen ' || current_gen,
		'switched ' || round(extract(epoch FROM now() - switched_at)) || ' s ago' FROM txbox._generation ORDER BY relname"
done
echo

# exactly once
read -r eff distinct <<<"$(qb -F ' ' -c "SELECT count(*), count(DISTINCT message_id) FROM effects")"
echo "exactly once: $published messages published during the soak; effects in billing: $eff rows, $distinct distinct message ids" \
	"$([ "$eff" = "$distinct" ] && [ "$eff" = "$published" ] && echo "(all processed, none twice)" || echo "(MISMATCH or not all processed)")"
echo
hb_log "plotting"
{
	echo "set terminal pngcairo size 1200,1200 font 'sans,10' noenhanced"
	echo "set output '$OUTDIR/$NAME.png'"
	echo "set multiplot layout 3,1 title 'txbox soak: $RATE msg/s for $MINUTES min, relay shop -> billing + handler (retention 30s/30s, dedup 1min)'"
	echo "set grid; set key outside right top; set xlabel 'minutes'; set datafile missing 'NA'"
	echo "set xrange [0:$(awk '!/^#/ { t = $1 } END { printf "%.2f", t / 60 }' "$dat")]"
	echo "set arrow from $(awk -v t="$t_load_end" 'BEGIN { print t / 60 }'), graph 0 to $(awk -v t="$t_load_end" 'BEGIN { print t / 60 }'), graph 1 nohead dt 2 lc rgb 'gray'"
	echo "set ylabel 'MB (heap + indexes + TOAST)'"
	echo "set title 'size of the txbox tables (load stops at the dashed line)'"
	echo "plot '$dat' using (\$1/60):((\$3+\$4+\$5+\$6+\$7+\$8+\$9+\$10+\$11+\$12+\$13+\$14+\$15+\$16+\$17+\$18+\$19+\$20)/1048576) with lines lw 2 title 'total, both databases', \\"
	echo "     '' using (\$1/60):(\$3/1048576) with lines title 'shop outbox', \\"
	echo "     '' using (\$1/60):(\$13/1048576) with lines title 'billing inbox', \\"
	echo "     '' using (\$1/60):(\$14/1048576) with lines title 'billing inbox_dedup', \\"
	echo "     '' using (\$1/60):((\$4+\$5+\$6+\$7+\$8+\$9+\$10+\$11+\$12+\$15+\$16+\$17+\$18+\$19+\$20)/1048576) with lines title 'all other txbox tables'"
	echo "set ylabel 'messages'"
	echo "set title 'lag_messages (relay_status, handler_status)'"
	echo "plot '$dat' using (\$1/60):21 with lines lw 2 title 'relay to_billing', '' using (\$1/60):22 with lines lw 2 title 'handler soak'"
	echo "set ylabel 'messages/s'"
	echo "set title 'throughput between samples (publishing target: $RATE/s)'"
	echo "plot '$HB_TMP/rates.dat' using 1:2 with lines lw 2 title 'relay delivered', '' using 1:3 with lines lw 2 title 'handler processed', $RATE with lines dt 2 lw 1 lc rgb 'black' title 'target rate'"
	echo "unset multiplot"
} >"$HB_TMP/soak.gp"
awk '!/^#/ && $23 != "NA" && $24 != "NA" { if (n++ && $1 > pt) printf "%.3f %.1f %.1f\n", $1 / 60, ($23 - pd) / ($1 - pt), ($24 - pp) / ($1 - pt); pt = $1; pd = $23; pp = $24 }' "$dat" >"$HB_TMP/rates.dat"
gnuplot "$HB_TMP/soak.gp" 2>"$HB_TMP/gnuplot.log" || { cat "$HB_TMP/gnuplot.log" >&2; exit 1; }
echo "plot: $NAME.png; samples: $NAME.dat (columns: $cols)"
echo "uptime at end: $(uptime)"
