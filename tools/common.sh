# tools/common.sh -- shared by test/run, demo/run and bench/run.
#
# txbox_setup: install the Debian packages txbox needs (when missing), build
# warning-free and install the extension.  txbox_as_user: run a command as
# an unprivileged OS user when we are root (initdb refuses root), in a
# private copy of the tree that user may write to.

TXBOX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TXBOX_PG_VERSION=${TXBOX_PG_VERSION:-15}
# every version `make test-all` tests (test/matrix; tools/roots.sh says
# where each comes from)
TXBOX_PG_VERSIONS="15 17 18"
# Debian packages that build and test txbox, besides PostgreSQL's own: on
# this machine and in tools/roots.sh's roots alike
TXBOX_PACKAGES=(make gcc libpq-dev libipc-run-perl libssl-dev libcurl4-openssl-dev librdkafka-dev kcat python3)
# TXBOX_PREFIX: run against a copy of the PostgreSQL installation under
# this directory (installed there with make install DESTDIR=...), e.g. to
# develop without touching the system's.
TXBOX_PREFIX=${TXBOX_PREFIX:-}
TXBOX_BINDIR=$TXBOX_PREFIX/usr/lib/postgresql/$TXBOX_PG_VERSION/bin
TXBOX_PGXS=$TXBOX_PREFIX/usr/lib/postgresql/$TXBOX_PG_VERSION/lib/pgxs
TXBOX_USER=${TXBOX_USER:-txbox}

txbox_log() { printf '== %s\n' "$*" >&2; }

# txbox_need_packages PKG... -- apt-get install whatever is not installed yet.
txbox_need_packages() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	txbox_log "installing Debian packages: ${missing[*]}"
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# txbox_install_packages -- the Debian packages for $TXBOX_PG_VERSION.
txbox_install_packages() {
	txbox_need_packages "postgresql-$TXBOX_PG_VERSION" "postgresql-server-dev-$TXBOX_PG_VERSION" \
		"${TXBOX_PACKAGES[@]}" "$@"
}

# txbox_make_prefix -- the copy of the system's PostgreSQL under
# TXBOX_PREFIX, made on first use.
txbox_make_prefix() {
	[ ! -x "$TXBOX_BINDIR/postgres" ] || return 0
	mkdir -p "$TXBOX_PREFIX/usr/lib/postgresql" "$TXBOX_PREFIX/usr/share/postgresql"
	cp -a "/usr/lib/postgresql/$TXBOX_PG_VERSION" "$TXBOX_PREFIX/usr/lib/postgresql/"
	cp -a "/usr/share/postgresql/$TXBOX_PG_VERSION" "$TXBOX_PREFIX/usr/share/postgresql/"
}

# txbox_build_install -- warning-free build against the system's
# PostgreSQL headers, installed there or, with TXBOX_PREFIX, into the copy
# (whose pg_config finds no headers: the copy has none).
txbox_build_install() {
	local pg_config=/usr/lib/postgresql/$TXBOX_PG_VERSION/bin/pg_config
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	txbox_log "building txbox (warnings are errors)"
	make -s -C "$TXBOX_ROOT" PG_CONFIG="$pg_config" WERROR=1 >/dev/null
	if [ -n "$TXBOX_PREFIX" ]; then
		txbox_make_prefix
		make -s -C "$TXBOX_ROOT" PG_CONFIG="$pg_config" install DESTDIR="$TXBOX_PREFIX" >/dev/null
	else
		$sudo make -s -C "$TXBOX_ROOT" PG_CONFIG="$pg_config" install >/dev/null
	fi
}

# txbox_setup -- packages, warning-free build, install.
txbox_setup() {
	txbox_install_packages "$@"
	txbox_build_install
}

# txbox_as_user SCRIPT ARGS... -- run SCRIPT (a path relative to the tree)
# as $TXBOX_USER in a fresh copy of the tree when root, else in place.
txbox_as_user() {
	local script=$1
	shift
	export PATH="$TXBOX_BINDIR:$PATH"
	if [ "$(id -u)" -ne 0 ]; then
		bash "$TXBOX_ROOT/$script" "$@"
		return
	fi
	id "$TXBOX_USER" >/dev/null 2>&1 || useradd --system --create-home --shell /bin/bash "$TXBOX_USER"
	local work
	work=$(mktemp -d /tmp/txbox-run.XXXXXX)
	cp -a "$TXBOX_ROOT/." "$work/"
	chown -R "$TXBOX_USER" "$work"
	txbox_log "running as $TXBOX_USER in $work"
	local rc=0
	runuser -u "$TXBOX_USER" -- env PATH="$PATH" HOME="$work" CI="${CI:-}" \
		TXBOX_PREFIX="$TXBOX_PREFIX" TAP_TESTS="${TAP_TESTS:-}" bash "$work/$script" "$@" || rc=$?
	# keep the copy (results, logs) only when something failed
	if [ $rc -eq 0 ]; then rm -rf "$work"; else txbox_log "results and logs kept in $work"; fi
	return $rc
}

# txbox_ratio A B -- A / B, two decimals (benchmarks' ratios)
txbox_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# txbox_wait_relayed RELAY TXID [psql options] -- wait until relay RELAY's
# saved position has every message of transaction TXID (benchmarks: one
# session reads one row per look, every 50 ms, each look with a new
# snapshot.  Not relay_status.lag_messages, which counts the backlog:
# 61-67 ms of a backend's CPU per look with 100,000 messages in it; nor a
# psql per look: ~47 ms of the machine's CPU each, psql's start and a new
# backend's.  Either took about half a CPU from the relay measured.)
txbox_wait_relayed() {
	local relay=$1 txid=$2
	shift 2
	psql -qXAt -v ON_ERROR_STOP=1 "$@" >/dev/null <<SQL
DO \$\$
BEGIN
	WHILE NOT coalesce((SELECT pg_visible_in_snapshot('$txid'::xid8, snapshot)
						FROM txbox.relays WHERE name = '$relay'), false) LOOP
		PERFORM pg_sleep(0.05);
	END LOOP;
END
\$\$;
SQL
}
