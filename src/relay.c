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
 * A batch's (txid, id) keys are read once, from the outbox's (txid, id)
 * index alone, and sorted by id; pages of up to batch_size messages are
 * read by the keys' runs (keys in a row of one transaction and partition),
 * one index range scan each, each row once, straight into the arrays a
 * target takes (relay_page_scan).
 * The keys also hold rows the relay does not deliver (of a rolled-back
 * subtransaction, of other topics, replays for other relays): the page read
 * drops them.  After each page the position (prev, cur, last key read) is
 * saved, by the relay's next transaction, committed
 * asynchronously; a crash repeats the pages delivered since the last save
 * that reached the disk, which the target drops as duplicates (it
 * deduplicates by message_id).  Before a batch goes out, the WAL is
 * flushed up to its transactions' commit records: a source transaction
 * that a crash loses was never delivered.  A
 * target that answers a page DELIVERY_PENDING (kafka at least once, http)
 * gets the next pages read and delivered while that one's outcome is
 * outstanding, up to as many pages in flight as it declares
 * (max_pages_in_flight); each position is still saved only once its page
 * and every page before it are delivered, oldest first, and a failed page
 * is delivered again, with what follows it, once the target has let the
 * pages after it settle.
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

#include "access/genam.h"
#include "access/itup.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/partition.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "partitioning/partdesc.h"
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
#include "utils/uuid.h"

#include "targets/target.h"
#include "txbox.h"
#include "workers.h"


/* How often an idle relay saves a position that moved without messages. */
#define RELAY_IDLE_SAVE_MS		10000

/* After a timeout halved the page: pages that must pass before it doubles. */
#define RELAY_PAGES_BEFORE_GROWTH	10

/* a batch's keys in delivery order (relay_batch_keys) */
typedef struct RelayKeys
{
	int			n;
	FullTransactionId *txids;
	int64	   *ids;
	Oid		   *parts;			/* the outbox partition holding each key's row */
	int		   *run_ends;		/* per key: the index after its run (the keys
								 * in a row of one transaction and partition) */
} RelayKeys;

/* a page in flight (DELIVERY_PENDING): its keys and its messages */
typedef struct RelayInflight
{
	int			keys;
	int			messages;
} RelayInflight;

/* the batch in progress: its snapshots and its keys in delivery order */
typedef struct RelayBatch
{
	char	   *prev;			/* snapshot text: delivered up to here */
	char	   *cur;			/* NULL: no batch open */
	int64		last_id;		/* delivered within the batch up to this id */
	RelayKeys	keys;			/* keys.txids NULL: not read yet */
	int			next;			/* index of the next key to deliver */
	/* the pages in flight, oldest first: the keys from next on, in order */
	RelayInflight inflight[TXBOX_MAX_PAGES_IN_FLIGHT];
	int			ninflight;
	int			inflight_keys;	/* the keys of all of them */
	Datum		topics;			/* the relay's topics the keys were read for */
	bool		topics_null;
	int			isolate_until;	/* deliver one at a time below this index */
	int			page_max;		/* 0, or the messages a timeout halved a page to */
	int			pages_ok;		/* pages delivered in a row since page_max changed */
	int			attempts;		/* consecutive rejections of the next message */
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
	bool		pending;
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
		if (i > 0 && FullTransactionIdEquals(batch.keys.txids[i], batch.keys.txids[i - 1]))
			continue;
		/* older than clog keeps: frozen, committed long ago */
		if (U64FromFullTransactionId(batch.keys.txids[i]) < oldest)
			continue;
		lsn = Max(lsn, TransactionIdGetCommitLSN(XidFromFullTransactionId(batch.keys.txids[i])));
	}
	LWLockRelease(XactTruncationLock);
	if (!XLogRecPtrIsInvalid(lsn))
		XLogFlush(lsn);
}

/* an entry of the outbox's (txid, id) index, as relay_batch_keys sorts them */
typedef struct RelayKey
{
	int64		id;
	FullTransactionId txid;
	Oid			part;			/* the partition's */
} RelayKey;

static int
relay_key_cmp(const void *a, const void *b)
{
	const RelayKey *x = a;
	const RelayKey *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	if (FullTransactionIdEquals(x->txid, y->txid))
		return 0;
	return FullTransactionIdPrecedes(x->txid, y->txid) ? -1 : 1;
}

/*
 * The keys of the batch from prev to cur (pg_snapshot) after after_id, in
 * delivery order (id order), into *keys, allocated in cxt: every entry of
 * the outbox's (txid, id) index, in every partition, whose txid is visible
 * in cur but not in prev.  Read from the index alone, without a snapshot:
 * the keys also include rows no relay delivers (rolled back) and rows of
 * other topics or relays, which the page read drops (relay_page_scan).
 * The late committers in prev's in-progress list are found by txid, the
 * rest by the txid range from prev's xmax: an open transaction never makes
 * a batch rescan.
 */
static void
relay_batch_keys(Datum prev, Datum cur, int64 after_id, MemoryContext cxt, RelayKeys *keys)
{
	bytea	   *wire = DatumGetByteaPP(DirectFunctionCall1(pg_snapshot_send, prev));
	StringInfoData buf;
	int			nranges;
	uint64	   *lo;				/* the txid ranges [lo, hi) to read */
	uint64	   *hi;
	Oid			index_oid = txbox_table_oid("outbox_txid_idx", false);
	Relation	outbox;
	PartitionDesc parts;
	int			n = 0;
	int			cap = 1024;
	RelayKey   *found = palloc(sizeof(RelayKey) * cap);

	/* prev in pg_snapshot's send format: nxip, xmin, xmax, xip[] */
	buf.data = VARDATA_ANY(wire);
	buf.len = buf.maxlen = VARSIZE_ANY_EXHDR(wire);
	buf.cursor = 0;
	nranges = pq_getmsgint(&buf, 4) + 1;
	lo = palloc(sizeof(uint64) * nranges);
	hi = palloc(sizeof(uint64) * nranges);
	(void) pq_getmsgint64(&buf);
	lo[nranges - 1] = pq_getmsgint64(&buf);
	hi[nranges - 1] = U64FromFullTransactionId(DatumGetFullTransactionId(DirectFunctionCall1(pg_snapshot_xmax, cur)));
	for (int r = 0; r < nranges - 1; r++)
	{
		lo[r] = pq_getmsgint64(&buf);
		hi[r] = lo[r] + 1;
	}

	outbox = table_open(txbox_table_oid("outbox", false), AccessShareLock);
	parts = RelationGetPartitionDesc(outbox, false);
	for (int p = 0; p < parts->nparts; p++)
	{
		TxboxIndexScan s;
		IndexScanDesc scan;

		txbox_index_scan_begin(&s, parts->oids[p], index_oid, SnapshotAny, 2);
		scan = s.scan;
		scan->xs_want_itup = true;
		for (int r = 0; r < nranges; r++)
		{
			ScanKeyData skey[2];
			FullTransactionId txid = InvalidFullTransactionId;
			bool		visible = false;

			ScanKeyInit(&skey[0], 1, BTGreaterEqualStrategyNumber, F_XID8GE, UInt64GetDatum(lo[r]));
			ScanKeyInit(&skey[1], 1, BTLessStrategyNumber, F_XID8LT, UInt64GetDatum(hi[r]));
			index_rescan(scan, skey, 2, NULL, 0);
			while (index_getnext_tid(scan, ForwardScanDirection) != NULL)
			{
				bool		isnull;
				Datum		t = index_getattr(scan->xs_itup, 1, scan->xs_itupdesc, &isnull);
				int64		id = DatumGetInt64(index_getattr(scan->xs_itup, 2, scan->xs_itupdesc,
															 &isnull));

				/* the index keeps a transaction's entries together */
				if (!FullTransactionIdEquals(DatumGetFullTransactionId(t), txid))
				{
					txid = DatumGetFullTransactionId(t);
					visible = DatumGetBool(DirectFunctionCall2(pg_visible_in_snapshot, t, cur));
				}
				if (!visible || id <= after_id)
					continue;
				if (n == cap)
				{
					cap *= 2;
					found = repalloc_huge(found, sizeof(RelayKey) * cap);
				}
				found[n].id = id;
				found[n].txid = txid;
				found[n++].part = parts->oids[p];
			}
		}
		txbox_index_scan_end(&s);
	}
	table_close(outbox, AccessShareLock);

	/* (a big transaction's keys come sorted: qsort checks that first) */
	qsort(found, n, sizeof(RelayKey), relay_key_cmp);
	keys->n = n;
	keys->txids = MemoryContextAllocHuge(cxt, sizeof(FullTransactionId) * Max(n, 1));
	keys->ids = MemoryContextAllocHuge(cxt, sizeof(int64) * Max(n, 1));
	keys->parts = MemoryContextAllocHuge(cxt, sizeof(Oid) * Max(n, 1));
	keys->run_ends = MemoryContextAllocHuge(cxt, sizeof(int) * Max(n, 1));
	for (int k = n - 1; k >= 0; k--)
	{
		keys->txids[k] = found[k].txid;
		keys->ids[k] = found[k].id;
		keys->parts[k] = found[k].part;
		keys->run_ends[k] = k + 1 < n && FullTransactionIdEquals(found[k + 1].txid, found[k].txid) &&
			found[k + 1].part == found[k].part ? keys->run_ends[k + 1] : k + 1;
	}
	pfree(found);
}

/*
 * The outbox's columns a page carries (RelayPage.columns, in this order)
 * and their types, then those the page read checks.
 */
static const char *const relay_page_attnames[RELAY_PAGE_COLUMNS] = {
	"message_id", "topic", "key", "headers", "payload", "payload_bytes", "published_at"
};
static const Oid relay_page_types[RELAY_PAGE_COLUMNS] = {
	UUIDOID, TEXTOID, TEXTOID, JSONBOID, JSONBOID, BYTEAOID, TIMESTAMPTZOID
};
#define RELAY_COL_TOPIC		1
#define RELAY_SCAN_ID		RELAY_PAGE_COLUMNS
#define RELAY_SCAN_TXID		(RELAY_PAGE_COLUMNS + 1)
#define RELAY_SCAN_RELAY	(RELAY_PAGE_COLUMNS + 2)
#define RELAY_SCAN_ATTS		(RELAY_PAGE_COLUMNS + 3)

/* One outbox partition, open for a page read. */
typedef struct RelayPart
{
	TxboxIndexScan s;			/* of its (txid, id) index */
	AttrNumber	att[RELAY_SCAN_ATTS];	/* the columns' numbers in it */
	int			natts;			/* the highest of them */
} RelayPart;

static RelayPart *
relay_part_open(Oid relid, Snapshot snapshot)
{
	static const char *const checked[] = {"id", "txid", "relay"};
	RelayPart  *part = palloc(sizeof(RelayPart));

	txbox_index_scan_begin(&part->s, relid, txbox_table_oid("outbox_txid_idx", false), snapshot, 3);
	part->natts = 0;
	for (int a = 0; a < RELAY_SCAN_ATTS; a++)
	{
		const char *attname = a < RELAY_PAGE_COLUMNS ? relay_page_attnames[a] :
			checked[a - RELAY_PAGE_COLUMNS];

		part->att[a] = get_attnum(relid, attname);
		if (part->att[a] == InvalidAttrNumber)
			elog(ERROR, "txbox relay: column \"%s\" of the outbox is missing", attname);
		part->natts = Max(part->natts, part->att[a]);
	}
	return part;
}

/* whether the row in slot is the relay's: of its topics, not another relay's replay */
static bool
relay_row_wanted(const RelayPart *part, const Datum *topics, int ntopics, const char *name)
{
	TupleTableSlot *slot = part->s.slot;
	AttrNumber	att;

	if (ntopics >= 0)
	{
		text	   *topic = DatumGetTextPP(slot->tts_values[part->att[RELAY_COL_TOPIC] - 1]);
		bool		match = false;

		for (int t = 0; t < ntopics && !match; t++)
			match = VARSIZE_ANY_EXHDR(topic) == VARSIZE_ANY_EXHDR(DatumGetPointer(topics[t])) &&
				memcmp(VARDATA_ANY(topic), VARDATA_ANY(DatumGetPointer(topics[t])),
					   VARSIZE_ANY_EXHDR(topic)) == 0;
		if (!match)
			return false;
	}
	att = part->att[RELAY_SCAN_RELAY];
	if (!slot->tts_isnull[att - 1])
	{
		text	   *relay = DatumGetTextPP(slot->tts_values[att - 1]);

		return strlen(name) == VARSIZE_ANY_EXHDR(relay) &&
			memcmp(VARDATA_ANY(relay), name, VARSIZE_ANY_EXHDR(relay)) == 0;
	}
	return true;
}

/* a big-endian int32 at out->data + at */
static void
relay_put32(StringInfo out, int at, int32 v)
{
	uint32		n = pg_hton32((uint32) v);

	memcpy(out->data + at, &n, 4);
}

/*
 * Whether none of the 8 bytes of w needs an escape in a JSON string (a
 * control character, '"' or '\\'): the zero-byte test of "Bit Twiddling
 * Hacks" on w and on w xor each of the two characters; a byte of 0x80 or
 * more is never a match.
 */
static inline bool
relay_json_plain8(uint64 w)
{
#define BYTES(b) (UINT64CONST(0x0101010101010101) * (b))
	uint64		quote = w ^ BYTES('"');
	uint64		backslash = w ^ BYTES('\\');
	uint64		hits = ((w - BYTES(0x20)) & ~w) |
		((quote - BYTES(1)) & ~quote) |
		((backslash - BYTES(1)) & ~backslash);

	return (hits & BYTES(0x80)) == 0;
#undef BYTES
}

/*
 * Append str (len bytes, no NUL) as a JSON string with escape_json's
 * escapes, copying the runs that need none at once, found 8 bytes at a
 * time (escape_json appends one character at a time: a fifth of a kafka
 * relay's main thread).
 */
static void
relay_put_json_string(StringInfo out, const char *str, int len)
{
	static const char escaped[] = "\b\f\n\r\t\"\\";
	static const char escapes[] = "bfnrt\"\\";
	const char *run = str;
	const char *end = str + len;
	const char *hit;

	appendStringInfoCharMacro(out, '"');
	for (const char *p = str; p < end; p++)
	{
		unsigned char c;

		while (end - p >= 8)
		{
			uint64		w;

			memcpy(&w, p, 8);
			if (!relay_json_plain8(w))
				break;
			p += 8;
		}
		if (p == end)
			break;
		c = (unsigned char) *p;
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		appendBinaryStringInfo(out, run, p - run);
		run = p + 1;
		/* the two-character escapes, then \u00XX for the other controls */
		hit = memchr(escaped, c, sizeof(escaped) - 1);
		if (hit != NULL)
		{
			appendStringInfoCharMacro(out, '\\');
			appendStringInfoCharMacro(out, escapes[hit - escaped]);
		}
		else
			appendStringInfo(out, "\\u%04x", c);
	}
	appendBinaryStringInfo(out, run, end - run);
	appendStringInfoCharMacro(out, '"');
}

/*
 * Append a jsonb's text form, byte for byte what jsonb_out writes
 * (JsonbToCString: ", " between elements, ": " after keys), with
 * relay_put_json_string for its strings.  TAP 100 compares it with
 * payload::text for every kind of value.
 */
static void
relay_put_json(StringInfo out, JsonbContainer *root)
{
	JsonbIterator *it = JsonbIteratorInit(root);
	JsonbIteratorToken tok;
	JsonbValue	v;
	bool		first = true;	/* nothing yet in the open container */
	bool		raw_scalar = false;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (!first && (tok == WJB_BEGIN_ARRAY || tok == WJB_BEGIN_OBJECT ||
					   tok == WJB_KEY || tok == WJB_ELEM))
			appendBinaryStringInfo(out, ", ", 2);
		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
				/* a scalar is stored as a one-element array: no brackets */
				raw_scalar = v.val.array.rawScalar;
				if (!raw_scalar)
					appendStringInfoCharMacro(out, '[');
				first = true;
				break;
			case WJB_BEGIN_OBJECT:
				appendStringInfoCharMacro(out, '{');
				first = true;
				break;
			case WJB_KEY:
				relay_put_json_string(out, v.val.string.val, v.val.string.len);
				appendBinaryStringInfo(out, ": ", 2);
				first = true;	/* its value follows without a comma */
				break;
			case WJB_VALUE:
			case WJB_ELEM:
				switch (v.type)
				{
					case jbvNull:
						appendBinaryStringInfo(out, "null", 4);
						break;
					case jbvString:
						relay_put_json_string(out, v.val.string.val, v.val.string.len);
						break;
					case jbvNumeric:
						appendStringInfoString(out,
											   DatumGetCString(DirectFunctionCall1(numeric_out,
																				   NumericGetDatum(v.val.numeric))));
						break;
					case jbvBool:
						appendStringInfoString(out, v.val.boolean ? "true" : "false");
						break;
					default:
						elog(ERROR, "unknown jsonb scalar type %d", (int) v.type);
				}
				first = false;
				break;
			case WJB_END_ARRAY:
				if (!raw_scalar)
					appendStringInfoCharMacro(out, ']');
				first = false;
				break;
			case WJB_END_OBJECT:
				appendStringInfoCharMacro(out, '}');
				first = false;
				break;
			default:
				elog(ERROR, "unexpected jsonb token %d", (int) tok);
		}
	}
}

/*
 * Append the row's column c to the page's column c: an array element in
 * the binary send format (its length, then its bytes as the type's send
 * function writes them).  Returns whether it was NULL.
 */
static bool
relay_put_column(StringInfo out, const RelayPart *part, int c)
{
	AttrNumber	att = part->att[c];
	Datum		v = part->s.slot->tts_values[att - 1];
	int			at = out->len;

	if (part->s.slot->tts_isnull[att - 1])
	{
		pq_sendint32(out, -1);
		return true;
	}
	pq_sendint32(out, 0);		/* its length, once known */
	switch (relay_page_types[c])
	{
		case UUIDOID:
			appendBinaryStringInfo(out, (const char *) DatumGetUUIDP(v)->data, UUID_LEN);
			break;
		case JSONBOID:
			{
				Jsonb	   *jb = DatumGetJsonbP(v);

				/* jsonb_send: a version byte, then the JSON text */
				appendStringInfoChar(out, 1);
				relay_put_json(out, &jb->root);
				break;
			}
		case TIMESTAMPTZOID:
			pq_sendint64(out, DatumGetTimestampTz(v));
			break;
		default:
			{
				/* text (the database's encoding: the remote's client_encoding) and bytea */
				struct varlena *b = PG_DETOAST_DATUM_PACKED(v);

				appendBinaryStringInfo(out, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
				break;
			}
	}
	relay_put32(out, at, out->len - at - 4);
	return false;
}

/*
 * Read the next messages, at most want, of the keys from keys[from] on, by
 * their runs from there (at most want runs; a run may hold no message):
 * one range scan of the run's partition's (txid, id) index each, with the
 * transaction's snapshot (which drops the rows of rolled-back
 * (sub)transactions), keeping the rows of the relay's topics (topics NULL:
 * all) that are not replays for another relay.  Returns how many messages
 * it read, their keys' indexes in found (unless NULL), the messages into
 * page (unless NULL: its columns as one-dimensional arrays in the binary
 * send format, allocated in cxt), and in *upto the index after the keys the
 * page covers: its last message's when it read want of them, else its last
 * run's.  Must run in a transaction with an active snapshot.
 */
static int
relay_page_scan(const RelayKeys *keys, int from, int want, Datum topics, bool topics_null,
				const char *name, int *found, int *upto, RelayPage *page, MemoryContext cxt)
{
	Datum	   *topic_list = NULL;
	int			ntopics = -1;
	RelayPart  *parts[8];
	int			nparts = 0;
	StringInfoData cols[RELAY_PAGE_COLUMNS];
	bool		hasnull[RELAY_PAGE_COLUMNS] = {0};
	MemoryContext row_cxt = AllocSetContextCreate(CurrentMemoryContext, "txbox page row",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old;
	int			runs = 0;
	int			m = 0;
	int			k = from;

	if (!topics_null)
		deconstruct_array(DatumGetArrayTypeP(topics), TEXTOID, -1, false, TYPALIGN_INT,
						  &topic_list, NULL, &ntopics);
	if (page != NULL)
	{
		/* each column: a bytea of an array's send format, its header first */
		old = MemoryContextSwitchTo(cxt);
		for (int c = 0; c < RELAY_PAGE_COLUMNS; c++)
		{
			initStringInfo(&cols[c]);
			appendStringInfoSpaces(&cols[c], VARHDRSZ + 20);
		}
		MemoryContextSwitchTo(old);
	}

	for (; k < keys->n && runs < want && m < want; runs++)
	{
		int			end = keys->run_ends[k];
		RelayPart  *part = NULL;
		ScanKeyData skey[3];

		for (int p = 0; p < nparts && part == NULL; p++)
			if (RelationGetRelid(parts[p]->s.rel) == keys->parts[k])
				part = parts[p];
		if (part == NULL)
		{
			if (nparts == lengthof(parts))
				elog(ERROR, "txbox relay \"%s\": a page spans more than %d outbox partitions",
					 name, nparts);
			part = parts[nparts++] = relay_part_open(keys->parts[k], GetActiveSnapshot());
		}
		ScanKeyInit(&skey[0], 1, BTEqualStrategyNumber, F_XID8EQ,
					FullTransactionIdGetDatum(keys->txids[k]));
		ScanKeyInit(&skey[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE,
					Int64GetDatum(keys->ids[k]));
		ScanKeyInit(&skey[2], 2, BTLessEqualStrategyNumber, F_INT8LE,
					Int64GetDatum(keys->ids[end - 1]));
		index_rescan(part->s.scan, skey, 3, NULL, 0);
		while (m < want && index_getnext_slot(part->s.scan, ForwardScanDirection, part->s.slot))
		{
			int64		id;

			CHECK_FOR_INTERRUPTS();
			slot_getsomeattrs(part->s.slot, part->natts);
			id = DatumGetInt64(part->s.slot->tts_values[part->att[RELAY_SCAN_ID] - 1]);
			/* each row is one of the run's keys, in their order */
			while (k < end && keys->ids[k] != id)
				k++;
			if (k == end || !FullTransactionIdEquals(keys->txids[k],
													 DatumGetFullTransactionId(part->s.slot->tts_values[part->att[RELAY_SCAN_TXID] - 1])))
				elog(ERROR, "txbox relay \"%s\": a page read from the outbox is not the batch's",
					 name);
			k++;
			old = MemoryContextSwitchTo(row_cxt);
			if (relay_row_wanted(part, topic_list, ntopics, name))
			{
				if (found != NULL)
					found[m] = k - 1;
				m++;
				for (int c = 0; c < RELAY_PAGE_COLUMNS && page != NULL; c++)
					hasnull[c] |= relay_put_column(&cols[c], part, c);
			}
			MemoryContextSwitchTo(old);
			MemoryContextReset(row_cxt);
		}
		if (m < want)
			k = end;
	}
	for (int p = 0; p < nparts; p++)
		txbox_index_scan_end(&parts[p]->s);
	MemoryContextDelete(row_cxt);

	if (page != NULL)
	{
		page->count = m;
		for (int c = 0; c < RELAY_PAGE_COLUMNS; c++)
		{
			/* array_send's header: ndim, flags, element type, size, lower bound */
			relay_put32(&cols[c], VARHDRSZ, 1);
			relay_put32(&cols[c], VARHDRSZ + 4, hasnull[c] ? 1 : 0);
			relay_put32(&cols[c], VARHDRSZ + 8, (int32) relay_page_types[c]);
			relay_put32(&cols[c], VARHDRSZ + 12, m);
			relay_put32(&cols[c], VARHDRSZ + 16, 1);
			SET_VARSIZE(cols[c].data, cols[c].len);
			page->columns[c] = (bytea *) cols[c].data;
		}
	}
	*upto = k;
	return m;
}

/*
 * txbox._batch_keys(prev, cur, relay_topics, relay_name, after_id)
 *		RETURNS TABLE (txid xid8, id bigint)
 *
 * The keys of the messages a relay delivers from a batch, in delivery
 * order, read as a relay worker reads them (relay_batch_keys, then
 * relay_page_scan over all of them); for tests
 * (test/specs/relay-batches.spec, sql/relay_keys.sql).
 */
PG_FUNCTION_INFO_V1(txbox_batch_keys);
Datum
txbox_batch_keys(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RelayKeys	keys;
	int		   *found;
	int			upto;
	int			m = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(3) || PG_ARGISNULL(4))
		return (Datum) 0;
	relay_batch_keys(PG_GETARG_DATUM(0), PG_GETARG_DATUM(1), PG_GETARG_INT64(4),
					 CurrentMemoryContext, &keys);
	found = palloc(sizeof(int) * Max(keys.n, 1));
	if (keys.n > 0)
		m = relay_page_scan(&keys, 0, keys.n, PG_GETARG_DATUM(2), PG_ARGISNULL(2),
							text_to_cstring(PG_GETARG_TEXT_PP(3)), found, &upto, NULL, NULL);
	for (int j = 0; j < m; j++)
	{
		Datum		values[2] = {FullTransactionIdGetDatum(keys.txids[found[j]]),
		Int64GetDatum(keys.ids[found[j]])};
		bool		nulls[2] = {false, false};

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * Open a batch: take cur (unless resuming a saved one) and read its keys.
 * Must run inside relay_xact_begin.
 */
static void
relay_open_batch(Datum topics, bool topics_null)
{
	MemoryContext old;

	if (batch.cur == NULL)
	{
		txbox_exec(&relay_snapshot_plan, NULL, NULL, false, 1);
		batch.cur = relay_text_col(1, relay_batch_cxt);
		batch.last_id = 0;
	}

	relay_batch_keys(DirectFunctionCall1(pg_snapshot_in, CStringGetDatum(batch.prev)),
					 DirectFunctionCall1(pg_snapshot_in, CStringGetDatum(batch.cur)),
					 batch.last_id, relay_batch_cxt, &batch.keys);
	/* (a query switches to SPI's context: ours again) */
	old = MemoryContextSwitchTo(relay_batch_cxt);
	batch.topics = topics_null ? (Datum) 0 : datumCopy(topics, false, -1);
	batch.topics_null = topics_null;
	MemoryContextSwitchTo(old);

	relay_flush_commits(batch.keys.n);

	batch.next = 0;
	batch.isolate_until = 0;
	batch.page_max = 0;
	batch.pages_ok = 0;
	batch.attempts = 0;
}

/* The keys found[0 .. n) as SPI arguments (xid8[], bigint[]). */
static void
relay_key_args(const int *found, int n, Datum *args)
{
	Datum	   *txids = palloc(sizeof(Datum) * n);
	Datum	   *ids = palloc(sizeof(Datum) * n);

	for (int i = 0; i < n; i++)
	{
		txids[i] = FullTransactionIdGetDatum(batch.keys.txids[found[i]]);
		ids[i] = Int64GetDatum(batch.keys.ids[found[i]]);
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
	bool		complete = (upto >= batch.keys.n);

	if (upto > 0)
		batch.last_id = batch.keys.ids[upto - 1];
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
	if (relay_unsaved.pending)
	{
		/* (a target that saves no position of its own: only relay_id used) */
		RelayConfig cfg = {.relay_id = relay_unsaved.relay_id};
		int64		delivered = relay_unsaved.delivered;

		relay_unsaved.pending = false;
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
 * The most messages of the next page (after those in flight): 0 when no
 * key is left, else batch_size, one while isolating the culprit of a
 * rejected page, at most page_max after a timeout.
 */
static int
relay_page_size(const RelayConfig *cfg)
{
	int			from = batch.next + batch.inflight_keys;
	int			n = Min(cfg->batch_size, batch.keys.n - from);

	if (from < batch.isolate_until)
		n = Min(n, 1);
	if (batch.page_max > 0)
		n = Min(n, batch.page_max);
	return n;
}

/*
 * Read the next page, at most want messages of the keys from keys[from]
 * on, into page, as one array per column (binary send format), in a
 * transaction of its own.  Returns the number of keys it covers.
 */
static int
relay_read_page(RelayConfig *cfg, int from, int want, RelayPage *page)
{
	int			upto;
	MemoryContext caller = CurrentMemoryContext;

	txbox_xact_begin("txbox relay: reading a batch");
	(void) relay_page_scan(&batch.keys, from, want, batch.topics, batch.topics_null,
						   cfg->name, NULL, &upto, page, caller);
	txbox_xact_commit();
	return upto - from;
}

/*
 * The keys from keys[next] on, holding that many messages, are delivered.
 * A target delivering in the relay's transaction (open) or keeping a
 * position of its own commits the position with what it delivered, now.
 * For the others the relay's next transaction saves it, which follows at
 * once: one commit less per page, and no commit of the relay's own that
 * the next batch's flush (relay_flush_commits) would have to wait for.
 */
static void
relay_page_delivered(RelayConfig *cfg, int keys, int messages, int duplicates)
{
	if (relay_target->in_relay_xact || relay_target->save_position != NULL)
	{
		if (!relay_target->in_relay_xact)
			txbox_xact_begin("txbox relay: saving position");
		relay_save(cfg, batch.next + keys, messages, 0, duplicates);
		txbox_xact_commit();
	}
	else
	{
		relay_unsaved.pending = true;
		relay_unsaved.relay_id = cfg->relay_id;
		relay_unsaved.delivered += messages;
		relay_unsaved.duplicates += duplicates;
	}
	batch.next += keys;
}

/*
 * Wait for the outcome of the oldest page in flight (deliver_finish).
 * DELIVERY_OK when it is delivered (its position saved); else the target
 * dropped every page after it, and the relay goes on from it: what the
 * failure means, *error why, *n its messages and *keys its keys.
 */
static DeliveryResult
relay_finish_oldest(RelayConfig *cfg, int *n, int *keys, char **error)
{
	RelayInflight oldest = batch.inflight[0];
	int			duplicates = 0;
	DeliveryResult res;

	pgstat_report_activity(STATE_RUNNING, "txbox relay: delivering");
	res = relay_target->deliver_finish(cfg, &duplicates, error);
	pgstat_report_activity(STATE_IDLE, NULL);
	batch.ninflight--;
	batch.inflight_keys -= oldest.keys;
	memmove(&batch.inflight[0], &batch.inflight[1], sizeof(RelayInflight) * batch.ninflight);
	if (res != DELIVERY_OK)
	{
		batch.ninflight = 0;
		batch.inflight_keys = 0;
		*n = oldest.messages;
		*keys = oldest.keys;
		return res;
	}
	relay_page_delivered(cfg, oldest.keys, oldest.messages, duplicates);
	return DELIVERY_OK;
}

/*
 * Deliver the next page of the open batch through the relay's target: at
 * most *n messages after those in flight (a page without any is delivered
 * as it is read).  A page the target answers DELIVERY_PENDING joins the
 * pages in flight; once they are as many as the target keeps
 * (max_pages_in_flight), or *n = 0 (nothing left to read), the oldest one's
 * outcome is waited for.  Any other outcome is acted on after those of all
 * the pages in flight.
 *
 * Returns DELIVERY_PENDING when the page went out and no outcome was
 * waited for; DELIVERY_OK when the pages waited for were delivered (their
 * positions saved); else what the failure of the oldest undelivered page
 * means, *error why (palloc'd), *n its messages and *keys its keys: the
 * target dropped what followed it, and the relay goes on from it
 * (keys[next]).
 */
static DeliveryResult
relay_deliver_page(RelayConfig *cfg, int *n, int *keys, char **error)
{
	Datum		args[2];
	RelayPage	page = {0};
	int			duplicates = 0;
	int			page_keys;
	char	   *page_error = NULL;
	DeliveryResult res = DELIVERY_OK;

	/* (a target with pages in flight is connected) */
	if (relay_target->connect != NULL && batch.ninflight == 0)
	{
		pgstat_report_activity(STATE_RUNNING, "txbox relay: delivering");
		*error = relay_target->connect(cfg);
		pgstat_report_activity(STATE_IDLE, NULL);
		if (*error != NULL)
		{
			*keys = 0;
			return DELIVERY_RETRY;
		}
	}

	if (relay_target->in_relay_xact)
	{
		/* delivery and the position commit together: exactly once */
		int		   *found = palloc(sizeof(int) * *n);
		int			upto;
		MemoryContext caller = CurrentMemoryContext;

		txbox_xact_begin("txbox relay: delivering");
		page.count = relay_page_scan(&batch.keys, batch.next, *n, batch.topics,
									 batch.topics_null, cfg->name, found, &upto, NULL, NULL);
		*keys = upto - batch.next;
		if (page.count > 0)
		{
			relay_key_args(found, page.count, args);
			page.txids = args[0];
			page.ids = args[1];
			res = relay_target->deliver(cfg, &page, &duplicates, error);
		}
		if (res != DELIVERY_OK)
		{
			/* the target undid what it did (nothing was sent) */
			*error = MemoryContextStrdup(caller, *error);	/* (outlives the commit) */
			txbox_xact_commit();
			*n = page.count;
			return res;
		}
		relay_page_delivered(cfg, *keys, page.count, duplicates);
		return DELIVERY_OK;
	}

	/* read the page into memory, then deliver outside any transaction */
	page_keys = 0;
	if (*n > 0)
	{
		page_keys = relay_read_page(cfg, batch.next + batch.inflight_keys, *n, &page);
		pgstat_report_activity(STATE_RUNNING, "txbox relay: delivering");
		if (page.count > 0)
			res = relay_target->deliver(cfg, &page, &duplicates, &page_error);
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	if (res == DELIVERY_PENDING)
	{
		batch.inflight[batch.ninflight].keys = page_keys;
		batch.inflight[batch.ninflight++].messages = page.count;
		batch.inflight_keys += page_keys;
		if (batch.ninflight < Min(relay_target->max_pages_in_flight, TXBOX_MAX_PAGES_IN_FLIGHT))
			return DELIVERY_PENDING;	/* its outcome comes with a later page's */
		return relay_finish_oldest(cfg, n, keys, error);
	}

	/* the pages in flight first (all of them when nothing was read) */
	while (batch.ninflight > 0)
	{
		DeliveryResult prev = relay_finish_oldest(cfg, n, keys, error);

		if (prev != DELIVERY_OK)
			return prev;
	}
	*keys = page_keys;
	*error = page_error;
	if (res != DELIVERY_OK)
		*n = page.count;
	if (res != DELIVERY_OK || page_keys == 0)
		return res;
	relay_page_delivered(cfg, page_keys, page.count, duplicates);
	return DELIVERY_OK;
}

/*
 * The next message was rejected max_attempts times: dead-letter it and go
 * on after it.
 */
static void
relay_dead_letter(RelayConfig *cfg, const char *error)
{
	Datum		args[5];
	int			found;
	int			upto;

	relay_xact_begin("txbox relay: dead-lettering a message");
	if (relay_page_scan(&batch.keys, batch.next, 1, batch.topics, batch.topics_null,
						cfg->name, &found, &upto, NULL, NULL) != 1)
		elog(ERROR, "txbox relay \"%s\": the message to dead-letter is gone from the outbox",
			 cfg->name);
	args[0] = FullTransactionIdGetDatum(batch.keys.txids[found]);
	args[1] = Int64GetDatum(batch.keys.ids[found]);
	args[2] = CStringGetTextDatum(cfg->name);
	args[3] = Int32GetDatum(batch.attempts);
	args[4] = CStringGetTextDatum(error);
	txbox_exec(&relay_dead_letter_plan, args, NULL, false, 0);
	relay_save(cfg, upto, 0, 1, 0);
	txbox_xact_commit();
	batch.next = upto;
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
	int			keys;

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
	if (batch.cur == NULL || batch.keys.txids == NULL)
		relay_open_batch(topics, topics_null);
	else if (batch.keys.n == batch.next && batch.keys.n > 0)
	{
		/* the batch is delivered (its last page saved it): the next, at once */
		relay_close_batch();
		relay_open_batch(topics, topics_null);
	}
	if (batch.keys.n == batch.next)
	{
		/* nothing to deliver: an empty batch, saved now and then */
		TimestampTz now = GetCurrentTimestamp();

		if (strcmp(batch.prev, batch.cur) != 0 &&
			TimestampDifferenceExceeds(*last_save, now, RELAY_IDLE_SAVE_MS))
		{
			relay_save(&cfg, batch.keys.n, 0, 0, 0);
			*last_save = now;
		}
		txbox_xact_commit();
		relay_close_batch();
		relay_failures = 0;
		return txbox_poll_interval;
	}
	txbox_xact_commit();

	n = relay_page_size(&cfg);
	res = relay_deliver_page(&cfg, &n, &keys, &error);
	if (res == DELIVERY_PENDING)
		return 0;				/* its outcome comes with a later page's */
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
			batch.isolate_until = batch.next + keys;
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
