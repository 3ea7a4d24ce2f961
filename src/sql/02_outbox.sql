------------------------------------------------------------------------
-- Outbox
------------------------------------------------------------------------

-- Publish order.  Within one transaction ids follow publish order; across
-- transactions relays deliver by commit (snapshot batches on txid), not by id.
CREATE SEQUENCE txbox.outbox_id_seq;

CREATE TABLE txbox.outbox (
	gen				smallint NOT NULL,
	id				bigint NOT NULL,
	txid			xid8 NOT NULL,
	message_id		uuid NOT NULL,
	topic			text NOT NULL,
	key				text,
	headers			jsonb,
	payload			jsonb,
	payload_bytes	bytea,
	published_at	timestamptz NOT NULL,
	relay			text			-- NULL: every relay; else a replayed dead letter for that relay
	-- exactly one of payload and payload_bytes is set (publish.c ensures it;
	-- no CHECK here: it would cost every publish)
) PARTITION BY LIST (gen);
CREATE TABLE txbox.outbox_0 PARTITION OF txbox.outbox FOR VALUES IN (0);
CREATE TABLE txbox.outbox_1 PARTITION OF txbox.outbox FOR VALUES IN (1);
CREATE TABLE txbox.outbox_2 PARTITION OF txbox.outbox FOR VALUES IN (2);
CREATE INDEX outbox_txid_idx ON txbox.outbox (txid, id);
COMMENT ON TABLE txbox.outbox IS
	'messages published with txbox.publish / txbox.publish_bytes and still retained';

