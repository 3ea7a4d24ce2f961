-- (e) txbox.inbox_claim on the ids of d_dedup_insert_unordered.sql: after a
-- rotation they sort below the older generation's largest id, so every
-- claim looks for its id there (src/inbox.c, claim_above_older).
\set r random(:pre_lo + 1, :pre_lo + :preclaimed)
\set s random(1, 1000000000)
SELECT txbox.inbox_claim('billing', :r::text || '-' || :s::text);
