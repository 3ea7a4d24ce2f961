# tools/roots.sh -- PostgreSQL versions Debian 12 does not ship, in minimal
# Debian roots (debootstrap) under $TXBOX_CACHE (default /var/cache/txbox):
# roots/SUITE is the root, debs/SUITE the package cache; both are kept
# between runs, so only the first run downloads.  Needs root.
#
# txbox_suite VERSION: the Debian suite that has postgresql-VERSION and its
# -dev package ("" for the host's own version).
# txbox_in_root SUITE CMD...: run CMD (a bash command line) in SUITE's root
# (made on first use) with /proc, /dev and the source tree (read-only, at
# /src) bound, in a private mount namespace so that nothing stays mounted.

TXBOX_CACHE=${TXBOX_CACHE:-/var/cache/txbox}
TXBOX_MIRROR=${TXBOX_MIRROR:-http://deb.debian.org/debian}

txbox_suite() {
	case $1 in
	15) echo "" ;;      # Debian 12 (bookworm), the host
	17) echo trixie ;;  # Debian 13
	18) echo forky ;;   # Debian testing
	*) return 1 ;;
	esac
}

# txbox_root SUITE -- make the root if it is not complete yet.
txbox_root() {
	local suite=$1 root=$TXBOX_CACHE/roots/$1
	[ -e "$root/.txbox-ready" ] && return 0
	txbox_need_packages debootstrap
	txbox_log "making a $suite root in $root (first time only)"
	rm -rf --one-file-system "$root"
	mkdir -p "$root" "$TXBOX_CACHE/debs/$suite"
	# bookworm's debootstrap has no script for suites newer than trixie;
	# theirs is sid's.
	local script=/usr/share/debootstrap/scripts/$suite
	[ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
	debootstrap --variant=minbase --cache-dir="$TXBOX_CACHE/debs/$suite" \
		"$suite" "$root" "$TXBOX_MIRROR" "$script" >"$TXBOX_CACHE/roots/$suite.log" 2>&1 || {
		tail -20 "$TXBOX_CACHE/roots/$suite.log" >&2
		return 1
	}
	rm -rf "$root/var/cache/apt/archives"
	# packages start no services and make no cluster in the root
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod +x "$root/usr/sbin/policy-rc.d"
	mkdir -p "$root/etc/postgresql-common/createcluster.d"
	echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.d/txbox.conf"
	# the mirror may serve a testing suite's index past its Valid-Until
	echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99txbox"
	touch "$root/.txbox-ready"
}

txbox_in_root() {
	local suite=$1 root=$TXBOX_CACHE/roots/$1
	shift
	mkdir -p "$TXBOX_CACHE/roots" "$TXBOX_CACHE/debs/$suite"
	# one run per root at a time, its making included
	(
		flock 9
		txbox_root "$suite" || exit 1
		cp /etc/resolv.conf "$root/etc/resolv.conf"
		mkdir -p "$root/src" "$root/var/cache/apt/archives"
		unshare --mount --propagation private bash -c '
			set -e
			root=$1 debs=$2 src=$3
			shift 3
			mount --rbind /dev "$root/dev"
			mount -t proc proc "$root/proc"
			mount --bind "$debs" "$root/var/cache/apt/archives"
			mount --bind "$src" "$root/src"
			mount -o remount,bind,ro "$root/src"
			exec chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
				HOME=/root LANG=C.UTF-8 CI="${CI:-}" bash -c "$*"
		' - "$root" "$TXBOX_CACHE/debs/$suite" "$TXBOX_ROOT" "$@"
	) 9>"$TXBOX_CACHE/roots/$suite.lock"
}
