# bench/relay/lib.sh -- helpers of bench/relay/run.sh: psql wrappers, CPU
# accounting, the relay and baseline runs, medians.  Sourced after
# tools/common.sh and tools/cluster.sh; never run as root (initdb refuses).

RB_DIR="$TXBOX_ROOT/bench/relay"

rb_log() { printf '.. %s\n' "$*" >&2; }
rb_die() {
	printf 'bench/relay: %s\n' "$*" >&2
	exit 1
}

# rb_psql DB ARGS... -- psql on database DB, quiet, stopping at the first error
rb_psql() {
	local db=$1
	shift
	command psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"
}
# rb_val DB SQL -- one value
rb_val() { rb_psql "$1" -At -c "$2"; }

rb_now() { date +%s.%N; }
rb_sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

# --- CPU accounting ---------------------------------------------------------
# rb_server_ticks -- clock ticks (user + system) the cluster has used so
# far: the postmaster and its live children (backends, relay workers,
# walwriter, ...) plus the children that have exited (the postmaster's
# cutime and cstime).  The difference across a run is the server CPU of the
# run, whatever else the machine was doing meanwhile.  A child reaped while
# we read would be counted twice or not at all: read again until the
# postmaster's cutime did not change meanwhile.
rb_server_ticks() {
	local pm a b t i
	pm=$(head -n 1 "$RB_DATA/postmaster.pid")
	for ((i = 0; i < 50; i++)); do
		a=$(cut -d' ' -f16,17 "/proc/$pm/stat")
		# (cat fails when a process leaves while it reads: that one is no child)
		t=$({ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pm="$pm" '{
			pid = $1
			i = index($0, ") "); split(substr($0, i + 2), f, " ")
			# f[2] ppid, f[12] utime, f[13] stime, f[14] cutime, f[15] cstime
			if (pid == pm) t += f[12] + f[13] + f[14] + f[15]
			else if (f[2] == pm) t += f[12] + f[13]
		} END { printf "%d", t }')
		b=$(cut -d' ' -f16,17 "/proc/$pm/stat")
		[ "$a" != "$b" ] || break
		sleep 0.05
	done
	echo "$t"
}

# rb_client_ticks -- clock ticks (user + system) used so far by this
# script's finished child processes (psql, awk, pgbench), from `times`,
# which must run in this shell: a subshell has no children yet.
rb_client_ticks() {
	times >"$RB_TMP/times"
	awk -v hz="$RB_HZ" 'NR == 2 {
		split($1, u, "m"); split($2, s, "m")
		printf "%d", ((u[1] * 60 + u[2]) + (s[1] * 60 + s[2])) * hz }' "$RB_TMP/times"
}

# rb_cpu_begin / rb_cpu_end -- set RB_SERVER_S and RB_CLIENT_S: CPU seconds
# since rb_cpu_begin.
rb_cpu_begin() {
	RB_S0=$(rb_server_ticks)
	rb_client_ticks >"$RB_TMP/c0"
	RB_C0=$(cat "$RB_TMP/c0")
}
rb_cpu_end() {
	local s1 c1
	s1=$(rb_server_ticks)
	rb_client_ticks >"$RB_TMP/c1"
	c1=$(cat "$RB_TMP/c1")
	RB_SERVER_S=$(awk -v a="$s1" -v b="$RB_S0" -v hz="$RB_HZ" 'BEGIN { printf "%.2f", (a - b) / hz }')
	RB_CLIENT_S=$(awk -v a="$c1" -v b="$RB_C0" -v hz="$RB_HZ" 'BEGIN { printf "%.2f", (a - b) / hz }')
}

# --- statistics -------------------------------------------------------------
# rb_median "X Y Z" -- the median of numbers
rb_median() {
	echo "$1" | tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "-"; exit }
		if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# rb_spread "X Y Z" -- min-max
rb_spread() {
	echo "$1" | tr ' ' '\n' | grep . | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 }
		END { printf "%.0f-%.0f", lo, hi }'
}
# rb_paired "X1 X2 .." "Y1 Y2 .." -- median over the rounds of Xi/Yi: two runs
# of one round were close in time, so slow drifts of the machine cancel out
rb_paired() {
	awk -v xs="$1" -v ys="$2" 'BEGIN {
		n = split(xs, x, " "); split(ys, y, " ")
		for (i = 1; i <= n; i++) q[i] = x[i] / y[i]
		for (i = 2; i <= n; i++) for (j = i; j > 1 && q[j - 1] > q[j]; j--) { t = q[j]; q[j] = q[j - 1]; q[j - 1] = t }
		printf "%.2f", (n % 2) ? q[(n + 1) / 2] : (q[n / 2] + q[n / 2 + 1]) / 2 }'
}
rb_div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { printf f, a / b }'; }

# --- the target side --------------------------------------------------------
# rb_checkpoint -- flush what the previous run left dirty, so that no run
# pays for the writes of another
rb_checkpoint() { rb_psql postgres -c "CHECKPOINT"; }

# rb_relay_prepare NAME BATCH TOPICS -- a new relay NAME from shop to billing
# (created paused, delivering from the beginning of the outbox: every
# message shop's outbox holds), after dropping every relay and emptying
# billing's inbox.  TOPICS: an SQL array or NULL.
rb_relay_prepare() {
	local name=$1 batch=$2 topics=$3 opts
	opts="{\"server\": \"billing\", \"from\": \"beginning\"}"
	[ "$batch" = default ] || opts="{\"server\": \"billing\", \"from\": \"beginning\", \"batch_size\": $batch}"
	rb_psql shop <<-SQL
		SELECT txbox.drop_relay(name) FROM txbox.relays;
		BEGIN;
		SELECT txbox.create_relay('$name', 'postgres', $topics, '$opts');
		SELECT txbox.pause_relay('$name');
		COMMIT;
	SQL
	rb_psql billing -c "TRUNCATE txbox.inbox"
	rb_checkpoint
}

# rb_relay_wait NAME N TIMEOUT -- wait until relay NAME has delivered N
# messages, polling txbox.relays every 0.1 s in one session (no count(*)
# of the inbox while timing).  Fails after TIMEOUT seconds.
rb_relay_wait() {
	rb_psql shop -c "DO \$\$
		DECLARE d bigint; st text; err text; t0 timestamptz := clock_timestamp();
		BEGIN
			LOOP
				SELECT delivered, state, last_error INTO d, st, err FROM txbox.relays WHERE name = '$1';
				EXIT WHEN d >= $2;
				IF clock_timestamp() - t0 > interval '$3 s' THEN
					RAISE EXCEPTION 'relay $1 delivered % of $2 messages in $3 s (state %, last error %)', d, st, err;
				END IF;
				COMMIT;
				PERFORM pg_sleep(0.1);
			END LOOP;
		END \$\$"
}

# rb_relay_run NAME N -- resume the prepared relay NAME and time it until
# it delivered N messages: sets RB_SECONDS (from just before the resume to
# the relay's last_delivered_at, the start of the transaction that saved
# its last page), RB_SERVER_S, RB_CLIENT_S; checks the target's inbox.
rb_relay_run() {
	local name=$1 n=$2 t0 t1 got dups retried err
	rb_cpu_begin
	t0=$(rb_now)
	rb_psql shop -c "SELECT txbox.resume_relay('$name')" >/dev/null
	rb_relay_wait "$name" "$n" "$RB_TIMEOUT"
	t1=$(rb_val shop "SELECT extract(epoch FROM last_delivered_at) FROM txbox.relays WHERE name = '$name'")
	rb_cpu_end
	RB_SECONDS=$(rb_sub "$t1" "$t0")
	got=$(rb_val billing "SELECT count(*) FROM txbox.inbox")
	read -r dups retried err < <(rb_val shop "SELECT duplicates, retried, coalesce(last_error, '')
		FROM txbox.relays WHERE name = '$name'" | tr '|' ' ')
	[ "$got" = "$n" ] || rb_die "relay $name: billing's inbox holds $got messages, expected $n"
	[ "$dups" = 0 ] || rb_log "relay $name: $dups duplicates (redeliveries)"
	[ "$retried" = 0 ] || rb_log "relay $name: retried $retried times, last error: $err"
}

# The baselines write to billing.baseline_inbox (txbox.inbox's columns,
# primary key message_id).
rb_baseline_prepare() {
	rb_psql billing -c "TRUNCATE baseline_inbox"
	rb_checkpoint
}
rb_baseline_check() {
	local got
	got=$(rb_val billing "SELECT count(*) FROM baseline_inbox")
	[ "$got" = "$1" ] || rb_die "baseline: billing.baseline_inbox holds $got rows, expected $1"
}

# rb_copy_run N -- the bulk baseline: one COPY out of shop's outbox piped
# into one COPY into a temporary staging table in billing, then one INSERT
# ... ON CONFLICT DO NOTHING into baseline_inbox, in one transaction.
rb_copy_run() {
	local t0 t1
	rb_cpu_begin
	t0=$(rb_now)
	rb_psql shop -c "COPY (SELECT message_id, topic, key, headers, payload, payload_bytes, published_at
			FROM txbox.outbox) TO STDOUT" |
		rb_psql billing -1 \
			-c "CREATE TEMP TABLE staging (message_id uuid, topic text, key text, headers jsonb,
					payload jsonb, payload_bytes bytea, published_at timestamptz) ON COMMIT DROP" \
			-c "COPY staging FROM STDIN" \
			-c "INSERT INTO baseline_inbox (message_id, topic, key, headers, payload, payload_bytes,
					source, published_at, received_at)
				SELECT message_id, topic, key, headers, payload, payload_bytes, 'shop/copy', published_at, now()
				  FROM staging ON CONFLICT (message_id) DO NOTHING"
	t1=$(rb_now)
	rb_cpu_end
	RB_SECONDS=$(rb_sub "$t1" "$t0")
	rb_baseline_check "$1"
}

# rb_chunked_run N -- the round-trip baseline: shop's outbox streamed (a
# cursor) as SQL literals, one row per line; awk joins 1000 rows into one
# multi-row INSERT ... ON CONFLICT DO NOTHING; psql runs them in billing
# one after the other, each its own transaction (one round trip each).
rb_chunked_run() {
	local t0 t1
	rb_cpu_begin
	t0=$(rb_now)
	rb_psql shop -At -v FETCH_COUNT=2000 -c "SELECT format('(%L,%L,%L,%L,%L,%L,''shop/chunked'',%L,now())',
			message_id, topic, key, headers, payload, payload_bytes, published_at)
		FROM txbox.outbox" |
		awk -v n=1000 '
			k == 0 { printf "INSERT INTO baseline_inbox (message_id, topic, key, headers, payload, payload_bytes, source, published_at, received_at) VALUES %s", $0 }
			k > 0 { printf ",%s", $0 }
			++k == n { print " ON CONFLICT (message_id) DO NOTHING;"; k = 0 }
			END { if (k) print " ON CONFLICT (message_id) DO NOTHING;" }' |
		rb_psql billing -f -
	t1=$(rb_now)
	rb_cpu_end
	RB_SECONDS=$(rb_sub "$t1" "$t0")
	rb_baseline_check "$1"
}
