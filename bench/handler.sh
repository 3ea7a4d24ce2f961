#!/usr/bin/env bash
# bench/handler.sh -- handler throughput: a txbox handler against a
# hand-written consumer loop (bench/HANDLER.md).  Installs what is missing,
# builds and installs txbox, then runs bench/handler/throughput.sh on a
# throwaway cluster (as an unprivileged user when run as root).  The report
# goes to stdout and to bench/results/handler-<date>.txt.
#
#   bash bench/handler.sh
#   HANDLER_MESSAGES=50000 HANDLER_ROUNDS=5 bash bench/handler.sh
#
# Settings: see bench/handler/throughput.sh.
set -euo pipefail
source "$(dirname "$0")/../tools/common.sh"
if [ "${HANDLER_DIAG:-0}" = 1 ]; then txbox_setup linux-perf; else txbox_setup; fi
# the revision measured (the tree is copied for the unprivileged user, so
# compute it here)
HB_REVISION="$(git -C "$TXBOX_ROOT" log -1 --format='%h %cd %s' --date=format:'%Y-%m-%d %H:%M' 2>/dev/null | cut -c1-100 || true)"
[ -z "$HB_REVISION" ] || git -C "$TXBOX_ROOT" diff --quiet HEAD -- src 2>/dev/null || HB_REVISION+=" + uncommitted changes in src/"
export HB_REVISION
results="$TXBOX_ROOT/bench/results"
mkdir -p "$results"
out="$results/handler-$(date -u +%Y-%m-%d-%H%M).txt"
if ! txbox_as_user bench/handler/run.sh throughput | tee "$out.part"; then
	rm -f "$out.part"
	exit 1
fi
mv "$out.part" "$out"
txbox_log "report written to ${out#"$TXBOX_ROOT"/}"
