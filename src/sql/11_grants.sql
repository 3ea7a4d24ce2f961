------------------------------------------------------------------------
-- Privileges.  Nothing for PUBLIC; see README "Grants" for the roles.
------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA txbox FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA txbox FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA txbox FROM PUBLIC;
-- the status views call it for whoever reads them; it tells only whether
-- this database's manager waits for a worker slot, and why
GRANT EXECUTE ON FUNCTION txbox._manager_waiting() TO PUBLIC;
-- what every role may pass as the options of a relay or handler
GRANT EXECUTE ON FUNCTION txbox.options() TO PUBLIC;

-- A new txbox database: have the launcher start its manager at commit.
SELECT txbox._wake_at_commit('launcher');
