-- bench/relay/billing.sql -- the target database: txbox (the relays
-- deliver into txbox.inbox) and the tables of the baselines and of the
-- PgQ consumer, shaped like txbox.inbox with message_id as primary key.
CREATE EXTENSION txbox;

CREATE TABLE baseline_inbox (
	message_id		uuid PRIMARY KEY,
	topic			text NOT NULL,
	key				text,
	headers			jsonb,
	payload			jsonb,
	payload_bytes	bytea,
	source			text NOT NULL,
	published_at	timestamptz NOT NULL,
	received_at		timestamptz NOT NULL
);
CREATE TABLE pgq_inbox (LIKE baseline_inbox INCLUDING ALL);
