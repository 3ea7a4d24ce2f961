------------------------------------------------------------------------
-- Idempotency keys
------------------------------------------------------------------------

CREATE TABLE txbox.idempotency_keys (
	gen				smallint NOT NULL,
	scope			text NOT NULL,
	key				text NOT NULL,
	fingerprint		text,
	txid			xid8 NOT NULL,
	response		jsonb,
	response_status	integer,
	created_at		timestamptz NOT NULL,
	expires_at		timestamptz NOT NULL,
	completed_at	timestamptz,
	PRIMARY KEY (scope, key, gen)
) PARTITION BY LIST (gen);
CREATE TABLE txbox.idempotency_keys_0 PARTITION OF txbox.idempotency_keys FOR VALUES IN (0);
CREATE TABLE txbox.idempotency_keys_1 PARTITION OF txbox.idempotency_keys FOR VALUES IN (1);
COMMENT ON TABLE txbox.idempotency_keys IS
	'idempotency keys and their stored responses, kept until expires_at';

