SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- workers: the settings that share the worker slots out (README
-- "Worker slots and caps"), and the status of this database's manager.
--
\set VERBOSITY default
\set SHOW_CONTEXT never

-- Only a superuser sets them, in the configuration file (reload).
SELECT name, setting, context, min_val, max_val, boot_val
FROM pg_settings
WHERE name IN ('txbox.max_workers_per_database', 'txbox.max_workers_per_role',
			   'txbox.max_parallel', 'txbox.reserved_manager_slots')
ORDER BY name;
SET txbox.max_parallel = 16;
SET txbox.max_workers_per_role = 0;

-- This database's manager was not refused a slot: nothing to show.
SELECT reason IS NULL AS manager_not_waiting, since IS NULL AS no_since
FROM txbox._manager_waiting();
