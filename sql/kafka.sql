SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- kafka: the kafka relay target's SQL surface -- txbox_kafka option
-- validation (servers, user mappings, superuser-only files) and the kafka
-- relay options.  The relays here are paused at once and point at a port
-- nothing listens on; their delivery is tested by TAP 100 and 101.
--
\i sql/include/try.sql

-- servers: bootstrap_servers and allowed producer properties only
SELECT pg_temp.try($$CREATE SERVER k0 FOREIGN DATA WRAPPER txbox_kafka$$) AS no_bootstrap;
SELECT pg_temp.try($$CREATE SERVER k0 FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers '127.0.0.1:1', acks '1')$$) AS guarantee_refused;
SELECT pg_temp.try($$CREATE SERVER k0 FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers '127.0.0.1:1', "enable.idempotence" 'false')$$) AS idempotence_refused;
SELECT pg_temp.try($$CREATE SERVER k0 FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers '127.0.0.1:1', sasl_password 'x')$$) AS secret_on_server;
SELECT pg_temp.try($$CREATE SERVER k0 FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers '127.0.0.1:1', "compression.type" 'brotli')$$) AS bad_value;
SELECT pg_temp.try($$CREATE SERVER k0 FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers '127.0.0.1:1', "linger.ms" 'soon')$$) AS bad_number;
SELECT pg_temp.try($$CREATE SERVER events FOREIGN DATA WRAPPER txbox_kafka
  OPTIONS (bootstrap_servers '127.0.0.1:1', "compression.type" 'zstd', "linger.ms" '20',
           "security.protocol" 'plaintext', "client.id" 'shop')$$) AS server_ok;
SELECT pg_temp.try($$ALTER SERVER events OPTIONS (DROP bootstrap_servers)$$) AS drop_bootstrap;
-- user mappings: the secrets only
SELECT pg_temp.try($$CREATE USER MAPPING FOR CURRENT_USER SERVER events OPTIONS (bootstrap_servers 'x:1')$$) AS endpoint_on_mapping;
SELECT pg_temp.try($$CREATE USER MAPPING FOR CURRENT_USER SERVER events OPTIONS (user 'x')$$) AS libpq_option;
SELECT pg_temp.try($$CREATE USER MAPPING FOR CURRENT_USER SERVER events OPTIONS (sasl_username 'shop', sasl_password 'secret', ssl_key_password 'pw')$$) AS mapping_ok;

-- files on this server: superuser-only
CREATE ROLE regress_kafka_owner LOGIN;
GRANT USAGE ON FOREIGN DATA WRAPPER txbox_kafka TO regress_kafka_owner;
GRANT USAGE ON SCHEMA txbox TO regress_kafka_owner;
GRANT EXECUTE ON FUNCTION txbox.create_relay(text, text, text[], jsonb) TO regress_kafka_owner;
SET ROLE regress_kafka_owner;
SELECT pg_temp.try($$CREATE SERVER k1 FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers '127.0.0.1:1', "ssl.ca.location" '/etc/ssl/certs')$$) AS ca_file_not_superuser;
SELECT pg_temp.try($$CREATE SERVER k1 FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers '127.0.0.1:1', "ssl.key.location" '/etc/ssl/private/x.key')$$) AS key_file_not_superuser;
-- Kerberos: the server account's credentials (kinit with its keytab)
SELECT pg_temp.try($$CREATE SERVER k1 FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers '127.0.0.1:1', "sasl.mechanism" 'gssapi')$$) AS gssapi_not_superuser;
SELECT pg_temp.try($$CREATE SERVER k1 FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers '127.0.0.1:1', "sasl.mechanisms" 'GSSAPI')$$) AS gssapi_mechanisms_not_superuser;
SELECT pg_temp.try($$CREATE SERVER k3 FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers '127.0.0.1:1', "sasl.mechanism" 'SCRAM-SHA-512')$$) AS scram_not_superuser_ok;
DROP SERVER k3;
SELECT pg_temp.try($$CREATE SERVER k1 FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers '127.0.0.1:1')$$) AS server_not_superuser_ok;
-- internal addresses (SSRF): allow_private is superuser-only
SELECT pg_temp.try($$CREATE SERVER k4 FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers '127.0.0.1:1', allow_private 'true')$$) AS allow_private_not_superuser;
SELECT pg_temp.try($$ALTER SERVER k1 OPTIONS (ADD allow_private 'false')$$) AS add_allow_private_not_superuser;
RESET ROLE;
SELECT pg_temp.try($$CREATE SERVER k2 FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers '127.0.0.1:1', "ssl.ca.location" '/etc/ssl/certs')$$) AS ca_file_superuser;
SELECT pg_temp.try($$ALTER SERVER k1 OPTIONS (ADD allow_private 'maybe')$$) AS allow_private_not_boolean;
SELECT pg_temp.try($$ALTER SERVER k1 OPTIONS (ADD allow_private 'true')$$) AS allow_private_superuser;
-- after that, only a superuser may change the server
SET ROLE regress_kafka_owner;
SELECT pg_temp.try($$ALTER SERVER k1 OPTIONS (ADD "linger.ms" '5')$$) AS owner_alters_allow_private_server;
RESET ROLE;

-- relays: a txbox_kafka server with a user mapping, and kafka's options
SELECT pg_temp.try($$SELECT txbox.create_relay('k', 'kafka', ARRAY['orders'])$$) AS no_server;
SELECT pg_temp.try($$SELECT txbox.create_relay('k', 'kafka', ARRAY['orders'], '{"server": "nope"}')$$) AS unknown_server;
SET ROLE regress_kafka_owner;
SELECT pg_temp.try($$SELECT txbox.create_relay('k', 'kafka', ARRAY['orders'], '{"server": "k1"}')$$) AS no_user_mapping;
RESET ROLE;
SELECT pg_temp.try($$SELECT txbox.create_relay('k', 'kafka', ARRAY['orders'], '{"server": "events", "channel": "x"}')$$) AS notify_option;
SELECT pg_temp.try($$SELECT txbox.create_relay('k', 'kafka', ARRAY['orders'], '{"server": "events", "exactly_once": "yes"}')$$) AS exactly_once_not_boolean;
SELECT pg_temp.try($$SELECT txbox.create_relay('k', 'kafka', ARRAY['orders'], '{"server": "events", "cloudevents": 1}')$$) AS cloudevents_not_boolean;
SELECT pg_temp.try($$SELECT txbox.create_relay('k', 'kafka', ARRAY['orders'], '{"server": "events", "topic_prefix": "a b"}')$$) AS bad_prefix;
SELECT pg_temp.try($$SELECT txbox.create_relay('k', 'kafka', ARRAY['orders'], '{"server": "events", "topic_map": ["orders"]}')$$) AS map_not_object;
SELECT pg_temp.try($$SELECT txbox.create_relay('k', 'kafka', ARRAY['orders'], '{"server": "events", "topic_map": {"orders": "a/b"}}')$$) AS map_bad_name;
SELECT pg_temp.try($$SELECT txbox.create_relay('k', 'postgres', ARRAY['orders'], '{"server": "events"}')$$) AS kafka_server_for_postgres;
BEGIN;
SELECT pg_temp.try($$SELECT txbox.create_relay('k', 'kafka', ARRAY['orders'],
  '{"server": "events", "exactly_once": true, "cloudevents": true, "topic_prefix": "shop.",
    "topic_map": {"orders": "orders-v2"}, "batch_size": 500}')$$) AS relay_ok;
SELECT txbox.pause_relay('k');
COMMIT;
SELECT name, target, topics, options FROM txbox.relay_status WHERE name = 'k';
SELECT pg_temp.try($$SELECT txbox.alter_relay('k', '{"exactly_once": null, "topic_prefix": ""}')$$) AS alter_ok;
SELECT pg_temp.try($$SELECT txbox.alter_relay('k', '{"server": "nope"}')$$) AS alter_unknown_server;
SELECT options FROM txbox.relays WHERE name = 'k';
SELECT txbox.drop_relay('k');

DROP USER MAPPING FOR CURRENT_USER SERVER events;
DROP SERVER events, k1, k2;
REVOKE USAGE ON FOREIGN DATA WRAPPER txbox_kafka FROM regress_kafka_owner;
REVOKE USAGE ON SCHEMA txbox FROM regress_kafka_owner;
REVOKE EXECUTE ON FUNCTION txbox.create_relay(text, text, text[], jsonb) FROM regress_kafka_owner;
DROP ROLE regress_kafka_owner;
