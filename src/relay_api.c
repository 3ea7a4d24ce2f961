/*-------------------------------------------------------------------------
 * relay_api.c
 *		C helpers of the relay SQL API (txbox.create_relay and friends are
 *		PL/pgSQL in txbox--*.sql): who is calling, whether workers can run,
 *		and waking the worker tree at commit.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
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
