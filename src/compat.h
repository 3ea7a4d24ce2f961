/*-------------------------------------------------------------------------
 * compat.h
 *		Every difference between the PostgreSQL major versions txbox
 *		supports (15, 16, 17, 18), in one place.  Include after postgres.h.
 *-------------------------------------------------------------------------
 */
#ifndef TXBOX_COMPAT_H
#define TXBOX_COMPAT_H

#include "utils/wait_event.h"

#if PG_VERSION_NUM < 150000
#error "txbox needs PostgreSQL 15 or later"
#endif

/*
 * object_aclcheck replaced pg_proc_aclcheck and its siblings in 16; txbox
 * checks functions only.
 */
#if PG_VERSION_NUM < 160000
#define object_aclcheck(classid, objectid, roleid, mode) \
	(StaticAssertExpr((classid) == ProcedureRelationId, "txbox: functions only"), \
	 pg_proc_aclcheck(objectid, roleid, mode))
#endif

/*
 * What a txbox process waits for in WaitLatch: on 17 and later a named
 * wait event of its own (pg_stat_activity.wait_event says TxboxRelayMain,
 * wait_event_type Extension); before 17 every extension's wait is
 * "Extension".
 */
typedef enum TxboxWaitEvent
{
	TXBOX_WAIT_LAUNCHER_MAIN = 0,	/* launcher between scans */
	TXBOX_WAIT_MANAGER_MAIN,	/* manager between reconciles */
	TXBOX_WAIT_RELAY_MAIN,		/* relay idle or backing off */
	TXBOX_WAIT_HANDLER_MAIN,	/* handler idle or backing off */
	TXBOX_WAIT_TARGET_SOCKET,	/* relay waiting for its target's socket */
	TXBOX_NUM_WAIT_EVENTS
} TxboxWaitEvent;

static inline uint32
txbox_wait_event(TxboxWaitEvent event)
{
#if PG_VERSION_NUM >= 170000
	static const char *const names[TXBOX_NUM_WAIT_EVENTS] = {
		"TxboxLauncherMain", "TxboxManagerMain", "TxboxRelayMain",
		"TxboxHandlerMain", "TxboxTargetSocket"
	};
	/* WaitEventExtensionNew looks the name up in shared memory: once */
	static uint32 ids[TXBOX_NUM_WAIT_EVENTS];

	if (ids[event] == 0)
		ids[event] = WaitEventExtensionNew(names[event]);
	return ids[event];
#else
	(void) event;
	return PG_WAIT_EXTENSION;
#endif
}

/*
 * CreateWaitEventSet took the memory context to allocate in before 17, a
 * resource owner since (NULL: none, allocated in TopMemoryContext).  Either
 * way the set lives until FreeWaitEventSet.
 */
#if PG_VERSION_NUM >= 170000
#define txbox_create_wait_event_set(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define txbox_create_wait_event_set(nevents) CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

/*
 * RelationGetPrimaryKeyIndex takes a deferrable_ok flag from 18 (txbox's
 * primary keys are not deferrable), and index_beginscan an instrumentation
 * struct (NULL: none).
 */
#if PG_VERSION_NUM >= 180000
#define txbox_primary_key_index(rel) RelationGetPrimaryKeyIndex((rel), false)
#define txbox_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define txbox_primary_key_index(rel) RelationGetPrimaryKeyIndex(rel)
#define txbox_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

/*
 * The oldest transaction whose status clog still keeps (read under
 * XactTruncationLock): ShmemVariableCache became TransamVariables in 17.
 */
#if PG_VERSION_NUM >= 170000
#define txbox_oldest_clog_xid() (TransamVariables->oldestClogXid)
#else
#define txbox_oldest_clog_xid() (ShmemVariableCache->oldestClogXid)
#endif

/*
 * pg_b64_encode and pg_b64_decode take their bytes as uint8 * from 18,
 * char * before: callers pass a void * (the bytes of an HMAC, a secret).
 */

/*
 * An insert's index entries and checks, as ExecInsert makes them (for ON
 * CONFLICT DO NOTHING with every unique index an arbiter, no_dup_err):
 * ExecInsertIndexTuples took onlySummarizing from 16,
 * ExecCheckIndexConstraints the tuple being updated (NULL: an insert) from
 * 18.
 */
#if PG_VERSION_NUM >= 180000
#define txbox_check_index_constraints(rri, slot, estate, conflict_tid) \
	ExecCheckIndexConstraints((rri), (slot), (estate), (conflict_tid), NULL, NIL)
#else
#define txbox_check_index_constraints(rri, slot, estate, conflict_tid) \
	ExecCheckIndexConstraints((rri), (slot), (estate), (conflict_tid), NIL)
#endif
#if PG_VERSION_NUM >= 160000
#define txbox_insert_index_tuples(rri, slot, estate, no_dup_err, spec_conflict) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, (no_dup_err), (spec_conflict), NIL, false)
#else
#define txbox_insert_index_tuples(rri, slot, estate, no_dup_err, spec_conflict) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, (no_dup_err), (spec_conflict), NIL)
#endif

#endif							/* TXBOX_COMPAT_H */
