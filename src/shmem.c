/*-------------------------------------------------------------------------
 * shmem.c
 *		txbox's shared memory: the worker slots of the per-database
 *		managers and the relay and handler workers, and commit-time
 *		wake-ups.
 *
 * Exists only when txbox is in shared_preload_libraries; every function
 * here is a no-op without it, so the SQL API works either way.
 *
 * Slots.  txbox.max_workers slots; a starter claims one for each worker it
 * starts (kind, database, relay or handler id) and hands the slot number to
 * the worker as its main argument; the worker fills in its PGPROC, and
 * marks the slot exited when it ends; the starter then releases it
 * (txbox_tracked_reap, workers.h).  Readers that only want to set a latch
 * read a slot without the lock: a stale PGPROC pointer at worst wakes
 * another process, which is harmless.  Relay and handler workers claim
 * within caps (per database, per owner) and leave
 * txbox.reserved_manager_slots to managers; the launcher notes here why a
 * database's manager could not start (waiting_dbs).
 *
 * Wake-ups.  A transaction that published or received messages (or changed
 * relays or handlers) notes it in backend-local flags; the transaction
 * callback sets the latches of the relay or handler workers (or manager,
 * launcher) of this database only once the commit is visible, so a woken
 * worker sees the new rows.  Nothing is done per publish: a flag and, at
 * commit, a scan of max_workers slots.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "txbox.h"
#include "workers.h"

TxboxShared *txbox_shared = NULL;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;

/* wake-ups pending until this transaction commits (TXBOX_WAKE_*) */
static int	wake_at_commit = 0;
static bool xact_callback_registered = false;

static Size
txbox_shmem_size(void)
{
	return add_size(offsetof(TxboxShared, slots),
					mul_size(sizeof(TxboxSlot), txbox_max_workers));
}

static void
txbox_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(txbox_shmem_size());
	RequestNamedLWLockTranche("txbox", 1);
}

static void
txbox_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	txbox_shared = ShmemInitStruct("txbox", txbox_shmem_size(), &found);
	if (!found)
	{
		memset(txbox_shared, 0, txbox_shmem_size());
		txbox_shared->lock = &(GetNamedLWLockTranche("txbox"))->lock;
		txbox_shared->nslots = txbox_max_workers;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init while preloading. */
void
txbox_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = txbox_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = txbox_shmem_startup;
}

/* Set the latch of every live slot of kind in database dboid (any: InvalidOid). */
static void
wake_slots(TxboxWorkerKind kind, Oid dboid)
{
	if (txbox_shared == NULL)
		return;
	for (int i = 0; i < txbox_shared->nslots; i++)
	{
		TxboxSlot  *s = &txbox_shared->slots[i];
		PGPROC	   *proc = s->proc;

		if (s->in_use && s->kind == kind && proc != NULL &&
			(dboid == InvalidOid || s->dboid == dboid))
			SetLatch(&proc->procLatch);
	}
}

void
txbox_wake_launcher(void)
{
	PGPROC	   *proc;

	if (txbox_shared == NULL)
		return;
	proc = txbox_shared->launcher;
	if (proc != NULL)
		SetLatch(&proc->procLatch);
}

void
txbox_wake_manager(Oid dboid)
{
	wake_slots(TXBOX_WORKER_MANAGER, dboid);
}


static void
txbox_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit & TXBOX_WAKE_RELAYS)
				wake_slots(TXBOX_WORKER_RELAY, MyDatabaseId);
			if (wake_at_commit & TXBOX_WAKE_HANDLERS)
				wake_slots(TXBOX_WORKER_HANDLER, MyDatabaseId);
			if (wake_at_commit & TXBOX_WAKE_MANAGER)
				txbox_wake_manager(MyDatabaseId);
			if (wake_at_commit & TXBOX_WAKE_LAUNCHER)
			{
				txbox_shared->reprobe = true;
				txbox_wake_launcher();
			}
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_at_commit = 0;
			break;
		default:
			break;
	}
}

/*
 * txbox_wake_at_commit -- when this transaction commits, wake what it
 * concerns (TXBOX_WAKE_* bits).  Cheap enough for every publish.
 */
void
txbox_wake_at_commit(int what)
{
	if (txbox_shared == NULL)
		return;
	if (!xact_callback_registered)
	{
		RegisterXactCallback(txbox_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit |= what;
}

/*
 * txbox_slot_claim -- reserve a free slot for a worker of kind in dboid,
 * for relay or handler object_id (part: which of a handler's workers)
 * running as owner.  Returns its index, or -1 and in *why the reason when
 * it may not start now: no free slot, a cap (txbox.max_workers_per_database,
 * txbox.max_workers_per_role), or only the slots kept for managers left
 * (txbox.reserved_manager_slots, less the managers running).  Managers
 * take any free slot and count against no cap.
 */
int
txbox_slot_claim(TxboxWorkerKind kind, Oid dboid, int32 object_id, int part,
				 Oid owner, TxboxWait *why)
{
	int			found = -1;
	int			nfree = 0;
	int			nmanagers = 0;
	int			ndatabase = 0;
	int			nrole = 0;

	LWLockAcquire(txbox_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < txbox_shared->nslots; i++)
	{
		TxboxSlot  *s = &txbox_shared->slots[i];

		if (!s->in_use)
		{
			if (found < 0)
				found = i;
			nfree++;
		}
		else if (s->kind == TXBOX_WORKER_MANAGER)
			nmanagers++;
		else
		{
			ndatabase += s->dboid == dboid;
			nrole += s->owner == owner;
		}
	}
	*why = TXBOX_WAIT_NONE;
	if (found < 0)
		*why = TXBOX_WAIT_SLOTS;
	else if (kind != TXBOX_WORKER_MANAGER)
	{
		if (txbox_max_workers_per_database > 0 && ndatabase >= txbox_max_workers_per_database)
			*why = TXBOX_WAIT_DATABASE_CAP;
		else if (txbox_max_workers_per_role > 0 && nrole >= txbox_max_workers_per_role)
			*why = TXBOX_WAIT_ROLE_CAP;
		else if (nfree <= txbox_reserved_manager_slots - nmanagers)
			*why = TXBOX_WAIT_RESERVED;
	}
	if (*why != TXBOX_WAIT_NONE)
		found = -1;
	else
	{
		TxboxSlot  *s = &txbox_shared->slots[found];

		memset(s, 0, sizeof(TxboxSlot));
		s->in_use = true;
		s->kind = kind;
		s->dboid = dboid;
		s->object_id = object_id;
		s->part = part;
		s->owner = owner;
		s->generation = ++txbox_shared->generation;
	}
	LWLockRelease(txbox_shared->lock);
	return found;
}

/* Why a worker waits, in words (for last_error): what is full, and the fix. */
const char *
txbox_wait_reason(TxboxWait why)
{
	switch (why)
	{
		case TXBOX_WAIT_NONE:
			break;
		case TXBOX_WAIT_SLOTS:
			return "waiting for a worker slot: all txbox.max_workers slots are in use; raise txbox.max_workers and max_worker_processes (server restart), or drop unused relays and handlers";
		case TXBOX_WAIT_RESERVED:
			return "waiting for a worker slot: the free txbox.max_workers slots are kept for database managers (txbox.reserved_manager_slots); raise txbox.max_workers and max_worker_processes (server restart)";
		case TXBOX_WAIT_DATABASE_CAP:
			return "waiting for a worker slot: this database runs txbox.max_workers_per_database workers already; a superuser may raise it";
		case TXBOX_WAIT_ROLE_CAP:
			return "waiting for a worker slot: its owner runs txbox.max_workers_per_role workers already; a superuser may raise it";
		case TXBOX_WAIT_BGWORKER:
			return "waiting for a worker slot: no background worker slot is free; raise max_worker_processes (server restart)";
	}
	return NULL;
}

/*
 * txbox_set_database_waiting -- the launcher notes why dboid's manager
 * could not start (TXBOX_WAIT_NONE: it started), for
 * txbox._manager_waiting().  At most TXBOX_MAX_WAITING_DBS databases are
 * noted; more wait unnoted.
 */
void
txbox_set_database_waiting(Oid dboid, TxboxWait why)
{
	TxboxWaitingDb *entry = NULL;
	TxboxWaitingDb *unused = NULL;

	LWLockAcquire(txbox_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < TXBOX_MAX_WAITING_DBS; i++)
	{
		TxboxWaitingDb *w = &txbox_shared->waiting_dbs[i];

		if (w->dboid == dboid)
			entry = w;
		else if (w->dboid == InvalidOid && unused == NULL)
			unused = w;
	}
	if (why == TXBOX_WAIT_NONE)
	{
		if (entry)
			memset(entry, 0, sizeof(TxboxWaitingDb));
	}
	else if (entry == NULL && unused != NULL)
	{
		unused->dboid = dboid;
		unused->why = why;
		unused->since = GetCurrentTimestamp();
	}
	else if (entry != NULL)
		entry->why = why;
	LWLockRelease(txbox_shared->lock);
}

/* Give a slot back: its worker has ended (or never started). */
void
txbox_slot_release(int slot)
{
	LWLockAcquire(txbox_shared->lock, LW_EXCLUSIVE);
	memset(&txbox_shared->slots[slot], 0, sizeof(TxboxSlot));
	LWLockRelease(txbox_shared->lock);
}

static void
slot_detach(int code, Datum arg)
{
	TxboxSlot  *s = &txbox_shared->slots[DatumGetInt32(arg)];

	LWLockAcquire(txbox_shared->lock, LW_EXCLUSIVE);
	s->pid = 0;
	s->proc = NULL;
	s->exited = true;
	LWLockRelease(txbox_shared->lock);
}

/*
 * txbox_slot_gone -- has the worker of this (in-use) slot ended?  handle is
 * the starter's handle for it, or NULL for an adopted worker.
 */
bool
txbox_slot_gone(int slot, BackgroundWorkerHandle *handle)
{
	pid_t		pid;

	if (txbox_shared->slots[slot].exited)
		return true;
	return handle != NULL &&
		GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED;
}

/*
 * txbox_tracked_reap -- if t's worker has ended, release its slot and
 * return true.  One that ended by error or termination is started again
 * after a backoff (next_start, failures); one that ended on purpose
 * (clean_exit) resets failures.
 */
bool
txbox_tracked_reap(TxboxTracked *t, TimestampTz now)
{
	if (t->slot < 0 || !txbox_slot_gone(t->slot, t->handle))
		return false;
	if (txbox_shared->slots[t->slot].clean_exit)
		t->failures = 0;
	else
	{
		t->failures++;
		t->next_start = TimestampTzPlusMilliseconds(now, txbox_backoff_ms(t->failures, 30000));
	}
	txbox_slot_release(t->slot);
	if (t->handle)
		pfree(t->handle);
	t->handle = NULL;
	t->slot = -1;
	return true;
}

/*
 * txbox_tracked_start -- claim a slot for t's worker (txbox_slot_claim's
 * arguments) and start it (txbox_start_worker's, running as owner).
 * Returns whether it runs; if not, *why says why it may not start now
 * (TXBOX_WAIT_NONE: it ended at once).
 */
bool
txbox_tracked_start(TxboxTracked *t, TxboxWorkerKind kind, Oid dboid, int32 object_id,
					int part, Oid owner, const char *type, const char *name,
					const char *function, TxboxWait *why)
{
	int			slot = txbox_slot_claim(kind, dboid, object_id, part, owner, why);

	if (slot < 0)
		return false;
	if (!txbox_start_worker(type, name, function, slot, owner, &t->handle, why))
	{
		txbox_slot_release(slot);
		return false;
	}
	t->slot = slot;
	return true;
}

/*
 * txbox_slot_attach -- called by a starting worker: record our PGPROC in the
 * slot our starter reserved, and release it when we exit.
 */
TxboxSlot *
txbox_slot_attach(int slot)
{
	TxboxSlot  *s;

	if (txbox_shared == NULL || slot < 0 || slot >= txbox_shared->nslots)
		elog(ERROR, "txbox: invalid worker slot %d", slot);
	s = &txbox_shared->slots[slot];
	LWLockAcquire(txbox_shared->lock, LW_EXCLUSIVE);
	if (!s->in_use)
	{
		LWLockRelease(txbox_shared->lock);
		elog(ERROR, "txbox: worker slot %d is not reserved", slot);
	}
	s->pid = MyProcPid;
	s->proc = MyProc;
	LWLockRelease(txbox_shared->lock);
	before_shmem_exit(slot_detach, Int32GetDatum(slot));
	return s;
}
