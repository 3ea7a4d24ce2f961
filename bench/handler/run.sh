#!/usr/bin/env bash
# bench/handler/run.sh WHAT [ARGS] -- the handler benchmarks, as an
# unprivileged user (bench/handler.sh and bench/soak.sh call it through
# txbox_as_user after txbox_setup).
#   throughput           bench/handler/throughput.sh (report on stdout)
#   soak OUTDIR [NAME]   bench/handler/soak.sh (report on stdout; the plot
#                        and the samples in OUTDIR: NAME.png, NAME.dat)
set -euo pipefail
what=${1:-}
[ $# -eq 0 ] || shift
case $what in
throughput | soak) exec bash "$(dirname "$0")/$what.sh" "$@" ;;
*)
	echo "usage: bench/handler/run.sh throughput | soak OUTDIR [NAME]" >&2
	exit 2
	;;
esac
