-- (diagnostic) as (b), into a hand-made table of txbox.outbox's shape (LIST
-- partitioned by gen, ten columns, CHECK, index on txid) with plain SQL:
-- the cost of the table layout, without any function call.
\set cust random(1, 100000)
BEGIN;
INSERT INTO bench.orders (customer_id, amount, status) VALUES (:cust, 42.50, 'new') RETURNING id \gset
INSERT INTO bench.outbox_shape (gen, id, txid, message_id, topic, payload, published_at)
  VALUES (0, nextval('bench.outbox_shape_id_seq'), pg_current_xact_id(), gen_random_uuid(), 'orders',
          jsonb_build_object('order_id', :id::bigint, 'customer_id', :cust::int,
                             'amount', 42.50, 'currency', 'EUR', 'status', 'new'),
          clock_timestamp());
COMMIT;
