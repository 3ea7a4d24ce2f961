-- bench/relay/shop.sql -- the source database: txbox, PgQ, the payloads
-- and the business table the pgbench transactions write to.  psql
-- variables: keys (payload keys), host, port (billing's server).
CREATE EXTENSION txbox;
CREATE EXTENSION pgq;

-- 1000 payloads of :keys keys ("aa", "ab", ...) with integer values 0-999
-- that differ from payload to payload: messages are published with
-- payload g % 1000.
CREATE TABLE payloads AS
SELECT g AS id,
       (SELECT jsonb_object_agg(chr(97 + i / 26 % 26) || chr(97 + i % 26)
                                || CASE WHEN i >= 676 THEN (i / 676)::text ELSE '' END,
                                (g * 7 + i) % 1000)
          FROM generate_series(0, :keys - 1) i) AS p
  FROM generate_series(0, 999) g;
ALTER TABLE payloads ADD PRIMARY KEY (id);

CREATE TABLE orders (
	id			bigserial PRIMARY KEY,
	customer_id	int NOT NULL,
	amount		numeric(12,2) NOT NULL,
	status		text NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);

-- billing, reached over the unix socket; the relays belong to the
-- bootstrap superuser, which needs no password
CREATE SERVER billing FOREIGN DATA WRAPPER txbox_fdw
	OPTIONS (host :'host', port :'port', dbname 'billing');
CREATE USER MAPPING FOR CURRENT_USER SERVER billing OPTIONS (user :'user');
