/*-------------------------------------------------------------------------
 * inbox.c
 *		txbox.inbox_claim: deduplicate messages that arrive by any route.
 *
 * A claim is a row (consumer, message_id) in the current generation of
 * txbox.inbox_dedup, written in the caller's transaction: it commits with
 * the caller's effects or vanishes with them.
 *
 *	1. INSERT ... ON CONFLICT DO NOTHING into the current generation.  A
 *	   concurrent claim of the same id waits here for the first transaction:
 *	   if that commits we get a conflict (false), if it rolls back we insert.
 *	2. If we inserted, look for a committed record in the older generation,
 *	   with a fresh snapshot so that REPEATABLE READ callers see it too.
 *	   Generation switches wait for in-progress claims (generation.c), so an
 *	   older generation holds only committed or aborted rows.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/timestamp.h"

#include "txbox.h"

static TxboxPlan claim_insert_plan = {
	"INSERT INTO txbox.inbox_dedup (gen, consumer, message_id, claimed_at)"
	" VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
	4, {INT2OID, TEXTOID, TEXTOID, TIMESTAMPTZOID}
};

static TxboxPlan claim_older_plan = {
	"SELECT 1 FROM txbox.inbox_dedup"
	" WHERE consumer OPERATOR(pg_catalog.=) $2"
	" AND message_id OPERATOR(pg_catalog.=) $3"
	" AND gen OPERATOR(pg_catalog.<>) $1 LIMIT 1",
	3, {INT2OID, TEXTOID, TEXTOID}
};

/*
 * txbox.inbox_claim(consumer text, message_id text) RETURNS boolean
 *
 * True the first time consumer claims message_id: the caller does its work
 * in this same transaction.  False for a duplicate.
 */
PG_FUNCTION_INFO_V1(txbox_inbox_claim);
Datum
txbox_inbox_claim(PG_FUNCTION_ARGS)
{
	Datum		values[4];
	bool		claimed;

	txbox_require_text_arg(fcinfo, 0, "consumer");
	txbox_require_text_arg(fcinfo, 1, "message_id");

	SPI_connect();

	values[0] = Int16GetDatum(txbox_current_generation(TXBOX_INBOX_DEDUP));
	values[1] = PG_GETARG_DATUM(0);
	values[2] = PG_GETARG_DATUM(1);
	values[3] = TimestampTzGetDatum(GetCurrentTimestamp());

	claimed = txbox_exec(&claim_insert_plan, values, NULL, false, 0) == 1;
	if (claimed)
		claimed = txbox_exec(&claim_older_plan, values, NULL, true, 1) == 0;

	SPI_finish();

	PG_RETURN_BOOL(claimed);
}
