SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- http: the webhook target's wrapper txbox_http (url, allow_private and ca_file on
-- servers, secrets on user mappings) and its relay options.  No message is
-- published: no request is ever sent (test/t/09x_http*.pl deliver).
--
\i sql/include/try.sql

-- servers: an http(s) url naming a host, without credentials
SELECT pg_temp.try($$CREATE SERVER h FOREIGN DATA WRAPPER txbox_http OPTIONS (url 'ftp://example.com/x')$$) AS ftp_url;
SELECT pg_temp.try($$CREATE SERVER h FOREIGN DATA WRAPPER txbox_http OPTIONS (url 'file:///etc/passwd')$$) AS file_url;
SELECT pg_temp.try($$CREATE SERVER h FOREIGN DATA WRAPPER txbox_http OPTIONS (url 'example.com/hooks')$$) AS no_scheme;
SELECT pg_temp.try($$CREATE SERVER h FOREIGN DATA WRAPPER txbox_http OPTIONS (url 'https://user:pw@example.com/hooks')$$) AS password_in_url;
SELECT pg_temp.try($$CREATE SERVER h FOREIGN DATA WRAPPER txbox_http OPTIONS (url 'https://user@example.com/hooks')$$) AS user_in_url;
SELECT pg_temp.try($$CREATE SERVER h FOREIGN DATA WRAPPER txbox_http OPTIONS (url 'https://exa mple.com/')$$) AS malformed_url;
SELECT pg_temp.try($$CREATE SERVER h FOREIGN DATA WRAPPER txbox_http OPTIONS (url 'https://example.com', signing_secret 'whsec_AAAA')$$) AS secret_on_server;
SELECT pg_temp.try($$CREATE SERVER h FOREIGN DATA WRAPPER txbox_http OPTIONS (host 'example.com')$$) AS unknown_option;
SELECT pg_temp.try($$CREATE SERVER h FOREIGN DATA WRAPPER txbox_http OPTIONS (url 'https://example.com', allow_private 'maybe')$$) AS allow_private_not_boolean;
SELECT pg_temp.try($$CREATE FOREIGN DATA WRAPPER txbox_http2 VALIDATOR txbox._http_validator OPTIONS (url 'https://example.com')$$) AS option_on_wrapper;
CREATE SERVER hooks FOREIGN DATA WRAPPER txbox_http OPTIONS (url 'https://hooks.example.invalid/txbox');

-- user mappings: Standard Webhooks secrets and a bearer token
SELECT pg_temp.try($$CREATE USER MAPPING FOR CURRENT_USER SERVER hooks OPTIONS (url 'https://example.com')$$) AS url_on_mapping;
SELECT pg_temp.try($$CREATE USER MAPPING FOR CURRENT_USER SERVER hooks OPTIONS (signing_secret 'whsec_!!!')$$) AS secret_not_base64;
SELECT pg_temp.try($$CREATE USER MAPPING FOR CURRENT_USER SERVER hooks OPTIONS (signing_secret 'whsec_')$$) AS secret_empty;
SELECT pg_temp.try($$CREATE USER MAPPING FOR CURRENT_USER SERVER hooks OPTIONS (bearer_token 'a b')$$) AS token_with_space;
CREATE USER MAPPING FOR CURRENT_USER SERVER hooks
	OPTIONS (signing_secret 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', signing_secret_previous 'c2VjcmV0', bearer_token 't0k3n');

-- allow_private is superuser-only
CREATE ROLE regress_http_user LOGIN;
GRANT USAGE ON FOREIGN DATA WRAPPER txbox_http TO regress_http_user;
GRANT USAGE ON SCHEMA txbox TO regress_http_user;
GRANT EXECUTE ON FUNCTION txbox.create_relay(text, text, text[], jsonb), txbox.drop_relay(text)
	TO regress_http_user;
SET ROLE regress_http_user;
SELECT pg_temp.try($$CREATE SERVER mine FOREIGN DATA WRAPPER txbox_http OPTIONS (url 'http://10.0.0.1/', allow_private 'true')$$) AS allow_private_not_superuser;
SELECT pg_temp.try($$CREATE SERVER mine FOREIGN DATA WRAPPER txbox_http OPTIONS (url 'http://10.0.0.1/', allow_private 'false')$$) AS allow_private_false_not_superuser;
CREATE SERVER mine FOREIGN DATA WRAPPER txbox_http OPTIONS (url 'https://hooks.example.invalid/');
SELECT pg_temp.try($$ALTER SERVER mine OPTIONS (ADD allow_private 'true')$$) AS alter_allow_private_not_superuser;
-- so is ca_file: the relay would read a file of the server's
SELECT pg_temp.try($$ALTER SERVER mine OPTIONS (ADD ca_file '/etc/ssl/certs/ca-certificates.crt')$$) AS ca_file_not_superuser;
RESET ROLE;
CREATE SERVER private_ca FOREIGN DATA WRAPPER txbox_http
	OPTIONS (url 'https://hooks.example.invalid/', ca_file '/etc/ssl/private-ca.pem');
DROP SERVER private_ca;
ALTER SERVER mine OPTIONS (ADD allow_private 'true');
SET ROLE regress_http_user;
SELECT pg_temp.try($$ALTER SERVER mine OPTIONS (SET url 'http://10.0.0.2/')$$) AS alter_url_of_allow_private_server;

-- relays: the server must be a txbox_http server the owner may use, with a
-- user mapping
SELECT pg_temp.try($$SELECT txbox.create_relay('h', 'http', NULL, '{"server": "hooks"}')$$) AS no_usage_on_server;
SELECT pg_temp.try($$SELECT txbox.create_relay('h', 'http', NULL, '{"server": "mine"}')$$) AS no_user_mapping;
RESET ROLE;
SELECT pg_temp.try($$SELECT txbox.create_relay('h', 'http', NULL, '{}')$$) AS no_server;
SELECT pg_temp.try($$SELECT txbox.create_relay('h', 'http', NULL, '{"server": "nowhere"}')$$) AS unknown_server;
CREATE SERVER pg_target FOREIGN DATA WRAPPER txbox_fdw OPTIONS (dbname 'nowhere');
SELECT pg_temp.try($$SELECT txbox.create_relay('h', 'http', NULL, '{"server": "pg_target"}')$$) AS txbox_fdw_server;
SELECT pg_temp.try($$SELECT txbox.create_relay('h', 'postgres', NULL, '{"server": "hooks"}')$$) AS http_server_for_postgres;
SELECT pg_temp.try($$SELECT txbox.create_relay('h', 'http', NULL, '{"server": "hooks", "concurrency": 0}')$$) AS concurrency_zero;
SELECT pg_temp.try($$SELECT txbox.create_relay('h', 'http', NULL, '{"server": "hooks", "concurrency": 1000}')$$) AS concurrency_too_high;
SELECT pg_temp.try($$SELECT txbox.create_relay('h', 'http', NULL, '{"server": "hooks", "timeout": "0s"}')$$) AS timeout_zero;
SELECT pg_temp.try($$SELECT txbox.create_relay('h', 'http', NULL, '{"server": "hooks", "format": "soap"}')$$) AS unknown_format;
SELECT pg_temp.try($$SELECT txbox.create_relay('h', 'http', NULL, '{"server": "hooks", "channel": "c"}')$$) AS channel_option;
SELECT pg_temp.try($$SELECT txbox.create_relay('h', 'notify', NULL, '{"channel": "c", "concurrency": 2}')$$) AS concurrency_for_notify;
SELECT txbox.create_relay('h', 'http', ARRAY['orders'],
	'{"server": "hooks", "concurrency": 16, "timeout": "5s", "format": "cloudevents"}');
SELECT pg_temp.try($$SELECT txbox.alter_relay('h', '{"format": "xml"}')$$) AS alter_unknown_format;
SELECT pg_temp.try($$SELECT txbox.alter_relay('h', '{"server": "pg_target"}')$$) AS alter_to_txbox_fdw_server;
SELECT txbox.alter_relay('h', '{"concurrency": 4, "format": null}');
-- the secrets are in the user mapping, never in the relay's status
SELECT name, target, options FROM txbox.relay_status WHERE name = 'h';
SELECT txbox.drop_relay('h');

-- clean up
DROP USER MAPPING FOR CURRENT_USER SERVER hooks;
DROP SERVER hooks;
DROP SERVER mine;
DROP SERVER pg_target;
REVOKE ALL ON SCHEMA txbox FROM regress_http_user;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA txbox FROM regress_http_user;
REVOKE ALL ON FOREIGN DATA WRAPPER txbox_http FROM regress_http_user;
DROP ROLE regress_http_user;
