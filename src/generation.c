/*-------------------------------------------------------------------------
 * generation.c
 *		Rotated tables: which generation (partition) writers use now, and
 *		switching to the next one.
 *
 * txbox.outbox, txbox.inbox_dedup, txbox.idempotency_keys and txbox.inbox
 * are LIST-partitioned by a "gen" column.  Writers insert only into the current
 * generation, named in txbox._generation.  Old data leaves by TRUNCATE of a
 * whole generation (txbox._switch_generation), so the tables never need a
 * per-row DELETE and never bloat.
 *
 * Concurrency.  A writer takes RowExclusiveLock on the parent table before
 * it reads the current generation, and keeps it to the end of its
 * transaction.  A switch takes ShareLock on the parent, which waits for
 * every transaction that is writing, and blocks new writers until the
 * switch commits.  Hence all in-progress writers always write into the same
 * generation, and once a switch has committed no transaction writes into
 * the old generation again.  The inbox relies on this: a claim finds a
 * committed record in any generation with a fresh snapshot, and a
 * concurrent claim of the same id meets the other's uncommitted row in the
 * current generation's unique index.
 *
 * Caching.  Each backend caches the current generation per table.  A
 * switch sends a relcache invalidation for the parent; a writer's lock
 * acquisition processes pending invalidations, so the cache is never stale
 * once the lock is held.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/tablecmds.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "txbox.h"

typedef struct GenerationCache
{
	const char *relname;
	Oid			relid;			/* InvalidOid: look up again */
	int16		current;
	int16		generations;	/* how many (partitions gen 0 .. generations - 1) */
	bool		others_empty;	/* no other generation ever held rows since truncation */
	bool		valid;
	uint64		epoch;			/* generation_loads when read */
	Oid			parts[TXBOX_MAX_GENERATIONS];	/* partitions' OIDs, InvalidOid: look up */
} GenerationCache;

/* how many times this backend read a table's generations */
static uint64 generation_loads = 0;

static GenerationCache gen_cache[TXBOX_NUM_ROTATED] = {
	[TXBOX_OUTBOX] = {"outbox", InvalidOid, 0, false},
	[TXBOX_INBOX_DEDUP] = {"inbox_dedup", InvalidOid, 0, false},
	[TXBOX_IDEMPOTENCY_KEYS] = {"idempotency_keys", InvalidOid, 0, false},
	[TXBOX_INBOX] = {"inbox", InvalidOid, 0, false},
};

static TxboxPlan gen_read_plan = {
	"SELECT g.current_gen, NOT EXISTS (SELECT 1 FROM txbox._generation_end e"
	"   WHERE e.relname OPERATOR(pg_catalog.=) $1), g.generations"
	" FROM txbox._generation g WHERE g.relname OPERATOR(pg_catalog.=) $1",
	1, {NAMEOID}
};
#define Anum_gen_read_current		1
#define Anum_gen_read_others_empty	2
#define Anum_gen_read_generations	3

/*
 * txbox tables' OIDs by name, as txbox_table_oid found them: a call then
 * costs no catalog lookups.  Forgotten when any of them is invalidated.
 */
#define TABLE_OIDS_CACHED 16
static struct
{
	NameData	name;
	Oid			relid;
}			table_oids[TABLE_OIDS_CACHED];
static int	n_table_oids;

/*
 * Relcache callback: forget what a switch (or a DROP, DROP EXTENSION)
 * changed.  A change to a table's partitions invalidates the table.
 */
static void
generation_relcache_callback(Datum arg, Oid relid)
{
	for (int i = 0; i < TXBOX_NUM_ROTATED; i++)
	{
		bool		part = false;

		for (int g = 0; g < TXBOX_MAX_GENERATIONS; g++)
			part |= relid == gen_cache[i].parts[g];
		if (relid == InvalidOid || relid == gen_cache[i].relid || part)
		{
			gen_cache[i].valid = false;
			gen_cache[i].relid = InvalidOid;
			memset(gen_cache[i].parts, 0, sizeof(gen_cache[i].parts));
		}
	}
	for (int i = 0; i < n_table_oids; i++)
		if (relid == InvalidOid || relid == table_oids[i].relid)
			n_table_oids = 0;
}

void
txbox_generation_init(void)
{
	CacheRegisterRelcacheCallback(generation_relcache_callback, (Datum) 0);
}

/*
 * txbox_table_oid -- the OID of table txbox.relname; if it is missing,
 * InvalidOid with missing_ok (a table a database still on an older txbox
 * lacks: not cached), else ERROR.  table_oid_lookup looks it up.
 */
static Oid
table_oid_lookup(const char *relname, bool missing_ok)
{
	Oid			relid = get_relname_relid(relname, get_namespace_oid("txbox", false));

	if (!OidIsValid(relid) && !missing_ok)
		elog(ERROR, "txbox: table txbox.%s is missing", relname);
	return relid;
}

Oid
txbox_table_oid(const char *relname, bool missing_ok)
{
	Oid			relid;

	for (int i = 0; i < n_table_oids; i++)
		if (strcmp(NameStr(table_oids[i].name), relname) == 0)
			return table_oids[i].relid;
	relid = table_oid_lookup(relname, missing_ok);
	if (OidIsValid(relid) && n_table_oids < TABLE_OIDS_CACHED)
	{
		namestrcpy(&table_oids[n_table_oids].name, relname);
		table_oids[n_table_oids++].relid = relid;
	}
	return relid;
}

/*
 * txbox_generation_relid -- the OID of generation gen's partition of table,
 * txbox.<table>_<gen>.  The caller holds the parent's lock
 * (txbox_current_generation), which processed the invalidations that a
 * change to the partitions sent.
 */
Oid
txbox_generation_relid(TxboxRotated table, int16 gen)
{
	GenerationCache *c = &gen_cache[table];

	if (gen < 0 || gen >= TXBOX_MAX_GENERATIONS)
		elog(ERROR, "txbox: txbox.%s has no generation %d", c->relname, gen);
	if (!OidIsValid(c->parts[gen]))
	{
		char		relname[NAMEDATALEN];

		snprintf(relname, sizeof(relname), "%s_%d", c->relname, gen);
		c->parts[gen] = table_oid_lookup(relname, false);
	}
	return c->parts[gen];
}

static Oid
generation_parent_relid(GenerationCache *c)
{
	if (!OidIsValid(c->relid))
		c->relid = txbox_table_oid(c->relname, false);
	return c->relid;
}

/*
 * txbox_current_generation -- the generation writers of table insert into.
 * If others_empty is not NULL, it says whether every other generation is
 * empty (none was current since it was last truncated: a young table), so
 * that readers may skip them.
 *
 * Takes (and keeps to end of transaction) RowExclusiveLock on the parent
 * table, which a concurrent switch waits for.  Must be called inside a
 * transaction; connects to SPI (nested, if the caller is) only to read
 * txbox._generation after a switch.
 */
int16
txbox_current_generation(TxboxRotated table, bool *others_empty)
{
	GenerationCache *c = &gen_cache[table];
	Oid			relid = generation_parent_relid(c);
	bool		isnull;

	LockRelationOid(relid, RowExclusiveLock);

	/* the lock processed invalidations: a switch or a drop reset the cache */
	if (!c->valid || c->relid != relid)
	{
		Datum		arg = CStringGetDatum(c->relname);
		Datum		name = DirectFunctionCall1(namein, arg);

		/*
		 * Read with a fresh snapshot: a REPEATABLE READ transaction's own
		 * snapshot may predate the switch that invalidated the cache.
		 */
		SPI_connect();
		if (txbox_exec(&gen_read_plan, &name, NULL, true, 1) != 1)
			elog(ERROR, "txbox: no generation row for txbox.%s", c->relname);
		c->current = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc,
												 Anum_gen_read_current, &isnull));
		c->others_empty = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc,
													 Anum_gen_read_others_empty, &isnull));
		c->generations = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc,
													 Anum_gen_read_generations, &isnull));
		SPI_finish();
		if (c->generations > TXBOX_MAX_GENERATIONS)
			elog(ERROR, "txbox: txbox.%s has %d generations, more than %d",
				 c->relname, c->generations, TXBOX_MAX_GENERATIONS);
		c->relid = generation_parent_relid(c);
		c->epoch = ++generation_loads;
		c->valid = true;
	}
	if (others_empty)
		*others_empty = c->others_empty;
	return c->current;
}

/*
 * A row matching the one being inserted, committed but invisible to this
 * REPEATABLE READ or SERIALIZABLE transaction's snapshot: as ON CONFLICT DO
 * NOTHING does (nodeModifyTable.c), refuse to act on it (40001), unless
 * this transaction wrote it.
 */
static void
generation_check_visible(Relation rel, ItemPointer tid)
{
	TupleTableSlot *slot;

	if (!IsolationUsesXactSnapshot())
		return;
	slot = table_slot_create(rel, NULL);
	if (!table_tuple_fetch_row_version(rel, tid, SnapshotAny, slot))
		elog(ERROR, "txbox: the conflicting row of an insert into %s is gone",
			 RelationGetRelationName(rel));
	if (!table_tuple_satisfies_snapshot(rel, slot, GetTransactionSnapshot()))
	{
		bool		isnull;
		TransactionId xmin = DatumGetTransactionId(slot_getsysattr(slot, MinTransactionIdAttributeNumber,
																	  &isnull));

		if (!TransactionIdIsCurrentTransactionId(xmin))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update"),
					 errhint("Retry the transaction: a transaction that committed after this one began wrote the same key.")));
	}
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * txbox_generation_insert -- INSERT INTO txbox.<table>_<gen> VALUES of
 * nrows rows (values, isnull: natts per row, one per column, row after
 * row), with do_nothing ON CONFLICT DO NOTHING, done the way the executor
 * does it (nodeModifyTable.c's ExecInsert) without a plan or SPI.  Returns
 * how many rows were inserted.
 *
 * Into the generation's partition directly: no tuple routing.  What the
 * executor would check or fire is the caller's to guarantee: the rows meet
 * the partition's constraints (gen is its partition key; NOT NULL columns
 * are set), and the partitions' only triggers are for pg_restore
 * (src/sql/10_dump_restore.sql: statement triggers, which an INSERT through
 * the parent does not fire either).  The caller holds the parent's lock
 * (txbox_current_generation).
 *
 * With do_nothing every unique index is an arbiter: look for a conflicting
 * row (waiting for a transaction inserting the same key), insert
 * speculatively, insert the index entries, and if a concurrent insert of
 * the same key slipped in meanwhile, take the row back and look again.
 * Without, a duplicate key is the usual unique violation (also between two
 * of the rows: the unique check sees this transaction's rows, as in one
 * multi-row INSERT).
 */
int
txbox_generation_insert(TxboxRotated table, int16 gen, int natts, int nrows, Datum *values,
						bool *isnull, bool do_nothing)
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	int			inserted = 0;

	PreventCommandIfReadOnly("INSERT");
	PreventCommandIfParallelMode("INSERT");
	rel = table_open(txbox_generation_relid(table, gen), RowExclusiveLock);
	if (RelationGetDescr(rel)->natts != natts)
		elog(ERROR, "txbox: %s has %d columns, not %d",
			 RelationGetRelationName(rel), RelationGetDescr(rel)->natts, natts);
	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, do_nothing);
	slot = ExecInitExtraTupleSlot(estate, RelationGetDescr(rel), table_slot_callbacks(rel));

	for (int row = 0; row < nrows; row++)
	{
		bool		done = !do_nothing;

		ResetPerTupleExprContext(estate);
		ExecClearTuple(slot);
		memcpy(slot->tts_values, values + row * natts, sizeof(Datum) * natts);
		memcpy(slot->tts_isnull, isnull + row * natts, sizeof(bool) * natts);
		ExecStoreVirtualTuple(slot);

		if (!do_nothing)
		{
			table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
			list_free(txbox_insert_index_tuples(rri, slot, estate, false, NULL));
			inserted++;
		}
		while (!done)
		{
			ItemPointerData conflict;
			bool		spec_conflict = false;
			uint32		token;

			if (!txbox_check_index_constraints(rri, slot, estate, &conflict))
			{
				generation_check_visible(rel, &conflict);
				break;
			}
			token = SpeculativeInsertionLockAcquire(GetCurrentTransactionId());
			table_tuple_insert_speculative(rel, slot, GetCurrentCommandId(true), 0, NULL, token);
			list_free(txbox_insert_index_tuples(rri, slot, estate, true, &spec_conflict));
			table_tuple_complete_speculative(rel, slot, token, !spec_conflict);
			SpeculativeInsertionLockRelease(GetCurrentTransactionId());
			done = !spec_conflict;
			inserted += done;
		}
	}

	ExecCloseIndices(rri);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	/* (the lock is kept to the end of the transaction, as a statement's) */
	table_close(rel, NoLock);
	/* what follows in this transaction sees the rows, as after a statement */
	if (inserted > 0)
		CommandCounterIncrement();
	return inserted;
}

/*
 * txbox_generation_peek -- what txbox_current_generation last read for
 * table, without its lock: true, with the current generation and whether
 * the others were empty, unless a switch was seen since (or nothing was
 * read).  A switch committed after this transaction began goes unseen: a
 * caller relying on it meets such a switch otherwise (e.g. in the unique
 * index of the generation it then writes into).
 */
bool
txbox_generation_peek(TxboxRotated table, int16 *current, bool *others_empty)
{
	GenerationCache *c = &gen_cache[table];

	if (!c->valid)
		return false;
	*current = c->current;
	*others_empty = c->others_empty;
	return true;
}

/*
 * txbox_generations -- how many generations table has; valid after
 * txbox_current_generation(table) in the same transaction, until a lock
 * taken since processes an invalidation (opening a partition may): read it
 * before a loop that opens the partitions.
 */
int16
txbox_generations(TxboxRotated table)
{
	Assert(gen_cache[table].valid);
	return gen_cache[table].generations;
}

/*
 * txbox_generation_epoch -- a number that changes whenever this backend
 * reads table's generations again (after a switch, or any other
 * invalidation); valid after txbox_current_generation(table) in the same
 * transaction.  While it stays the same, the generations other than the
 * current one get no new rows (see Concurrency above): what a backend
 * learnt of them holds, bar rows deleted since.
 */
uint64
txbox_generation_epoch(TxboxRotated table)
{
	Assert(gen_cache[table].valid);
	return gen_cache[table].epoch;
}

static TxboxPlan gen_info_plan = {
	"SELECT current_gen, generations FROM txbox._generation"
	" WHERE relname OPERATOR(pg_catalog.=) $1 FOR UPDATE",
	1, {NAMEOID}
};
#define Anum_gen_info_current		1
#define Anum_gen_info_generations	2
/*
 * make $2 current; $3 ends now, by this transaction (txbox._generation_end).
 * ended_at is read after the lock that waited for the writers: no write
 * into $3 committed after it.
 */
static TxboxPlan gen_update_plan = {
	"WITH ended AS (INSERT INTO txbox._generation_end (relname, gen, ended_at, ended_xid)"
	"   VALUES ($1, $3, pg_catalog.clock_timestamp(), pg_catalog.pg_current_xact_id())"
	"   ON CONFLICT (relname, gen) DO UPDATE"
	"   SET ended_at = excluded.ended_at, ended_xid = excluded.ended_xid),"
	" reused AS (DELETE FROM txbox._generation_end"
	"   WHERE relname OPERATOR(pg_catalog.=) $1 AND gen OPERATOR(pg_catalog.=) $2)"
	" UPDATE txbox._generation SET current_gen = $2, switched_at = pg_catalog.now()"
	" WHERE relname OPERATOR(pg_catalog.=) $1",
	3, {NAMEOID, INT2OID, INT2OID}
};

/*
 * txbox._switch_generation(relname) -- empty the oldest generation of a
 * rotated table with TRUNCATE and make it the current one.  Returns the new
 * current generation.
 *
 * Waits (ShareLock on the parent) until no transaction is writing to the
 * table; new writers queue behind it meanwhile, so callers that must not
 * stall writers (the manager) set a short lock_timeout and retry later.
 * The caller decides that the oldest generation holds nothing that must be
 * kept (retention, relay positions); this function only rotates.
 */
PG_FUNCTION_INFO_V1(txbox_switch_generation);
Datum
txbox_switch_generation(PG_FUNCTION_ARGS)
{
	Name		relname = PG_GETARG_NAME(0);
	GenerationCache *c = NULL;
	Oid			parent;
	int16		current,
				generations,
				next;
	char	   *partname;
	bool		isnull;

	for (int i = 0; i < TXBOX_NUM_ROTATED; i++)
		if (strcmp(gen_cache[i].relname, NameStr(*relname)) == 0)
			c = &gen_cache[i];
	if (c == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a rotated txbox table", NameStr(*relname)),
				 errhint("Rotated tables are outbox, inbox_dedup, idempotency_keys and inbox.")));

	parent = generation_parent_relid(c);
	LockRelationOid(parent, ShareLock);

	SPI_connect();
	if (txbox_exec(&gen_info_plan, (Datum *) &relname, NULL, false, 1) != 1)
		elog(ERROR, "txbox: no generation row for txbox.%s", c->relname);
	current = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  Anum_gen_info_current, &isnull));
	generations = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											  Anum_gen_info_generations, &isnull));
	next = (current + 1) % generations;

	partname = psprintf("TRUNCATE txbox.%s_%d", c->relname, next);
	if (SPI_execute(partname, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "txbox: %s failed", partname);

	{
		Datum		values[3] = {NameGetDatum(relname), Int16GetDatum(next),
		Int16GetDatum(current)};

		txbox_exec(&gen_update_plan, values, NULL, false, 0);
	}
	SPI_finish();

	/* writers that lock the parent after we commit read the new generation */
	CacheInvalidateRelcacheByRelid(parent);

	PG_RETURN_INT16(next);
}
