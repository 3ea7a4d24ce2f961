/*-------------------------------------------------------------------------
 * worker_util.c
 *		What every txbox background worker does the same way: signals,
 *		latch waits, noticing DROP DATABASE, starting workers, backoff, its
 *		bookkeeping transactions as txbox's owner, fences around user code,
 *		and recovering from an error.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "access/htup_details.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "common/pg_prng.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timeout.h"

#include "txbox.h"
#include "workers.h"

/*
 * txbox_worker_init_signals -- SIGHUP reloads the configuration at the next
 * wait, SIGTERM ends the worker at the next CHECK_FOR_INTERRUPTS (which
 * every wait and every libpq wait does).
 */
void
txbox_worker_init_signals(void)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
}

/*
 * The role and security context the worker connected with, the search_path
 * its role's sessions get (ALTER ROLE/DATABASE SET, postgresql.conf) for
 * user code, and what the errcontext of its errors names.
 */
static Oid	worker_userid;
static int	worker_secctx;
static char *worker_user_search_path = NULL;
static char *worker_label = NULL;
static ErrorContextCallback worker_errcontext;

static void
txbox_worker_error_context(void *arg)
{
	if (worker_label)
		errcontext("%s", worker_label);
	else if (MyBgworkerEntry)
		errcontext("%s", MyBgworkerEntry->bgw_name);
}

/*
 * txbox_worker_harden_session -- right after connecting.  Bookkeeping SQL
 * (run as the extension's owner) resolves names with search_path
 * TXBOX_SAFE_SEARCH_PATH whatever the role's or database's settings say:
 * it is set for the session here and re-asserted by txbox_xact_begin, and
 * user code cannot leave a change behind (txbox_user_code_end).  It is set
 * at session level, not PGC_S_OVERRIDE, so that a handler function's own
 * SET search_path clause still works.  Errors name the worker in their
 * context (txbox_worker_name).
 */
void
txbox_worker_harden_session(void)
{
	GetUserIdAndSecContext(&worker_userid, &worker_secctx);
	worker_user_search_path = MemoryContextStrdup(TopMemoryContext, namespace_search_path);
	SetConfigOption("search_path", TXBOX_SAFE_SEARCH_PATH, PGC_SUSET, PGC_S_SESSION);
	worker_errcontext.callback = txbox_worker_error_context;
	worker_errcontext.previous = error_context_stack;
	error_context_stack = &worker_errcontext;
}

/* Errors name the worker's relay or handler: kind "relay" or "handler". */
void
txbox_worker_name(const char *kind, const char *name)
{
	char	   *label = MemoryContextStrdup(TopMemoryContext,
											psprintf("txbox %s \"%s\"", kind, name));

	if (worker_label)
		pfree(worker_label);
	worker_label = label;
}

/*
 * txbox_worker_recover -- the PG_CATCH of a worker's main loop, as
 * autovacuum's: report the error to the log in full (SQLSTATE, detail,
 * hint, context), abort the transaction and every subtransaction user code
 * may have left open, and return to the worker's own role with no pending
 * cancel or timeout.  Returns a copy of the error, in cxt (also the current
 * memory context on return), for the worker's status row.
 */
ErrorData *
txbox_worker_recover(MemoryContext cxt)
{
	ErrorData  *edata;

	HOLD_INTERRUPTS();
	disable_all_timeouts(false);
	QueryCancelPending = false;
	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	EmitErrorReport();
	AbortOutOfAnyTransaction();
	FlushErrorState();
	SetUserIdAndSecContext(worker_userid, worker_secctx);
	RESUME_INTERRUPTS();
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	return edata;
}

/*
 * txbox_worker_wait -- sleep until our latch is set or timeout_ms passes;
 * handle interrupts and configuration reloads.  Returns true if the latch
 * was set (work may be waiting).
 */
bool
txbox_worker_wait(long timeout_ms, uint32 wait_event)
{
	int			rc;

	rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
				   timeout_ms, wait_event);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	return (rc & WL_LATCH_SET) != 0;
}

/*
 * txbox_database_is_being_dropped -- true when another session holds a
 * conflicting lock on our database: DROP DATABASE (and ALTER DATABASE
 * RENAME / SET TABLESPACE) take it exclusively, then wait a few seconds for
 * other sessions to leave.  PostgreSQL before 18 does not end background
 * workers for them, so txbox workers check this at every wake-up and exit.
 */
bool
txbox_database_is_being_dropped(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	if (LockAcquire(&tag, AccessShareLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, AccessShareLock, false);
	return false;
}

/*
 * txbox_worker_exit_if_gone -- end the worker on purpose when what it works
 * for is gone: gone says so for its relay or handler (paused, dropped,
 * already run by another worker) or for txbox (not installed here), and
 * its database may be being dropped.  Its slot says clean_exit, so its
 * starter does not back off and starts it again only if it is wanted.
 */
void
txbox_worker_exit_if_gone(TxboxSlot *slot, bool gone)
{
	if (gone || txbox_database_is_being_dropped())
	{
		slot->clean_exit = true;
		proc_exit(0);
	}
}

/*
 * txbox_start_worker -- register a dynamic worker running function (in this
 * library) with slot as its argument, connecting as userid, and wait until
 * it started.  Returns true with *handle (in TopMemoryContext) when it did.
 * Otherwise *handle is NULL and *why says whether no background worker
 * slot was free (TXBOX_WAIT_BGWORKER, with a warning) or the worker ended
 * at once (TXBOX_WAIT_NONE); the caller releases its txbox slot.  Our latch
 * is set on return: the wait for the startup may have eaten a wake-up, so
 * the caller's next wait looks at its work again at once.
 */
bool
txbox_start_worker(const char *type, const char *name, const char *function,
				   int slot, Oid userid, BackgroundWorkerHandle **handle,
				   TxboxWait *why)
{
	BackgroundWorker worker;
	pid_t		pid;
	bool		registered;
	bool		started;
	MemoryContext old;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "txbox", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker.bgw_type, type, BGW_MAXLEN);
	strlcpy(worker.bgw_name, name, BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(slot);
	memcpy(worker.bgw_extra, &userid, sizeof(Oid));
	worker.bgw_notify_pid = MyProcPid;

	/* the handle outlives the caller's transaction */
	*handle = NULL;
	old = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&worker, handle);
	MemoryContextSwitchTo(old);
	if (!registered)
	{
		*why = TXBOX_WAIT_BGWORKER;
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("txbox could not start \"%s\": no background worker slot is free", name),
				 errhint("Raise max_worker_processes (each relay needs one, plus one manager per database and the launcher).")));
		return false;
	}
	started = WaitForBackgroundWorkerStartup(*handle, &pid) == BGWH_STARTED;
	SetLatch(MyLatch);
	if (!started)
	{
		*why = TXBOX_WAIT_NONE;
		pfree(*handle);
		*handle = NULL;
	}
	return started;
}

/* The role a worker was started to run as (bgw_extra). */
Oid
txbox_worker_userid(void)
{
	Oid			userid;

	memcpy(&userid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	return userid;
}

/*
 * txbox_backoff_ms -- exponential backoff with jitter for the attempt-th
 * consecutive failure (1-based): 100 ms doubling, capped at max_ms, then a
 * random 50-100% of it so that many workers do not retry in step.
 */
long
txbox_backoff_ms(int attempt, long max_ms)
{
	double		ms = 100.0;

	for (int i = 1; i < attempt && ms < max_ms; i++)
		ms *= 2;
	if (ms > max_ms)
		ms = max_ms;
	return (long) (ms * (0.5 + 0.5 * pg_prng_double(&pg_global_prng_state)));
}

/*
 * Transactions of a worker's bookkeeping.  Relay and handler workers run as
 * the role that owns their relay or handler (its user mapping, its
 * privileges for the handler function); their work in txbox's own tables
 * runs as the extension's owner.  txbox_xact_begin re-asserts the safe
 * search_path, starts a transaction, connects SPI, pushes a snapshot and
 * switches to the extension's owner; txbox_xact_as_worker_role and
 * txbox_xact_as_extension_owner switch back and forth inside it,
 * txbox_user_code_begin/end around user code.  Memory
 * allocated meanwhile is in the caller's context and survives the commit.
 */
static MemoryContext xact_caller_cxt;
static Oid	xact_extowner = InvalidOid;
static Oid	xact_saved_userid;
static int	xact_saved_secctx;

void
txbox_xact_begin(const char *activity)
{
	pgstat_report_activity(STATE_RUNNING, activity);
	SetCurrentStatementStartTimestamp();
	xact_caller_cxt = CurrentMemoryContext;
	if (strcmp(namespace_search_path, TXBOX_SAFE_SEARCH_PATH) != 0)
		SetConfigOption("search_path", TXBOX_SAFE_SEARCH_PATH, PGC_SUSET, PGC_S_SESSION);
	StartTransactionCommand();
	MemoryContextSwitchTo(xact_caller_cxt);
	GetUserIdAndSecContext(&xact_saved_userid, &xact_saved_secctx);
	if (!OidIsValid(xact_extowner))
	{
		Oid			extoid = get_extension_oid("txbox", false);
		HeapTuple	tup = SearchSysCache1(EXTENSIONOID, ObjectIdGetDatum(extoid));

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "txbox: extension %u not found", extoid);
		xact_extowner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
		ReleaseSysCache(tup);
	}
	txbox_xact_as_extension_owner();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
}

/* Inside txbox_xact_begin: act as the role that owns the extension. */
void
txbox_xact_as_extension_owner(void)
{
	SetUserIdAndSecContext(xact_extowner,
						   xact_saved_secctx | SECURITY_LOCAL_USERID_CHANGE);
}

/*
 * Inside txbox_xact_begin: act as the role the worker runs as (its relay's
 * or handler's owner), as it connected.
 */
void
txbox_xact_as_worker_role(void)
{
	SetUserIdAndSecContext(xact_saved_userid, xact_saved_secctx);
}

/*
 * txbox_user_code_begin -- inside txbox_xact_begin, before calling user
 * code (a handler function): run it as the worker's role, as a
 * security-restricted operation (as index builds and autovacuum run user
 * code: no temporary objects, SET ROLE, LISTEN, PREPARE, cursors WITH
 * HOLD, deferred triggers), with its role's search_path, in a GUC nest
 * level of its own.  Returns the nest level for txbox_user_code_end.
 */
int
txbox_user_code_begin(void)
{
	int			nestlevel;

	SetUserIdAndSecContext(xact_saved_userid,
						   xact_saved_secctx | SECURITY_RESTRICTED_OPERATION);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", worker_user_search_path, PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/*
 * txbox_user_code_end -- after the user code returned: undo every setting
 * it made, and act as txbox's owner again.  After an error, the
 * transaction's abort does the same.
 *
 * Temporary objects would outlive the call in the worker's session, where
 * the next call and txbox's own SQL would meet them.  A security-restricted
 * operation may not create them, but PostgreSQL 18 lets some through (a
 * temporary domain); so whatever user code made a temporary schema for
 * fails here, and the transaction's abort takes the objects and the schema
 * back.  (The worker itself never makes one, so none exists before.)
 */
void
txbox_user_code_end(int nestlevel)
{
	Oid			temp_namespace;
	Oid			temp_toast_namespace;

	GetTempNamespaceState(&temp_namespace, &temp_toast_namespace);
	if (OidIsValid(temp_namespace))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot create temporary objects within security-restricted operation"),
				 errdetail("txbox runs handlers as a security-restricted operation."),
				 errhint("Keep what a handler needs between calls in a regular table.")));
	AtEOXact_GUC(false, nestlevel);
	txbox_xact_as_extension_owner();
}

void
txbox_xact_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	txbox_xact_as_worker_role();
	CommitTransactionCommand();
	MemoryContextSwitchTo(xact_caller_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);

	/*
	 * Background workers must flush their table statistics themselves (at
	 * most once a second): without them autovacuum never learns of the
	 * dead tuples our position and counter updates leave in txbox.relays
	 * and txbox.handlers, and those small tables bloat.
	 */
	pgstat_report_stat(false);
}
