/*-------------------------------------------------------------------------
 * idempotency.c
 *		Idempotency keys (Stripe / IETF Idempotency-Key semantics).
 *
 * txbox.idempotency_begin(scope, key, fingerprint, wait) holds a key for
 * the calling transaction; txbox.idempotency_complete stores the response
 * with the request's effects.  A retry of a completed request gets the
 * stored response; a retry with another fingerprint is refused.
 *
 * Holding a key is a transaction-scoped heavyweight lock on a hash of
 * (scope, key) in the advisory lock space, with its own field4 so it never
 * collides with the application's pg_advisory_* locks.  The lock is released
 * when the transaction ends, so a rolled-back request never leaves a key
 * stuck "in progress", and wait => false can test it without blocking.
 * Under the lock, the newest row of the key is read with a fresh snapshot:
 * every other writer of that key has finished, so the row is final.
 *
 * A key whose holder commits without idempotency_complete counts as
 * completed with a NULL response: its effects happened, so they must not
 * run again.
 *
 * A key never expires while held: its row is the holder's until commit,
 * and just before the commit (a transaction callback) its expires_at is
 * set to the commit time plus the TTL taken at begin.  So a retry that
 * waited for a holder slower than the TTL finds the key completed, and
 * the TTL counts from the end of the request.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "txbox.h"


static TxboxPlan idem_lookup_plan = {
	"SELECT fingerprint, response, response_status,"
	" expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() AS expired,"
	" txid OPERATOR(pg_catalog.=) pg_catalog.pg_current_xact_id_if_assigned() AS mine,"
	" completed_at IS NOT NULL AS completed"
	" FROM txbox.idempotency_keys"
	" WHERE scope OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2"
	" ORDER BY created_at DESC LIMIT 1",
	2, {TEXTOID, TEXTOID}
};
#define Anum_idem_fingerprint		1
#define Anum_idem_response			2
#define Anum_idem_response_status	3
#define Anum_idem_expired			4
#define Anum_idem_mine				5
#define Anum_idem_completed			6

static TxboxPlan idem_insert_plan = {
	"INSERT INTO txbox.idempotency_keys AS k (gen, scope, key, fingerprint, txid,"
	" created_at, expires_at)"
	" VALUES ($1, $2, $3, $4, pg_catalog.pg_current_xact_id(), pg_catalog.now(),"
	" pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $5))"
	" ON CONFLICT (scope, key, gen) DO UPDATE SET fingerprint = excluded.fingerprint,"
	" txid = excluded.txid, response = NULL, response_status = NULL,"
	" created_at = excluded.created_at, expires_at = excluded.expires_at,"
	" completed_at = NULL",
	5, {INT2OID, TEXTOID, TEXTOID, TEXTOID, FLOAT8OID}
};

static TxboxPlan idem_expire_plan = {
	"UPDATE txbox.idempotency_keys"
	" SET expires_at = pg_catalog.clock_timestamp()"
	" OPERATOR(pg_catalog.+) (expires_at OPERATOR(pg_catalog.-) created_at)"
	" WHERE scope OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2"
	" AND txid OPERATOR(pg_catalog.=) pg_catalog.pg_current_xact_id_if_assigned()",
	2, {TEXTOID, TEXTOID}
};

static TxboxPlan idem_complete_plan = {
	"UPDATE txbox.idempotency_keys SET response = $3, response_status = $4,"
	" completed_at = pg_catalog.now()"
	" WHERE scope OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2"
	" AND completed_at IS NULL"
	" AND txid OPERATOR(pg_catalog.=) pg_catalog.pg_current_xact_id_if_assigned()",
	4, {TEXTOID, TEXTOID, JSONBOID, INT4OID}
};

/*
 * The keys this transaction began ('new'), as pairs of texts in
 * TopTransactionContext, and the role that may update their rows.
 */
static List *held_keys = NIL;
static Oid	held_keys_role = InvalidOid;

/* Set the held keys' expiry from now, just before the transaction commits. */
static void
idem_expire_held(void)
{
	Oid			save_user;
	int			save_sec;
	ListCell   *lc;

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(held_keys_role, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	foreach(lc, held_keys)
		txbox_exec(&idem_expire_plan, (Datum *) lfirst(lc), NULL, false, 0);
	SPI_finish();
	PopActiveSnapshot();
	SetUserIdAndSecContext(save_user, save_sec);
	held_keys = NIL;
}

static void
idem_xact_callback(XactEvent event, void *arg)
{
	if (held_keys == NIL)
		return;
	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PRE_PREPARE)
		idem_expire_held();
	else if (event == XACT_EVENT_ABORT)
		held_keys = NIL;
}

/* Remember that this transaction holds (scope, key). */
static void
idem_remember_held(text *scope, text *key)
{
	static bool registered = false;
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	Datum	   *pair = palloc(2 * sizeof(Datum));

	if (!registered)
	{
		RegisterXactCallback(idem_xact_callback, NULL);
		registered = true;
	}
	pair[0] = PointerGetDatum(DatumGetTextPCopy(PointerGetDatum(scope)));
	pair[1] = PointerGetDatum(DatumGetTextPCopy(PointerGetDatum(key)));
	held_keys = lappend(held_keys, pair);
	held_keys_role = GetUserId();
	MemoryContextSwitchTo(old);
}

/* The lock tag that holds (scope, key) for a transaction. */
static void
idem_locktag(LOCKTAG *tag, text *scope, text *key)
{
	uint64		h1 = hash_bytes_extended((const unsigned char *) VARDATA_ANY(scope),
										 VARSIZE_ANY_EXHDR(scope), 0);
	uint64		h = hash_bytes_extended((const unsigned char *) VARDATA_ANY(key),
										VARSIZE_ANY_EXHDR(key), h1);

	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 TXBOX_LOCKTAG_IDEMPOTENCY);
}

/* Return one (state, response, response_status) row from an SRF. */
static Datum
idem_return_row(FunctionCallInfo fcinfo, const char *state,
				Datum response, bool response_null,
				Datum status, bool status_null)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[3];
	bool		nulls[3] = {false, response_null, status_null};

	InitMaterializedSRF(fcinfo, 0);
	values[0] = CStringGetTextDatum(state);
	values[1] = response;
	values[2] = status;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/*
 * txbox.idempotency_begin(scope, key, fingerprint, wait)
 *		RETURNS TABLE(state text, response jsonb, response_status int)
 *
 * state is 'new' (the key is now held by this transaction: do the work, then
 * idempotency_complete), 'completed' (replay response), or 'in_progress'
 * (only with wait => false: another transaction holds the key).  A key
 * already completed with a different fingerprint raises TX422.
 */
PG_FUNCTION_INFO_V1(txbox_idempotency_begin);
Datum
txbox_idempotency_begin(PG_FUNCTION_ARGS)
{
	text	   *scope;
	text	   *key;
	bool		wait;
	LOCKTAG		tag;
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	Datum		result;

	txbox_require_text_arg(fcinfo, 0, "scope");
	txbox_require_text_arg(fcinfo, 1, "key");
	scope = PG_GETARG_TEXT_PP(0);
	key = PG_GETARG_TEXT_PP(1);
	wait = PG_ARGISNULL(3) ? true : PG_GETARG_BOOL(3);

	idem_locktag(&tag, scope, key);
	if (LockAcquire(&tag, ExclusiveLock, false, !wait) == LOCKACQUIRE_NOT_AVAIL)
		return idem_return_row(fcinfo, "in_progress", (Datum) 0, true, (Datum) 0, true);

	SPI_connect();

	values[0] = PointerGetDatum(scope);
	values[1] = PointerGetDatum(key);
	if (txbox_exec(&idem_lookup_plan, values, NULL, true, 1) == 1)
	{
		HeapTuple	row = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		fp_null,
					resp_null,
					status_null,
					isnull;
		Datum		fp = SPI_getbinval(row, desc, Anum_idem_fingerprint, &fp_null);
		bool		expired = DatumGetBool(SPI_getbinval(row, desc, Anum_idem_expired, &isnull));
		bool		mine = DatumGetBool(SPI_getbinval(row, desc, Anum_idem_mine, &isnull)) && !isnull;
		bool		completed = DatumGetBool(SPI_getbinval(row, desc, Anum_idem_completed, &isnull));

		if (!expired)
		{
			bool		same_fp;

			if (fp_null || PG_ARGISNULL(2))
				same_fp = fp_null && PG_ARGISNULL(2);
			else
				same_fp = DatumGetBool(DirectFunctionCall2Coll(texteq, C_COLLATION_OID, fp,
															   PG_GETARG_DATUM(2)));
			if (!same_fp)
				ereport(ERROR,
						(errcode(ERRCODE_TXBOX_IDEMPOTENCY_MISMATCH),
						 errmsg("idempotency key \"%s\" was used with a different request",
								text_to_cstring(key)),
						 errdetail("Scope \"%s\": the stored fingerprint differs from this request's.",
								   text_to_cstring(scope)),
						 errhint("Use a new idempotency key for a different request (HTTP 422).")));

			/* a second begin by the holder itself, before it completes */
			if (mine && !completed)
			{
				SPI_finish();
				return idem_return_row(fcinfo, "new", (Datum) 0, true, (Datum) 0, true);
			}

			/* copy the stored response out of SPI's memory */
			{
				Datum		resp = SPI_getbinval(row, desc, Anum_idem_response, &resp_null);
				Datum		status = SPI_getbinval(row, desc, Anum_idem_response_status, &status_null);

				if (!resp_null)
					resp = SPI_datumTransfer(resp, false, -1);
				SPI_finish();
				return idem_return_row(fcinfo, "completed", resp, resp_null,
									   status, status_null);
			}
		}
	}

	/* first use, or expired: the key is ours until this transaction ends */
	values[0] = Int16GetDatum(txbox_current_generation(TXBOX_IDEMPOTENCY_KEYS, NULL));
	values[1] = PointerGetDatum(scope);
	values[2] = PointerGetDatum(key);
	values[3] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[3] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[4] = Float8GetDatum((double) txbox_idempotency_ttl);
	txbox_exec(&idem_insert_plan, values, nulls, false, 0);
	SPI_finish();
	idem_remember_held(scope, key);

	result = idem_return_row(fcinfo, "new", (Datum) 0, true, (Datum) 0, true);
	return result;
}

/*
 * txbox.idempotency_complete(scope, key, response, response_status)
 *
 * Store the response of the request that holds the key, in the same
 * transaction as its effects.  Errors if this transaction does not hold the
 * key (idempotency_begin did not return 'new' here) or completed it already.
 */
PG_FUNCTION_INFO_V1(txbox_idempotency_complete);
Datum
txbox_idempotency_complete(PG_FUNCTION_ARGS)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int			n;

	txbox_require_text_arg(fcinfo, 0, "scope");
	txbox_require_text_arg(fcinfo, 1, "key");

	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_GETARG_DATUM(1);
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[3] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	nulls[3] = PG_ARGISNULL(3) ? 'n' : ' ';

	SPI_connect();
	/* the lock is held: no switch can move the row while we update it */
	(void) txbox_current_generation(TXBOX_IDEMPOTENCY_KEYS, NULL);
	n = txbox_exec(&idem_complete_plan, values, nulls, false, 0);
	SPI_finish();

	if (n != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("idempotency key \"%s\" is not held by this transaction",
						text_to_cstring(PG_GETARG_TEXT_PP(1))),
				 errhint("Call txbox.idempotency_begin in the same transaction first; "
						 "complete only a key for which it returned 'new', and only once.")));

	PG_RETURN_VOID();
}
