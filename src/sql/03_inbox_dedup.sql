------------------------------------------------------------------------
-- Inbox deduplication records (txbox.inbox_claim)
------------------------------------------------------------------------

-- Ids compare bytewise (COLLATE "C": equality is the same in every
-- deterministic collation, and the index's comparisons skip strcoll).
CREATE TABLE txbox.inbox_dedup (
	gen			smallint NOT NULL,
	consumer	text COLLATE "C" NOT NULL,
	message_id	text COLLATE "C" NOT NULL,
	claimed_at	timestamptz NOT NULL,
	PRIMARY KEY (consumer, message_id, gen)
) PARTITION BY LIST (gen);
CREATE TABLE txbox.inbox_dedup_0 PARTITION OF txbox.inbox_dedup FOR VALUES IN (0);
CREATE TABLE txbox.inbox_dedup_1 PARTITION OF txbox.inbox_dedup FOR VALUES IN (1);
COMMENT ON TABLE txbox.inbox_dedup IS
	'one row per (consumer, message id) processed, kept for txbox.dedup_retention';

