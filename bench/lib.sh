# bench/lib.sh -- shared by bench/publish_claim.sh and bench/profile.sh.
#
# bench_cluster_start: a throwaway cluster in a private temp dir (unix
# socket only, no TCP), removed on exit, with the benchmark database
# (bench/setup.sql).  bench_reset GROUP: bring the tables of a variant group
# back to their starting state.  bench_pgbench VARIANT SECONDS OUT: one
# pgbench run of a variant.  Never run as root (initdb refuses it).

source "$(dirname "${BASH_SOURCE[0]}")/../tools/common.sh"
export PATH="$TXBOX_BINDIR:$PATH"

BENCH_DIR="$TXBOX_ROOT/bench"
bench_clients=${BENCH_CLIENTS:-8}
bench_threads=${BENCH_THREADS:-2}
bench_preclaimed=${BENCH_PRECLAIMED:-100000}

# Message ids for the inbox variants are decimal strings of 18-19 digits.
# Pre-claimed ids: pre_lo+1 .. pre_lo+preclaimed; new ids: new_lo .. new_hi,
# a range so large that two draws practically never collide.  New ids sort
# after the pre-claimed ones, as time-ordered ids (txbox's UUIDv7 message
# ids) sort after those of a generation that ended a rotation ago; the
# *_unordered.sql scripts draw new ids among them instead.
bench_pre_lo=100000000000000000
bench_new_lo=200000000000000000
bench_new_hi=9000000000000000000

bench_log() { printf '.. %s\n' "$*" >&2; }

if [ "$(id -u)" -eq 0 ]; then
	echo "bench: do not run this as root; use 'make bench' (bench/run)" >&2
	exit 1
fi

# --- variants -------------------------------------------------------------
# name|group|dup_pct|script|label
BENCH_VARIANTS=(
	"a|publish|0|a_business.sql|(a) business insert alone"
	"b|publish|0|b_handmade_outbox.sql|(b) + hand-made outbox INSERT"
	"c|publish|0|c_txbox_publish.sql|(c) + txbox.publish"
	"d_new|claim|0|d_dedup_insert.sql|(d) INSERT ON CONFLICT, 100% new"
	"e_new|claim|0|e_txbox_claim.sql|(e) txbox.inbox_claim, 100% new"
	"d_dup|claim|50|d_dedup_insert.sql|(d) INSERT ON CONFLICT, 50% dup"
	"e_dup|claim|50|e_txbox_claim.sql|(e) txbox.inbox_claim, 50% dup"
	"e_new_rot|claim_rotated|0|e_txbox_claim.sql|(e) inbox_claim after a rotation, new"
	"e_dup_rot|claim_rotated|50|e_txbox_claim.sql|(e) inbox_claim after a rotation, 50% dup"
	"d_unord|claim|0|d_dedup_insert_unordered.sql|(d) INSERT ON CONFLICT, new, unordered ids"
	"e_unord_rot|claim_rotated|0|e_txbox_claim_unordered.sql|(e) inbox_claim after a rotation, new, unordered"
)
# Diagnostics (BENCH_DIAG=1): where the difference comes from.
BENCH_DIAG_VARIANTS=(
	"b_shape|publish|0|b0_outbox_shape.sql|(b') plain INSERT, txbox.outbox shape"
	"c_plain|publish|0|c0_publish_plain.sql|(c') publish, no SECDEF/SET"
	"c_pinned|publish_pinned|0|c_txbox_publish.sql|(c*) publish, search_path pinned"
	"e_pinned_new|claim_pinned|0|e_txbox_claim.sql|(e*) claim, search_path pinned, new"
	"e_pinned_dup|claim_pinned|50|e_txbox_claim.sql|(e*) claim, search_path pinned, dup"
	"d_work|claim|0|d1_dedup_with_work.sql|(d+w) INSERT ON CONFLICT + work, new"
	"e_work|claim|0|e2_claim_with_work.sql|(e+w) inbox_claim + work, new"
)
bench_field() { echo "$1" | cut -d'|' -f"$2"; }

# bench_variant NAME -- the variant line of NAME
bench_variant() {
	local v
	for v in "${BENCH_VARIANTS[@]}" "${BENCH_DIAG_VARIANTS[@]}"; do
		[ "$(bench_field "$v" 1)" = "$1" ] && { echo "$v"; return 0; }
	done
	echo "bench: unknown variant $1" >&2
	return 1
}

# --- throwaway cluster ----------------------------------------------------
bench_psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }

bench_cleanup() {
	local rc=$?
	if [ -n "${BENCH_DATA:-}" ] && [ -f "$BENCH_DATA/postmaster.pid" ]; then
		pg_ctl -D "$BENCH_DATA" -m fast -w stop >/dev/null 2>&1 || true
	fi
	if [ -n "${BENCH_TMP:-}" ]; then
		if [ "${BENCH_KEEP:-0}" = 1 ]; then
			bench_log "cluster directory kept: $BENCH_TMP"
		else
			rm -rf "$BENCH_TMP"
		fi
	fi
	exit $rc
}

# bench_cluster_start -- initdb, start, create database bench; sets PGHOST
# etc. so that psql and pgbench reach it.  Stopped and removed on exit.
bench_cluster_start() {
	BENCH_TMP=$(mktemp -d /tmp/txbox-bench.XXXXXX)
	BENCH_DATA="$BENCH_TMP/data"
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM

	bench_log "initdb in $BENCH_TMP"
	initdb -D "$BENCH_DATA" -U bench --auth=trust -E UTF8 --locale=C --no-sync \
		>"$BENCH_TMP/initdb.log" 2>&1 || { cat "$BENCH_TMP/initdb.log" >&2; exit 1; }

	# A 2-core, 24 GB machine.  synchronous_commit=off: commits do not wait
	# for the WAL flush, so tps measures CPU cost, not fsync latency (an
	# fsync-bound run hides the difference between the variants).  No
	# autovacuum: tables are emptied or reloaded, and vacuumed, before every
	# run instead.  The port only names the socket file in our private dir.
	cat >>"$BENCH_DATA/postgresql.conf" <<-EOF

		# --- txbox benchmark ---
		listen_addresses = ''
		unix_socket_directories = '$BENCH_TMP'
		port = 5432
		shared_preload_libraries = 'txbox'
		max_connections = 50
		shared_buffers = 1GB
		wal_buffers = 64MB
		synchronous_commit = off
		max_wal_size = 16GB
		min_wal_size = 2GB
		checkpoint_timeout = 1h
		autovacuum = off
		jit = off
	EOF

	pg_ctl -D "$BENCH_DATA" -l "$BENCH_TMP/server.log" -w start >/dev/null ||
		{ cat "$BENCH_TMP/server.log" >&2; exit 1; }
	export PGHOST="$BENCH_TMP" PGPORT=5432 PGUSER=bench PGDATABASE=bench
	createdb bench
	bench_psql -f "$BENCH_DIR/setup.sql" >/dev/null
}

# --- between runs ---------------------------------------------------------
# bench_reset GROUP -- every run starts from the same state: its tables
# emptied (publish) or reloaded with the same pre-claimed ids (claim; the
# orders too, for the diagnostics that do work after the claim; with
# claim_rotated, txbox's ids then sit in the older generation after a
# rotation, as in a system that has run longer than txbox.dedup_retention:
# each claim probes it; with claim, no generation has ended: a
# young table, whose claims skip the older generation),
# vacuumed, then a checkpoint, so that neither table growth nor the
# full-page writes after a checkpoint favour the variants that run later.
# The *_pinned groups run publish and inbox_claim with SET search_path, as
# txbox 0.1.0 declared them; every other group without.
bench_reset() {
	local pin="RESET search_path"
	case $1 in *_pinned) pin="SET search_path = pg_catalog, pg_temp" ;; esac
	bench_psql -c "ALTER FUNCTION txbox.publish(text, jsonb, text, jsonb, uuid) $pin" \
		-c "ALTER FUNCTION txbox.inbox_claim(text, text) $pin" \
		-c "ALTER FUNCTION txbox._inbox_claim(regrole, text, text) $pin"
	case $1 in
	publish | publish_pinned)
		bench_psql -c "TRUNCATE bench.orders, bench.outbox, bench.outbox_shape, txbox.outbox" \
			-c "VACUUM (ANALYZE) bench.orders, bench.outbox, bench.outbox_shape, txbox.outbox" \
			-c "CHECKPOINT"
		;;
	claim | claim_rotated | claim_pinned)
		bench_psql -c "TRUNCATE bench.dedup, txbox.inbox_dedup, bench.orders" \
			-c "DELETE FROM txbox._generation_end WHERE relname = 'inbox_dedup'" \
			-c "INSERT INTO bench.dedup (consumer, message_id, claimed_at)
				SELECT 'billing', ($bench_pre_lo + g)::text, now()
				FROM generate_series(1, $bench_preclaimed) g" \
			-c "INSERT INTO txbox.inbox_dedup (gen, consumer, message_id, claimed_at)
				SELECT (SELECT current_gen FROM txbox._generation WHERE relname = 'inbox_dedup'),
					   'billing', ($bench_pre_lo + g)::text, now()
				FROM generate_series(1, $bench_preclaimed) g" \
			-c "SELECT txbox._switch_generation('inbox_dedup') WHERE '$1' = 'claim_rotated'" \
			-c "VACUUM (ANALYZE) bench.dedup, txbox.inbox_dedup, bench.orders" \
			-c "CHECKPOINT"
		;;
	esac
}

# bench_claim_rows NAME -- ids now in the dedup table variant NAME writes to
bench_claim_rows() {
	case $1 in
	d_*) bench_psql -At -c "SELECT count(*) FROM bench.dedup" ;;
	*) bench_psql -At -c "SELECT count(*) FROM txbox.inbox_dedup" ;;
	esac
}

# bench_pgbench VARIANT SECONDS OUT -- one pgbench run of the variant line
# VARIANT, its output in OUT.  Fails (printing OUT) if pgbench fails.
bench_pgbench() {
	local v=$1 secs=$2 out=$3
	if ! pgbench -n -c "$bench_clients" -j "$bench_threads" -T "$secs" -M prepared \
		--random-seed=4242 -D dup_pct="$(bench_field "$v" 3)" \
		-D preclaimed="$bench_preclaimed" -D pre_lo="$bench_pre_lo" \
		-D new_lo="$bench_new_lo" -D new_hi="$bench_new_hi" \
		-f "$BENCH_DIR/pgbench/$(bench_field "$v" 4)" >"$out" 2>&1; then
		cat "$out" >&2
		echo "bench: pgbench failed for variant $(bench_field "$v" 1)" >&2
		exit 1
	fi
}

# bench_backend_ticks -- CPU time (clock ticks: "user system") of all the
# backends that have exited so far: the postmaster's cutime and cstime, read
# once no backend of user bench is left.  The difference across a pgbench
# run is the server CPU the run's connections used, whatever else the
# machine was doing meanwhile.
bench_backend_ticks() {
	local pm i
	pm=$(head -n 1 "$BENCH_DATA/postmaster.pid")
	for ((i = 0; i < 500; i++)); do
		pgrep -P "$pm" -f '^postgres: bench ' >/dev/null || break
		sleep 0.01
	done
	awk '{ print $16, $17 }' "/proc/$pm/stat"
}
