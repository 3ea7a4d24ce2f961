#!/usr/bin/env bash
# bench/relay/pgq_consumer.sh QUEUE CONSUMER MIN_COUNT MAX_BATCHES -- a PgQ
# consumer moving QUEUE's events from database shop into billing's
# pgq_inbox until no batch is left, as a PgQ consumer written with psql
# would.  PGHOST etc. name the cluster.
#
# Two psql sessions for the whole run, no process per batch: a psql on shop
# runs the loop (next_batch_custom, get_batch_events, finish_batch) and
# writes, per batch, a script for a psql on billing: BEGIN; COPY staging
# FROM STDIN with the events; INSERT INTO pgq_inbox ... ON CONFLICT
# (message_id) DO NOTHING; COMMIT; \echo ack.  The shop side finishes the
# batch only after reading billing's ack (through a fifo): at-least-once,
# like the relay, which saves its position only after the target's commit.
# Batches: at least MIN_COUNT events (next_batch_custom's i_min_count),
# whole ticks.
set -euo pipefail
queue=$1 consumer=$2 min_count=$3 max_batches=$4
work=$(mktemp -d "${TMPDIR:-/tmp}/txbox-pgq.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkfifo "$work/ack"

{
	cat <<-EOF
		\\set ON_ERROR_STOP 1
		\\set queue '$queue'
		\\set consumer '$consumer'
		\\set min_count $min_count
		\\qecho '\\\\set ON_ERROR_STOP 1'
		\\qecho 'CREATE TEMP TABLE staging (message_id uuid, topic text, key text, payload jsonb, published_at timestamptz) ON COMMIT DELETE ROWS;'
	EOF
	for ((i = 0; i < max_batches; i++)); do
		cat <<-'EOF'
			SELECT batch_id AS b FROM pgq.next_batch_custom(:'queue', :'consumer', NULL, :min_count, NULL) \gset
			\if :{?b}
			\qecho 'BEGIN;'
			\qecho 'COPY staging FROM STDIN;'
			COPY (SELECT ev_extra1, ev_type, ev_extra2, ev_data, ev_time FROM pgq.get_batch_events(:b)) TO STDOUT;
			\qecho '\\.'
			\qecho 'INSERT INTO pgq_inbox (message_id, topic, key, payload, source, published_at, received_at) SELECT message_id, topic, key, payload, ''shop/pgq'', published_at, now() FROM staging ON CONFLICT (message_id) DO NOTHING;'
			\qecho 'COMMIT;'
			\qecho '\\echo ack'
			\set ack `read -r a <&3 && echo "$a"`
			SELECT :'ack' = 'ack' AS ok \gset
			\if :ok
			SELECT pgq.finish_batch(:b) AS finished \gset
			\unset b
			\else
			DO $$ BEGIN RAISE EXCEPTION 'billing did not acknowledge a batch'; END $$;
			\endif
			\else
			\quit
			\endif
		EOF
	done
	# more batches than expected: fail rather than stop short
	echo "DO \$\$ BEGIN RAISE EXCEPTION 'more than $max_batches batches'; END \$\$;"
} >"$work/loop.sql"

psql -X -q -d shop -f "$work/loop.sql" 3<"$work/ack" |
	psql -X -q -d billing -f - >"$work/ack"
