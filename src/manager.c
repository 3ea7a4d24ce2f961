/*-------------------------------------------------------------------------
 * manager.c
 *		The per-database txbox manager: keeps one relay worker running for
 *		every relay that is not paused, and runs the outbox retention.
 *
 * Started by the launcher in every database; exits at once where txbox is
 * not installed (marking its slot, so the launcher probes less often).  It
 * is woken when relays change (create/resume/alter commit) and by its own
 * timer.  A worker that ended by error or termination is restarted with
 * exponential backoff; one that ended on purpose (paused or dropped) is
 * not.  Retention (txbox._maintain) runs under a short lock_timeout so it
 * never stalls writers for long.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "txbox.h"
#include "workers.h"

#define MANAGER_WAKE_MS			5000
#define MANAGER_MAINTAIN_MS		10000

/* a relay worker, or one of a handler's parallel workers */
typedef struct ManagedWorker
{
	TxboxWorkerKind kind;
	int32		object_id;		/* relay_id or handler_id */
	int			part;
	int			slot;			/* -1: not running */
	BackgroundWorkerHandle *handle;	/* NULL for an adopted worker */
	bool		wanted;			/* in this reading of relays and handlers */
	TimestampTz next_start;
	int			failures;
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
	mgr_workers[mgr_nworkers].slot = -1;
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
			manager_worker(s->kind, s->object_id, s->part)->slot = i;
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
	{
		ManagedWorker *w = &mgr_workers[i];
		TxboxSlot  *s;

		if (w->slot < 0 || !txbox_slot_gone(w->slot, w->handle))
			continue;
		s = &txbox_shared->slots[w->slot];
		if (s->clean_exit)		/* ended on purpose: paused, dropped */
			w->failures = 0;
		else
		{
			w->failures++;
			w->next_start = TimestampTzPlusMilliseconds(now,
														txbox_backoff_ms(w->failures, 30000));
		}
		txbox_slot_release(w->slot);
		if (w->handle)
			pfree(w->handle);
		w->handle = NULL;
		w->slot = -1;
	}
	for (int i = 0; i < mgr_nworkers; i++)
	{
		ManagedWorker *w = &mgr_workers[i];

		if (w->wanted && w->slot < 0 && (due == 0 || w->next_start < due))
			due = w->next_start;
	}
	return due;
}

/*
 * The workers that should run: every relay and every parallel worker of
 * every handler that is not paused and whose owner can log in.  An owner
 * that cannot (any more) is shown in the status instead: a worker runs as
 * its relay's or handler's owner.
 */
static const char *manager_wanted_sql =
"SELECT 'r', r.relay_id, 0, r.owner::oid, left(r.name, 60)"
"  FROM txbox.relays r JOIN pg_catalog.pg_authid a ON a.oid = r.owner"
" WHERE NOT r.paused AND a.rolcanlogin"
" UNION ALL "
"SELECT 'h', h.handler_id, p, h.owner::oid, left(h.name, 50)"
"  FROM txbox.handlers h JOIN pg_catalog.pg_authid a ON a.oid = h.owner,"
"       generate_series(0, coalesce((h.options->>'parallel')::int, 1) - 1) p"
" WHERE NOT h.paused AND a.rolcanlogin";

static const char *manager_nologin_sql =
"WITH r AS (UPDATE txbox.relays r SET state = 'failed', last_error_at = now(),"
"   last_error = format('role %s cannot log in: it runs as the role that owns it', r.owner)"
"   FROM pg_catalog.pg_authid a"
"   WHERE a.oid = r.owner AND NOT a.rolcanlogin AND NOT r.paused"
"   AND r.last_error IS DISTINCT FROM format('role %s cannot log in: it runs as the role that owns it', r.owner)"
"   RETURNING 1)"
" UPDATE txbox.handlers h SET state = 'failed', last_error_at = now(),"
"   last_error = format('role %s cannot log in: it runs as the role that owns it', h.owner)"
"   FROM pg_catalog.pg_authid a"
"   WHERE a.oid = h.owner AND NOT a.rolcanlogin AND NOT h.paused"
"   AND h.last_error IS DISTINCT FROM format('role %s cannot log in: it runs as the role that owns it', h.owner)";

/*
 * Read the relays and handlers that should run and start the missing
 * workers.  Returns false when txbox is no longer installed; sets *again
 * when it started one.
 */
static bool
manager_reconcile(TimestampTz now, bool *again)
{
	int			n;
	struct
	{
		TxboxWorkerKind kind;
		int32		object_id;
		int			part;
		Oid			owner;
		char		name[NAMEDATALEN];
	}		   *want = NULL;

	SetCurrentStatementStartTimestamp();	/* now() in this transaction */
	StartTransactionCommand();
	if (!OidIsValid(get_extension_oid("txbox", true)))
	{
		CommitTransactionCommand();
		return false;
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute(manager_nologin_sql, false, 0) != SPI_OK_UPDATE ||
		SPI_execute(manager_wanted_sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "txbox manager: cannot read txbox.relays and txbox.handlers");
	n = (int) SPI_processed;
	if (n > 0)
		want = MemoryContextAlloc(TopTransactionContext, n * sizeof(*want));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		want[i].kind = strcmp(SPI_getvalue(tup, desc, 1), "r") == 0 ?
			TXBOX_WORKER_RELAY : TXBOX_WORKER_HANDLER;
		want[i].object_id = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		want[i].part = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		want[i].owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
		strlcpy(want[i].name, SPI_getvalue(tup, desc, 5), NAMEDATALEN);
	}
	SPI_finish();
	PopActiveSnapshot();

	for (int i = 0; i < mgr_nworkers; i++)
		mgr_workers[i].wanted = false;

	for (int i = 0; i < n; i++)
	{
		ManagedWorker *w = manager_worker(want[i].kind, want[i].object_id, want[i].part);
		bool		relay = want[i].kind == TXBOX_WORKER_RELAY;
		int			slot;
		char		name[BGW_MAXLEN];

		w->wanted = true;
		if (w->slot >= 0 || now < w->next_start)
			continue;
		slot = txbox_slot_claim(want[i].kind, MyDatabaseId, w->object_id, w->part);
		if (slot < 0)
		{
			ereport(WARNING,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("txbox cannot start %s \"%s\": all txbox.max_workers slots are in use",
							relay ? "relay" : "handler", want[i].name),
					 errhint("Raise txbox.max_workers (needs a restart), or drop unused relays and handlers.")));
			w->next_start = TimestampTzPlusMilliseconds(now, MANAGER_WAKE_MS);
			continue;
		}
		if (relay)
			snprintf(name, sizeof(name), "txbox relay %s", want[i].name);
		else
			snprintf(name, sizeof(name), "txbox handler %s/%d", want[i].name, want[i].part);
		/* waiting for its startup may have eaten a wake-up: look again */
		*again = true;
		if (txbox_start_worker(relay ? "txbox relay" : "txbox handler", name,
							   relay ? "txbox_relay_main" : "txbox_handler_main",
							   slot, want[i].owner, &w->handle))
			w->slot = slot;
		else
		{
			txbox_slot_release(slot);
			w->handle = NULL;
			w->next_start = TimestampTzPlusMilliseconds(now, MANAGER_WAKE_MS);
		}
	}
	CommitTransactionCommand();

	/*
	 * Workers of relays and handlers that were paused or dropped (or a
	 * handler's parallel workers beyond its new "parallel"): end them now,
	 * even in the middle of a delivery to a hung target (at-least-once makes
	 * that safe); resuming starts afresh without backoff.
	 */
	for (int i = 0; i < mgr_nworkers; i++)
	{
		ManagedWorker *w = &mgr_workers[i];

		if (w->wanted)
			continue;
		w->failures = 0;
		w->next_start = 0;
		if (w->slot >= 0 && txbox_shared->slots[w->slot].pid != 0)
			kill(txbox_shared->slots[w->slot].pid, SIGTERM);
	}
	return true;
}

/* Retention: rotate the outbox when its oldest generation is delivered. */
static void
manager_maintain(void)
{
	pgstat_report_activity(STATE_RUNNING, "txbox retention");
	SetCurrentStatementStartTimestamp();	/* now() in this transaction */
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute("SET LOCAL lock_timeout = '100ms'", false, 0) != SPI_OK_UTILITY ||
		SPI_execute("SELECT txbox._maintain()", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "txbox manager: retention failed");
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	pgstat_report_stat(false);	/* background workers flush their own */
}

void
txbox_manager_main(Datum arg)
{
	TxboxSlot  *slot = txbox_slot_attach(DatumGetInt32(arg));
	TimestampTz last_maintain = 0;
	TimestampTz last_reconcile = 0;
	bool		woken = true;
	bool		again;
	TimestampTz restart_due;
	long		timeout;

	txbox_worker_init_signals();
	BackgroundWorkerInitializeConnectionByOid(slot->dboid, InvalidOid, 0);
	txbox_worker_harden_session();
	pgstat_report_appname("txbox manager");

	manager_adopt_workers();
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();

		if (txbox_database_is_being_dropped())
		{
			slot->clean_exit = true;
			proc_exit(0);
		}

		restart_due = manager_reap(now);
		again = false;
		if (woken || (restart_due != 0 && now >= restart_due) ||
			TimestampDifferenceExceeds(last_reconcile, now, MANAGER_WAKE_MS))
		{
			if (!manager_reconcile(now, &again))
			{
				/* txbox is not (or no longer) installed here */
				slot->clean_exit = true;
				proc_exit(0);
			}
			last_reconcile = now;
		}
		/* retention runs every 10 s, or faster when the retention is short */
		if (TimestampDifferenceExceeds(last_maintain, now,
									   Max(1000, Min(MANAGER_MAINTAIN_MS,
													 txbox_outbox_retention * 500L))))
		{
			manager_maintain();
			last_maintain = now;
		}
		/* wake at least every second to notice DROP DATABASE */
		timeout = 1000;
		if (restart_due != 0)
			timeout = Max(0, Min(timeout, TimestampDifferenceMilliseconds(now, restart_due)));
		woken = txbox_worker_wait(again ? 0 : timeout, PG_WAIT_EXTENSION) || again;
	}
}
