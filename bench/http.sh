#!/usr/bin/env bash
# bench/http.sh -- the webhook benchmark (bench/HTTP.md): the delivery rate
# of an http relay to a local receiver (nginx answering 200) as a ratio of
# what a plain HTTP load generator (wrk) reaches against the same receiver
# with the same concurrency in the same run, and of one client sending one
# request at a time (a hand-written sender).  Installs what is missing,
# builds, installs, then runs bench/http/run.sh on a throwaway cluster, as
# an unprivileged user when run as root.  The report goes to stdout and to
# bench/results/http-<date>.txt; progress to stderr.
#
#   bash bench/http.sh
#   HTTP_MESSAGES=100000 HTTP_CONCURRENCY=8 bash bench/http.sh
set -euo pipefail
source "$(dirname "$0")/../tools/common.sh"
txbox_setup nginx-light wrk
results="$TXBOX_ROOT/bench/results"
mkdir -p "$results"
out="$results/http-$(date -u +%Y-%m-%d-%H%M).txt"
if ! txbox_as_user bench/http/run.sh | tee "$out.part"; then
	rm -f "$out.part"
	exit 1
fi
mv "$out.part" "$out"
txbox_log "report written to ${out#"$TXBOX_ROOT"/}"
