SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- relay: the relay API (SPEC 2.2) -- create/drop/pause/resume/alter,
-- relay_status, txbox_fdw option validation, and every error path.
-- Workers run in this instance too; the relays here are notify relays or
-- point at servers that are never reached before they are dropped.
--
\i sql/include/try.sql

-- txbox_fdw: endpoint options on servers, credentials on user mappings
SELECT pg_temp.try($$CREATE SERVER bad1 FOREIGN DATA WRAPPER txbox_fdw OPTIONS (user 'x')$$) AS credential_on_server;
SELECT pg_temp.try($$CREATE SERVER bad2 FOREIGN DATA WRAPPER txbox_fdw OPTIONS (nonsense '1')$$) AS unknown_option;
SELECT pg_temp.try($$CREATE SERVER bad3 FOREIGN DATA WRAPPER txbox_fdw OPTIONS (application_name 'x', options '-c x=1')$$) AS reserved_option;
CREATE SERVER target FOREIGN DATA WRAPPER txbox_fdw
	OPTIONS (host '127.0.0.1', port '1', dbname 'nowhere', connect_timeout '1');
SELECT pg_temp.try($$CREATE USER MAPPING FOR CURRENT_USER SERVER target OPTIONS (host 'x')$$) AS endpoint_on_mapping;
CREATE FOREIGN DATA WRAPPER not_txbox;
CREATE SERVER other_fdw FOREIGN DATA WRAPPER not_txbox;

-- create_relay: bad arguments
SELECT pg_temp.try($$SELECT txbox.create_relay('bad name', 'notify', NULL, '{"channel": "c"}')$$) AS bad_name;
SELECT pg_temp.try($$SELECT txbox.create_relay(NULL, 'notify', NULL, '{"channel": "c"}')$$) AS null_name;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'pigeon', NULL, '{}')$$) AS unknown_target;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'notify', NULL, '{}')$$) AS notify_without_channel;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'notify', NULL, '{"channel": 7}')$$) AS channel_not_text;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'postgres', NULL, '{}')$$) AS postgres_without_server;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'postgres', NULL, '{"server": "missing"}')$$) AS missing_server;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'postgres', NULL, '{"server": "other_fdw"}')$$) AS server_of_other_fdw;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'notify', ARRAY[]::text[], '{"channel": "c"}')$$) AS empty_topics;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'notify', ARRAY['ok', 'not ok'], '{"channel": "c"}')$$) AS bad_topic;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'notify', NULL, '{"channel": "c", "colour": "red"}')$$) AS unknown_option;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'notify', NULL, '{"channel": "c", "batch_size": 0}')$$) AS batch_size_zero;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'notify', NULL, '{"channel": "c", "batch_size": 1.5}')$$) AS batch_size_fraction;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'notify', NULL, '{"channel": "c", "max_attempts": "x"}')$$) AS max_attempts_text;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'notify', NULL, '{"channel": "c", "backoff_max": "soon"}')$$) AS backoff_not_interval;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'notify', NULL, '{"channel": "c", "backoff_max": "-1s"}')$$) AS backoff_negative;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'notify', NULL, '{"channel": "c", "from": "yesterday"}')$$) AS bad_from;
SELECT pg_temp.try($$SELECT txbox.create_relay('r', 'notify', NULL, '[1]')$$) AS options_not_object;
SELECT count(*) AS relays_after_errors FROM txbox.relays;

-- with the owner's user mapping (a missing one: see the roles below)
CREATE USER MAPPING FOR CURRENT_USER SERVER target;
SELECT txbox.create_relay('to_target', 'postgres', ARRAY['orders'],
	'{"server": "target", "batch_size": 10, "connect_timeout": "1s", "backoff_max": "1s"}');
SELECT txbox.create_relay('events', 'notify', NULL, '{"channel": "orders_events"}');
SELECT pg_temp.try($$SELECT txbox.create_relay('events', 'notify', NULL, '{"channel": "c"}')$$) AS duplicate_name;
SELECT name, target, topics, owner = current_user::regrole AS owned_by_creator, state IN ('running', 'retrying', 'failed') AS state_ok,
	   lag_messages, delivered, options
  FROM txbox.relay_status ORDER BY name;

-- a relay created now starts at the current snapshot; 'beginning' at the start
SELECT name, position::text = '1:1:' AS from_beginning FROM txbox.relay_status ORDER BY name;
SELECT txbox.create_relay('old_news', 'notify', NULL, '{"channel": "c", "from": "beginning"}');
SELECT position::text = '1:1:' AS from_beginning FROM txbox.relay_status WHERE name = 'old_news';
SELECT txbox.drop_relay('old_news');

-- pause / resume / alter / drop
SELECT txbox.pause_relay('events');
SELECT name, state FROM txbox.relay_status WHERE name = 'events';
SELECT txbox.resume_relay('events');
SELECT state <> 'paused' AS resumed FROM txbox.relay_status WHERE name = 'events';
SELECT txbox.alter_relay('events', '{"batch_size": 50, "channel": "other"}');
SELECT options FROM txbox.relay_status WHERE name = 'events';
SELECT txbox.alter_relay('events', '{"batch_size": null}');
SELECT options FROM txbox.relay_status WHERE name = 'events';
SELECT pg_temp.try($$SELECT txbox.alter_relay('events', '{"from": "beginning"}')$$) AS alter_from;
SELECT pg_temp.try($$SELECT txbox.alter_relay('events', '{"colour": "red"}')$$) AS alter_unknown_option;
SELECT pg_temp.try($$SELECT txbox.alter_relay('events', '{"channel": null}')$$) AS alter_drops_channel;
SELECT pg_temp.try($$SELECT txbox.alter_relay('to_target', '{"server": "missing"}')$$) AS alter_missing_server;
SELECT pg_temp.try($$SELECT txbox.alter_relay('events', NULL)$$) AS alter_null;
SELECT pg_temp.try($$SELECT txbox.pause_relay('nope')$$) AS pause_unknown;
SELECT pg_temp.try($$SELECT txbox.resume_relay('nope')$$) AS resume_unknown;
SELECT pg_temp.try($$SELECT txbox.drop_relay('nope')$$) AS drop_unknown;
SELECT pg_temp.try($$SELECT txbox.alter_relay('nope', '{}')$$) AS alter_unknown;
SELECT pg_temp.try($$SELECT txbox.replay_dead_letter(424242)$$) AS replay_unknown;

-- roles: relays belong to their creator; others may not change them
CREATE ROLE regress_relay_admin LOGIN;
CREATE ROLE regress_relay_other LOGIN;
CREATE ROLE regress_relay_nologin;
GRANT USAGE ON SCHEMA txbox TO regress_relay_admin, regress_relay_other, regress_relay_nologin;
GRANT EXECUTE ON FUNCTION txbox.create_relay(text, text, text[], jsonb),
	txbox.drop_relay(text), txbox.pause_relay(text)
	TO regress_relay_admin, regress_relay_other, regress_relay_nologin;
-- a relay runs as its owner, which must be able to log in
SET ROLE regress_relay_nologin;
SELECT pg_temp.try($$SELECT txbox.create_relay('nologin', 'notify', NULL, '{"channel": "c"}')$$) AS owner_without_login;
RESET ROLE;
GRANT USAGE ON FOREIGN SERVER target TO regress_relay_admin;
SET ROLE regress_relay_admin;
SELECT pg_temp.try($$SELECT txbox.create_relay('admins', 'postgres', NULL, '{"server": "target"}')$$) AS without_own_mapping;
RESET ROLE;
CREATE USER MAPPING FOR regress_relay_admin SERVER target OPTIONS (user 'x', password 'secret');
SELECT pg_temp.try($$CREATE USER MAPPING FOR regress_relay_other SERVER target OPTIONS (password_required 'false')$$) AS superuser_may_waive_password;
SET ROLE regress_relay_admin;
SELECT pg_temp.try($$ALTER USER MAPPING FOR regress_relay_admin SERVER target OPTIONS (ADD password_required 'false')$$) AS waive_password_not_superuser;
SELECT txbox.create_relay('admins', 'postgres', NULL, '{"server": "target"}');
SELECT pg_temp.try($$SELECT * FROM txbox.relays$$) AS read_relays_table;
SELECT pg_temp.try($$SELECT * FROM pg_user_mappings$$) IS NOT NULL AS mappings_view_ok;
SET ROLE regress_relay_other;
SELECT pg_temp.try($$SELECT txbox.create_relay('others', 'postgres', NULL, '{"server": "target"}')$$) AS server_without_usage;
SELECT pg_temp.try($$SELECT txbox.drop_relay('admins')$$) AS drop_someone_elses;
SELECT pg_temp.try($$SELECT txbox.pause_relay('admins')$$) AS pause_someone_elses;
SELECT pg_temp.try($$SELECT txbox.alter_relay('admins', '{}')$$) AS alter_not_granted;
RESET ROLE;
SELECT name, owner FROM txbox.relay_status WHERE name = 'admins';
SET ROLE regress_relay_admin;
SELECT txbox.drop_relay('admins');
RESET ROLE;

-- clean up
SELECT txbox.drop_relay('events');
SELECT txbox.drop_relay('to_target');
SELECT count(*) AS relays_left FROM txbox.relays;
DROP USER MAPPING FOR regress_relay_admin SERVER target;
DROP USER MAPPING FOR regress_relay_other SERVER target;
DROP USER MAPPING FOR CURRENT_USER SERVER target;
DROP SERVER target;
DROP SERVER other_fdw;
DROP FOREIGN DATA WRAPPER not_txbox;
REVOKE ALL ON SCHEMA txbox FROM regress_relay_admin, regress_relay_other, regress_relay_nologin;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA txbox FROM regress_relay_admin, regress_relay_other, regress_relay_nologin;
DROP ROLE regress_relay_admin;
DROP ROLE regress_relay_other;
DROP ROLE regress_relay_nologin;
