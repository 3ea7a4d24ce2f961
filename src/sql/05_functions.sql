------------------------------------------------------------------------
-- Functions.  Every one pins search_path (test: sql/security.sql), except
-- the hot C functions publish, publish_bytes and inbox_claim: their SQL
-- qualifies every name, so the caller's search_path resolves nothing
-- (sql/security.sql plants look-alikes in public and pg_temp and shows
-- none is used), and the pin cost each call about 6% (bench/README.md).
------------------------------------------------------------------------

CREATE FUNCTION txbox.publish(topic text, payload jsonb, key text DEFAULT NULL,
							  headers jsonb DEFAULT NULL,
							  message_id uuid DEFAULT NULL)
RETURNS uuid
LANGUAGE c VOLATILE PARALLEL UNSAFE
SECURITY DEFINER
AS 'MODULE_PATHNAME', 'txbox_publish';
COMMENT ON FUNCTION txbox.publish(text, jsonb, text, jsonb, uuid) IS
	'publish a JSON message in the current transaction; returns its message id';

CREATE FUNCTION txbox.publish_bytes(topic text, payload bytea, key text DEFAULT NULL,
									headers jsonb DEFAULT NULL,
									message_id uuid DEFAULT NULL)
RETURNS uuid
LANGUAGE c VOLATILE PARALLEL UNSAFE
SECURITY DEFINER
AS 'MODULE_PATHNAME', 'txbox_publish_bytes';
COMMENT ON FUNCTION txbox.publish_bytes(text, bytea, text, jsonb, uuid) IS
	'publish a binary message (delivered byte-exact) in the current transaction';

CREATE FUNCTION txbox.inbox_claim(consumer text, message_id text)
RETURNS boolean
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'txbox_api';
CREATE FUNCTION txbox._inbox_claim(caller regrole, consumer text, message_id text)
RETURNS boolean
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'txbox_inbox_claim';
COMMENT ON FUNCTION txbox.inbox_claim(text, text) IS
	'true the first time consumer claims message_id (do the work in this transaction), false for a duplicate';

CREATE FUNCTION txbox.idempotency_begin(scope text, key text,
										fingerprint text DEFAULT NULL,
										wait boolean DEFAULT true)
RETURNS TABLE (state text, response jsonb, response_status integer)
LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_idempotency_begin';
COMMENT ON FUNCTION txbox.idempotency_begin(text, text, text, boolean) IS
	'take an idempotency key: new (held by this transaction), completed (stored response) or in_progress';

CREATE FUNCTION txbox.idempotency_complete(scope text, key text, response jsonb,
										   response_status integer DEFAULT 200)
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_idempotency_complete';
COMMENT ON FUNCTION txbox.idempotency_complete(text, text, jsonb, integer) IS
	'store the response of the request holding this idempotency key, with its effects';

CREATE FUNCTION txbox._switch_generation(relname name)
RETURNS smallint
LANGUAGE c STRICT VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_switch_generation';
COMMENT ON FUNCTION txbox._switch_generation(name) IS
	'private: truncate the oldest generation of a rotated table and make it current';

