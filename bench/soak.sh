#!/usr/bin/env bash
# bench/soak.sh -- soak test: steady publishing through a relay shop ->
# billing and a handler in billing, with short retention; do the txbox
# tables stay flat and do relay and handler keep up?  (bench/HANDLER.md)
# Installs what is missing (gnuplot-nox included), builds and installs
# txbox, then runs bench/handler/soak.sh on a throwaway cluster (as an
# unprivileged user when run as root).  The report goes to stdout and to
# bench/results/soak-<date>.txt, the plot to soak-<date>.png, the samples
# to soak-<date>.dat.
#
#   bash bench/soak.sh                       # about 13 minutes
#   SOAK_MINUTES=30 SOAK_RATE=500 bash bench/soak.sh
#
# Settings: see bench/handler/soak.sh.
set -euo pipefail
source "$(dirname "$0")/../tools/common.sh"
txbox_setup gnuplot-nox
# the revision measured (the tree is copied for the unprivileged user, so
# compute it here)
HB_REVISION="$(git -C "$TXBOX_ROOT" log -1 --format='%h %cd %s' --date=format:'%Y-%m-%d %H:%M' 2>/dev/null | cut -c1-100 || true)"
[ -z "$HB_REVISION" ] || git -C "$TXBOX_ROOT" diff --quiet HEAD -- src 2>/dev/null || HB_REVISION+=" + uncommitted changes in src/"
export HB_REVISION
results="$TXBOX_ROOT/bench/results"
mkdir -p "$results"
stamp=$(date -u +%Y-%m-%d-%H%M)
out="$results/soak-$stamp.txt"
# the plot and the samples come back through a directory the benchmark's
# user may write to
outdir=$(mktemp -d /tmp/txbox-soak.XXXXXX)
trap 'rm -rf "$outdir"' EXIT
if [ "$(id -u)" -eq 0 ]; then
	id "$TXBOX_USER" >/dev/null 2>&1 || useradd --system --create-home --shell /bin/bash "$TXBOX_USER"
	chown "$TXBOX_USER" "$outdir"
fi
if ! txbox_as_user bench/handler/run.sh soak "$outdir" "soak-$stamp" | tee "$out.part"; then
	rm -f "$out.part"
	exit 1
fi
mv "$out.part" "$out"
cp "$outdir/soak-$stamp.png" "$outdir/soak-$stamp.dat" "$results/"
txbox_log "report written to ${out#"$TXBOX_ROOT"/}, plot to ${out%.txt}.png"
