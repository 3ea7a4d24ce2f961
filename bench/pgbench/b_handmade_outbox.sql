-- (b) the business transaction + one row in a hand-made outbox table
-- (bigserial primary key, uuid, topic, jsonb payload, timestamptz).
\set cust random(1, 100000)
BEGIN;
INSERT INTO bench.orders (customer_id, amount, status) VALUES (:cust, 42.50, 'new') RETURNING id \gset
INSERT INTO bench.outbox (message_id, topic, payload)
  VALUES (gen_random_uuid(), 'orders',
          jsonb_build_object('order_id', :id::bigint, 'customer_id', :cust::int,
                             'amount', 42.50, 'currency', 'EUR', 'status', 'new'));
COMMIT;
