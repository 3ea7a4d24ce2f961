#!/usr/bin/env bash
# bench/publish_claim.sh -- what txbox.publish and txbox.inbox_claim cost,
# next to the hand-made SQL they replace.  Never run as root (initdb refuses
# it): bench/run prepares everything and calls this as an unprivileged user.
#
# On a throwaway cluster (bench/lib.sh), runs every variant with pgbench,
# interleaved round by round, and prints the median tps of each and the
# ratios (c)/(b) and (e)/(d) on stdout.  Progress goes to stderr.
#
# Settings (environment):
#   BENCH_ROUNDS=5       rounds; each round runs every variant once
#   BENCH_SECONDS=10     seconds per pgbench run
#   BENCH_CLIENTS=8      pgbench clients (-c)
#   BENCH_THREADS=2      pgbench threads (-j)
#   BENCH_PRECLAIMED=100000  ids claimed before each inbox run
#   BENCH_DIAG=0         1: add the diagnostic variants (see bench/README.md)
#   BENCH_KEEP=0         1: keep the cluster directory (for inspection)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

rounds=${BENCH_ROUNDS:-5}
secs=${BENCH_SECONDS:-10}
diag=${BENCH_DIAG:-0}
# issue 13's goals: publish at least the hand-made INSERT, a claim 0.95 of
# the raw INSERT ... ON CONFLICT
publish_target=1.00
claim_target=0.95

variants=("${BENCH_VARIANTS[@]}")
[ "$diag" != 1 ] || variants+=("${BENCH_DIAG_VARIANTS[@]}")
field() { bench_field "$@"; }

bench_cluster_start

# --- runs -----------------------------------------------------------------
declare -A tps_of dup_of cpu_of usr_of
hz=$(getconf CLK_TCK)
mkdir -p "$BENCH_TMP/logs"
n=${#variants[@]}
total=$((rounds * n))
bench_log "$rounds rounds x $n variants x ${secs}s: about $(((total * (secs + 2) + 59) / 60)) min"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')

run=0
for ((r = 1; r <= rounds; r++)); do
	# rotate the order each round so that no variant always runs first
	for ((k = 0; k < n; k++)); do
		v=${variants[$(((k + r - 1) % n))]}
		name=$(field "$v" 1)
		group=$(field "$v" 2)
		run=$((run + 1))
		bench_reset "$group" >/dev/null
		out="$BENCH_TMP/logs/$name.$r.log"
		read -r u0 s0 < <(bench_backend_ticks)
		bench_pgbench "$v" "$secs" "$out"
		read -r u1 s1 < <(bench_backend_ticks)
		tps=$(awk '/^tps = /{print $3; exit}' "$out")
		xacts=$(awk -F': ' '/^number of transactions actually processed/{print $2; exit}' "$out")
		failed=$(awk -F': ' '/^number of failed transactions/{split($2, a, " "); print a[1]; exit}' "$out")
		if [ -z "$tps" ] || [ -z "$xacts" ] || [ "${failed:-0}" != 0 ]; then
			cat "$out" >&2
			echo "bench: variant $name: no tps, or failed transactions" >&2
			exit 1
		fi
		tps_of[$name]="${tps_of[$name]:-} $tps"
		cpu=$(awk -v t=$((u1 + s1 - u0 - s0)) -v hz="$hz" -v x="$xacts" 'BEGIN { printf "%.1f", t * 1e6 / hz / x }')
		usr=$(awk -v t=$((u1 - u0)) -v hz="$hz" -v x="$xacts" 'BEGIN { printf "%.1f", t * 1e6 / hz / x }')
		cpu_of[$name]="${cpu_of[$name]:-} $cpu"
		usr_of[$name]="${usr_of[$name]:-} $usr"
		note=""
		if [ "${group#claim}" != "$group" ]; then
			# the share of claims that met an existing record, measured
			rows=$(bench_claim_rows "$name")
			d=$(awk -v x="$xacts" -v rows="$rows" -v pre="$bench_preclaimed" \
				'BEGIN { printf "%.1f", 100 * (1 - (rows - pre) / x) }')
			dup_of[$name]="${dup_of[$name]:-} $d"
			note=", $d% duplicates"
		fi
		bench_log "[$run/$total] round $r $name: $tps tps, $cpu us server CPU per transaction$note"
	done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ---------------------------------------------------------------
median() {
	tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END {
		if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
spread() { tr ' ' '\n' | grep . | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f-%.0f", lo, hi }'; }
declare -A med cpumed usrmed
for v in "${variants[@]}"; do
	name=$(field "$v" 1)
	med[$name]=$(echo "${tps_of[$name]}" | median)
	cpumed[$name]=$(echo "${cpu_of[$name]}" | median)
	usrmed[$name]=$(echo "${usr_of[$name]}" | median)
done
ratio() { awk -v x="${med[$1]}" -v y="${med[$2]}" 'BEGIN { printf "%.3f", x / y }'; }
# the median over the rounds of x/y within one round: the two runs were close
# in time, so a slow drift of the machine's speed cancels out
paired() {
	awk -v xs="${tps_of[$1]}" -v ys="${tps_of[$2]}" 'BEGIN {
		n = split(xs, x, " "); split(ys, y, " ")
		for (i = 1; i <= n; i++) q[i] = x[i] / y[i]
		for (i = 2; i <= n; i++) for (j = i; j > 1 && q[j - 1] > q[j]; j--) { t = q[j]; q[j] = q[j - 1]; q[j - 1] = t }
		printf "%.3f", (n % 2) ? q[(n + 1) / 2] : (q[n / 2] + q[n / 2 + 1]) / 2 }'
}
line() {
	local q p c result="-"
	q=$(ratio "$2" "$3")
	p=$(paired "$2" "$3")
	c=$(awk -v x="${cpumed[$2]}" -v y="${cpumed[$3]}" 'BEGIN { printf "%.3f", y / x }')
	local label="-"
	[ "$4" = "-" ] || {
		label=">= $4"
		result=$(awk -v q="$q" -v t="$4" 'BEGIN { print (q >= t ? "PASS" : "MISS") }')
	}
	printf '%-36s %7s %7s %7s  %-8s %s\n' "$1" "$q" "$p" "$c" "$label" "$result"
}

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
pgver=$(bench_psql -At -c "SHOW server_version")

echo "txbox benchmark: publish and inbox_claim (bench/publish_claim.sh)"
echo "date:     $started"
echo "machine:  $(nproc) CPUs ($cpu), $mem RAM, $(uname -sr)"
echo "server:   PostgreSQL $pgver; shared_buffers=1GB, synchronous_commit=off, autovacuum=off, unix socket"
echo "pgbench:  -n -c $bench_clients -j $bench_threads -T $secs -M prepared; $rounds rounds, variants interleaved;"
echo "          $bench_preclaimed ids claimed before each inbox run"
echo "load avg: $load_start at start, $load_end at end"
if awk -v l="${load_start%% *}" 'BEGIN { exit !(l > 1.0) }'; then
	echo "warning:  the machine was busy before the run started (load ${load_start%% *}): other work"
	echo "          competed for the CPUs, so the figures are noisy and lower than on a quiet machine"
fi
echo
printf '%-42s %10s %12s %8s %8s  %s\n' "variant" "median tps" "min-max" "CPU us" "user us" "duplicates"
for v in "${variants[@]}"; do
	name=$(field "$v" 1)
	dupcol=""
	[ -z "${dup_of[$name]:-}" ] || dupcol="$(echo "${dup_of[$name]}" | median)%"
	printf '%-42s %10s %12s %8s %8s  %s\n' "$(field "$v" 5)" "${med[$name]}" \
		"$(echo "${tps_of[$name]}" | spread)" "${cpumed[$name]}" "${usrmed[$name]}" "$dupcol"
done
echo
printf '%-36s %7s %7s %7s  %-8s %s\n' "ratio" "medians" "paired" "CPU" "target" "result (on medians)"
line "(c)/(b) publish" c b "$publish_target"
line "(e)/(d) inbox_claim, 100% new" e_new d_new "$claim_target"
line "(e)/(d) inbox_claim, 50% duplicates" e_dup d_dup "$claim_target"
line "(e)/(d) after a rotation, 100% new" e_new_rot d_new "$claim_target"
line "(e)/(d) after a rotation, 50% dup" e_dup_rot d_dup "$claim_target"
line "(e)/(d) after a rotation, new, unordered" e_unord_rot d_unord "$claim_target"
line "(b)/(a) cost of a hand-made outbox" b a "-"
line "(c)/(a) cost of txbox.publish" c a "-"
if [ "$diag" = 1 ]; then
	line "(b')/(b) txbox.outbox's shape" b_shape b "-"
	line "(c')/(b') function call + SPI" c_plain b_shape "-"
	line "(c)/(c') SECURITY DEFINER" c c_plain "-"
	line "(c)/(c*) publish without the pin" c c_pinned "-"
	line "(e)/(e*) claim without the pin, new" e_new e_pinned_new "-"
	line "(e)/(e*) claim without the pin, dup" e_dup e_pinned_dup "-"
	line "(e+w)/(d+w) claim in a consumer xact" e_work d_work "-"
fi
echo "(CPU us: median server CPU per transaction, user + system, all backends;"
echo " user us: its user part; duplicates: the measured share of claims that met"
echo " an existing record)"
echo "(medians: ratio of the median tps; paired: median over the rounds of the"
echo " ratio within each round, less sensitive to the machine's drift; CPU: inverse"
echo " ratio of the median server CPU per transaction, less sensitive to other load)"
echo
echo "tps of each run, in round order:"
for v in "${variants[@]}"; do
	name=$(field "$v" 1)
	printf '  %-13s' "$name"
	# shellcheck disable=SC2086 # one number per word
	printf ' %8.0f' ${tps_of[$name]}
	echo
done
