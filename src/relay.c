/*-------------------------------------------------------------------------
 * relay.c
 *		The relay worker: moves committed outbox messages to one target, in
 *		commit order, at least once.
 *
 * Reading the outbox in commit order (PgQ's snapshot batches).  A relay's
 * position is a transaction snapshot `prev`: every message whose writing
 * transaction is visible in prev is delivered.  A batch is what committed
 * between prev and a newer snapshot `cur`: messages whose txid is visible
 * in cur but not in prev.  Those are the transactions in prev's in-progress
 * list (late committers, however low their ids) plus those started since
 * prev.xmax, so neither a late committer is skipped nor does an unrelated
 * long open transaction hold delivery back or make batches rescan the
 * outbox.  Batches follow each other in commit order; within a batch the
 * messages go in id (publish) order, which keeps every transaction's
 * messages in publish order and any transaction that began publishing after
 * another committed behind it.
 *
 * A batch's (txid, id) keys are read once, sorted by id, and delivered in
 * pages of batch_size.  After each page the position (prev, cur, last id
 * delivered) is saved, by the relay's next transaction, committed
 * asynchronously; a crash repeats the pages delivered since the last save
 * that reached the disk, which the target drops as duplicates (it
 * deduplicates by message_id).  Before a batch goes out, the WAL is
 * flushed up to its transactions' commit records: a source transaction
 * that a crash loses was never delivered.  A
 * target that answers a page DELIVERY_PENDING (kafka, at least once) gets
 * the next page read and delivered while the first one's outcome is
 * outstanding; each position is still saved only once its page is
 * delivered, in order, and a failed page is delivered again, with what
 * follows it, once the target has let the page after it settle.
 *
 * Failures.  Any error (target down, authentication, timeouts, even a
 * local one) is caught, recorded in txbox.relays (state 'retrying',
 * last_error, retried), and retried with capped exponential backoff with
 * jitter; nothing is skipped.  A page that times out (the target's
 * statement_timeout or our deadline) is retried at once with half as many
 * messages, down to one; within the batch, the page doubles again after
 * RELAY_PAGES_BEFORE_GROWTH pages in a row pass.  A single message that
 * times out is retried with backoff like a target that is down (a timeout
 * says nothing about the message, and dead-lettering it would let its key's
 * later messages pass; raising statement_timeout fixes it).  A page the
 * target rejects for its data (a remote error, or one NOTIFY raises here)
 * is retried one message at a time; a message rejected max_attempts times
 * goes to txbox.dead_letters and the relay goes on.
 *
 * The worker runs as the relay's owner (its user mapping, its password);
 * its bookkeeping in txbox's own tables runs as the extension's owner.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/xid8.h"
#include "utils/syscache.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "targets/target.h"
#include "txbox.h"
#include "workers.h"


/* How often an idle relay saves a position that moved without messages. */
#define RELAY_IDLE_SAVE_MS		10000

/* After a timeout halved the page: pages that must pass before it doubles. */
#define RELAY_PAGES_BEFORE_GROWTH	10

/* the batch in progress: its snapshots and its keys in delivery order */
typedef struct RelayBatch
{
	char	   *prev;			/* snapshot text: delivered up to here */
	char	   *cur;			/* NULL: no batch open */
	int64		last_id;		/* delivered within the batch up to this id */
	int			nkeys;
	int			next;			/* index of the next key to deliver */
	int			inflight;		/* keys from next on in a page DELIVERY_PENDING */
	FullTransactionId *txids;
	int64	   *ids;
	Datum		topics;			/* the relay's topics the keys were read for */
	bool		topics_null;
	int			isolate_until;	/* deliver one at a time below this index */
	int			page_max;		/* 0, or the page size a timeout halved it to */
	int			pages_ok;		/* pages delivered in a row since page_max changed */
	int			attempts;		/* consecutive rejections of keys[next] */
} RelayBatch;

static MemoryContext relay_batch_cxt;	/* lives as long as the batch */
static RelayBatch batch;

/*
 * Delivered pages whose position is not saved yet (relay_page_delivered):
 * the relay's next transaction saves it, before anything else
 * (relay_xact_begin).
 */
static struct
{
	int32		relay_id;
	int64		delivered;
	int64		duplicates;
}			relay_unsaved;
static int	relay_failures = 0;	/* consecutive failed iterations */
static int	relay_backoff_max_ms = 30000;	/* the relay's backoff_max */
static char *relay_name = NULL;
static char *relay_source = NULL;	/* "database/relay", as the inbox records it */
static const TargetCallbacks *relay_target = NULL;	/* once the relay is loaded */

static TxboxPlan relay_load_plan = {
	"SELECT name, target, owner::pg_catalog.oid, paused, options,"
	" topics, snapshot::pg_catalog.text, batch_snapshot::pg_catalog.text, batch_last_id,"
	" position_cluster OPERATOR(pg_catalog.<>) txbox._cluster()"
	" FROM txbox.relays WHERE relay_id OPERATOR(pg_catalog.=) $1",
	1, {INT4OID}
};
/* its columns */
#define Anum_relay_name					1
#define Anum_relay_target				2
#define Anum_relay_owner				3
#define Anum_relay_paused				4
#define Anum_relay_options				5
#define Anum_relay_topics				6
#define Anum_relay_snapshot				7
#define Anum_relay_batch_snapshot		8
#define Anum_relay_batch_last_id		9
#define Anum_relay_foreign_position		10

static TxboxPlan relay_adopt_plan = {
	"SELECT txbox._relays_adopt()",
	0, {InvalidOid}
};

static TxboxPlan relay_snapshot_plan = {
	"SELECT pg_catalog.pg_current_snapshot()::pg_catalog.text",
	0, {InvalidOid}
};

/*
 * The keys of a batch, in delivery order: the messages of the transactions
 * that committed between snapshots prev ($1) and cur ($2) (visible in cur,
 * not in prev), of the relay's topics ($3, NULL: all), not replays for
 * another relay ($4: this one), after id $5.  The late committers in prev's
 * in-progress list are found by txid, the rest by the txid range from
 * prev's xmax: an open transaction never makes a batch rescan.  As two
 * arrays, taken from the sorted subquery in its order (relay_batch_keys
 * checks it).  txbox._batch_keys shows them as rows.
 */
static TxboxPlan relay_keys_plan = {
	"SELECT pg_catalog.array_agg(k.txid), pg_catalog.array_agg(k.id), pg_catalog.count(*)"
	" FROM (SELECT o.txid, o.id FROM txbox.outbox o"
	" WHERE ((o.txid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmax($1)"
	" AND o.txid OPERATOR(pg_catalog.<) pg_catalog.pg_snapshot_xmax($2))"
	" OR o.txid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT pg_catalog.pg_snapshot_xip($1))))"
	" AND pg_catalog.pg_visible_in_snapshot(o.txid, $2)"
	" AND ($3::pg_catalog.text[] IS NULL OR o.topic OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.text[]))"
	" AND (o.relay IS NULL OR o.relay OPERATOR(pg_catalog.=) $4)"
	" AND o.id OPERATOR(pg_catalog.>) $5"
	" ORDER BY o.id) k",
	5, {PG_SNAPSHOTOID, PG_SNAPSHOTOID, TEXTARRAYOID, TEXTOID, INT8OID},
	/* one plan for every batch (a LANGUAGE sql function planned it per call) */
	NULL, CURSOR_OPT_GENERIC_PLAN
};
#define Anum_relay_keys_txids	1
#define Anum_relay_keys_ids		2
#define Anum_relay_keys_count	3

/*
 * One page as arrays (for a remote target), in delivery order, read by
 * runs: a run is keys in a row of one transaction, (txid, lo, hi), and
 * holds every message of that transaction between lo and hi that the
 * batch has (relay_keys_plan's filter, repeated here: relay_read_page checks
 * that the ids read are the page's keys).  A big transaction's page
 * is one index range scan, not one probe per key.  The nested loop keeps
 * the runs' order, each run in id order, and the aggregates take the rows
 * as they come.
 */
static TxboxPlan relay_page_plan = {
	"SELECT pg_catalog.array_agg(o.message_id), pg_catalog.array_agg(o.topic),"
	" pg_catalog.array_agg(o.key), pg_catalog.array_agg(o.headers),"
	" pg_catalog.array_agg(o.payload), pg_catalog.array_agg(o.payload_bytes),"
	" pg_catalog.array_agg(o.published_at), pg_catalog.array_agg(o.id), pg_catalog.count(*)"
	" FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.xid8[]), pg_catalog.unnest($2::pg_catalog.int8[]),"
	" pg_catalog.unnest($3::pg_catalog.int8[])) WITH ORDINALITY AS r(txid, lo, hi, ord)"
	" CROSS JOIN LATERAL (SELECT x.message_id, x.topic, x.key, x.headers, x.payload, x.payload_bytes,"
	" x.published_at, x.id FROM txbox.outbox x"
	" WHERE x.txid OPERATOR(pg_catalog.=) r.txid"
	" AND x.id OPERATOR(pg_catalog.>=) r.lo AND x.id OPERATOR(pg_catalog.<=) r.hi"
	" AND ($4::pg_catalog.text[] IS NULL OR x.topic OPERATOR(pg_catalog.=) ANY ($4::pg_catalog.text[]))"
	" AND (x.relay IS NULL OR x.relay OPERATOR(pg_catalog.=) $5)"
	" ORDER BY x.id) o",
	5, {XID8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, TEXTARRAYOID, TEXTOID},
	/* one plan for every page: nested loops through the index */
	NULL, CURSOR_OPT_GENERIC_PLAN
};
#define Anum_relay_page_ids		(RELAY_PAGE_COLUMNS + 1)
#define Anum_relay_page_count	(RELAY_PAGE_COLUMNS + 2)


static TxboxPlan relay_save_plan = {
	"UPDATE txbox.relays SET snapshot = $2::pg_catalog.pg_snapshot,"
	" batch_snapshot = $3::pg_catalog.pg_snapshot, batch_last_id = $4,"
	" delivered = delivered OPERATOR(pg_catalog.+) $5,"
	" dead_lettered = dead_lettered OPERATOR(pg_catalog.+) $6,"
	" duplicates = duplicates OPERATOR(pg_catalog.+) $7,"
	" last_delivered_at = CASE WHEN $5 OPERATOR(pg_catalog.>) 0 THEN pg_catalog.now() ELSE last_delivered_at END,"
	" state = 'running'"
	" WHERE relay_id OPERATOR(pg_catalog.=) $1",
	7, {INT4OID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID}
};

static TxboxPlan relay_error_plan = {
	"UPDATE txbox.relays SET state = $2, last_error = $3, last_error_at = pg_catalog.now(),"
	" retried = retried OPERATOR(pg_catalog.+) 1"
	" WHERE relay_id OPERATOR(pg_catalog.=) $1",
	3, {INT4OID, TEXTOID, TEXTOID}
};

static TxboxPlan relay_dead_letter_plan = {
	"INSERT INTO txbox.dead_letters (relay, message_id, topic, key, headers, payload,"
	" payload_bytes, published_at, attempts, last_error)"
	" SELECT $3, message_id, topic, key, headers, payload, payload_bytes, published_at, $4, $5"
	" FROM txbox.outbox WHERE txid OPERATOR(pg_catalog.=) $1 AND id OPERATOR(pg_catalog.=) $2",
	5, {XID8OID, INT8OID, TEXTOID, INT4OID, TEXTOID}
};

/* Copy column col of the first SPI result row as text (palloc'd in cxt), or NULL. */
static char *
relay_text_col(int col, MemoryContext cxt)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(cxt, v) : NULL;
}

/*
 * Read the relay's configuration (into cfg, in cxt) and, when no batch is
 * open in memory, its saved position; a position saved on another cluster
 * or timeline is adopted first (txbox._relays_adopt).  Returns false if the
 * relay is gone or paused.  Must run inside relay_xact_begin.
 */
static bool
relay_load(int32 relay_id, RelayConfig *cfg, Datum *topics, bool *topics_null,
		   MemoryContext cxt)
{
	Datum		arg = Int32GetDatum(relay_id);
	bool		isnull;
	Jsonb	   *options;
	MemoryContext old;

	if (txbox_exec(&relay_load_plan, &arg, NULL, false, 1) != 1)
		return false;
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								   Anum_relay_paused, &isnull)))
		return false;

	cfg->relay_id = relay_id;
	cfg->name = relay_text_col(Anum_relay_name, cxt);
	cfg->target = relay_text_col(Anum_relay_target, cxt);
	cfg->owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
												Anum_relay_owner, &isnull));
	old = MemoryContextSwitchTo(cxt);
	options = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											   Anum_relay_options, &isnull));
	cfg->options = options;
	relay_target = txbox_target_lookup(cfg->target);
	cfg->server = relay_target->wrapper ? txbox_option_text(options, cfg->target, "server") : NULL;
	MemoryContextSwitchTo(old);
	cfg->batch_size = txbox_option_int(options, "relay", "batch_size");
	cfg->max_attempts = txbox_option_int(options, "relay", "max_attempts");
	cfg->backoff_max_ms = txbox_option_ms(options, "relay", "backoff_max");
	cfg->connect_timeout_ms = txbox_option_ms(options, "relay", "connect_timeout");
	cfg->statement_timeout_ms = txbox_option_ms(options, "relay", "statement_timeout");

	*topics = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, Anum_relay_topics,
							topics_null);
	if (!*topics_null)
		*topics = SPI_datumTransfer(*topics, false, -1);

	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								   Anum_relay_foreign_position, &isnull)))
	{
		/* saved on another cluster or timeline: start from the beginning */
		txbox_exec(&relay_adopt_plan, NULL, NULL, false, 0);
		MemoryContextReset(relay_batch_cxt);
		memset(&batch, 0, sizeof(batch));
		batch.prev = MemoryContextStrdup(relay_batch_cxt, "1:1:");
	}
	else if (batch.prev == NULL)
	{
		Datum		last_id = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											Anum_relay_batch_last_id, &isnull);

		batch.prev = relay_text_col(Anum_relay_snapshot, relay_batch_cxt);
		batch.cur = relay_text_col(Anum_relay_batch_snapshot, relay_batch_cxt);
		batch.last_id = isnull ? 0 : DatumGetInt64(last_id);
		if (relay_target->load_position != NULL)
		{
			RelayPosition pos;

			/* the target's copy, committed with what it delivered, wins */
			if (relay_target->load_position(cfg, &pos))
			{
				batch.prev = MemoryContextStrdup(relay_batch_cxt, pos.prev);
				batch.cur = pos.cur ? MemoryContextStrdup(relay_batch_cxt, pos.cur) : NULL;
				batch.last_id = pos.last_id;
			}
		}
	}
	return true;
}

/*
 * Deliver only what survives a crash: a transaction committed
 * asynchronously is visible before its commit record is on disk.  Flush
 * the WAL up to the commit records of the transactions of the batch's n
 * keys: clog keeps, for an asynchronous commit, an LSN late enough to cover its
 * record (TransactionIdGetCommitLSN); a synchronous commit was on disk
 * before it became visible (its LSN is 0).  Flushing all the WAL inserted
 * so far would make every batch wait for other sessions' records and the
 * relay's own asynchronous commits.
 */
static void
relay_flush_commits(int n)
{
	XLogRecPtr	lsn = InvalidXLogRecPtr;
	FullTransactionId next = ReadNextFullTransactionId();
	uint64		oldest;

	LWLockAcquire(XactTruncationLock, LW_SHARED);
	oldest = U64FromFullTransactionId(next) -
		(uint32) (XidFromFullTransactionId(next) - txbox_oldest_clog_xid());
	for (int i = 0; i < n; i++)
	{
		if (i > 0 && FullTransactionIdEquals(batch.txids[i], batch.txids[i - 1]))
			continue;
		/* older than clog keeps: frozen, committed long ago */
		if (U64FromFullTransactionId(batch.txids[i]) < oldest)
			continue;
		lsn = Max(lsn, TransactionIdGetCommitLSN(XidFromFullTransactionId(batch.txids[i])));
	}
	LWLockRelease(XactTruncationLock);
	if (!XLogRecPtrIsInvalid(lsn))
		XLogFlush(lsn);
}

/*
 * The keys of the batch from prev to cur (pg_snapshot) after after_id, of
 * topics (unless topics_null) for relay name: their number, and the keys
 * in *txids and *ids, allocated in cxt (relay_keys_plan).  Reads the
 * latest committed state.  Must run connected to SPI.
 */
static int
relay_batch_keys(Datum prev, Datum cur, Datum topics, bool topics_null, const char *name,
				 int64 after_id, MemoryContext cxt, FullTransactionId **txids, int64 **ids)
{
	Datum		args[5] = {prev, cur, topics, CStringGetTextDatum(name), Int64GetDatum(after_id)};
	char		nulls[5] = {' ', ' ', topics_null ? 'n' : ' ', ' ', ' '};
	bool		isnull;
	int			n;

	txbox_exec(&relay_keys_plan, args, nulls, true, 1);
	n = (int) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  Anum_relay_keys_count, &isnull));
	*txids = MemoryContextAlloc(cxt, sizeof(FullTransactionId) * Max(n, 1));
	*ids = MemoryContextAlloc(cxt, sizeof(int64) * Max(n, 1));
	if (n > 0)
	{
		ArrayType  *t = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
														 Anum_relay_keys_txids, &isnull));
		ArrayType  *i = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
														 Anum_relay_keys_ids, &isnull));

		/* xid8 and bigint: 8 bytes each, no nulls */
		memcpy(*txids, ARR_DATA_PTR(t), sizeof(FullTransactionId) * n);
		memcpy(*ids, ARR_DATA_PTR(i), sizeof(int64) * n);
	}
	/* delivery order is id order: the aggregates must have kept it */
	for (int k = 1; k < n; k++)
		if ((*ids)[k] <= (*ids)[k - 1])
			elog(ERROR, "txbox relay \"%s\": a batch's keys are out of order", name);
	return n;
}

/*
 * txbox._batch_keys(prev, cur, relay_topics, relay_name, after_id)
 *		RETURNS TABLE (txid xid8, id bigint)
 *
 * The keys of a relay batch as a relay worker reads them, in delivery
 * order (relay_keys_plan); for tests (test/specs/relay-batches.spec).
 */
PG_FUNCTION_INFO_V1(txbox_batch_keys);
Datum
txbox_batch_keys(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	FullTransactionId *txids;
	int64	   *ids;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(3) || PG_ARGISNULL(4))
		return (Datum) 0;
	SPI_connect();
	n = relay_batch_keys(PG_GETARG_DATUM(0), PG_GETARG_DATUM(1), PG_GETARG_DATUM(2),
						 PG_ARGISNULL(2), text_to_cstring(PG_GETARG_TEXT_PP(3)),
						 PG_GETARG_INT64(4), CurrentMemoryContext, &txids, &ids);
	for (int k = 0; k < n; k++)
	{
		Datum		values[2] = {FullTransactionIdGetDatum(txids[k]), Int64GetDatum(ids[k])};
		bool		nulls[2] = {false, false};

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * Open a batch: take cur (unless resuming a saved one) and read its keys.
 * Must run inside relay_xact_begin.
 */
static void
relay_open_batch(RelayConfig *cfg, Datum topics, bool topics_null)
{
	int			n;
	MemoryContext old;

	if (batch.cur == NULL)
	{
		txbox_exec(&relay_snapshot_plan, NULL, NULL, false, 1);
		batch.cur = relay_text_col(1, relay_batch_cxt);
		batch.last_id = 0;
	}

	n = relay_batch_keys(DirectFunctionCall1(pg_snapshot_in, CStringGetDatum(batch.prev)),
						 DirectFunctionCall1(pg_snapshot_in, CStringGetDatum(batch.cur)),
						 topics, topics_null, cfg->name, batch.last_id, relay_batch_cxt,
						 &batch.txids, &batch.ids);
	/* (a query switches to SPI's context: ours again) */
	old = MemoryContextSwitchTo(relay_batch_cxt);
	batch.topics = topics_null ? (Datum) 0 : datumCopy(topics, false, -1);
	batch.topics_null = topics_null;
	MemoryContextSwitchTo(old);

	relay_flush_commits(n);

	batch.nkeys = n;
	batch.next = 0;
	batch.isolate_until = 0;
	batch.page_max = 0;
	batch.pages_ok = 0;
	batch.attempts = 0;
}

/* The keys [from, from + n) as SPI arguments (xid8[], bigint[]). */
static void
relay_key_args(int from, int n, Datum *args)
{
	Datum	   *txids = palloc(sizeof(Datum) * n);
	Datum	   *ids = palloc(sizeof(Datum) * n);

	for (int i = 0; i < n; i++)
	{
		txids[i] = FullTransactionIdGetDatum(batch.txids[from + i]);
		ids[i] = Int64GetDatum(batch.ids[from + i]);
	}
	args[0] = PointerGetDatum(construct_array(txids, n, XID8OID, sizeof(FullTransactionId),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * Save the position after delivering keys up to (not including) upto, in
 * the current transaction, and count what was delivered, dead-lettered and
 * dropped by the target as already there.  When the batch is complete, cur
 * becomes prev.
 */
static void
relay_save(RelayConfig *cfg, int upto, int64 delivered, int64 dead, int64 duplicates)
{
	Datum		args[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		complete = (upto >= batch.nkeys);

	if (upto > 0)
		batch.last_id = batch.ids[upto - 1];
	args[0] = Int32GetDatum(cfg->relay_id);
	args[1] = CStringGetTextDatum(complete ? batch.cur : batch.prev);
	args[2] = complete ? (Datum) 0 : CStringGetTextDatum(batch.cur);
	nulls[2] = complete ? 'n' : ' ';
	args[3] = Int64GetDatum(batch.last_id);
	nulls[3] = complete ? 'n' : ' ';
	args[4] = Int64GetDatum(delivered);
	args[5] = Int64GetDatum(dead);
	args[6] = Int64GetDatum(duplicates);
	txbox_exec(&relay_save_plan, args, nulls, false, 0);
	if (relay_target->save_position != NULL)
	{
		RelayPosition pos = {complete ? batch.cur : batch.prev, complete ? NULL : batch.cur,
		batch.last_id};

		relay_target->save_position(cfg, &pos);
	}
}

/* The batch is done: cur becomes prev (the caller saved it). */
static void
relay_close_batch(void)
{
	char	   *cur = batch.cur;

	MemoryContextReset(relay_batch_cxt);
	memset(&batch, 0, sizeof(batch));
	batch.prev = cur ? MemoryContextStrdup(relay_batch_cxt, cur) : NULL;
}

/*
 * Begin a transaction of the relay that may write: it saves the position
 * of the pages delivered since the last save first.
 */
static void
relay_xact_begin(const char *what)
{
	txbox_xact_begin(what);
	if (relay_unsaved.delivered > 0)
	{
		/* (a target that saves no position of its own: only relay_id used) */
		RelayConfig cfg = {.relay_id = relay_unsaved.relay_id};
		int64		delivered = relay_unsaved.delivered;

		relay_unsaved.delivered = 0;
		relay_save(&cfg, batch.next, delivered, 0, relay_unsaved.duplicates);
		relay_unsaved.duplicates = 0;
	}
}

/* Record a failure in txbox.relays, in its own transaction. */
static void
relay_record_error(int32 relay_id, const char *state, const char *message)
{
	Datum		args[3] = {Int32GetDatum(relay_id), CStringGetTextDatum(state),
	CStringGetTextDatum(message)};

	relay_xact_begin("txbox relay: recording an error");
	txbox_exec(&relay_error_plan, args, NULL, false, 0);
	txbox_xact_commit();
}

/*
 * The number of messages of the next page (after those in flight): 0 when
 * none is left, else batch_size, one while isolating the culprit of a
 * rejected page, at most page_max after a timeout.
 */
static int
relay_page_size(const RelayConfig *cfg)
{
	int			from = batch.next + batch.inflight;
	int			n = Min(cfg->batch_size, batch.nkeys - from);

	if (from < batch.isolate_until)
		n = 1;
	if (batch.page_max > 0)
		n = Min(n, batch.page_max);
	return n;
}

/*
 * Read the n messages from keys[from] into page, as one array per column
 * (binary send format), in a transaction of its own.
 */
static void
relay_read_page(RelayConfig *cfg, int from, int n, RelayPage *page)
{
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	Datum	   *txids = palloc(sizeof(Datum) * n);
	Datum	   *lo = palloc(sizeof(Datum) * n);
	Datum	   *hi = palloc(sizeof(Datum) * n);
	int			runs = 0;
	bool		isnull;
	int			guc_level;
	ArrayType  *ids;

	/* the page's runs: keys in a row of one transaction */
	for (int i = from; i < from + n; i++)
	{
		if (runs == 0 || !FullTransactionIdEquals(batch.txids[i], batch.txids[i - 1]))
		{
			txids[runs] = FullTransactionIdGetDatum(batch.txids[i]);
			lo[runs++] = Int64GetDatum(batch.ids[i]);
		}
		hi[runs - 1] = Int64GetDatum(batch.ids[i]);
	}
	args[0] = PointerGetDatum(construct_array(txids, runs, XID8OID, sizeof(FullTransactionId),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(lo, runs, INT8OID, sizeof(int64),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = PointerGetDatum(construct_array(hi, runs, INT8OID, sizeof(int64),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = batch.topics;
	nulls[3] = batch.topics_null ? 'n' : ' ';
	args[4] = CStringGetTextDatum(cfg->name);

	txbox_xact_begin("txbox relay: reading a batch");
	/* index scans: a bitmap scan's rescan per run asks the kernel the table's size */
	guc_level = NewGUCNestLevel();
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	txbox_exec(&relay_page_plan, args, nulls, false, 1);
	AtEOXact_GUC(true, guc_level);
	page->count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											  Anum_relay_page_count, &isnull));
	if (page->count != n)
		elog(ERROR, "txbox relay \"%s\": %d of %d messages of a batch are missing from the outbox",
			 cfg->name, n - page->count, n);
	ids = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										   Anum_relay_page_ids, &isnull));
	if (memcmp(ARR_DATA_PTR(ids), &batch.ids[from], sizeof(int64) * n) != 0)
		elog(ERROR, "txbox relay \"%s\": a page read from the outbox is not the batch's",
			 cfg->name);
	for (int c = 0; c < RELAY_PAGE_COLUMNS; c++)
	{
		Datum		arr = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										c + 1, &isnull);
		bytea	   *wire = DatumGetByteaPP(OidFunctionCall1(F_ARRAY_SEND, arr));

		page->columns[c] = (bytea *) SPI_datumTransfer(PointerGetDatum(wire), false, -1);
	}
	txbox_xact_commit();
}

/*
 * The n messages from keys[next] are delivered.  A target delivering in
 * the relay's transaction (open) or keeping a position of its own commits
 * the position with what it delivered, now.  For the others the relay's
 * next transaction saves it, which follows at once: one commit less per
 * page, and no commit of the relay's own that the next batch's flush
 * (relay_flush_commits) would have to wait for.
 */
static void
relay_page_delivered(RelayConfig *cfg, int n, int duplicates)
{
	if (relay_target->in_relay_xact || relay_target->save_position != NULL)
	{
		if (!relay_target->in_relay_xact)
			txbox_xact_begin("txbox relay: saving position");
		relay_save(cfg, batch.next + n, n, 0, duplicates);
		txbox_xact_commit();
	}
	else
	{
		relay_unsaved.relay_id = cfg->relay_id;
		relay_unsaved.delivered += n;
		relay_unsaved.duplicates += duplicates;
	}
	batch.next += n;
}

/*
 * Deliver the next page of the open batch through the relay's target: the
 * *n messages after those in flight, then, when a page was in flight
 * (DELIVERY_PENDING before), wait for its outcome.  *n = 0: only that.
 *
 * Returns DELIVERY_PENDING when the page went out and none was in flight
 * before; DELIVERY_OK when the oldest page was delivered (its position
 * saved); else what the failure of the oldest page means, *error why
 * (palloc'd) and *n its size: the target dropped what followed it, and the
 * relay goes on from it (keys[next]).
 */
static DeliveryResult
relay_deliver_page(RelayConfig *cfg, int *n, char **error)
{
	Datum		args[2];
	RelayPage	page = {0};
	int			duplicates = 0;
	int			prev = batch.inflight;
	DeliveryResult res = DELIVERY_OK;

	/* (a target with a page in flight is connected) */
	if (relay_target->connect != NULL && prev == 0)
	{
		pgstat_report_activity(STATE_RUNNING, "txbox relay: delivering");
		*error = relay_target->connect(cfg);
		pgstat_report_activity(STATE_IDLE, NULL);
		if (*error != NULL)
			return DELIVERY_RETRY;
	}

	if (relay_target->in_relay_xact)
	{
		/* delivery and the position commit together: exactly once */
		txbox_xact_begin("txbox relay: delivering");
		relay_key_args(batch.next, *n, args);
		page.count = *n;
		page.txids = args[0];
		page.ids = args[1];
		res = relay_target->deliver(cfg, &page, &duplicates, error);
		if (res != DELIVERY_OK)
		{
			/* the target undid what it did (nothing was sent) */
			txbox_xact_commit();
			return res;
		}
		relay_page_delivered(cfg, *n, duplicates);
		return DELIVERY_OK;
	}

	/* read the page into memory, then deliver outside any transaction */
	if (*n > 0)
	{
		relay_read_page(cfg, batch.next + prev, *n, &page);
		pgstat_report_activity(STATE_RUNNING, "txbox relay: delivering");
		res = relay_target->deliver(cfg, &page, &duplicates, error);
	}
	if (prev > 0)
	{
		/* the page before it: its position once all of it is delivered */
		int			prev_duplicates = 0;
		char	   *prev_error = NULL;
		DeliveryResult prev_res;

		pgstat_report_activity(STATE_RUNNING, "txbox relay: delivering");
		prev_res = relay_target->deliver_finish(cfg, &prev_duplicates, &prev_error);
		batch.inflight = 0;
		if (prev_res != DELIVERY_OK)
		{
			/* the target dropped the page after it: on from this one */
			pgstat_report_activity(STATE_IDLE, NULL);
			*n = prev;
			*error = prev_error;
			return prev_res;
		}
		relay_page_delivered(cfg, prev, prev_duplicates);
	}
	pgstat_report_activity(STATE_IDLE, NULL);
	if (res == DELIVERY_PENDING)
	{
		batch.inflight = *n;
		return prev > 0 ? DELIVERY_OK : DELIVERY_PENDING;
	}
	if (res != DELIVERY_OK || *n == 0)
		return res;
	relay_page_delivered(cfg, *n, duplicates);
	return DELIVERY_OK;
}

/* keys[next] was rejected max_attempts times: dead-letter it and go on. */
static void
relay_dead_letter(RelayConfig *cfg, const char *error)
{
	Datum		args[5];

	relay_xact_begin("txbox relay: dead-lettering a message");
	args[0] = FullTransactionIdGetDatum(batch.txids[batch.next]);
	args[1] = Int64GetDatum(batch.ids[batch.next]);
	args[2] = CStringGetTextDatum(cfg->name);
	args[3] = Int32GetDatum(batch.attempts);
	args[4] = CStringGetTextDatum(error);
	txbox_exec(&relay_dead_letter_plan, args, NULL, false, 0);
	relay_save(cfg, batch.next + 1, 0, 1, 0);
	txbox_xact_commit();
	batch.next++;
	batch.attempts = 0;
}

/*
 * One unit of work.  Returns the milliseconds to sleep before the next one
 * (0: more work is waiting), or -1 when the relay is gone or paused.
 */
static long
relay_iterate(int32 relay_id, MemoryContext loop_cxt, TimestampTz *last_save)
{
	RelayConfig cfg;
	Datum		topics;
	bool		topics_null;
	char	   *error = NULL;
	DeliveryResult res;
	int			n;

	relay_xact_begin("txbox relay: reading position");
	if (!relay_load(relay_id, &cfg, &topics, &topics_null, loop_cxt))
	{
		txbox_xact_commit();
		return -1;
	}
	relay_backoff_max_ms = cfg.backoff_max_ms;
	if (relay_source == NULL)
	{
		relay_name = MemoryContextStrdup(TopMemoryContext, cfg.name);
		relay_source = MemoryContextStrdup(TopMemoryContext,
										   psprintf("%s/%s", get_database_name(MyDatabaseId),
													cfg.name));
		pgstat_report_appname(psprintf("txbox relay %s", cfg.name));
		txbox_worker_name("relay", cfg.name);
	}
	cfg.source = relay_source;
	if (batch.cur == NULL || batch.txids == NULL)
		relay_open_batch(&cfg, topics, topics_null);
	else if (batch.nkeys == batch.next && batch.nkeys > 0)
	{
		/* the batch is delivered (its last page saved it): the next, at once */
		relay_close_batch();
		relay_open_batch(&cfg, topics, topics_null);
	}
	if (batch.nkeys == batch.next)
	{
		/* nothing to deliver: an empty batch, saved now and then */
		TimestampTz now = GetCurrentTimestamp();

		if (strcmp(batch.prev, batch.cur) != 0 &&
			TimestampDifferenceExceeds(*last_save, now, RELAY_IDLE_SAVE_MS))
		{
			relay_save(&cfg, batch.nkeys, 0, 0, 0);
			*last_save = now;
		}
		txbox_xact_commit();
		relay_close_batch();
		relay_failures = 0;
		return txbox_poll_interval;
	}
	txbox_xact_commit();

	n = relay_page_size(&cfg);
	res = relay_deliver_page(&cfg, &n, &error);
	if (res == DELIVERY_PENDING)
		return 0;				/* its outcome comes with the next page's */
	if (res == DELIVERY_OK)
	{
		relay_failures = 0;
		batch.attempts = 0;
		/* a slow spell may be over: try twice the page after a good run */
		if (batch.page_max > 0 && ++batch.pages_ok >= RELAY_PAGES_BEFORE_GROWTH)
		{
			batch.page_max = batch.page_max * 2 >= cfg.batch_size ? 0 : batch.page_max * 2;
			batch.pages_ok = 0;
		}
		return 0;
	}

	if (res == DELIVERY_TIMEOUT && n > 1)
	{
		/* too much for the target's time: half the page, at once */
		batch.page_max = n / 2;
		batch.pages_ok = 0;
		ereport(LOG,
				(errmsg("txbox relay \"%s\": a page of %d messages timed out, retrying with %d: %s",
						cfg.name, n, batch.page_max, error)));
		relay_record_error(relay_id, "retrying", error);
		return 0;
	}

	if (res == DELIVERY_REJECTED)
	{
		if (n > 1)
		{
			/* find the culprit: one message at a time through this page */
			batch.isolate_until = batch.next + n;
			relay_record_error(relay_id, "retrying", error);
			return 0;
		}
		batch.attempts++;
		if (batch.attempts >= cfg.max_attempts)
		{
			ereport(LOG,
					(errmsg("txbox relay \"%s\": message rejected %d times, moved to txbox.dead_letters: %s",
							cfg.name, batch.attempts, error)));
			relay_dead_letter(&cfg, error);
			return 0;
		}
	}

	relay_failures++;
	ereport(LOG,
			(errmsg("txbox relay \"%s\" will retry: %s", cfg.name, error)));
	relay_record_error(relay_id, "retrying", error);
	return txbox_backoff_ms(relay_failures, cfg.backoff_max_ms);
}

/*
 * Connect to the relay's database as its owner, and take the relay's lock;
 * exit if another worker runs it already.
 */
static void
relay_connect(TxboxSlot *slot)
{
	LOCKTAG		tag;

	txbox_worker_init_signals();
	BackgroundWorkerInitializeConnectionByOid(slot->dboid, txbox_worker_userid(), 0);
	txbox_worker_harden_session();
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, (uint32) slot->object_id, TXBOX_LOCKTAG_RELAY);
	txbox_worker_exit_if_gone(slot,
							  LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL);
}

/* The session settings of a relay worker. */
static void
relay_session_settings(void)
{
	/* key arrays join the outbox key by key, through its (txid, id) index */
	SetConfigOption("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION);

	/*
	 * Our own commits (positions, counters) need not wait for the disk: a
	 * position lost in a crash only makes us deliver its pages again, which
	 * the target drops as duplicates.  The target's commit is what makes a
	 * message delivered, and that one is synchronous.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);
}

/*
 * One unit of work (relay_iterate) in loop_cxt; an error is recorded in the
 * relay's row, drops the connection and the open batch, and backs off.
 * Returns what relay_iterate does.
 */
static long
relay_run_once(int32 relay_id, MemoryContext loop_cxt, TimestampTz *last_save)
{
	long		sleep_ms;

	MemoryContextReset(loop_cxt);
	MemoryContextSwitchTo(loop_cxt);
	PG_TRY();
	{
		sleep_ms = relay_iterate(relay_id, loop_cxt, last_save);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		edata = txbox_worker_recover(loop_cxt);
		if (relay_target != NULL && relay_target->disconnect != NULL)
			relay_target->disconnect();
		ereport(LOG,
				(errmsg("txbox relay \"%s\" failed: %s",
						relay_name ? relay_name : "?", edata->message)));
		relay_failures++;
		relay_record_error(relay_id, "failed", edata->message);
		/* the open batch is re-read from the saved position */
		MemoryContextReset(relay_batch_cxt);
		memset(&batch, 0, sizeof(batch));
		sleep_ms = txbox_backoff_ms(relay_failures, relay_backoff_max_ms);
	}
	PG_END_TRY();
	return sleep_ms;
}

/*
 * Sleep sleep_ms, waking at least every second to notice DROP DATABASE.  A
 * commit (our latch) cuts an idle sleep short, not a backoff.
 */
static void
relay_sleep(long sleep_ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), sleep_ms);

	if (sleep_ms <= 0)
		return;
	for (;;)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);

		if (txbox_worker_wait(Min(left, 1000), txbox_wait_event(TXBOX_WAIT_RELAY_MAIN)) &&
			relay_failures == 0)
			break;
		if (left <= 1000)
			break;
		if (txbox_database_is_being_dropped())
			break;
	}
}

void
txbox_relay_main(Datum arg)
{
	TxboxSlot  *slot = txbox_slot_attach(DatumGetInt32(arg));
	MemoryContext loop_cxt;
	TimestampTz last_save = 0;
	long		sleep_ms = 0;

	/* 1. Connect as the relay's owner; one worker per relay. */
	relay_connect(slot);
	relay_session_settings();
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "txbox relay loop", ALLOCSET_DEFAULT_SIZES);
	relay_batch_cxt = AllocSetContextCreate(TopMemoryContext, "txbox relay batch", ALLOCSET_DEFAULT_SIZES);

	/*
	 * 2. Deliver page after page, sleeping when there is nothing to deliver
	 * or after a failure, until the relay is paused or dropped or its
	 * database goes.
	 */
	for (;;)
	{
		txbox_worker_exit_if_gone(slot, sleep_ms < 0);	/* < 0: paused or dropped */
		sleep_ms = relay_run_once(slot->object_id, loop_cxt, &last_save);
		relay_sleep(sleep_ms);
	}
}
