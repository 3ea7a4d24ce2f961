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
echo "demo finished"
