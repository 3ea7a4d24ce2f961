-- (d) a consumer's raw dedup: INSERT ... ON CONFLICT DO NOTHING into a
-- hand-made table with PRIMARY KEY (consumer, message_id).
-- :dup_pct percent of the ids were claimed before the run (see README).
\set mid case when random(1, 100) <= :dup_pct then random(:pre_lo + 1, :pre_lo + :preclaimed) else random(:new_lo, :new_hi) end
INSERT INTO bench.dedup (consumer, message_id) VALUES ('billing', :mid) ON CONFLICT DO NOTHING;
