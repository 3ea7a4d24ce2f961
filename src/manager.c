/*-------------------------------------------------------------------------
 * manager.c
 *		The per-database txbox manager: keeps one worker running for every
 *		relay and "parallel" workers for every handler that is not paused,
 *		and runs the outbox retention.
 *
 * Started by the launcher in every database; exits at once where txbox is
 * not installed (marking its slot, so the launcher probes less often).  It
 * is woken when relays or handlers change (create/resume/alter commit) and
 * by its own timer.  A worker that ended by error or termination is restarted with
 * exponential backoff; one that ended on purpose (paused or dropped) is
 * not.  Retention (txbox._maintain) runs under a short lock_timeout so it
 * never stalls writers for long, and again a second later when a rotation
 * timed out (then 2, 4, 8 s later, then at its usual pace).
 *
 * A worker that finds no slot (txbox.max_workers and its caps, see
 * txbox_slot_claim; max_worker_processes) is tried again every few seconds;
 * meanwhile its relay or handler shows state 'waiting' and why in its
 * row.  One whose owner was dropped, cannot log in or may not connect here
 * is not started and shows 'failed' and why.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "txbox.h"
#include "workers.h"

#define MANAGER_WAKE_MS			5000
#define MANAGER_MAINTAIN_MS		10000
#define MANAGER_BUSY_MS			1000

/* a relay worker, or one of a handler's parallel workers */
typedef struct ManagedWorker
{
	TxboxWorkerKind kind;
	int32		object_id;		/* relay_id or handler_id */
	int			part;
	TxboxTracked worker;
	bool		wanted;			/* in this reading of relays and handlers */
	TxboxWait	why;			/* why it could not start last time */
	int			shown;			/* part 0: the TxboxWait its row shows (-1: not known) */
} ManagedWorker;

static ManagedWorker *mgr_workers = NULL;
static int	mgr_nworkers = 0;
static int	mgr_maxworkers = 0;

static ManagedWorker *
manager_worker(TxboxWorkerKind kind, int32 object_id, int part)
{
	for (int i = 0; i < mgr_nworkers; i++)
		if (mgr_workers[i].kind == kind && mgr_workers[i].object_id == object_id &&
			mgr_workers[i].part == part)
			return &mgr_workers[i];
	if (mgr_nworkers == mgr_maxworkers)
	{
		mgr_maxworkers = Max(16, mgr_maxworkers * 2);
		mgr_workers = mgr_workers == NULL ?
			MemoryContextAlloc(TopMemoryContext, mgr_maxworkers * sizeof(ManagedWorker)) :
			repalloc(mgr_workers, mgr_maxworkers * sizeof(ManagedWorker));
	}
	memset(&mgr_workers[mgr_nworkers], 0, sizeof(ManagedWorker));
	mgr_workers[mgr_nworkers].kind = kind;
	mgr_workers[mgr_nworkers].object_id = object_id;
	mgr_workers[mgr_nworkers].part = part;
	mgr_workers[mgr_nworkers].worker.slot = -1;
	mgr_workers[mgr_nworkers].shown = -1;
	return &mgr_workers[mgr_nworkers++];
}

/* Workers a previous manager of this database started. */
static void
manager_adopt_workers(void)
{
	for (int i = 0; i < txbox_shared->nslots; i++)
	{
		TxboxSlot  *s = &txbox_shared->slots[i];

		if (s->in_use && s->kind != TXBOX_WORKER_MANAGER && s->dboid == MyDatabaseId)
			manager_worker(s->kind, s->object_id, s->part)->worker.slot = i;
	}
}

/*
 * Release the slots of workers that ended; schedule restarts.  Returns
 * when the earliest restart is due (0: none).
 */
static TimestampTz
manager_reap(TimestampTz now)
{
	TimestampTz due = 0;

	for (int i = 0; i < mgr_nworkers; i++)
		(void) txbox_tracked_reap(&mgr_workers[i].worker, now);
	for (int i = 0; i < mgr_nworkers; i++)
	{
		TxboxTracked *w = &mgr_workers[i].worker;

		if (mgr_workers[i].wanted && w->slot < 0 && (due == 0 || w->next_start < due))
			due = w->next_start;
	}
	return due;
}

/*
 * The workers that should run: every relay and every parallel worker (at
 * most txbox.max_parallel, $1; "parallel" by default: $2) of every handler that is not paused and
 * whose owner exists, can log in and may connect here.  A worker runs as
 * its relay's or handler's owner: one whose owner cannot is marked failed
 * instead, with the reason, by manager_owner_sql.
 */
static const char *manager_wanted_sql =
"SELECT 'r', r.relay_id, 0, r.owner::pg_catalog.oid, pg_catalog.\"left\"(r.name, 60)"
"  FROM txbox.relays r JOIN pg_catalog.pg_authid a"
"       ON a.oid OPERATOR(pg_catalog.=) r.owner::pg_catalog.oid"
" WHERE NOT r.paused AND a.rolcanlogin"
"   AND pg_catalog.has_database_privilege(a.oid, pg_catalog.current_database(), 'CONNECT')"
" UNION ALL "
"SELECT 'h', h.handler_id, p, h.owner::pg_catalog.oid, pg_catalog.\"left\"(h.name, 50)"
"  FROM txbox.handlers h JOIN pg_catalog.pg_authid a"
"       ON a.oid OPERATOR(pg_catalog.=) h.owner::pg_catalog.oid,"
"       pg_catalog.generate_series(0, LEAST("
"         CASE WHEN (h.options OPERATOR(pg_catalog.->>) 'parallel') OPERATOR(pg_catalog.~) '^[0-9]{1,4}$'"
"              THEN (h.options OPERATOR(pg_catalog.->>) 'parallel')::pg_catalog.int4 ELSE $2 END,"
"         $1) OPERATOR(pg_catalog.-) 1) p"
" WHERE NOT h.paused AND a.rolcanlogin"
"   AND pg_catalog.has_database_privilege(a.oid, pg_catalog.current_database(), 'CONNECT')"
" ORDER BY 1, 2, 3";

/*
 * Relays and handlers whose owner was dropped (DROP ROLE runs in any
 * database and cannot see our rows), cannot log in, or may not connect
 * here: failed, with the reason, until the owner is fixed or they are
 * dropped; then back to running.  They still hold the outbox retention.
 */
#define MANAGER_OWNER_PROBLEM(t) \
"SELECT " t "_id AS id, CASE" \
"   WHEN a.oid IS NULL THEN pg_catalog.format('owner role %s was dropped', o.owner::pg_catalog.oid)" \
"   WHEN NOT a.rolcanlogin THEN pg_catalog.format('role %s cannot log in: it runs as the role that owns it', o.owner)" \
"   WHEN NOT pg_catalog.has_database_privilege(a.oid, pg_catalog.current_database(), 'CONNECT')" \
"   THEN pg_catalog.format('role %s may not connect to this database: it runs as the role that owns it', o.owner)" \
"   END AS problem" \
"  FROM txbox." t "s o LEFT JOIN pg_catalog.pg_authid a" \
"       ON a.oid OPERATOR(pg_catalog.=) o.owner::pg_catalog.oid" \
" WHERE NOT o.paused"

#define MANAGER_OWNER_UPDATE(t) \
"UPDATE txbox." t "s o SET state = CASE WHEN p.problem IS NULL THEN 'running' ELSE 'failed' END," \
"   last_error = COALESCE(p.problem, o.last_error)," \
"   last_error_at = CASE WHEN p.problem IS NULL THEN o.last_error_at ELSE pg_catalog.now() END" \
"  FROM p_" t " p WHERE o." t "_id OPERATOR(pg_catalog.=) p.id AND CASE" \
"   WHEN p.problem IS NOT NULL" \
"   THEN o.state OPERATOR(pg_catalog.<>) 'failed' OR o.last_error IS DISTINCT FROM p.problem" \
"   ELSE o.state OPERATOR(pg_catalog.=) 'failed' AND (o.last_error OPERATOR(pg_catalog.~) '^owner role [0-9]+ was dropped$'" \
"     OR o.last_error OPERATOR(pg_catalog.~) '^role .* (cannot log in|may not connect to this database): it runs as the role that owns it$')" \
"   END"

static const char *manager_owner_sql =
"WITH p_relay AS (" MANAGER_OWNER_PROBLEM("relay") "),"
" p_handler AS (" MANAGER_OWNER_PROBLEM("handler") "),"
" r AS (" MANAGER_OWNER_UPDATE("relay") " RETURNING 1)"
" " MANAGER_OWNER_UPDATE("handler");

/*
 * Show in its row that a relay or handler waits for a worker slot, and
 * why ($2); or that it runs again.
 */
#define MANAGER_WAITING_SQL(t) \
"UPDATE txbox." t "s SET state = 'waiting', last_error = $2, last_error_at = pg_catalog.now()" \
" WHERE " t "_id OPERATOR(pg_catalog.=) $1" \
"   AND (state OPERATOR(pg_catalog.<>) 'waiting' OR last_error IS NULL OR last_error OPERATOR(pg_catalog.<>) $2)"

#define MANAGER_RUNNING_SQL(t) \
"UPDATE txbox." t "s SET state = 'running'" \
" WHERE " t "_id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'waiting'"

static void
manager_show_waiting(ManagedWorker *w, TxboxWait why, const char *name)
{
	bool		relay = w->kind == TXBOX_WORKER_RELAY;
	Datum		args[2] = {Int32GetDatum(w->object_id), 0};
	Oid			types[2] = {INT4OID, TEXTOID};
	const char *sql;

	if (why != TXBOX_WAIT_NONE)
	{
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("txbox cannot start %s \"%s\": %s",
						relay ? "relay" : "handler", name, txbox_wait_reason(why))));
		args[1] = CStringGetTextDatum(txbox_wait_reason(why));
		sql = relay ? MANAGER_WAITING_SQL("relay") : MANAGER_WAITING_SQL("handler");
	}
	else
		sql = relay ? MANAGER_RUNNING_SQL("relay") : MANAGER_RUNNING_SQL("handler");
	if (SPI_execute_with_args(sql, why != TXBOX_WAIT_NONE ? 2 : 1, types, args,
							  NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "txbox manager: cannot update the state of %s \"%s\"",
			 relay ? "relay" : "handler", name);
	w->shown = why;
}

/* A worker that should run (manager_read_wanted). */
typedef struct WantedWorker
{
	TxboxWorkerKind kind;
	int32		object_id;
	int			part;
	Oid			owner;
	char		name[NAMEDATALEN];
} WantedWorker;

/*
 * Read the workers that should run (manager_wanted_sql, its columns below),
 * after marking those whose owner cannot run them failed
 * (manager_owner_sql).  Returns how many, in *want (in the transaction's
 * memory).  Must run in a transaction, with SPI.
 */
#define Anum_wanted_kind		1
#define Anum_wanted_object_id	2
#define Anum_wanted_part		3
#define Anum_wanted_owner		4
#define Anum_wanted_name		5

static int
manager_read_wanted(WantedWorker **want)
{
	Datum		args[2] = {Int32GetDatum(txbox_max_parallel),
	Int32GetDatum(txbox_option_int(NULL, "handler", "parallel"))};
	Oid			types[2] = {INT4OID, INT4OID};
	int			n;

	if (SPI_execute(manager_owner_sql, false, 0) != SPI_OK_UPDATE ||
		SPI_execute_with_args(manager_wanted_sql, 2, types, args,
							  NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "txbox manager: cannot read txbox.relays and txbox.handlers");
	n = (int) SPI_processed;
	*want = MemoryContextAlloc(TopTransactionContext, Max(n, 1) * sizeof(WantedWorker));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		WantedWorker *w = &(*want)[i];

		w->kind = strcmp(SPI_getvalue(tup, desc, Anum_wanted_kind), "r") == 0 ?
			TXBOX_WORKER_RELAY : TXBOX_WORKER_HANDLER;
		w->object_id = DatumGetInt32(SPI_getbinval(tup, desc, Anum_wanted_object_id, &isnull));
		w->part = DatumGetInt32(SPI_getbinval(tup, desc, Anum_wanted_part, &isnull));
		w->owner = DatumGetObjectId(SPI_getbinval(tup, desc, Anum_wanted_owner, &isnull));
		strlcpy(w->name, SPI_getvalue(tup, desc, Anum_wanted_name), NAMEDATALEN);
	}
	return n;
}

/*
 * Start the wanted workers that are not running and are due, and show in
 * their rows the relays and handlers that wait for a slot (or run again).
 * Marks every wanted worker wanted.  Must run in a transaction, with SPI.
 */
static void
manager_start_wanted(const WantedWorker *want, int n, TimestampTz now)
{
	for (int i = 0; i < mgr_nworkers; i++)
		mgr_workers[i].wanted = false;

	for (int i = 0; i < n; i++)
	{
		ManagedWorker *w = manager_worker(want[i].kind, want[i].object_id, want[i].part);
		bool		relay = want[i].kind == TXBOX_WORKER_RELAY;
		char		name[BGW_MAXLEN];

		w->wanted = true;
		if (w->worker.slot >= 0 || now < w->worker.next_start)
			continue;
		if (relay)
			snprintf(name, sizeof(name), "txbox relay %s", want[i].name);
		else
			snprintf(name, sizeof(name), "txbox handler %s/%d", want[i].name, want[i].part);
		if (!txbox_tracked_start(&w->worker, want[i].kind, MyDatabaseId, w->object_id, w->part,
								 want[i].owner, relay ? "txbox relay" : "txbox handler", name,
								 relay ? "txbox_relay_main" : "txbox_handler_main", &w->why))
			w->worker.next_start = TimestampTzPlusMilliseconds(now, MANAGER_WAKE_MS);
	}

	/*
	 * Show each relay and handler waiting for a slot (a handler: any of its
	 * workers), or running again, when that changed.  want[] is ordered by
	 * relay or handler, then part.
	 */
	for (int i = 0; i < n;)
	{
		ManagedWorker *first = manager_worker(want[i].kind, want[i].object_id, 0);
		TxboxWait	why = TXBOX_WAIT_NONE;
		int			j;

		for (j = i; j < n && want[j].kind == want[i].kind &&
			 want[j].object_id == want[i].object_id; j++)
		{
			ManagedWorker *w = manager_worker(want[j].kind, want[j].object_id, want[j].part);

			if (w->worker.slot < 0 && w->why != TXBOX_WAIT_NONE && why == TXBOX_WAIT_NONE)
				why = w->why;
		}
		if ((int) why != first->shown)
			manager_show_waiting(first, why, want[i].name);
		i = j;
	}
}

/*
 * End the workers no longer wanted: of relays and handlers that were paused
 * or dropped (or a handler's parallel workers beyond its new "parallel").
 * Now, even in the middle of a delivery to a hung target (at-least-once
 * makes that safe); resuming starts afresh without backoff.
 */
static void
manager_stop_unwanted(void)
{
	for (int i = 0; i < mgr_nworkers; i++)
	{
		ManagedWorker *w = &mgr_workers[i];

		if (w->wanted)
			continue;
		w->worker.failures = 0;
		w->worker.next_start = 0;
		w->why = TXBOX_WAIT_NONE;
		w->shown = -1;
		if (w->worker.slot >= 0 && txbox_shared->slots[w->worker.slot].pid != 0)
			kill(txbox_shared->slots[w->worker.slot].pid, SIGTERM);
	}
}

/*
 * Bring the running workers in line with txbox.relays and txbox.handlers:
 * read which should run, start the missing ones, stop the others.  Returns
 * false when txbox is no longer installed.
 */
static bool
manager_reconcile(TimestampTz now)
{
	WantedWorker *want;
	int			n;

	SetCurrentStatementStartTimestamp();	/* now() in this transaction */
	StartTransactionCommand();
	if (!OidIsValid(get_extension_oid("txbox", true)))
	{
		CommitTransactionCommand();
		return false;
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	n = manager_read_wanted(&want);
	manager_start_wanted(want, n, now);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	manager_stop_unwanted();
	return true;
}

/*
 * Retention (txbox._maintain): rotate the tables whose oldest generation
 * may go.  Returns whether a rotation that was due could not have its locks
 * within lock_timeout (writers, or a reader of the generation to truncate):
 * the caller then runs it again sooner than at its usual pace.
 */
static bool
manager_maintain(void)
{
	bool		busy;
	bool		isnull;

	pgstat_report_activity(STATE_RUNNING, "txbox retention");
	SetCurrentStatementStartTimestamp();	/* now() in this transaction */
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute("SET LOCAL lock_timeout = '100ms'", false, 0) != SPI_OK_UTILITY ||
		SPI_execute("SELECT txbox._maintain()", false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "txbox manager: retention failed");
	busy = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) &&
		!isnull;
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	pgstat_report_stat(false);	/* background workers flush their own */
	return busy;
}

void
txbox_manager_main(Datum arg)
{
	TxboxSlot  *slot = txbox_slot_attach(DatumGetInt32(arg));
	TimestampTz last_maintain = 0;
	TimestampTz last_reconcile = 0;
	int			maintain_busy = 0;	/* rounds in a row that found a table busy */
	bool		woken = true;

	/* 1. Connect to our database; adopt the workers a predecessor started. */
	txbox_worker_init_signals();
	BackgroundWorkerInitializeConnectionByOid(slot->dboid, InvalidOid, 0);
	txbox_worker_harden_session();
	pgstat_report_appname("txbox manager");
	manager_adopt_workers();

	/*
	 * 2. Until txbox or the database goes: release the slots of ended
	 * workers, start the missing ones when woken or due, run retention.
	 */
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		TimestampTz restart_due;
		long		timeout;
		long		maintain_every;

		txbox_worker_exit_if_gone(slot, false);
		restart_due = manager_reap(now);
		if (woken || (restart_due != 0 && now >= restart_due) ||
			TimestampDifferenceExceeds(last_reconcile, now, MANAGER_WAKE_MS))
		{
			/* false: txbox is not (or no longer) installed here */
			txbox_worker_exit_if_gone(slot, !manager_reconcile(now));
			last_reconcile = now;
		}
		/*
		 * retention runs every 10 s, or faster when the retention is short;
		 * after a round that found a table busy, again 1 s later, then 2, 4
		 * and 8 s (each try may hold writers back for its lock_timeout: a
		 * table busy for long, under a pg_dump, is tried at the usual pace)
		 */
		maintain_every = Max(1000, Min(MANAGER_MAINTAIN_MS, txbox_outbox_retention * 500L));
		if (maintain_busy > 0)
			maintain_every = Min(maintain_every, MANAGER_BUSY_MS << Min(maintain_busy - 1, 4));
		if (TimestampDifferenceExceeds(last_maintain, now, maintain_every))
		{
			maintain_busy = manager_maintain() ? maintain_busy + 1 : 0;
			last_maintain = now;
		}

		/*
		 * 3. Sleep until woken (starting a worker wakes us too), a restart is
		 * due, or a second passed (DROP DATABASE)
		 */
		timeout = 1000;
		if (restart_due != 0)
			timeout = Max(0, Min(timeout, TimestampDifferenceMilliseconds(now, restart_due)));
		woken = txbox_worker_wait(timeout, txbox_wait_event(TXBOX_WAIT_MANAGER_MAIN));
	}
}
