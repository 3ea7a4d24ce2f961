/*-------------------------------------------------------------------------
 * handler.c
 *		The handler worker: calls a handler function once for every inbox
 *		message of its topics, and records the message processed in the
 *		same transaction, so that each message has exactly one committed
 *		effect.
 *
 * A handler with "parallel" P has P workers; worker p takes the messages
 * whose ordering key (the message's key, or its id when it has none)
 * hashes to p, so all messages of a key go through one worker, in inbox
 * arrival order (txbox.inbox.seq).
 *
 * Each round reads a window of up to "batch_size" unprocessed messages -- no
 * dedup record for the handler's name, the same records as inbox_claim and
 * inbox_done -- in arrival order, leaving out the keys that are blocked, and
 * runs them all in one transaction: the handler function for each (as the
 * handler's owner, under the handler's statement_timeout) -- or once for
 * the whole window when it takes txbox.message[] -- then the window's dedup
 * records.  One commit per window, not per message.
 *
 * Failures.  If a message's handler raises, the whole window's transaction
 * rolls back (no partial effect of any message), and a second short
 * transaction records the attempt in txbox.handler_failures: its error, and
 * the time of the next attempt (txbox_backoff_ms: exponential with jitter,
 * capped by the "backoff_max" option).  Until then its key is blocked -- later messages
 * of the key wait behind it, other keys go on in the next round.  After
 * max_attempts it becomes a dead letter (txbox.dead_letters) and its key
 * stays blocked until the dead letter is replayed or discarded.
 *
 * Floors.  Each worker looks only above its floor (handler_low), and
 * writes it with a window, at most once a second, to txbox.handler_floors,
 * kept below every failed message of its part (and every other failure
 * committed when it is written): inbox retention trusts it instead of
 * scanning the oldest generation (txbox._inbox_processed), and a worker
 * started later for the same part starts from it.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "txbox.h"
#include "workers.h"


typedef struct HandlerConfig
{
	int32		handler_id;
	char	   *name;
	Oid			function;
	bool		takes_array;	/* handler(txbox.message[]): a call per window */
	Datum		topics;
	bool		topics_null;
	int			max_attempts;
	int			backoff_ms;
	int			batch;
	int			parallel;
	int			statement_timeout_ms;
	bool		has_failures;	/* any row in txbox.handler_failures */
} HandlerConfig;

/*
 * The handler's configuration, and its failures: when the next retry is due
 * (column 11), and how far the floor must drop for a retry due now (12).
 *
 * A worker looks only above its floor (handler_low): everything below is
 * handled, or waits behind a failed message.  Inbox receives are
 * serialized, so seq grows in commit order and nothing committed later
 * lands below what a window has seen.  When a failed message's retry is
 * due (or its dead letter was replayed or discarded, which makes it due),
 * the floor drops back to it once, so that it and the later messages of
 * its key are looked at again.  A discarded dead letter is handled: its
 * row goes, after this one drop.  Each worker ($2: its part) looks only at
 * the failures of its own keys: the one that drops its floor for a row is
 * the one that handles the row's key.
 */
#define HANDLER_FAILURE_IS_MINE \
	" AND (pg_catalog.hashtext(f.key) OPERATOR(pg_catalog.&) 2147483647) OPERATOR(pg_catalog.%)" \
	"   (SELECT coalesce((p.options OPERATOR(pg_catalog.->>) 'parallel')::pg_catalog.int4, $3)" \
	"      FROM txbox.handlers p WHERE p.handler_id OPERATOR(pg_catalog.=) $1)" \
	"   OPERATOR(pg_catalog.=) $2"

static TxboxPlan handler_load_plan = {
	"WITH gone AS (DELETE FROM txbox.handler_failures f"
	"   WHERE f.handler_id OPERATOR(pg_catalog.=) $1 AND NOT f.dead" HANDLER_FAILURE_IS_MINE
	"   AND EXISTS (SELECT 1 FROM txbox.inbox_dedup d, txbox.handlers h"
	"     WHERE h.handler_id OPERATOR(pg_catalog.=) $1 AND d.consumer OPERATOR(pg_catalog.=) h.name"
	"       AND d.message_id OPERATOR(pg_catalog.=) f.message_id::pg_catalog.text))"
	"SELECT name, handler::pg_catalog.oid, topics, paused, options,"
	" (SELECT p.proargtypes[0] OPERATOR(pg_catalog.<>) 'txbox.message'::pg_catalog.regtype"
	"    FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) handler),"
	" (SELECT pg_catalog.min(f.next_attempt_at) FROM txbox.handler_failures f"
	"   WHERE f.handler_id OPERATOR(pg_catalog.=) $1 AND NOT f.dead" HANDLER_FAILURE_IS_MINE
	"   AND f.next_attempt_at OPERATOR(pg_catalog.>) pg_catalog.now()),"
	" (SELECT pg_catalog.min(f.seq) OPERATOR(pg_catalog.-) 1 FROM txbox.handler_failures f"
	"   WHERE f.handler_id OPERATOR(pg_catalog.=) $1 AND NOT f.dead" HANDLER_FAILURE_IS_MINE
	"   AND f.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()),"
	" EXISTS (SELECT 1 FROM txbox.handler_failures f WHERE f.handler_id OPERATOR(pg_catalog.=) $1)"
	" FROM txbox.handlers WHERE handler_id OPERATOR(pg_catalog.=) $1",
	3, {INT4OID, INT4OID, INT4OID}
};
/* its columns */
#define Anum_handler_name				1
#define Anum_handler_function			2
#define Anum_handler_topics				3
#define Anum_handler_paused				4
#define Anum_handler_options			5
#define Anum_handler_takes_array		6
#define Anum_handler_next_retry			7
#define Anum_handler_retry_floor		8
#define Anum_handler_has_failures		9

/*
 * The window: up to $6 messages of part $3 (of $2) in (floor, top] ($7,
 * $8) that handler $5 has not processed, in arrival order, bar the keys
 * waiting behind a failure.  Two probes per message can go:
 *  - the failures', without failures (HandlerConfig.has_failures, read in
 *    the same transaction: only this worker adds failures of its keys);
 *  - the dedup records' of the other generations while none of them ever
 *    held a record (as txbox_generation_peek saw it when this transaction
 *    began): the window probes generation $9 only.  A switch since then
 *    made $9 the older generation; a record in the new one is met by the
 *    window's own records, which go there (handler_record_done).
 * With one part ($2 = 1), no key is hashed.
 */
#define HANDLER_WINDOW_SELECT \
	"SELECT ROW(i.message_id, i.topic, i.key, i.headers, i.payload, i.payload_bytes," \
	"           i.source, i.published_at, i.received_at)::txbox.message," \
	"       i.message_id::pg_catalog.text, coalesce(i.key, i.message_id::pg_catalog.text), i.seq" \
	"  FROM txbox.inbox i" \
	" WHERE i.seq OPERATOR(pg_catalog.>) $7 AND i.seq OPERATOR(pg_catalog.<=) $8" \
	"   AND ($1::pg_catalog.text[] IS NULL OR i.topic OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]))" \
	"   AND ($2 OPERATOR(pg_catalog.=) 1" \
	"        OR (pg_catalog.hashtext(coalesce(i.key, i.message_id::pg_catalog.text)) OPERATOR(pg_catalog.&) 2147483647)" \
	"           OPERATOR(pg_catalog.%) $2 OPERATOR(pg_catalog.=) $3)" \
	"   AND NOT EXISTS (SELECT 1 FROM txbox.inbox_dedup d" \
	"                    WHERE d.consumer OPERATOR(pg_catalog.=) $5" \
	"                      AND d.message_id OPERATOR(pg_catalog.=) i.message_id::pg_catalog.text"
#define HANDLER_WINDOW_DEDUP_ALL ")"
#define HANDLER_WINDOW_DEDUP_ONE " AND d.gen OPERATOR(pg_catalog.=) $9)"
/* a key waits behind its failed message (that one too, until its retry) */
#define HANDLER_WINDOW_NOT_BLOCKED \
	"   AND NOT EXISTS (SELECT 1 FROM txbox.handler_failures f" \
	"                    WHERE f.handler_id OPERATOR(pg_catalog.=) $4" \
	"                      AND f.key OPERATOR(pg_catalog.=) coalesce(i.key, i.message_id::pg_catalog.text)" \
	"                      AND f.seq OPERATOR(pg_catalog.<=) i.seq" \
	"                      AND (f.dead OR f.next_attempt_at OPERATOR(pg_catalog.>) pg_catalog.now()))"
#define HANDLER_WINDOW_ORDER " ORDER BY i.seq LIMIT $6"
#define HANDLER_WINDOW_ARGS \
	9, {TEXTARRAYOID, INT4OID, INT4OID, INT4OID, TEXTOID, INT4OID, INT8OID, INT8OID, INT2OID}, \
	/* one plan for every window: nested loops through indexes, see below */ \
	NULL, CURSOR_OPT_GENERIC_PLAN, true

/* [has failures][one dedup generation] */
static TxboxPlan handler_window_plans[2][2] = {
	{{HANDLER_WINDOW_SELECT HANDLER_WINDOW_DEDUP_ALL HANDLER_WINDOW_ORDER, HANDLER_WINDOW_ARGS},
	{HANDLER_WINDOW_SELECT HANDLER_WINDOW_DEDUP_ONE HANDLER_WINDOW_ORDER, HANDLER_WINDOW_ARGS}},
	{{HANDLER_WINDOW_SELECT HANDLER_WINDOW_DEDUP_ALL HANDLER_WINDOW_NOT_BLOCKED HANDLER_WINDOW_ORDER,
	HANDLER_WINDOW_ARGS},
	{HANDLER_WINDOW_SELECT HANDLER_WINDOW_DEDUP_ONE HANDLER_WINDOW_NOT_BLOCKED HANDLER_WINDOW_ORDER,
	HANDLER_WINDOW_ARGS}}
};
/* its columns */
#define Anum_window_message		1
#define Anum_window_message_id	2
#define Anum_window_key			3
#define Anum_window_seq			4

/* the top of the next stretch of the inbox to look at: (floor, top] */
static TxboxPlan handler_top_plan = {
	"SELECT pg_catalog.max(seq) FROM (SELECT seq FROM txbox.inbox"
	" WHERE seq OPERATOR(pg_catalog.>) $1 ORDER BY seq LIMIT $2) s",
	2, {INT8OID, INT4OID}
};

/*
 * With the window's dedup records (handler_record_done): count what was
 * handled ($3 messages), and forget the failures of handled messages (ids
 * $1).
 */
#define HANDLER_DONE_FORGET_FAILURES \
	"WITH ok AS (DELETE FROM txbox.handler_failures f" \
	"   WHERE f.handler_id OPERATOR(pg_catalog.=) $2" \
	"   AND f.message_id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]::pg_catalog.uuid[])) "
#define HANDLER_DONE_COUNT \
	"UPDATE txbox.handlers" \
	"   SET processed = processed OPERATOR(pg_catalog.+) $3," \
	"   last_processed_at = pg_catalog.now(), state = 'running'" \
	"   WHERE handler_id OPERATOR(pg_catalog.=) $2"
static TxboxPlan handler_done_plan = {
	HANDLER_DONE_FORGET_FAILURES HANDLER_DONE_COUNT,
	3, {TEXTARRAYOID, INT4OID, INT4OID}
};
/* the same, for a handler without failures (as the window was read) */
static TxboxPlan handler_done_plan_no_failures = {
	HANDLER_DONE_COUNT,
	3, {TEXTARRAYOID, INT4OID, INT4OID}
};

/*
 * This worker's floor for inbox retention (txbox.handler_floors): every
 * message of its part ($2 of $3) up to $4 is processed, bar the failed ones
 * and the later messages of their keys, which wait behind them: the floor
 * stays below every failure of the handler's committed by then (its own
 * part's always are: a failure is recorded before the part's next window).
 * Written in a window's transaction, so it commits with what makes it true.
 */
static TxboxPlan handler_floor_plan = {
	"INSERT INTO txbox.handler_floors AS h (handler_id, part, parallel, low)"
	" SELECT $1, $2, $3, LEAST($4, (SELECT pg_catalog.min(f.seq) OPERATOR(pg_catalog.-) 1"
	"   FROM txbox.handler_failures f WHERE f.handler_id OPERATOR(pg_catalog.=) $1))"
	" ON CONFLICT (handler_id, part) DO UPDATE SET parallel = excluded.parallel, low = excluded.low"
	" RETURNING h.low",
	4, {INT4OID, INT4OID, INT4OID, INT8OID}
};
/* at most once a second */
#define HANDLER_FLOOR_EVERY_MS 1000

/* where a new worker starts: the floor its part left for the same split */
static TxboxPlan handler_start_floor_plan = {
	"SELECT low FROM txbox.handler_floors WHERE handler_id OPERATOR(pg_catalog.=) $1"
	" AND part OPERATOR(pg_catalog.=) $2 AND parallel OPERATOR(pg_catalog.=) $3",
	3, {INT4OID, INT4OID, INT4OID}
};

/* count a failed attempt; dead at max_attempts */
static TxboxPlan handler_failure_plan = {
	"INSERT INTO txbox.handler_failures AS f (handler_id, message_id, key, attempts, last_error,"
	"   next_attempt_at, dead, seq)"
	" VALUES ($1, $2::pg_catalog.uuid, $3, 1, $4, pg_catalog.now(), 1 OPERATOR(pg_catalog.>=) $5, $6)"
	" ON CONFLICT (handler_id, message_id) DO UPDATE SET attempts = f.attempts OPERATOR(pg_catalog.+) 1,"
	"   last_error = excluded.last_error,"
	"   dead = f.attempts OPERATOR(pg_catalog.+) 1 OPERATOR(pg_catalog.>=) $5"
	" RETURNING attempts, dead",
	6, {INT4OID, TEXTOID, TEXTOID, TEXTOID, INT4OID, INT8OID}
};
#define Anum_failure_attempts	1
#define Anum_failure_dead		2

/* the next attempt, after the backoff */
static TxboxPlan handler_retry_at_plan = {
	"UPDATE txbox.handler_failures SET next_attempt_at = pg_catalog.clock_timestamp()"
	" OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $3)"
	" WHERE handler_id OPERATOR(pg_catalog.=) $1 AND message_id OPERATOR(pg_catalog.=) $2::pg_catalog.uuid",
	3, {INT4OID, TEXTOID, FLOAT8OID}
};

static TxboxPlan handler_dead_letter_plan = {
	"WITH d AS (INSERT INTO txbox.dead_letters (handler, message_id, topic, key, headers, payload,"
	"   payload_bytes, published_at, attempts, last_error)"
	" SELECT $2, message_id, topic, key, headers, payload, payload_bytes, published_at, $4, $5"
	"   FROM txbox.inbox WHERE message_id OPERATOR(pg_catalog.=) $3::pg_catalog.uuid LIMIT 1)"
	" UPDATE txbox.handlers SET dead_lettered = dead_lettered OPERATOR(pg_catalog.+) 1"
	" WHERE handler_id OPERATOR(pg_catalog.=) $1",
	5, {INT4OID, TEXTOID, TEXTOID, INT4OID, TEXTOID}
};

static TxboxPlan handler_error_plan = {
	"UPDATE txbox.handlers SET state = $2, last_error = $3, last_error_at = pg_catalog.now(),"
	" retried = retried OPERATOR(pg_catalog.+) $4"
	" WHERE handler_id OPERATOR(pg_catalog.=) $1",
	4, {INT4OID, TEXTOID, TEXTOID, INT4OID}
};

/* the message being handled when an error struck (for the failure record) */
static char *handler_failed_id = NULL;
static char *handler_failed_key = NULL;
static int64 handler_failed_seq = 0;

/*
 * The hard deadline of a call: a handler that goes on past its
 * statement_timeout (it catches query_canceled) would hold its locks, and
 * block inbox and dedup rotation for every consumer.  HANDLER_GRACE_MS
 * after the timeout the worker ends (FATAL: no handler can catch it); on
 * its way out handler_on_exit records the attempt, and the manager starts
 * it again.
 */
#define HANDLER_GRACE_MS 5000
static TimeoutId handler_deadline_timeout;
static volatile sig_atomic_t handler_deadline_hit = false;
static HandlerConfig *handler_exit_cfg = NULL;

static LOCKTAG handler_part_tag;
static bool handler_ran_user_code = false;

/*
 * A handler taking txbox.message[] gets a whole window in one call.  When
 * such a call fails, the error names no message: the next window then runs
 * one message per call (one-element arrays), so that the failure is
 * recorded against the message that causes it and the others go on.
 */
static bool handler_in_window_call = false;

/*
 * A new worker starts one by one: its predecessor may have ended at a hard
 * deadline in a window call, which charged no message.
 */
static bool handler_one_by_one = true;

/* this worker's floor: every message of its part below it is handled */
static int64 handler_low = 0;

/* its floor in txbox.handler_floors (-1: none yet), written at */
static int64 handler_saved_low = -1;
static TimestampTz handler_saved_at = 0;

/* the "parallel" its floors hold for (0: none yet) */
static int	handler_parallel = 0;

static char *
handler_text_col(HeapTuple tup, TupleDesc desc, int col, MemoryContext cxt)
{
	char	   *v = SPI_getvalue(tup, desc, col);

	return v ? MemoryContextStrdup(cxt, v) : NULL;
}

/* txbox.handler_floors is there: not on a database still on txbox 0.1.0 */
static bool
handler_floors_exist(void)
{
	return OidIsValid(txbox_table_oid("handler_floors", true));
}

/*
 * Read the handler's configuration; false if it is gone or paused.  Sets
 * *next_retry to when a blocked key's retry is due (0: none), and drops
 * the floor to a retry that is due now (of part's keys, both).
 */
static bool
handler_load(int32 handler_id, int part, HandlerConfig *cfg, MemoryContext cxt,
			 TimestampTz *next_retry)
{
	Datum		args[3] = {Int32GetDatum(handler_id), Int32GetDatum(part),
	Int32GetDatum(txbox_option_int(NULL, "handler", "parallel"))};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	int64		floor;
	Jsonb	   *options;

	if (txbox_exec(&handler_load_plan, args, NULL, false, 1) != 1)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	if (DatumGetBool(SPI_getbinval(tup, desc, Anum_handler_paused, &isnull)))
		return false;
	cfg->handler_id = handler_id;
	cfg->name = handler_text_col(tup, desc, Anum_handler_name, cxt);
	cfg->function = DatumGetObjectId(SPI_getbinval(tup, desc, Anum_handler_function, &isnull));
	cfg->topics = SPI_getbinval(tup, desc, Anum_handler_topics, &cfg->topics_null);
	if (!cfg->topics_null)
		cfg->topics = SPI_datumTransfer(cfg->topics, false, -1);
	options = DatumGetJsonbP(SPI_getbinval(tup, desc, Anum_handler_options, &isnull));
	cfg->max_attempts = txbox_option_int(options, "handler", "max_attempts");
	cfg->backoff_ms = txbox_option_ms(options, "handler", "backoff_max");
	cfg->batch = txbox_option_int(options, "handler", "batch_size");
	cfg->parallel = Min(txbox_option_int(options, "handler", "parallel"), txbox_max_parallel);
	cfg->statement_timeout_ms = txbox_option_ms(options, "handler", "statement_timeout");
	cfg->takes_array = DatumGetBool(SPI_getbinval(tup, desc, Anum_handler_takes_array, &isnull)) &&
		!isnull;
	cfg->has_failures = DatumGetBool(SPI_getbinval(tup, desc, Anum_handler_has_failures, &isnull));
	*next_retry = DatumGetTimestampTz(SPI_getbinval(tup, desc, Anum_handler_next_retry, &isnull));
	if (isnull)
		*next_retry = 0;

	/*
	 * A new worker, or new parts (another split of the keys): start from
	 * the floor this part left for this split, or from the beginning.
	 */
	if (cfg->parallel != handler_parallel)
	{
		handler_low = 0;
		handler_saved_low = -1;
		if (handler_floors_exist())
		{
			args[2] = Int32GetDatum(cfg->parallel);
			if (txbox_exec(&handler_start_floor_plan, args, NULL, false, 1) == 1)
				handler_saved_low = handler_low =
					DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		}
		handler_parallel = cfg->parallel;
	}
	floor = DatumGetInt64(SPI_getbinval(tup, desc, Anum_handler_retry_floor, &isnull));
	if (!isnull && floor < handler_low)
		handler_low = floor;
	return true;
}

/*
 * Write this worker's floor new_low (due once the window commits) to
 * txbox.handler_floors, at most once a second, when it is above the one
 * written; not on a database still on txbox 0.1.0 (its retention scans).
 * *saved: the floor written.
 */
static void
handler_save_floor(HandlerConfig *cfg, int part, int64 new_low, int64 *saved)
{
	TimestampTz now = GetCurrentTimestamp();
	Datum		args[4] = {Int32GetDatum(cfg->handler_id), Int32GetDatum(part),
	Int32GetDatum(cfg->parallel), Int64GetDatum(new_low)};
	bool		isnull;

	if (new_low <= handler_saved_low || part >= cfg->parallel ||
		!TimestampDifferenceExceeds(handler_saved_at, now, HANDLER_FLOOR_EVERY_MS) ||
		!handler_floors_exist())
		return;
	txbox_exec(&handler_floor_plan, args, NULL, false, 1);
	*saved = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* The hard deadline of a call passed: end the worker at the next interrupt check. */
static void
handler_deadline_reached(void)
{
	handler_deadline_hit = true;
	ProcDiePending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

/*
 * Call the handler as user code (txbox_user_code_begin: as the handler's
 * owner, security-restricted, nothing it sets survives it), within its
 * statement_timeout and hard deadline.  What it returns (NULL too: a void
 * SQL function's result) is ignored.  After an error txbox_worker_recover
 * disarms the timeouts.
 */
static void
handler_call(HandlerConfig *cfg, FmgrInfo *flinfo, Datum arg)
{
	LOCAL_FCINFO(fcinfo, 1);
	int			nestlevel;

	InitFunctionCallInfoData(*fcinfo, flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = arg;
	fcinfo->args[0].isnull = false;
	handler_ran_user_code = true;
	nestlevel = txbox_user_code_begin();
	enable_timeout_after(STATEMENT_TIMEOUT, cfg->statement_timeout_ms);
	enable_timeout_after(handler_deadline_timeout, cfg->statement_timeout_ms + HANDLER_GRACE_MS);
	(void) FunctionCallInvoke(fcinfo);
	disable_timeout(STATEMENT_TIMEOUT, false);
	disable_timeout(handler_deadline_timeout, false);
	txbox_user_code_end(nestlevel);
}

/* A txbox.message[] of n messages (message_type: txbox.message's type). */
static Datum
handler_message_array(Datum *messages, int n, Oid message_type)
{
	return PointerGetDatum(construct_array(messages, n, message_type, -1, false, TYPALIGN_DOUBLE));
}

/*
 * Record the n messages ids[] processed: their dedup records (the same as
 * inbox_claim's), inserted into the current generation's partition
 * directly, then handler_done_plan.  The window left out every message
 * with a record in any generation, and this part of the handler runs in
 * one worker at a time, so a unique violation means that another consumer
 * of the same name processed one meanwhile: a serialization failure, the
 * window rolls back and its messages are looked at again.  Committed with
 * the handler's effects.
 */
static void
handler_record_done(HandlerConfig *cfg, Datum *ids, int n)
{
	Datum	   *records = palloc(sizeof(Datum) * 4 * n);
	bool	   *isnull = palloc0(sizeof(bool) * 4 * n);
	Datum		args[3];
	int16		gen = txbox_current_generation(TXBOX_INBOX_DEDUP, NULL);
	Datum		consumer = CStringGetTextDatum(cfg->name);
	Datum		now = TimestampTzGetDatum(GetCurrentTimestamp());
	MemoryContext cxt = CurrentMemoryContext;

	for (int i = 0; i < n; i++)
	{
		/* (gen, consumer, message_id, claimed_at) */
		records[4 * i] = Int16GetDatum(gen);
		records[4 * i + 1] = consumer;
		records[4 * i + 2] = ids[i];
		records[4 * i + 3] = now;
	}
	PG_TRY();
	{
		(void) txbox_generation_insert(TXBOX_INBOX_DEDUP, gen, 4, n, records, isnull, false);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		if (CopyErrorData()->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("a message of handler \"%s\" was processed concurrently by a consumer of the same name",
						cfg->name),
				 errhint("Its effects are rolled back; the handler looks at the messages again.")));
	}
	PG_END_TRY();

	args[0] = PointerGetDatum(construct_array(ids, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = Int32GetDatum(cfg->handler_id);
	args[2] = Int32GetDatum(n);
	txbox_exec(cfg->has_failures ? &handler_done_plan : &handler_done_plan_no_failures,
			   args, NULL, false, 0);
}

/*
 * Run one window of messages in the current transaction.  Returns how many
 * were processed.  An error propagates with handler_failed_id/key naming
 * the message it struck (none: handler_in_window_call tells whether it
 * struck a call with the whole window).
 */
static int
handler_run_window(HandlerConfig *cfg, int part, int64 *new_low)
{
	int64		top;
	Datum		args[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int16		dedup_gen;
	bool		others_empty;
	bool		one_gen;
	SPITupleTable *window;
	int			n;
	Datum	   *messages;
	Datum	   *ids;
	bool		isnull;
	FmgrInfo	flinfo;
	Oid			message_type;

	/*
	 * Look at a bounded stretch above the floor: everything in it is
	 * handled, another worker's, waiting behind a failure, or in the window.
	 * Twice what the window takes of its part: room for some of the
	 * others, while each window reads little it does not take.
	 */
	args[0] = Int64GetDatum(handler_low);
	args[1] = Int32GetDatum(Min(cfg->batch * 2 * cfg->parallel, 100000));
	txbox_exec(&handler_top_plan, args, NULL, false, 1);
	top = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		return 0;				/* nothing above the floor */

	args[0] = cfg->topics;
	nulls[0] = cfg->topics_null ? 'n' : ' ';
	args[1] = Int32GetDatum(cfg->parallel);
	args[2] = Int32GetDatum(part);
	args[3] = Int32GetDatum(cfg->handler_id);
	args[4] = CStringGetTextDatum(cfg->name);
	args[5] = Int32GetDatum(cfg->batch);
	args[6] = Int64GetDatum(handler_low);
	args[7] = Int64GetDatum(top);
	one_gen = txbox_generation_peek(TXBOX_INBOX_DEDUP, &dedup_gen, &others_empty) && others_empty;
	args[8] = Int16GetDatum(one_gen ? dedup_gen : 0);

	/*
	 * The stretch is small: probe the dedup records and failures row by row
	 * through their indexes, whatever stale statistics suggest (the plans'
	 * index_probes: a dedup partition truncated by retention looks empty
	 * until it is analyzed again, and scanning it whole for every message
	 * would make each window slower than the last).  The handler functions
	 * run with the session's settings.
	 */
	n = txbox_exec(&handler_window_plans[cfg->has_failures][one_gen], args, nulls, false, 0);
	window = SPI_tuptable;		/* stays valid until SPI_finish */
	/* a full window may leave work below top; otherwise all up to top is done */
	*new_low = n < cfg->batch ? top :
		DatumGetInt64(SPI_getbinval(window->vals[n - 1], window->tupdesc, Anum_window_seq, &isnull));
	if (n == 0)
		return 0;

	messages = palloc(sizeof(Datum) * n);
	ids = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		messages[i] = SPI_getbinval(window->vals[i], window->tupdesc, Anum_window_message, &isnull);
		ids[i] = SPI_getbinval(window->vals[i], window->tupdesc, Anum_window_message_id, &isnull);
	}
	message_type = SPI_gettypeid(window->tupdesc, Anum_window_message);

	/* as the executor does before a call: the owner may have lost the right */
	if (object_aclcheck(ProcedureRelationId, cfg->function, txbox_worker_userid(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", get_func_name(cfg->function)),
				 errdetail("Handler \"%s\" runs as role \"%s\", which has no EXECUTE on its function.",
						   cfg->name, GetUserNameFromId(txbox_worker_userid(), false)),
				 errhint("GRANT EXECUTE on the function to the handler's owner; its messages wait meanwhile.")));
	InvokeFunctionExecuteHook(cfg->function);
	fmgr_info(cfg->function, &flinfo);

	if (cfg->takes_array && !handler_one_by_one)
	{
		/* the whole window in one call */
		handler_in_window_call = true;
		handler_call(cfg, &flinfo, handler_message_array(messages, n, message_type));
		handler_in_window_call = false;
	}
	else
	{
		for (int i = 0; i < n; i++)
		{
			HeapTuple	tup = window->vals[i];

			handler_failed_id = handler_text_col(tup, window->tupdesc, Anum_window_message_id,
												 TopTransactionContext);
			handler_failed_key = handler_text_col(tup, window->tupdesc, Anum_window_key,
												  TopTransactionContext);
			handler_failed_seq = DatumGetInt64(SPI_getbinval(tup, window->tupdesc, Anum_window_seq,
															 &isnull));
			handler_call(cfg, &flinfo, !cfg->takes_array ? messages[i] :
						 handler_message_array(&messages[i], 1, message_type));
		}
		handler_failed_id = NULL;
		handler_failed_key = NULL;
	}

	/* processed: the records commit with the handlers' effects */
	handler_record_done(cfg, ids, n);
	handler_one_by_one = false;
	return n;
}

/* Record a failed attempt at message_id (NULL: not at a message). */
static void
handler_record_failure(HandlerConfig *cfg, const char *message_id, const char *key,
					   int64 seq, const char *error)
{
	Datum		args[6];
	int			retried = 0;

	txbox_xact_begin("txbox handler: recording a failure");
	if (message_id != NULL)
	{
		bool		isnull;
		int			attempts;
		bool		dead;

		args[0] = Int32GetDatum(cfg->handler_id);
		args[1] = CStringGetTextDatum(message_id);
		args[2] = CStringGetTextDatum(key);
		args[3] = CStringGetTextDatum(error);
		args[4] = Int32GetDatum(cfg->max_attempts);
		args[5] = Int64GetDatum(seq);
		txbox_exec(&handler_failure_plan, args, NULL, false, 1);
		attempts = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											   Anum_failure_attempts, &isnull));
		dead = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  Anum_failure_dead, &isnull));
		retried = 1;
		args[2] = Float8GetDatum(txbox_backoff_ms(attempts, cfg->backoff_ms) / 1000.0);
		txbox_exec(&handler_retry_at_plan, args, NULL, false, 0);
		if (dead)
		{
			ereport(LOG,
					(errmsg("txbox handler \"%s\": message %s failed %d times, moved to txbox.dead_letters: %s",
							cfg->name, message_id, attempts, error)));
			args[1] = CStringGetTextDatum(cfg->name);
			args[2] = CStringGetTextDatum(message_id);
			args[3] = Int32GetDatum(attempts);
			args[4] = CStringGetTextDatum(error);
			txbox_exec(&handler_dead_letter_plan, args, NULL, false, 0);
		}
	}
	args[0] = Int32GetDatum(cfg->handler_id);
	args[1] = CStringGetTextDatum(message_id ? "retrying" : "failed");
	args[2] = CStringGetTextDatum(error);
	args[3] = Int32GetDatum(retried);
	txbox_exec(&handler_error_plan, args, NULL, false, 0);
	txbox_xact_commit();
}

/*
 * One round.  Returns the milliseconds to sleep before the next (0: more
 * may be waiting), or -1 when the handler is gone or paused.
 */
static long
handler_iterate(int32 handler_id, int part, HandlerConfig *cfg, MemoryContext loop_cxt)
{
	TimestampTz next_retry = 0;
	int			n;
	long		sleep_ms = txbox_poll_interval;
	int64		new_low = 0;
	int64		saved = -1;

	txbox_xact_begin("txbox handler: running messages");
	if (!handler_load(handler_id, part, cfg, loop_cxt, &next_retry))
	{
		txbox_xact_commit();
		return -1;
	}
	new_low = handler_low;
	n = handler_run_window(cfg, part, &new_low);
	handler_save_floor(cfg, part, new_low, &saved);
	txbox_xact_commit();
	if (saved >= 0)
	{
		handler_saved_low = saved;
		handler_saved_at = GetCurrentTimestamp();
	}
	/* only once the window committed; moving up means more may be waiting */
	if (new_low > handler_low)
	{
		handler_low = new_low;
		return 0;
	}
	if (n > 0)
		return 0;
	if (next_retry != 0)
		sleep_ms = Min(sleep_ms, Max(1, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_retry)));
	return sleep_ms;
}

/*
 * One worker per part of a handler: it holds the part's lock, and leaves if
 * another has it.  Session-level advisory locks a handler function took
 * would stay with its worker: after each round that ran one, they all go
 * (as pg_advisory_unlock_all does) and the part's lock is taken again.
 */
static void
handler_lock_part(TxboxSlot *slot, bool release_all)
{
	if (release_all)
		LockReleaseSession(USER_LOCKMETHOD);
	txbox_worker_exit_if_gone(slot, LockAcquire(&handler_part_tag, ExclusiveLock, true, true) ==
							  LOCKACQUIRE_NOT_AVAIL);
}

/*
 * before_shmem_exit: a worker ended at a call's hard deadline records that
 * call as a failed attempt (of its message; with none, as the handler's
 * error), after aborting the transaction that held its locks.
 */
static void
handler_on_exit(int code, Datum arg)
{
	MemoryContext cxt = TopMemoryContext;
	char	   *id;
	char	   *key;
	char	   *error;

	if (!handler_deadline_hit || handler_exit_cfg == NULL || handler_exit_cfg->name == NULL)
		return;
	handler_deadline_hit = false;
	/* the frames of the ended call are no context for what follows */
	error_context_stack = NULL;
	MemoryContextSwitchTo(cxt);
	id = handler_failed_id ? pstrdup(handler_failed_id) : NULL;
	key = handler_failed_key ? pstrdup(handler_failed_key) : NULL;
	error = psprintf("the handler ran past its hard deadline (statement_timeout %d ms + %d ms): its worker was ended",
					 handler_exit_cfg->statement_timeout_ms, HANDLER_GRACE_MS);
	PG_TRY();
	{
		AbortOutOfAnyTransaction();
		MemoryContextSwitchTo(cxt);
		ereport(LOG,
				(errmsg("txbox handler \"%s\": %s%s: %s", handler_exit_cfg->name,
						id ? "message " : "window", id ? id : "", error),
				 errhint("A handler must not go on after query_canceled; the attempt counts as failed.")));
		handler_record_failure(handler_exit_cfg, id, key, handler_failed_seq, error);
	}
	PG_CATCH();
	{
		(void) txbox_worker_recover(cxt);
	}
	PG_END_TRY();
}

/*
 * Connect to the handler's database as its owner, arm the hard deadline of
 * a call, and take the lock of our part; exit if another worker has it.
 */
static void
handler_connect(TxboxSlot *slot, HandlerConfig *cfg)
{
	txbox_worker_init_signals();
	/* statement_timeout of a handler cancels it like a query */
	pqsignal(SIGINT, StatementCancelHandler);
	BackgroundWorkerInitializeConnectionByOid(slot->dboid, txbox_worker_userid(), 0);
	txbox_worker_harden_session();
	handler_deadline_timeout = RegisterTimeout(USER_TIMEOUT, handler_deadline_reached);
	handler_exit_cfg = cfg;
	before_shmem_exit(handler_on_exit, (Datum) 0);

	SET_LOCKTAG_ADVISORY(handler_part_tag, MyDatabaseId, (uint32) slot->part,
						 (uint32) slot->object_id, TXBOX_LOCKTAG_HANDLER);
	handler_lock_part(slot, false);
}

/*
 * One round (handler_iterate) in loop_cxt, with cfg read afresh.  A failure
 * is recorded against the message it struck (which is then blocked for
 * its backoff while the others go on), or, in a call with a whole window,
 * makes the next round go one message at a time; another error backs off
 * (*failures counts them in a row).  Returns what handler_iterate does.
 */
static long
handler_run_once(TxboxSlot *slot, HandlerConfig *cfg, MemoryContext loop_cxt, int *failures)
{
	long		sleep_ms;

	MemoryContextReset(loop_cxt);
	MemoryContextSwitchTo(loop_cxt);
	memset(cfg, 0, sizeof(*cfg));	/* its strings lived in loop_cxt */
	PG_TRY();
	{
		sleep_ms = handler_iterate(slot->object_id, slot->part, cfg, loop_cxt);
		*failures = 0;
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		char	   *failed_id;
		char	   *failed_key;

		/* the failed message's id lives in the transaction: copy it first */
		MemoryContextSwitchTo(loop_cxt);
		failed_id = handler_failed_id ? pstrdup(handler_failed_id) : NULL;
		failed_key = handler_failed_key ? pstrdup(handler_failed_key) : NULL;
		handler_failed_id = handler_failed_key = NULL;
		edata = txbox_worker_recover(loop_cxt);
		ereport(LOG,
				(errmsg("txbox handler \"%s\": %s%s: %s", cfg->name ? cfg->name : "?",
						failed_id ? "message " : handler_in_window_call ? "window" : "error",
						failed_id ? failed_id : "", edata->message),
				 handler_in_window_call ? errdetail("Its messages are tried again one at a time.") : 0));
		if (cfg->name == NULL)
			ReThrowError(edata);	/* could not even read the handler */
		if (handler_in_window_call)
		{
			/* find the message it was: the window again, one by one */
			handler_in_window_call = false;
			handler_one_by_one = true;
			sleep_ms = 0;
		}
		else
		{
			handler_record_failure(cfg, failed_id, failed_key, handler_failed_seq, edata->message);
			handler_one_by_one = false;
			/* a failed message is blocked for its backoff; others go on now */
			sleep_ms = failed_id ? 0 : txbox_backoff_ms(++(*failures), cfg->backoff_ms);
		}
	}
	PG_END_TRY();
	return sleep_ms;
}

void
txbox_handler_main(Datum arg)
{
	TxboxSlot  *slot = txbox_slot_attach(DatumGetInt32(arg));
	MemoryContext loop_cxt;
	HandlerConfig cfg;
	int			failures = 0;
	bool		named = false;
	long		sleep_ms = 0;

	/* 1. Connect as the handler's owner; one worker per part. */
	memset(&cfg, 0, sizeof(cfg));
	handler_connect(slot, &cfg);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "txbox handler loop", ALLOCSET_DEFAULT_SIZES);

	/*
	 * 2. Handle window after window, sleeping when nothing is waiting, until
	 * the handler is paused or dropped or its database goes.
	 */
	for (;;)
	{
		txbox_worker_exit_if_gone(slot, sleep_ms < 0);	/* < 0: paused or dropped */
		sleep_ms = handler_run_once(slot, &cfg, loop_cxt, &failures);

		/* session-level advisory locks the handler function took go */
		if (handler_ran_user_code)
		{
			handler_ran_user_code = false;
			handler_lock_part(slot, true);
		}
		if (!named && cfg.name)
		{
			pgstat_report_appname(psprintf("txbox handler %s/%d", cfg.name, slot->part));
			txbox_worker_name("handler", cfg.name);
			named = true;
		}
		if (sleep_ms > 0)
			txbox_worker_wait(Min(sleep_ms, 1000), txbox_wait_event(TXBOX_WAIT_HANDLER_MAIN));
	}
}
