/*-------------------------------------------------------------------------
 * relay_api.c
 *		C helpers of the relay SQL API (txbox.create_relay and friends are
 *		PL/pgSQL in txbox--*.sql): who is calling, whether workers can run,
 *		waking the worker tree at commit, and why a manager waits.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "txbox.h"
#include "workers.h"

/*
 * txbox._caller() RETURNS regrole -- the role in effect outside any
 * SECURITY DEFINER function (the session's role, after SET ROLE): the
 * owner of relays it creates.
 */
PG_FUNCTION_INFO_V1(txbox_caller);
Datum
txbox_caller(PG_FUNCTION_ARGS)
{
	PG_RETURN_OID(GetOuterUserId());
}

/*
 * txbox._workers_available() RETURNS boolean -- true when txbox's workers
 * run in this server; otherwise warn, with the fix, and return false.
 */
PG_FUNCTION_INFO_V1(txbox_workers_available);
Datum
txbox_workers_available(PG_FUNCTION_ARGS)
{
	if (txbox_shared != NULL)
		PG_RETURN_BOOL(true);
	ereport(WARNING,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("txbox is not in shared_preload_libraries: relays will not run"),
			 errhint("Add txbox to shared_preload_libraries in postgresql.conf and restart the server.")));
	PG_RETURN_BOOL(false);
}

/*
 * txbox._wake_at_commit(what text) -- wake 'relays', 'handlers', the
 * 'manager' of this database or the 'launcher' when this transaction
 * commits.
 */
PG_FUNCTION_INFO_V1(txbox_wake_at_commit_sql);
Datum
txbox_wake_at_commit_sql(PG_FUNCTION_ARGS)
{
	char	   *what = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (strcmp(what, "relays") == 0)
		txbox_wake_at_commit(TXBOX_WAKE_RELAYS);
	else if (strcmp(what, "handlers") == 0)
		txbox_wake_at_commit(TXBOX_WAKE_HANDLERS);
	else if (strcmp(what, "manager") == 0)
		txbox_wake_at_commit(TXBOX_WAKE_MANAGER);
	else if (strcmp(what, "launcher") == 0)
		txbox_wake_at_commit(TXBOX_WAKE_LAUNCHER);
	else
		elog(ERROR, "txbox._wake_at_commit: unknown \"%s\"", what);
	PG_RETURN_VOID();
}

/*
 * txbox._manager_waiting(OUT reason text, OUT since timestamptz) -- why this
 * database's manager could not start, and since when (the launcher notes
 * it); NULLs while it runs.  Without a manager nothing here updates the
 * rows of txbox.relays and txbox.handlers: the status views show this.
 */
PG_FUNCTION_INFO_V1(txbox_manager_waiting);
Datum
txbox_manager_waiting(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2] = {0, 0};
	bool		nulls[2] = {true, true};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "txbox._manager_waiting: return type must be a row type");
	if (txbox_shared != NULL)
	{
		bool		running = false;
		TxboxWait	why = TXBOX_WAIT_NONE;
		TimestampTz since = 0;

		LWLockAcquire(txbox_shared->lock, LW_SHARED);
		for (int i = 0; i < txbox_shared->nslots && !running; i++)
		{
			TxboxSlot  *s = &txbox_shared->slots[i];

			running = s->in_use && s->kind == TXBOX_WORKER_MANAGER &&
				s->dboid == MyDatabaseId;
		}
		for (int i = 0; i < TXBOX_MAX_WAITING_DBS && !running; i++)
		{
			TxboxWaitingDb *w = &txbox_shared->waiting_dbs[i];

			if (w->dboid == MyDatabaseId)
			{
				why = w->why;
				since = w->since;
			}
		}
		LWLockRelease(txbox_shared->lock);
		if (!running && why != TXBOX_WAIT_NONE)
		{
			values[0] = CStringGetTextDatum(psprintf("the txbox manager of this database is %s",
													 txbox_wait_reason(why)));
			values[1] = TimestampTzGetDatum(since);
			nulls[0] = nulls[1] = false;
		}
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
