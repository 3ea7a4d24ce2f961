/*-------------------------------------------------------------------------
 * txbox.h
 *		Declarations shared by the txbox C modules (README "Layout" lists
 *		them): settings, SQLSTATEs, lock tags, limits, the rotated tables,
 *		message ids and saved SPI plans.  The worker tree has its own header,
 *		workers.h, and the relay's targets targets/target.h.  Like
 *		PostgreSQL's own headers, it expects postgres.h to be included first.
 *-------------------------------------------------------------------------
 */
#ifndef TXBOX_H
#define TXBOX_H

#include "access/genam.h"
#include "executor/spi.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "compat.h"

/*
 * SQLSTATEs of txbox's own errors (class "TX"); generic validation errors
 * use PostgreSQL's standard codes.  README lists them all.
 */
#define ERRCODE_TXBOX_IDEMPOTENCY_MISMATCH	MAKE_SQLSTATE('T','X','4','2','2')

/* field4 of txbox's advisory lock tags (pg_advisory_* use 1 and 2) */
#define TXBOX_LOCKTAG_IDEMPOTENCY		0x7478
#define TXBOX_LOCKTAG_RELAY				0x7479
#define TXBOX_LOCKTAG_HANDLER			0x747A
#define TXBOX_LOCKTAG_INBOX_RECEIVE		0x747B

/*
 * Limits of a message's key and headers (publish.c; relays rely on them):
 * octet_length(key) and the stored jsonb size of headers, in bytes.
 */
#define TXBOX_KEY_MAX					4096
#define TXBOX_HEADERS_MAX				65536

/* txbox.idempotency_ttl is at most this, in seconds (30 days) */
#define TXBOX_IDEMPOTENCY_TTL_MAX		(30 * 24 * 60 * 60)

/* GUCs (txbox.c) */
extern int	txbox_max_payload_size;
extern int	txbox_idempotency_ttl;
extern int	txbox_dedup_retention;

/* generation.c: the rotated, LIST-partitioned tables */
typedef enum TxboxRotated
{
	TXBOX_OUTBOX = 0,
	TXBOX_INBOX_DEDUP,
	TXBOX_IDEMPOTENCY_KEYS,
	TXBOX_INBOX,
	TXBOX_NUM_ROTATED
} TxboxRotated;

extern int16 txbox_current_generation(TxboxRotated table, bool *others_empty);
extern bool txbox_generation_peek(TxboxRotated table, int16 *current, bool *others_empty);
extern int16 txbox_generations(TxboxRotated table);
extern uint64 txbox_generation_epoch(TxboxRotated table);
extern int	txbox_generation_insert(TxboxRotated table, int16 gen, int natts, int nrows,
									Datum *values, bool *isnull, bool do_nothing);
extern Oid	txbox_table_oid(const char *relname, bool missing_ok);
extern Oid	txbox_generation_relid(TxboxRotated table, int16 gen);
extern void txbox_generation_init(void);

/* options.c: the options of relays and handlers, in a relay's or handler's options */
extern int	txbox_option_int(Jsonb *options, const char *applies_to, const char *name);
extern int	txbox_option_ms(Jsonb *options, const char *applies_to, const char *name);
extern char *txbox_option_text(Jsonb *options, const char *applies_to, const char *name);
extern bool txbox_option_bool(Jsonb *options, const char *applies_to, const char *name);

/* uuid7.c */
extern void txbox_uuid7_generate(pg_uuid_t *uuid);

/* spi_util.c */
typedef struct TxboxPlan
{
	const char *query;
	int			nargs;
	Oid			argtypes[10];
	SPIPlanPtr	plan;
	int			cursor_options; /* CURSOR_OPT_* of SPI_prepare_cursor */
	bool		index_probes;	/* planned (and run) with index scans in
								 * nested loops only: see txbox_exec */
} TxboxPlan;

/* the most generations a rotated table may have */
#define TXBOX_MAX_GENERATIONS			3

/*
 * A scan of one index of a table, read with a snapshot: no plan, no
 * executor (spi_util.c).  The table and the index are open (AccessShareLock)
 * until txbox_index_scan_end; rows come into slot (index_getnext_slot).
 */
typedef struct TxboxIndexScan
{
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
} TxboxIndexScan;

extern void txbox_index_scan_begin(TxboxIndexScan *s, Oid relid, Oid parent_index,
								   Snapshot snapshot, int nkeys);
extern void txbox_index_scan_end(TxboxIndexScan *s);

extern SPIPlanPtr txbox_plan(TxboxPlan *p);
extern int	txbox_exec(TxboxPlan *p, Datum *values, const char *nulls,
					   bool latest_snapshot, long tcount);
extern void txbox_require_text_arg(FunctionCallInfo fcinfo, int argno,
								   const char *argname);

#endif							/* TXBOX_H */
