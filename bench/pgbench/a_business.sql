-- (a) the business transaction alone: one order row.
\set cust random(1, 100000)
BEGIN;
INSERT INTO bench.orders (customer_id, amount, status) VALUES (:cust, 42.50, 'new') RETURNING id \gset
COMMIT;
