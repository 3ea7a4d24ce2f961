#!/usr/bin/env bash
# bench/relay.sh -- the relay benchmarks (bench/RELAY.md): relay throughput
# against a client doing the same copy, commit-to-commit latency, and PgQ as
# a peer.  Installs what is missing (PostgreSQL 15, PgQ), builds, installs,
# then runs bench/relay/run.sh on a throwaway cluster, as an unprivileged
# user when run as root.  The report goes to stdout and to
# bench/results/relay-<date>.txt; progress to stderr.
#
#   bash bench/relay.sh
#   RELAY_MESSAGES=1000000 bash bench/relay.sh      (settings: bench/relay/run.sh)
set -euo pipefail
source "$(dirname "$0")/../tools/common.sh"
extra=()
[[ " ${RELAY_SECTIONS:-} " != *" profile "* ]] || extra+=(linux-perf)
txbox_setup postgresql-15-pgq3 pgqd "${extra[@]}"
# a private PostgreSQL copy (TXBOX_PREFIX) needs PgQ's files too
if [ -n "$TXBOX_PREFIX" ] && [ ! -e "$TXBOX_PREFIX/usr/share/postgresql/$TXBOX_PG_VERSION/extension/pgq.control" ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo cp -a /usr/share/postgresql/"$TXBOX_PG_VERSION"/extension/pgq[.-]* \
		"$TXBOX_PREFIX/usr/share/postgresql/$TXBOX_PG_VERSION/extension/"
	$sudo cp -a /usr/lib/postgresql/"$TXBOX_PG_VERSION"/lib/pgq_*.so \
		"$TXBOX_PREFIX/usr/lib/postgresql/$TXBOX_PG_VERSION/lib/"
fi
results="$TXBOX_ROOT/bench/results"
mkdir -p "$results"
out="$results/relay-$(date -u +%Y-%m-%d-%H%M).txt"
if ! txbox_as_user bench/relay/run.sh | tee "$out.part"; then
	rm -f "$out.part"
	exit 1
fi
mv "$out.part" "$out"
txbox_log "report written to ${out#"$TXBOX_ROOT"/}"
