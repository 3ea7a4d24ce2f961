/*-------------------------------------------------------------------------
 * manager.c
 *		The per-database txbox manager: keeps one relay worker running for
 *		every relay that is not paused, and runs the outbox retention.
 *
 * Started by the launcher in every database; exits at once where txbox is
 * not installed (marking its slot, so the launcher probes less often).  It
 * is woken when relays change (create/resume/alter commit) and by its own
 * timer.  A relay worker that ended by error or termination is restarted
 * with exponential backoff; one that ended on purpose (relay paused or
 * dropped) is not.  Retention (txbox._maintain) runs under a short
 * lock_timeout so it never stalls publishers for long.
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

typedef struct ManagedRelay
{
	int32		relay_id;
	int			slot;			/* -1: not running */
	BackgroundWorkerHandle *handle;	/* NULL for an adopted worker */
	bool		wanted;			/* in this reading of txbox.relays */
	TimestampTz next_start;
	int			failures;
} ManagedRelay;

static ManagedRelay *mgr_relays = NULL;
static int	mgr_nrelays = 0;
static int	mgr_maxrelays = 0;

static ManagedRelay *
manager_relay(int32 relay_id)
{
	for (int i = 0; i < mgr_nrelays; i++)
		if (mgr_relays[i].relay_id == relay_id)
			return &mgr_relays[i];
	if (mgr_nrelays == mgr_maxrelays)
	{
		mgr_maxrelays = Max(16, mgr_maxrelays * 2);
		mgr_relays = mgr_relays == NULL ?
			MemoryContextAlloc(TopMemoryContext, mgr_maxrelays * sizeof(ManagedRelay)) :
			repalloc(mgr_relays, mgr_maxrelays * sizeof(ManagedRelay));
	}
	memset(&mgr_relays[mgr_nrelays], 0, sizeof(ManagedRelay));
	mgr_relays[mgr_nrelays].relay_id = relay_id;
	mgr_relays[mgr_nrelays].slot = -1;
	return &mgr_relays[mgr_nrelays++];
}

/* Relay workers a previous manager of this database started. */
static void
manager_adopt_workers(void)
{
	for (int i = 0; i < txbox_shared->nslots; i++)
	{
		TxboxSlot  *s = &txbox_shared->slots[i];

		if (s->in_use && s->kind == TXBOX_WORKER_RELAY && s->dboid == MyDatabaseId)
			manager_relay(s->relay_id)->slot = i;
	}
}

/*
 * Release the slots of relay workers that ended; schedule restarts.  Returns
 * when the earliest restart is due (0: none).
 */
static TimestampTz
manager_reap(TimestampTz now)
{
	TimestampTz due = 0;

	for (int i = 0; i < mgr_nrelays; i++)
	{
		ManagedRelay *r = &mgr_relays[i];
		TxboxSlot  *s;

		if (r->slot < 0 || !txbox_slot_gone(r->slot, r->handle))
			continue;
		s = &txbox_shared->slots[r->slot];
		if (s->clean_exit)	/* ended on purpose: paused, dropped */
			r->failures = 0;
		else
		{
			r->failures++;
			r->next_start = TimestampTzPlusMilliseconds(now,
														txbox_backoff_ms(r->failures, 30000));
		}
		txbox_slot_release(r->slot);
		if (r->handle)
			pfree(r->handle);
		r->handle = NULL;
		r->slot = -1;
	}
	for (int i = 0; i < mgr_nrelays; i++)
	{
		ManagedRelay *r = &mgr_relays[i];

		if (r->wanted && r->slot < 0 && (due == 0 || r->next_start < due))
			due = r->next_start;
	}
	return due;
}

/*
 * Read the relays that should run and start the missing workers.  Returns
 * false when txbox is no longer installed; sets *again when it started one.
 */
static bool
manager_reconcile(TimestampTz now, bool *again)
{
	int			n;
	struct
	{
		int32		relay_id;
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
	/*
	 * A relay runs as its owner, so an owner that cannot log in (any more)
	 * cannot run it: say so in its status instead of failing to start it.
	 */
	if (SPI_execute("UPDATE txbox.relays r SET state = 'failed', last_error_at = now(),"
					" last_error = format('role %s cannot log in: a relay runs as the role that owns it', r.owner)"
					" FROM pg_catalog.pg_authid a"
					" WHERE a.oid = r.owner AND NOT a.rolcanlogin AND NOT r.paused"
					" AND r.last_error IS DISTINCT FROM format('role %s cannot log in: a relay runs as the role that owns it', r.owner)",
					false, 0) != SPI_OK_UPDATE ||
		SPI_execute("SELECT r.relay_id, r.owner::oid, left(r.name, 60) FROM txbox.relays r"
					" JOIN pg_catalog.pg_authid a ON a.oid = r.owner"
					" WHERE NOT r.paused AND a.rolcanlogin ORDER BY r.relay_id", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "txbox manager: cannot read txbox.relays");
	n = (int) SPI_processed;
	if (n > 0)
		want = MemoryContextAlloc(TopTransactionContext, n * sizeof(*want));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[i];

		want[i].relay_id = DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		want[i].owner = DatumGetObjectId(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		strlcpy(want[i].name, SPI_getvalue(tup, SPI_tuptable->tupdesc, 3), NAMEDATALEN);
	}
	SPI_finish();
	PopActiveSnapshot();

	for (int i = 0; i < mgr_nrelays; i++)
		mgr_relays[i].wanted = false;

	for (int i = 0; i < n; i++)
	{
		ManagedRelay *r = manager_relay(want[i].relay_id);
		int			slot;
		char		name[BGW_MAXLEN];

		r->wanted = true;
		if (r->slot >= 0 || now < r->next_start)
			continue;
		slot = txbox_slot_claim(TXBOX_WORKER_RELAY, MyDatabaseId, r->relay_id);
		if (slot < 0)
		{
			ereport(WARNING,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("txbox cannot start relay \"%s\": all txbox.max_workers slots are in use",
							want[i].name),
					 errhint("Raise txbox.max_workers (needs a restart), or drop unused relays.")));
			r->next_start = TimestampTzPlusMilliseconds(now, MANAGER_WAKE_MS);
			continue;
		}
		snprintf(name, sizeof(name), "txbox relay %s", want[i].name);
		/* waiting for its startup may have eaten a wake-up: look again */
		*again = true;
		if (txbox_start_worker("txbox relay", name, "txbox_relay_main", slot,
							   want[i].owner, &r->handle))
			r->slot = slot;
		else
		{
			txbox_slot_release(slot);
			r->handle = NULL;
			r->next_start = TimestampTzPlusMilliseconds(now, MANAGER_WAKE_MS);
		}
	}
	CommitTransactionCommand();

	/*
	 * Workers of relays that were paused or dropped: end them now, even in
	 * the middle of a delivery to a hung target (at-least-once makes that
	 * safe); resuming starts afresh without backoff.
	 */
	for (int i = 0; i < mgr_nrelays; i++)
	{
		ManagedRelay *r = &mgr_relays[i];

		if (r->wanted)
			continue;
		r->failures = 0;
		r->next_start = 0;
		if (r->slot >= 0 && txbox_shared->slots[r->slot].pid != 0)
			kill(txbox_shared->slots[r->slot].pid, SIGTERM);
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
