-- bench/handler/soak_billing.sql -- the consuming side of the soak, in
-- database billing: a handler doing one INSERT per message.
CREATE TABLE effects (message_id uuid NOT NULL, n bigint NOT NULL);

CREATE FUNCTION soak_handle(m txbox.message) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO effects (message_id, n) VALUES (m.message_id, (m.payload->>'order')::bigint);
END
$$;
