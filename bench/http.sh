#!/usr/bin/env bash
# bench/http.sh -- `bash bench/run http` (bench/HTTP.md): the delivery rate
# of an http relay to a local receiver, as a ratio of what a plain HTTP
# load generator reaches against the same receiver with the same
# concurrency in the same run, and of one client sending one request at a
# time (a hand-written sender).  Run by bench/run as an unprivileged user.
#
# A throwaway cluster and an nginx on 127.0.0.1 that answers every POST
# with 200 (the receiver).  Per round, against the same receiver:
#   wrk -c CONCURRENCY     a plain load generator, POSTing a message-sized
#                          body for HTTP_SECONDS: the rate to match
#   wrk -c 1               one request at a time (a hand-written sender)
#   txbox                  a running http relay with concurrency
#                          CONCURRENCY (created and warmed up before the
#                          rounds with HTTP_WARMUP messages, 400000: more
#                          than shared_buffers holds, so that the rounds
#                          read buffers the worker has mapped before, as a
#                          relay that has run for a while does; a worker's
#                          start is not throughput): HTTP_MESSAGES messages (64 keys)
#                          published in one transaction, messages / seconds
#                          from its commit to the save of the last page's
#                          position (last_delivered_at, the server's clock)
# Medians of HTTP_ROUNDS rounds.
#
#   HTTP_MESSAGES=100000 HTTP_CONCURRENCY=8 bash bench/run http
set -euo pipefail
source "$(dirname "$0")/../tools/common.sh"
export PATH="$TXBOX_BINDIR:$PATH"
messages=${HTTP_MESSAGES:-50000}
concurrency=${HTTP_CONCURRENCY:-8}
seconds=${HTTP_SECONDS:-10}
rounds=${HTTP_ROUNDS:-3}
warmup=${HTTP_WARMUP:-400000}
log() { printf '.. %s\n' "$*" >&2; }

dir=$(mktemp -d /tmp/txbox-bench-http.XXXXXX)
trap 'pg_ctl -D "$dir/pg" -m immediate stop >/dev/null 2>&1 || true;
	[ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$(( 20000 + RANDOM % 20000 ))
hport=$(( port + 1 ))

# the receiver
mkdir -p "$dir/nginx"
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx/error.log;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $dir/nginx;
	proxy_temp_path $dir/nginx;
	fastcgi_temp_path $dir/nginx;
	uwsgi_temp_path $dir/nginx;
	scgi_temp_path $dir/nginx;
	client_body_buffer_size 64k;
	keepalive_requests 1000000;
	server {
		listen 127.0.0.1:$hport;
		location / { return 200; }
	}
}
CONF
/usr/sbin/nginx -c "$dir/nginx.conf" -p "$dir/nginx" -e "$dir/nginx/error.log"

initdb -D "$dir/pg" -A trust -N >/dev/null
cat >> "$dir/pg/postgresql.conf" <<CONF
shared_preload_libraries = 'txbox'
listen_addresses = ''
unix_socket_directories = '$dir'
port = $port
max_worker_processes = 16
CONF
pg_ctl -D "$dir/pg" -l "$dir/pg.log" -w start >/dev/null
export PGHOST=$dir PGPORT=$port
createdb bench
psql -qX -d bench -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION txbox;
CREATE SERVER hooks FOREIGN DATA WRAPPER txbox_http
	OPTIONS (url 'http://127.0.0.1:$hport/hook', allow_private 'true');
CREATE USER MAPPING FOR CURRENT_USER SERVER hooks
	OPTIONS (signing_secret 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SQL

# wrk's request: a message-sized JSON body with the webhook headers
cat > "$dir/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"seq": 12345, "order": 42, "customer": "customer-7", "amount": 99.5}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["webhook-id"] = "0192f4c4-6a8e-7b3c-9d2e-1f0a2b3c4d5e"
wrk.headers["webhook-timestamp"] = "1764600000"
wrk.headers["webhook-signature"] = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="
LUA
# "requests/s CPU-microseconds/request" of wrk -c $1
wrk_rate() {
	local cpu
	cpu=$( { TIMEFORMAT='%3U %3S'; time wrk -t 1 -c "$1" -d "${seconds}s" -s "$dir/post.lua" \
		"http://127.0.0.1:$hport/hook" >"$dir/wrk.out" 2>/dev/null; } 2>&1)
	awk -v cpu="$cpu" '/ requests in / { n = $1 } /^Requests\/sec/ { r = $2 }
		END { split(cpu, c, " "); printf "%.0f %.1f\n", r, (c[1] + c[2]) * 1e6 / n }' "$dir/wrk.out"
}

# CPU seconds (user + system) a process used so far
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }

# The relay runs throughout (see above); its worker's pid
psql -qXAt -d bench -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT txbox.create_relay('to_hooks', 'http', NULL,
	'{"server": "hooks", "concurrency": $concurrency}');
SQL
txbox_wait_relayed to_hooks "$(psql -qXAt -d bench -c "SELECT txbox.publish('orders', '{\"warm\": \"up\"}'),
	pg_current_xact_id()" | cut -d'|' -f2)" -d bench
relay_pid=$(psql -qXAt -d bench -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'txbox relay'")

# "messages/s CPU-microseconds/message" of the running relay, delivering
# N messages (HTTP_MESSAGES)
txbox_rate() {
	local n=${1:-$messages} c0 t0 t txid
	c0=$(cpu_of "$relay_pid")
	read -r txid t0 < <(psql -qXAt -d bench -v ON_ERROR_STOP=1 <<SQL | tail -n 2 | awk -F'|' 'NR == 1 { x = $2 } NR == 2 { print x, $1 }'
SELECT count(txbox.publish('orders', jsonb_build_object('seq', i, 'order', 42, 'customer', 'customer-7', 'amount', 99.5),
					 key => 'k' || (i % 64))), pg_current_xact_id()
  FROM generate_series(1, $n) i;
SELECT extract(epoch FROM clock_timestamp());
SQL
	)
	txbox_wait_relayed to_hooks "$txid" -d bench
	t=$(psql -qXAt -d bench -c "SELECT extract(epoch FROM last_delivered_at) - $t0 FROM txbox.relays")
	echo "$t $(cpu_of "$relay_pid") $c0" | awk -v n="$n" '{ printf "%.0f %.1f\n", n / $1, ($2 - $3) * 1e6 / n }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "http relay: $messages messages (64 keys), concurrency $concurrency, nginx receiver on 127.0.0.1"
echo "$(nproc) CPUs; libcurl $(curl-config --version 2>/dev/null || dpkg-query -W -f='${Version}' libcurl4)"
log "warm-up: the relay delivers $warmup messages"
read -r wr wu < <(txbox_rate "$warmup")
echo "warm-up, not counted: the relay delivered $warmup messages at $wr/s ($wu us of CPU per message)"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
# row LABEL WRK_C WRK_C_US WRK_1 TXBOX TXBOX_US VS_WRK VS_C1
row() {
	printf '%-6s %12s %12s %12s %8s %8s %10s %10s\n' "$1" "$2" "$4" "$5" "$7" "$8" "$3" "$6"
}
printf '%-6s %12s %12s %12s %8s %8s %10s %10s\n' round wrk_c$concurrency wrk_c1 txbox 'vs wrk' 'vs c1' \
	"us_wrk_c$concurrency" us_txbox
for f in w s t wu tu vw vs; do : > "$dir/$f"; done
for r in $(seq 1 "$rounds"); do
	log "round $r: wrk -c $concurrency"
	read -r w wu < <(wrk_rate "$concurrency")
	log "round $r: wrk -c 1"
	read -r s _ < <(wrk_rate 1)
	log "round $r: txbox"
	read -r t tu < <(txbox_rate)
	vw=$(txbox_ratio "$t" "$w")
	vs=$(txbox_ratio "$t" "$s")
	for f in w s t wu tu vw vs; do echo "${!f}" >> "$dir/$f"; done
	row "$r" "$w" "$wu" "$s" "$t" "$tu" "$vw" "$vs"
done
# each column's median; the ratios' are the medians of the rounds' ratios
# (each round's rates were taken one after the other, in the same state
# of the machine)
row median "$(median < "$dir/w")" "$(median < "$dir/wu")" "$(median < "$dir/s")" \
	"$(median < "$dir/t")" "$(median < "$dir/tu")" "$(median < "$dir/vw")" "$(median < "$dir/vs")"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(requests/s; txbox = messages / seconds from their commit to all delivered (a running relay), signed, per-key ordered;"
echo " us_* = CPU microseconds (user + system) per request of wrk, per message of the relay worker)"
