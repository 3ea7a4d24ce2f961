/*-------------------------------------------------------------------------
 * txbox install script, built by the Makefile from the files of src/sql in name
 * order (one file per concern, like the C files).  Upgrades from earlier
 * releases are in src/upgrade/ (README "Upgrading").
 *
 * Storage layout.  The three growing tables (outbox, inbox_dedup,
 * idempotency_keys) are LIST-partitioned by a small "generation" number.
 * Writers insert into the current generation only; txbox._generation says
 * which one that is.  Old data is removed by truncating a whole generation
 * and making it current again (src/generation.c, txbox._switch_generation),
 * never by per-row DELETE, so none of these tables bloats.
 *-------------------------------------------------------------------------
 */
\echo Use "CREATE EXTENSION txbox" to load this file. \quit

