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
