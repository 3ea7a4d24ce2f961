-- A business transaction (one order row) publishing its event with txbox.
\set cust random(1, 100000)
BEGIN;
INSERT INTO orders (customer_id, amount, status) VALUES (:cust, 42.50, 'new') RETURNING id \gset
SELECT txbox.publish('orders',
          jsonb_build_object('order_id', :id::bigint, 'customer_id', :cust::int,
                             'amount', 42.50, 'currency', 'EUR', 'status', 'new'));
COMMIT;
