-- (d) as d_dedup_insert.sql, 100% new ids that sort among the pre-claimed
-- ones (a pre-claimed id, a dash, a random number) instead of above them:
-- the baseline of e_txbox_claim_unordered.sql.
\set r random(:pre_lo + 1, :pre_lo + :preclaimed)
\set s random(1, 1000000000)
INSERT INTO bench.dedup (consumer, message_id) VALUES ('billing', :r::text || '-' || :s::text) ON CONFLICT DO NOTHING;
