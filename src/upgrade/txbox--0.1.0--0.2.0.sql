/*-------------------------------------------------------------------------
 * txbox--0.1.0--0.2.0.sql
 *		ALTER EXTENSION txbox UPDATE from 0.1.0: every schema change made
 *		in src/sql/ since 0.1.0, in the order it was made.  A new function
 *		here is revoked from PUBLIC like every other (src/sql/11_grants.sql).
 *		test/t/080_upgrade.pl checks that 0.1.0 + this script gives the
 *		same catalog as a fresh 0.2.0 install.
 *-------------------------------------------------------------------------
 */
\echo Use "ALTER EXTENSION txbox UPDATE" to load this file. \quit

-- speed: publish, publish_bytes and inbox_claim no longer pin search_path
-- (their SQL qualifies every name; sql/security.sql plants look-alikes)
ALTER FUNCTION txbox.publish(text, jsonb, text, jsonb, uuid) RESET search_path;
ALTER FUNCTION txbox.publish_bytes(text, bytea, text, jsonb, uuid) RESET search_path;
ALTER FUNCTION txbox.inbox_claim(text, text) RESET search_path;
ALTER FUNCTION txbox._inbox_claim(regrole, text, text) RESET search_path;
