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

-- A handler asking for more workers than txbox.max_parallel is told so.
CREATE FUNCTION public.workers_noop(m txbox.message) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT txbox.create_handler('wide', NULL, 'public.workers_noop(txbox.message)', '{"parallel": 16}');
SELECT txbox.create_handler('narrow', NULL, 'public.workers_noop(txbox.message)', '{"parallel": 4}');
SELECT txbox.drop_handler('wide');
SELECT txbox.drop_handler('narrow');
DROP FUNCTION public.workers_noop(txbox.message);
