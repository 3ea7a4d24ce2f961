-- (e) txbox.inbox_claim on the same id distribution as (d).
\set mid case when random(1, 100) <= :dup_pct then random(:pre_lo + 1, :pre_lo + :preclaimed) else random(:new_lo, :new_hi) end
SELECT txbox.inbox_claim('billing', :mid);
