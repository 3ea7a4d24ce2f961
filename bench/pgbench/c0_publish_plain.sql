-- (diagnostic) as (c), through a copy of txbox.publish declared without
-- SECURITY DEFINER and SET search_path: the cost of those two attributes.
\set cust random(1, 100000)
BEGIN;
INSERT INTO bench.orders (customer_id, amount, status) VALUES (:cust, 42.50, 'new') RETURNING id \gset
SELECT bench.publish_plain('orders',
          jsonb_build_object('order_id', :id::bigint, 'customer_id', :cust::int,
                             'amount', 42.50, 'currency', 'EUR', 'status', 'new'));
COMMIT;
