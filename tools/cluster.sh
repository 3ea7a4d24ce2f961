# tools/cluster.sh -- a throwaway PostgreSQL cluster for the demo and the
# benchmarks.  txbox_cluster_start DIR PORT [CONF...] starts one with txbox
# preloaded, listening on a unix socket in DIR only; it is stopped and
# removed when the calling script exits.

txbox_cluster_start() {
	local dir=$1 port=$2
	shift 2
	initdb -D "$dir/data" -A trust -U postgres >/dev/null
	{
		echo "shared_preload_libraries = 'txbox'"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "port = $port"
		echo "max_prepared_transactions = 10"
		echo "max_worker_processes = 16"
		for c in "$@"; do echo "$c"; done
	} >>"$dir/data/postgresql.conf"
	pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
	trap "pg_ctl -D '$dir/data' -m immediate stop >/dev/null 2>&1; rm -rf '$dir'" EXIT
	export PGHOST=$dir PGPORT=$port PGUSER=postgres
}
