#!/usr/bin/env bash
# demo/demo.sh -- what txbox does today, in a few printed lines.
set -euo pipefail
source "$(dirname "$0")/../tools/common.sh"
source "$TXBOX_ROOT/tools/cluster.sh"
dir=$(mktemp -d /tmp/txbox-demo.XXXXXX)
txbox_cluster_start "$dir" 54329

psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
\pset footer off
CREATE EXTENSION txbox;
CREATE TABLE orders (id int PRIMARY KEY, total numeric);

\echo
\echo '1. Publish in a transaction that rolls back: nothing is left behind.'
BEGIN;
INSERT INTO orders VALUES (1, 10);
SELECT txbox.publish('orders', '{"order": 1, "total": 10}', key => 'customer-7') IS NOT NULL AS published;
ROLLBACK;
SELECT count(*) AS messages_in_outbox FROM txbox.outbox;

\echo
\echo '2. Publish with the order, commit: the message is in the outbox, with a time-ordered UUIDv7.'
BEGIN;
INSERT INTO orders VALUES (2, 25);
SELECT txbox.publish('orders', '{"order": 2, "total": 25}', key => 'customer-7',
                     headers => '{"trace_id": "t-42"}') AS message_id \gset
COMMIT;
SELECT message_id, substr(message_id::text, 15, 1) AS uuid_version, topic, key, payload, headers
  FROM txbox.outbox;

\echo
\echo '3. The same message id claimed twice by a consumer: the second claim is a duplicate.'
SELECT txbox.inbox_claim('billing', :'message_id') AS first_claim;
SELECT txbox.inbox_claim('billing', :'message_id') AS second_claim;

\echo
\echo '4. An idempotent API request, then its retry: the retry replays the stored response.'
BEGIN;
SELECT state FROM txbox.idempotency_begin('payments', 'req-abc', fingerprint => 'charge 25 EUR');
SELECT txbox.idempotency_complete('payments', 'req-abc', '{"charge_id": "ch_1"}', 201);
COMMIT;
SELECT state, response, response_status
  FROM txbox.idempotency_begin('payments', 'req-abc', fingerprint => 'charge 25 EUR');
\echo '   ... and a retry with a different request is refused:'
\set ON_ERROR_STOP 0
SELECT * FROM txbox.idempotency_begin('payments', 'req-abc', fingerprint => 'charge 99 EUR');
SQL

echo
echo "5. A relay: orders published in database shop arrive in database billing's inbox."
createdb shop
createdb billing
psql -X -q -d billing -c "CREATE EXTENSION txbox"
psql -X -q -v ON_ERROR_STOP=1 -d shop <<SQL
CREATE EXTENSION txbox;
CREATE SERVER billing FOREIGN DATA WRAPPER txbox_fdw OPTIONS (host '$PGHOST', port '$PGPORT', dbname 'billing');
CREATE USER MAPPING FOR CURRENT_USER SERVER billing OPTIONS (user '$PGUSER');
SELECT txbox.create_relay('to_billing', 'postgres', ARRAY['orders'], '{"server": "billing", "batch_size": 200}');
SQL
psql -X -q -d shop -c "SELECT txbox.publish('orders', jsonb_build_object('order', g, 'total', g * 10), 'customer-' || g % 7) FROM generate_series(1, 3) g" >/dev/null
sleep 1
psql -X -d billing -c "SELECT payload, key, source, received_at - published_at AS commit_to_inbox FROM txbox.inbox ORDER BY payload->>'order'"

echo "6. 20,000 more orders, while the relay worker is terminated three times mid-stream."
psql -X -q -d shop -c "SELECT txbox.publish('orders', jsonb_build_object('order', g, 'total', g * 10, 'note', repeat('x', 500)), 'customer-' || g % 7) FROM generate_series(4, 20003) g" >/dev/null &
for i in 1 2 3; do
	sleep 0.7
	psql -X -q -At -d shop -c "SELECT 'terminated relay worker ' || pid || ': ' || pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'txbox relay'"
done
wait
for i in $(seq 1 60); do
	lag=$(psql -X -At -d shop -c "SELECT lag_messages FROM txbox.relay_status WHERE name = 'to_billing'")
	[ "$lag" = 0 ] && break
	sleep 1
done
psql -X -d shop -c "SELECT name, state, delivered, duplicates AS redelivered_duplicates_dropped, lag_messages, last_error FROM txbox.relay_status"
published=$(psql -X -At -d shop -c "SELECT count(*) FROM txbox.outbox WHERE topic = 'orders'")
inbox=$(psql -X -At -d billing -c "SELECT count(*) || ' rows, ' || count(DISTINCT message_id) || ' distinct message ids' FROM txbox.inbox")
echo "published in shop: $published orders; in billing's inbox: $inbox"

echo
echo "7. A handler in billing charges every order exactly once -- through a crash of the relay worker"
echo "   and a poison order that fails until the handler is fixed."
psql -X -q -v ON_ERROR_STOP=1 -d billing <<'SQL'
CREATE TABLE charges (order_id int PRIMARY KEY, amount numeric, message_id uuid UNIQUE);
CREATE FUNCTION charge(m txbox.message) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF m.payload->>'total' IS NULL THEN
    RAISE EXCEPTION 'order % has no total', m.payload->>'order';
  END IF;
  INSERT INTO charges VALUES ((m.payload->>'order')::int, (m.payload->>'total')::numeric, m.message_id);
END $$;
SELECT txbox.create_handler('charge', ARRAY['orders'], 'charge(txbox.message)',
                            '{"max_attempts": 3, "backoff": "1s", "parallel": 2}');
SQL
psql -X -q -d shop -c "SELECT txbox.publish('orders', jsonb_build_object('order', g) || CASE WHEN g = 20500 THEN '{}' ELSE jsonb_build_object('total', g * 10) END, 'customer-' || g % 7) FROM generate_series(20004, 21003) g" >/dev/null &
sleep 0.3
psql -X -q -At -d shop -c "SELECT 'killed relay worker ' || pid || ' with SIGKILL (the server restarts)' FROM pg_stat_activity WHERE backend_type = 'txbox relay'" \
	| while read -r line; do echo "$line"; kill -9 "$(echo "$line" | awk '{print $4}')"; done
wait
# wait for the dead letter, then until only its customer's orders are left
prev=x
for i in $(seq 1 60); do
	state=$(psql -X -At -d billing -c "SELECT (SELECT count(*) FROM txbox.dead_letters) || '/' || lag_messages FROM txbox.handler_status" 2>/dev/null || echo x)
	case $state in 1/*) [ "$state" = "$prev" ] && break ;; esac
	prev=$state
	sleep 1
done
psql -X -d billing -c "SELECT name, state, processed, dead_lettered, lag_messages FROM txbox.handler_status" \
	-c "SELECT dead_letter_id, payload, attempts, last_error FROM txbox.dead_letters"
echo "   The poison order's customer waits behind it; the others are charged. Fix the handler and replay:"
psql -X -q -d billing <<'SQL'
CREATE OR REPLACE FUNCTION charge(m txbox.message) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO charges VALUES ((m.payload->>'order')::int, coalesce((m.payload->>'total')::numeric, 0), m.message_id);
END $$;
SELECT txbox.replay_dead_letter(dead_letter_id) FROM txbox.dead_letters;
SQL
for i in $(seq 1 30); do
	lag=$(psql -X -At -d billing -c "SELECT lag_messages FROM txbox.handler_status")
	[ "$lag" = 0 ] && break
	sleep 1
done
published=$(psql -X -At -d shop -c "SELECT count(*) FROM txbox.outbox WHERE topic = 'orders'")
psql -X -d billing -c "SELECT $published AS published_in_shop,
	(SELECT count(*) FROM txbox.inbox) AS in_billing_inbox,
	(SELECT count(*) FROM charges) AS charges,
	(SELECT count(DISTINCT order_id) FROM charges) AS distinct_orders_charged,
	(SELECT processed FROM txbox.handler_status) AS handler_processed"

echo
echo "demo finished"
