-- (diagnostic) as (e), through a copy of txbox.inbox_claim declared without
-- SECURITY DEFINER and SET search_path.
\set mid case when random(1, 100) <= :dup_pct then random(:pre_lo + 1, :pre_lo + :preclaimed) else random(:new_lo, :new_hi) end
SELECT bench.inbox_claim_plain('billing', :mid);
