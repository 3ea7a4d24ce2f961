SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- inbox_receive: txbox._inbox_receive records who delivered (README,
-- "Targets"): txbox.inbox.source is the relay's login role, set by the
-- receiving side, then the label the sender passes.  One relay login
-- cannot pose as another.
--
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE ROLE regress_txbox_relay_a LOGIN;
CREATE ROLE regress_txbox_relay_b LOGIN;
CREATE ROLE regress_txbox_group;
GRANT regress_txbox_group TO regress_txbox_relay_b;
GRANT USAGE ON SCHEMA txbox TO regress_txbox_relay_a, regress_txbox_relay_b, regress_txbox_group;
GRANT EXECUTE ON FUNCTION txbox._inbox_receive(text, uuid[], text[], text[], jsonb[], jsonb[],
											   bytea[], timestamptz[])
  TO regress_txbox_relay_a, regress_txbox_relay_b, regress_txbox_group;

CREATE FUNCTION pg_temp.receive(label text, id uuid) RETURNS integer
LANGUAGE sql AS $$
	SELECT txbox._inbox_receive(label, ARRAY[id], ARRAY['orders'], ARRAY[NULL::text],
			ARRAY[NULL::jsonb], ARRAY['{}'::jsonb], ARRAY[NULL::bytea], ARRAY[now()])
$$;

-- each login delivers under the same label; b also as a role it may SET
SET SESSION AUTHORIZATION regress_txbox_relay_a;
SELECT pg_temp.receive('shop/to_billing', '0190f0e0-0000-7000-8000-0000000000a1') AS stored;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_txbox_relay_b;
SELECT pg_temp.receive('shop/to_billing', '0190f0e0-0000-7000-8000-0000000000b1') AS stored;
SET ROLE regress_txbox_group;
SELECT pg_temp.receive('regress_txbox_relay_a/shop/to_billing', '0190f0e0-0000-7000-8000-0000000000b2') AS stored;
RESET ROLE;
RESET SESSION AUTHORIZATION;

SELECT message_id, source FROM txbox.inbox
 WHERE message_id::text LIKE '0190f0e0-0000-7000-8000-0000000000%' ORDER BY message_id;

-- cleanup
DELETE FROM txbox.inbox WHERE message_id::text LIKE '0190f0e0-0000-7000-8000-0000000000%';
REVOKE ALL ON FUNCTION txbox._inbox_receive(text, uuid[], text[], text[], jsonb[], jsonb[],
											bytea[], timestamptz[])
  FROM regress_txbox_relay_a, regress_txbox_relay_b, regress_txbox_group;
REVOKE ALL ON SCHEMA txbox FROM regress_txbox_relay_a, regress_txbox_relay_b, regress_txbox_group;
DROP ROLE regress_txbox_relay_a, regress_txbox_relay_b, regress_txbox_group;
