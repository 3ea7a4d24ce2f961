/*-------------------------------------------------------------------------
 * launcher.c
 *		The txbox launcher: one background worker per cluster that keeps a
 *		manager running in every database that has txbox installed.
 *
 * It connects to no database and reads the shared catalog pg_database
 * every few seconds, so new databases are picked up without a restart.
 * Whether a database has txbox is only known inside it: the launcher starts
 * a manager, which exits at once (marking its slot clean_exit) where
 * txbox is not installed; such databases are probed again when CREATE
 * EXTENSION txbox commits anywhere (it wakes the launcher) and otherwise
 * once a minute.  Template databases and those not accepting connections
 * are skipped.  Nothing runs during recovery or binary upgrade.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "txbox.h"
#include "workers.h"

#define LAUNCHER_SCAN_MS		5000	/* look for new databases */
#define LAUNCHER_REPROBE_MS		60000	/* databases without txbox */

typedef struct LauncherDb
{
	Oid			dboid;
	bool		seen;			/* in this scan of pg_database */
	TxboxTracked manager;		/* its manager */
} LauncherDb;

static LauncherDb *launcher_dbs = NULL;
static int	launcher_ndbs = 0;
static int	launcher_maxdbs = 0;

/* Register the launcher; called from _PG_init while preloading. */
void
txbox_launcher_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "txbox", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "txbox_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "txbox launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "txbox launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static LauncherDb *
launcher_db(Oid dboid)
{
	for (int i = 0; i < launcher_ndbs; i++)
		if (launcher_dbs[i].dboid == dboid)
			return &launcher_dbs[i];
	if (launcher_ndbs == launcher_maxdbs)
	{
		launcher_maxdbs = Max(16, launcher_maxdbs * 2);
		launcher_dbs = launcher_dbs == NULL ?
			MemoryContextAlloc(TopMemoryContext, launcher_maxdbs * sizeof(LauncherDb)) :
			repalloc(launcher_dbs, launcher_maxdbs * sizeof(LauncherDb));
	}
	memset(&launcher_dbs[launcher_ndbs], 0, sizeof(LauncherDb));
	launcher_dbs[launcher_ndbs].dboid = dboid;
	launcher_dbs[launcher_ndbs].manager.slot = -1;
	return &launcher_dbs[launcher_ndbs++];
}

/* Mark every connectable, non-template database as seen. */
static void
launcher_scan_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	for (int i = 0; i < launcher_ndbs; i++)
		launcher_dbs[i].seen = false;

	SetCurrentStatementStartTimestamp();	/* now() in this transaction */
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datallowconn && !db->datistemplate)
			launcher_db(db->oid)->seen = true;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/* Adopt the managers a previous launcher started (after our restart). */
static void
launcher_adopt_managers(void)
{
	for (int i = 0; i < txbox_shared->nslots; i++)
	{
		TxboxSlot  *s = &txbox_shared->slots[i];

		if (s->in_use && s->kind == TXBOX_WORKER_MANAGER)
			launcher_db(s->dboid)->manager.slot = i;
	}
}

/*
 * Relay slots whose database has no manager (it was dropped, or its manager
 * ended) and whose worker ended: nobody else will release them.  Runs
 * before managers start, so no manager is adopting them meanwhile.
 */
static void
launcher_release_orphans(void)
{
	for (int i = 0; i < txbox_shared->nslots; i++)
	{
		TxboxSlot  *s = &txbox_shared->slots[i];

		if (s->in_use && s->kind == TXBOX_WORKER_RELAY && s->exited &&
			launcher_db(s->dboid)->manager.slot < 0)
			txbox_slot_release(i);
	}
}

static void
launcher_reap_and_start(bool reprobe)
{
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < launcher_ndbs; i++)
	{
		LauncherDb *db = &launcher_dbs[i];

		/* a manager that ended on purpose: no txbox there, probe later */
		if (txbox_tracked_reap(&db->manager, now) && db->manager.failures == 0)
			db->manager.next_start = TimestampTzPlusMilliseconds(now, LAUNCHER_REPROBE_MS);

		if (reprobe && db->manager.failures == 0 && db->manager.slot < 0)
			db->manager.next_start = 0;
		if (!db->seen && db->manager.slot < 0)
			txbox_set_database_waiting(db->dboid, TXBOX_WAIT_NONE);	/* dropped */

	}

	launcher_release_orphans();

	for (int i = 0; i < launcher_ndbs; i++)
	{
		LauncherDb *db = &launcher_dbs[i];

		if (db->seen && db->manager.slot < 0 && now >= db->manager.next_start)
		{
			TxboxWait	why;
			char		name[BGW_MAXLEN];

			snprintf(name, sizeof(name), "txbox manager for database %u", db->dboid);
			if (!txbox_tracked_start(&db->manager, TXBOX_WORKER_MANAGER, db->dboid, 0, 0,
									 InvalidOid, "txbox manager", name, "txbox_manager_main",
									 &why))
			{
				/* managers count against no cap: only a full table stops them */
				if (why == TXBOX_WAIT_SLOTS)
					ereport(WARNING,
							(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
							 errmsg("txbox cannot start a manager for database %u: all txbox.max_workers slots are in use",
									db->dboid),
							 errhint("Raise txbox.max_workers (needs a restart).")));
				db->manager.next_start = TimestampTzPlusMilliseconds(now, LAUNCHER_SCAN_MS * 2);
			}
			/* shown by the status views of that database */
			txbox_set_database_waiting(db->dboid, why);
		}
	}
}

static void
launcher_detach(int code, Datum arg)
{
	txbox_shared->launcher = NULL;
}

void
txbox_launcher_main(Datum arg)
{
	txbox_worker_init_signals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	txbox_worker_harden_session();
	pgstat_report_appname("txbox launcher");

	txbox_shared->launcher = MyProc;
	before_shmem_exit(launcher_detach, (Datum) 0);

	launcher_adopt_managers();
	for (;;)
	{
		bool		reprobe = txbox_shared->reprobe;

		/*
		 * Managers ending (we are their notify pid) and CREATE EXTENSION
		 * txbox both set our latch; only the latter makes us probe the
		 * databases without txbox again before their minute is up.
		 */
		txbox_shared->reprobe = false;
		launcher_scan_databases();
		launcher_reap_and_start(reprobe);
		txbox_worker_wait(LAUNCHER_SCAN_MS, txbox_wait_event(TXBOX_WAIT_LAUNCHER_MAIN));
	}
}
