/*-------------------------------------------------------------------------
 * workers.h
 *		The background worker tree: launcher -> per-database manager ->
 *		relay and handler workers, and the shared memory they coordinate
 *		through.
 *
 *	launcher.c	one per cluster; starts a manager for every database
 *				that has txbox installed
 *	manager.c	one per database; starts the relay and handler workers,
 *				restarts them with backoff, runs the outbox retention
 *	relay.c		one per relay; moves committed outbox messages to its
 *				target, through targets/target.h
 *	handler.c	"parallel" per handler; calls the handler function for
 *				each inbox message, exactly once
 *	shmem.c		worker slots and commit-time wake-ups
 *	worker_util.c	what every worker does the same way: signals, waits,
 *				starting workers, transactions as txbox's owner, user code
 *				fences, error recovery
 *-------------------------------------------------------------------------
 */
#ifndef TXBOX_WORKERS_H
#define TXBOX_WORKERS_H

#include "postmaster/bgworker.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "utils/timestamp.h"

typedef enum TxboxWorkerKind
{
	TXBOX_WORKER_MANAGER = 1,
	TXBOX_WORKER_RELAY,
	TXBOX_WORKER_HANDLER
} TxboxWorkerKind;

/* what txbox_wake_at_commit wakes */
#define TXBOX_WAKE_RELAYS		0x01
#define TXBOX_WAKE_HANDLERS		0x02
#define TXBOX_WAKE_MANAGER		0x04
#define TXBOX_WAKE_LAUNCHER		0x08

typedef struct TxboxSlot
{
	bool		in_use;
	TxboxWorkerKind kind;
	Oid			dboid;
	int32		object_id;		/* relay or handler id */
	int			part;			/* handler: which of its parallel workers */
	Oid			owner;			/* role it runs as (relay, handler) */
	uint64		generation;		/* tells a reused slot from the old one */
	pid_t		pid;			/* 0 until the worker attached */
	PGPROC	   *proc;
	bool		exited;			/* the worker ran and has exited */
	bool		clean_exit;	/* ended on purpose (no txbox here; relay paused or dropped): no backoff */
} TxboxSlot;

/*
 * A slot's life: the starter (launcher or manager) claims it and starts the
 * worker; the worker attaches, and marks it exited when it ends; the starter
 * releases it once it sees the worker gone (exited, or its handle stopped).
 * A starter that restarts adopts the running workers of its slots.
 */

/*
 * Why a worker could not start (TXBOX_WAIT_NONE: it could).  The manager
 * shows it in the relay's or handler's row; the launcher keeps it in
 * shared memory for a database whose manager could not start, where
 * txbox._manager_waiting() shows it.  txbox_wait_reason() says it in words.
 */
typedef enum TxboxWait
{
	TXBOX_WAIT_NONE = 0,
	TXBOX_WAIT_SLOTS,			/* all txbox.max_workers slots in use */
	TXBOX_WAIT_RESERVED,		/* the free slots are kept for managers */
	TXBOX_WAIT_DATABASE_CAP,	/* txbox.max_workers_per_database */
	TXBOX_WAIT_ROLE_CAP,		/* txbox.max_workers_per_role */
	TXBOX_WAIT_BGWORKER			/* no max_worker_processes slot free */
} TxboxWait;

#define TXBOX_MAX_WAITING_DBS	64

typedef struct TxboxWaitingDb
{
	Oid			dboid;			/* InvalidOid: entry unused */
	TxboxWait	why;
	TimestampTz since;
} TxboxWaitingDb;

typedef struct TxboxShared
{
	LWLock	   *lock;			/* slot allocation */
	PGPROC	   *launcher;
	bool		reprobe;		/* CREATE EXTENSION txbox committed somewhere */
	uint64		generation;
	/* databases whose manager the launcher could not start (launcher.c) */
	TxboxWaitingDb waiting_dbs[TXBOX_MAX_WAITING_DBS];
	int			nslots;
	TxboxSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} TxboxShared;

extern TxboxShared *txbox_shared;

/*
 * A worker a starter keeps running (the launcher: a manager per database; a
 * manager: its relay and handler workers), and when to start it again.
 */
typedef struct TxboxTracked
{
	int			slot;			/* -1: not running */
	BackgroundWorkerHandle *handle;	/* NULL for an adopted worker */
	TimestampTz next_start;		/* not before this */
	int			failures;		/* ended by error or termination, in a row */
} TxboxTracked;

/* settings only the workers use (txbox.c) */
extern int	txbox_max_workers;
extern int	txbox_poll_interval;	/* ms */
extern int	txbox_outbox_retention;	/* s */
extern int	txbox_max_workers_per_database;	/* 0: no cap */
extern int	txbox_max_workers_per_role;	/* 0: no cap */
extern int	txbox_reserved_manager_slots;
extern int	txbox_max_parallel;

/* shmem.c */
extern void txbox_shmem_init(void);
extern void txbox_wake_launcher(void);
extern void txbox_wake_manager(Oid dboid);
extern void txbox_wake_at_commit(int what);
extern int	txbox_slot_claim(TxboxWorkerKind kind, Oid dboid, int32 object_id,
							 int part, Oid owner, TxboxWait *why);
extern const char *txbox_wait_reason(TxboxWait why);
extern void txbox_set_database_waiting(Oid dboid, TxboxWait why);
extern void txbox_slot_release(int slot);
extern TxboxSlot *txbox_slot_attach(int slot);
extern bool txbox_slot_gone(int slot, BackgroundWorkerHandle *handle);
extern bool txbox_tracked_reap(TxboxTracked *t, TimestampTz now);
extern bool txbox_tracked_start(TxboxTracked *t, TxboxWorkerKind kind, Oid dboid,
								int32 object_id, int part, Oid owner, const char *type,
								const char *name, const char *function, TxboxWait *why);

/* launcher.c, manager.c, relay.c: worker entry points */
extern void txbox_launcher_register(void);
extern PGDLLEXPORT void txbox_launcher_main(Datum arg);
extern PGDLLEXPORT void txbox_manager_main(Datum arg);
extern PGDLLEXPORT void txbox_relay_main(Datum arg);
extern PGDLLEXPORT void txbox_handler_main(Datum arg);

/* the search_path of every worker's own SQL */
#define TXBOX_SAFE_SEARCH_PATH	"pg_catalog, pg_temp"

/* worker_util.c: what every txbox worker does the same way */
extern void txbox_worker_init_signals(void);
extern void txbox_worker_harden_session(void);
extern void txbox_worker_name(const char *kind, const char *name);
extern ErrorData *txbox_worker_recover(MemoryContext cxt);
extern bool txbox_worker_wait(long timeout_ms, uint32 wait_event);
extern bool txbox_database_is_being_dropped(void);
extern void txbox_worker_exit_if_gone(TxboxSlot *slot, bool gone);
extern bool txbox_start_worker(const char *type, const char *name,
							   const char *function, int slot, Oid userid,
							   BackgroundWorkerHandle **handle, TxboxWait *why);
extern Oid	txbox_worker_userid(void);
extern long txbox_backoff_ms(int attempt, long max_ms);
extern void txbox_xact_begin(const char *activity);
extern void txbox_xact_as_extension_owner(void);
extern void txbox_xact_as_worker_role(void);
extern int	txbox_user_code_begin(void);
extern void txbox_user_code_end(int nestlevel);
extern void txbox_xact_commit(void);

#endif							/* TXBOX_WORKERS_H */
