# bench/handler/lib.sh -- shared by bench/handler/throughput.sh and
# bench/handler/soak.sh (run by bench/handler/run.sh, never as root).
#
# hb_cluster_start [CONF...]: a throwaway cluster (tools/cluster.sh: unix
# socket in a private temp dir only, txbox preloaded), stopped and removed
# when the script exits, with the benchmark settings below plus CONF.
# hb_psql: psql that stops at the first error.

source "$(dirname "${BASH_SOURCE[0]}")/../../tools/common.sh"
source "$TXBOX_ROOT/tools/cluster.sh"
export PATH="$TXBOX_BINDIR:$PATH"
HB_DIR="$TXBOX_ROOT/bench/handler"

if [ "$(id -u)" -eq 0 ]; then
	echo "bench: do not run this as root; use bash bench/handler.sh or bash bench/soak.sh" >&2
	exit 1
fi

hb_log() { printf '.. %s\n' "$*" >&2; }
hb_psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# The machine: CPUs, memory, load (the benchmarks may share it).
hb_machine() {
	echo "machine:  $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(free -g | awk '/^Mem:/{print $2}') GB RAM, PostgreSQL $(hb_psql -At -d postgres -c 'SHOW server_version')"
	echo "uptime:   $(uptime)"
}

hb_cluster_start() {
	HB_TMP=$(mktemp -d /tmp/txbox-hbench.XXXXXX)
	hb_log "cluster in $HB_TMP"
	# synchronous_commit = off: commits do not wait for the WAL flush, so
	# the figures measure CPU work, not the disk's fsync rate (both sides
	# of every comparison commit equally often).
	txbox_cluster_start "$HB_TMP" 5432 \
		"shared_buffers = 1GB" \
		"max_connections = 50" \
		"max_worker_processes = 16" \
		"wal_buffers = 64MB" \
		"max_wal_size = 16GB" \
		"min_wal_size = 2GB" \
		"checkpoint_timeout = 1h" \
		"synchronous_commit = off" \
		"jit = off" \
		"log_min_messages = warning" \
		"$@"
	HB_DATA="$HB_TMP/data"
	trap 'exit 130' INT TERM
}
