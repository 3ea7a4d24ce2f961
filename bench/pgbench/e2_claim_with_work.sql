-- (diagnostic) as d1_dedup_with_work.sql, claiming with txbox.inbox_claim.
\set mid case when random(1, 100) <= :dup_pct then random(:pre_lo + 1, :pre_lo + :preclaimed) else random(:new_lo, :new_hi) end
\set cust random(1, 100000)
BEGIN;
SELECT txbox.inbox_claim('billing', :mid);
INSERT INTO bench.orders (customer_id, amount, status) VALUES (:cust, 42.50, 'new');
COMMIT;
