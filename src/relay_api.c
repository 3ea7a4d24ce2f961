/*-------------------------------------------------------------------------
 * relay_api.c
 *		C helpers of the relay, handler, consumer and dead-letter SQL API
 *		(txbox.create_relay and friends are PL/pgSQL in src/sql/): calling
 *		them for the role at the call, whether workers can run, waking the
 *		worker tree at commit, and why a manager waits.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "txbox.h"
#include "workers.h"

/*
 * txbox_api -- the C body of every API function that acts for a role
 * (relays, handlers, inbox consumers, dead letters): txbox.NAME(args)
 * calls txbox._NAME(caller regrole, args) as the extension's owner, where
 * caller is the role current at the call.
 *
 * These functions are not SECURITY DEFINER, because inside one the caller
 * is lost: GetOuterUserId() skips SECURITY DEFINER frames, so a role's own
 * SECURITY DEFINER function that a superuser runs would act as the
 * superuser (and create a handler running that role's code as superuser).
 * GetUserId() at the call is the role whose code calls (what pg_cron
 * records).  Index expressions, materialized views and maintenance
 * commands run their owner's code in a security-restricted operation: no
 * call from there.  The user switch is undone by (sub)transaction abort
 * on error, as for SECURITY DEFINER (fmgr_security_definer).
 */
typedef struct TxboxApiCall
{
	FmgrInfo	impl;			/* txbox._NAME */
	Oid			owner;			/* the extension's owner */
} TxboxApiCall;

/*
 * What the lookup of txbox._NAME by name found for each API function, by
 * the function's OID: fn_extra lasts only one execution of a plan, so the
 * lookup ran on every call.  Forgotten on any change to pg_proc (a rename,
 * a new owner, ALTER or DROP EXTENSION).
 */
typedef struct TxboxApiImpl
{
	Oid			fn_oid;			/* key: txbox.NAME */
	Oid			impl_oid;		/* txbox._NAME */
	Oid			owner;
} TxboxApiImpl;

static HTAB *api_impls;

static void
api_impls_forget(Datum arg, int cacheid, uint32 hashvalue)
{
	if (api_impls != NULL)
		hash_destroy(api_impls);
	api_impls = NULL;
}

static TxboxApiImpl
api_impl(Oid fn_oid)
{
	static bool registered = false;
	TxboxApiImpl found = {fn_oid};
	TxboxApiImpl *entry;
	HeapTuple	tup;
	Form_pg_proc proc;
	Oid		   *argtypes;

	if (api_impls != NULL &&
		(entry = hash_search(api_impls, &fn_oid, HASH_FIND, NULL)) != NULL)
		return *entry;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", fn_oid);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	argtypes = palloc((proc->pronargs + 1) * sizeof(Oid));
	argtypes[0] = REGROLEOID;
	memcpy(argtypes + 1, proc->proargtypes.values, proc->pronargs * sizeof(Oid));
	found.impl_oid = LookupFuncName(list_make2(makeString(get_namespace_name(proc->pronamespace)),
											   makeString(psprintf("_%s", NameStr(proc->proname)))),
									proc->pronargs + 1, argtypes, false);
	found.owner = proc->proowner;
	ReleaseSysCache(tup);

	/* no catalog access from here on: an invalidation would free the table */
	if (!registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, api_impls_forget, (Datum) 0);
		registered = true;
	}
	if (api_impls == NULL)
	{
		HASHCTL		ctl = {.keysize = sizeof(Oid),.entrysize = sizeof(TxboxApiImpl)};

		api_impls = hash_create("txbox API functions", 32, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	entry = hash_search(api_impls, &fn_oid, HASH_ENTER, NULL);
	*entry = found;
	return found;
}

PG_FUNCTION_INFO_V1(txbox_api);
Datum
txbox_api(PG_FUNCTION_ARGS)
{
	TxboxApiCall *call = fcinfo->flinfo->fn_extra;
	Oid			caller;
	int			sec_context;
	FunctionCallInfo icall;
	Datum		result;

	GetUserIdAndSecContext(&caller, &sec_context);
	if (InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot call txbox.%s in a security-restricted operation",
						get_func_name(fcinfo->flinfo->fn_oid)),
				 errhint("Call it directly, not from an index expression, a materialized view or a maintenance command.")));

	if (call == NULL)
	{
		TxboxApiImpl impl = api_impl(fcinfo->flinfo->fn_oid);

		call = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(TxboxApiCall));
		fmgr_info_cxt(impl.impl_oid, &call->impl, fcinfo->flinfo->fn_mcxt);
		call->owner = impl.owner;
		fcinfo->flinfo->fn_extra = call;
	}

	icall = palloc(SizeForFunctionCallInfo(fcinfo->nargs + 1));
	InitFunctionCallInfoData(*icall, &call->impl, fcinfo->nargs + 1, fcinfo->fncollation,
							 NULL, fcinfo->resultinfo);
	icall->args[0].value = ObjectIdGetDatum(caller);
	icall->args[0].isnull = false;
	memcpy(&icall->args[1], fcinfo->args, fcinfo->nargs * sizeof(NullableDatum));

	SetUserIdAndSecContext(call->owner, sec_context | SECURITY_LOCAL_USERID_CHANGE);
	result = FunctionCallInvoke(icall);
	SetUserIdAndSecContext(caller, sec_context);

	fcinfo->isnull = icall->isnull;
	return result;
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
