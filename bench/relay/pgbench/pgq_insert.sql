-- The same business transaction publishing its event with PgQ.
\set cust random(1, 100000)
BEGIN;
INSERT INTO orders (customer_id, amount, status) VALUES (:cust, 42.50, 'new') RETURNING id \gset
SELECT pgq.insert_event('orders_q', 'orders',
          json_build_object('order_id', :id::bigint, 'customer_id', :cust::int,
                            'amount', 42.50, 'currency', 'EUR', 'status', 'new')::text);
COMMIT;
