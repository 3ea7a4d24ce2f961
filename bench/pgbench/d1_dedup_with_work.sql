-- (diagnostic) a consumer's whole transaction with the raw dedup of (d):
-- claim the message id, then do the work (one order row).
\set mid case when random(1, 100) <= :dup_pct then random(:pre_lo + 1, :pre_lo + :preclaimed) else random(:new_lo, :new_hi) end
\set cust random(1, 100000)
BEGIN;
INSERT INTO bench.dedup (consumer, message_id) VALUES ('billing', :mid) ON CONFLICT DO NOTHING;
INSERT INTO bench.orders (customer_id, amount, status) VALUES (:cust, 42.50, 'new');
COMMIT;
