/*-------------------------------------------------------------------------
 * inbox.c
 *		txbox.inbox_claim: deduplicate messages that arrive by any route.
 *
 * A claim is a row (consumer, message_id) in the current generation of
 * txbox.inbox_dedup, written in the caller's transaction: it commits with
 * the caller's effects or vanishes with them.
 *
 *	1. Look for a committed record in the older generations (unless they
 *	   are known empty), by their primary keys, with a fresh snapshot so
 *	   that REPEATABLE READ callers see it too: found, a duplicate (false),
 *	   and nothing is written.  Generation switches wait for in-progress
 *	   claims (generation.c), so an older generation holds only committed or
 *	   aborted rows, and none is written while we hold the parent's lock.
 *	2. Otherwise INSERT ... ON CONFLICT DO NOTHING into the current
 *	   generation's partition (txbox_generation_insert: in C, without a
 *	   plan).  A concurrent claim of the same id waits here for the
 *	   first transaction: if that commits we get a conflict (false), if it
 *	   rolls back we insert.
 *
 * A duplicate found in an older generation is not recorded again: the
 * dedup window counts from the first copy's processing (README, retention
 * of the dedup records).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "utils/array.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"
#include "utils/varlena.h"
#include "utils/builtins.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/timestamp.h"

#include "txbox.h"
#include "workers.h"

/*
 * A probe of a table (for a rotated table, a generation's partition, whose
 * parent's lock the caller holds) by the leading columns of its primary
 * key, begun with txbox_index_scan_begin(..., InvalidOid, ...): whether a
 * row visible to the scan's snapshot matches keys (then in the scan's slot).
 */
static bool
pk_probe_found(TxboxIndexScan *p, ScanKey keys, int nkeys)
{
	index_rescan(p->scan, keys, nkeys, NULL, 0);
	return index_getnext_slot(p->scan, ForwardScanDirection, p->slot);
}

/*
 * consumer_check -- refuse (42501) unless caller may act as consumer.  A
 * consumer registered in txbox.consumers (by its first inbox_fetch, or a
 * handler's) belongs to its owner: only members of that role, and
 * superusers, may claim, fetch, complete or drop its messages; otherwise a
 * role could mark another's messages processed, and they would be skipped.
 * An unregistered name (inbox_claim alone) is anyone's.  Read with the
 * latest snapshot, on every call: nothing is cached.
 */
static void
consumer_check(Oid caller, Datum consumer)
{
	Oid			owner = InvalidOid;
	Snapshot	snapshot;
	TxboxIndexScan probe;
	ScanKeyData key;

	if (superuser_arg(caller))
		return;
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	txbox_index_scan_begin(&probe, txbox_table_oid("consumers", false), InvalidOid, snapshot, 1);
	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   probe.index->rd_indcollation[0], F_TEXTEQ, consumer);
	if (pk_probe_found(&probe, &key, 1))
	{
		bool		isnull;

		owner = DatumGetObjectId(slot_getattr(probe.slot,
											  get_attnum(RelationGetRelid(probe.rel), "owner"),
											  &isnull));
	}
	txbox_index_scan_end(&probe);
	UnregisterSnapshot(snapshot);

	if (OidIsValid(owner) && !has_privs_of_role(caller, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("consumer \"%s\" belongs to role \"%s\"",
						TextDatumGetCString(consumer), GetUserNameFromId(owner, true)),
				 errhint("Only members of role \"%s\" may claim, fetch, complete or drop its messages: use a consumer name of your own.",
						 GetUserNameFromId(owner, true))));
}

/* txbox._consumer_check(caller regrole, consumer text): consumer_check */
PG_FUNCTION_INFO_V1(txbox_consumer_check);
Datum
txbox_consumer_check(PG_FUNCTION_ARGS)
{
	consumer_check(PG_GETARG_OID(0), PointerGetDatum(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_VOID();
}

/*
 * claim_recorded_elsewhere -- whether a generation of txbox.inbox_dedup
 * other than gen holds a committed record of (consumer, message_id), read
 * with the latest snapshot.
 */
static bool
claim_recorded_elsewhere(Datum consumer, Datum message_id, int16 gen)
{
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	ScanKeyData keys[2];
	bool		found = false;
	int16		generations = txbox_generations(TXBOX_INBOX_DEDUP);

	/* (consumer, message_id, gen): the leading columns, COLLATE "C" */
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ, consumer);
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_TEXTEQ, message_id);
	for (int16 older = 0; !found && older < generations; older++)
	{
		TxboxIndexScan probe;

		if (older == gen)
			continue;
		txbox_index_scan_begin(&probe, txbox_generation_relid(TXBOX_INBOX_DEDUP, older), InvalidOid,
							   snapshot, 2);
		found = pk_probe_found(&probe, keys, 2);
		txbox_index_scan_end(&probe);
	}
	UnregisterSnapshot(snapshot);
	return found;
}

/*
 * The largest message id of a consumer's records in the generations of
 * txbox.inbox_dedup other than the current one, as this backend last read
 * it, for the few consumers it claimed for last.  Those generations get no
 * new records while their epoch (txbox_generation_epoch) stays the same,
 * so an id above the bound is in none of them, without a probe: message ids
 * that sort in time (txbox's UUIDv7 message ids) are claimed above the
 * records of generations that ended a rotation ago.  Ids compare bytewise,
 * as the primary key orders them (COLLATE "C").
 */
#define OLDER_BOUNDS 8

typedef struct OlderBound
{
	uint64		epoch;			/* txbox_generation_epoch when read; 0: not read */
	text	   *consumer;		/* in TopMemoryContext; NULL: unused */
	text	   *max_id;			/* NULL: no record of the consumer there */
} OlderBound;

static OlderBound older_bounds[OLDER_BOUNDS];
static int	older_bounds_next;	/* the entry to replace next */

/* a and b as COLLATE "C" orders them */
static int
text_cmp_c(const text *a, const text *b)
{
	return varstr_cmp(VARDATA_ANY(a), VARSIZE_ANY_EXHDR(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b),
					  C_COLLATION_OID);
}

/*
 * older_last -- for each generation of table other than gen (the current
 * one; the caller holds the parent's lock, txbox_current_generation), the
 * committed row that comes last in its primary key among those whose
 * leading columns match keys, read with the latest snapshot: calls fn with
 * its column colname (valid during the call only).
 */
static void
older_last(TxboxRotated table, int16 gen, ScanKey keys, int nkeys, const char *colname,
		   void (*fn) (Datum value, void *arg), void *arg)
{
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	int16		generations = txbox_generations(table);

	for (int16 older = 0; older < generations; older++)
	{
		TxboxIndexScan probe;

		if (older == gen)
			continue;
		txbox_index_scan_begin(&probe, txbox_generation_relid(table, older), InvalidOid,
							   snapshot, nkeys);
		index_rescan(probe.scan, keys, nkeys, NULL, 0);
		if (index_getnext_slot(probe.scan, BackwardScanDirection, probe.slot))
		{
			bool		isnull;

			fn(slot_getattr(probe.slot, get_attnum(RelationGetRelid(probe.rel), colname), &isnull),
			   arg);
		}
		txbox_index_scan_end(&probe);
	}
	UnregisterSnapshot(snapshot);
}

/* older_last's fn: keep the largest message id in *(text **) arg */
static void
older_max_id(Datum value, void *arg)
{
	text	  **max_id = (text **) arg;

	if (*max_id == NULL || text_cmp_c(DatumGetTextPP(value), *max_id) > 0)
		*max_id = DatumGetTextPCopy(value);
}

/* a copy of t in TopMemoryContext (NULL: NULL) */
static text *
text_keep(const text *t)
{
	text	   *copy;

	if (t == NULL)
		return NULL;
	copy = (text *) MemoryContextAlloc(TopMemoryContext, VARSIZE_ANY(t));
	memcpy(copy, t, VARSIZE_ANY(t));
	return copy;
}

/*
 * Whether message_id sorts above every record of consumer in the
 * generations other than gen (the current one; the caller holds the
 * parent's lock, txbox_current_generation), so that none of them holds it.
 */
static bool
claim_above_older(Datum consumer, Datum message_id, int16 gen)
{
	uint64		epoch = txbox_generation_epoch(TXBOX_INBOX_DEDUP);
	text	   *c = DatumGetTextPP(consumer);
	OlderBound *b = NULL;

	for (int i = 0; i < OLDER_BOUNDS && b == NULL; i++)
		if (older_bounds[i].consumer != NULL && text_cmp_c(older_bounds[i].consumer, c) == 0)
			b = &older_bounds[i];
	if (b == NULL)
	{
		b = &older_bounds[older_bounds_next];
		older_bounds_next = (older_bounds_next + 1) % OLDER_BOUNDS;
		if (b->consumer != NULL)
			pfree(b->consumer);
		b->consumer = text_keep(c);
		b->epoch = 0;
	}
	if (b->epoch != epoch)
	{
		ScanKeyData key;
		text	   *max_id = NULL;

		/* (consumer, message_id, gen): the leading column, COLLATE "C" */
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ, consumer);
		b->epoch = 0;			/* until the bound is read (epochs start at 1) */
		older_last(TXBOX_INBOX_DEDUP, gen, &key, 1, "message_id", older_max_id, &max_id);
		if (b->max_id != NULL)
			pfree(b->max_id);
		b->max_id = text_keep(max_id);
		b->epoch = epoch;
	}
	return b->max_id == NULL || text_cmp_c(DatumGetTextPP(message_id), b->max_id) > 0;
}

/*
 * txbox._inbox_claim(caller regrole, consumer text, message_id text)
 *		RETURNS boolean -- txbox.inbox_claim(consumer, message_id) for caller
 *		(relay_api.c)
 *
 * True the first time consumer claims message_id: the caller does its work
 * in this same transaction.  False for a duplicate.
 */
PG_FUNCTION_INFO_V1(txbox_inbox_claim);
Datum
txbox_inbox_claim(PG_FUNCTION_ARGS)
{
	Datum		consumer;
	Datum		message_id;
	bool		claimed;
	bool		others_empty;
	int16		gen;

	txbox_require_text_arg(fcinfo, 1, "consumer");
	txbox_require_text_arg(fcinfo, 2, "message_id");
	/* detoasted once: the probes compare them */
	consumer = PointerGetDatum(PG_GETARG_TEXT_PP(1));
	message_id = PointerGetDatum(PG_GETARG_TEXT_PP(2));

	consumer_check(PG_GETARG_OID(0), consumer);

	gen = txbox_current_generation(TXBOX_INBOX_DEDUP, &others_empty);
	claimed = others_empty || claim_above_older(consumer, message_id, gen) ||
		!claim_recorded_elsewhere(consumer, message_id, gen);
	if (claimed)
	{
		Datum		values[4] = {Int16GetDatum(gen), consumer, message_id,
		TimestampTzGetDatum(GetCurrentTimestamp())};
		bool		isnull[4] = {false, false, false, false};

		claimed = txbox_generation_insert(TXBOX_INBOX_DEDUP, gen, 4, 1, values, isnull, true) == 1;
	}

	PG_RETURN_BOOL(claimed);
}

/*
 * The id (text) of the page's first message whose payload is over
 * txbox.max_payload_size, or NULL: a payload's size as stored
 * (pg_column_size), a binary payload's in bytes.
 */
static char *
receive_oversized(Datum message_ids, Datum payloads, Datum payloads_bytes)
{
	ArrayIterator ids = array_create_iterator(DatumGetArrayTypeP(message_ids), 0, NULL);
	ArrayIterator json = array_create_iterator(DatumGetArrayTypeP(payloads), 0, NULL);
	ArrayIterator bytes = array_create_iterator(DatumGetArrayTypeP(payloads_bytes), 0, NULL);
	Datum		id;
	Datum		v;
	bool		id_null;
	bool		isnull;

	while (array_iterate(ids, &id, &id_null))
	{
		int			size = -1;

		if (array_iterate(json, &v, &isnull) && !isnull)
			size = VARSIZE_ANY(DatumGetPointer(v));
		if (array_iterate(bytes, &v, &isnull) && !isnull && size < 0)
			size = VARSIZE_ANY_EXHDR(DatumGetPointer(v));
		if (size > txbox_max_payload_size)
			return id_null ? pstrdup("NULL") : DatumGetCString(DirectFunctionCall1(uuid_out, id));
	}
	return NULL;
}

/*
 * Store the page's new messages: $3 holds the page's ids, NULL in place of
 * those already stored in another generation (inbox_stored_elsewhere); the
 * current generation's copies are left out by ON CONFLICT.  A message that
 * left the inbox may come again (a late duplicate, within the dedup
 * window): it is stored, and the dedup records that inbox consumers kept
 * of its first copy in the other generation are renewed in the current
 * one.  So it is processed by none of them again, and it never outlives
 * its records: the rotation of the dedup records waits while the inbox
 * holds a message received before a generation's last record
 * (txbox._maintain).
 */
static TxboxPlan receive_insert_plan = {
	"WITH new AS (INSERT INTO txbox.inbox (gen, message_id, topic, key, headers, payload, payload_bytes,"
	" source, published_at, received_at)"
	" SELECT $1, u.message_id, u.topic, u.key, u.headers, u.payload, u.payload_bytes, $2,"
	" u.published_at, pg_catalog.now()"
	" FROM ROWS FROM (pg_catalog.unnest($3::pg_catalog.uuid[]), pg_catalog.unnest($4::pg_catalog.text[]),"
	" pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.jsonb[]), pg_catalog.unnest($7::pg_catalog.jsonb[]),"
	" pg_catalog.unnest($8::pg_catalog.bytea[]), pg_catalog.unnest($9::pg_catalog.timestamptz[])) WITH ORDINALITY"
	" AS u(message_id, topic, key, headers, payload, payload_bytes, published_at, ord)"
	" WHERE u.message_id IS NOT NULL"
	" ORDER BY u.ord"
	" ON CONFLICT DO NOTHING RETURNING message_id),"
	" renewed AS (INSERT INTO txbox.inbox_dedup (gen, consumer, message_id, claimed_at)"
	" SELECT $10, d.consumer, d.message_id, d.claimed_at FROM new n, txbox.consumers c,"
	"   LATERAL (SELECT x.consumer, x.message_id, x.claimed_at FROM txbox.inbox_dedup x"
	"     WHERE x.consumer OPERATOR(pg_catalog.=) c.consumer"
	"     AND x.message_id OPERATOR(pg_catalog.=) n.message_id::pg_catalog.text"
	"     AND x.gen OPERATOR(pg_catalog.<>) $10 OFFSET 0) d"
	" ON CONFLICT DO NOTHING)"
	"SELECT pg_catalog.count(*)::pg_catalog.int4 FROM new",
	10, {INT2OID, TEXTOID, UUIDARRAYOID, TEXTARRAYOID, TEXTARRAYOID, JSONBARRAYOID,
	JSONBARRAYOID, BYTEAARRAYOID, TIMESTAMPTZARRAYOID, INT2OID},
	/* planned once, not for every page: a page's arrays made custom plans win */
	NULL, CURSOR_OPT_GENERIC_PLAN, true
};

/*
 * The largest message id in the inbox generations other than the current
 * one, as this backend last read it: as for a claim's bound (OlderBound), a
 * page's ids above it are in none of them, without a probe.  Relays deliver
 * txbox's UUIDv7 message ids, which sort in time (uuid's order is bytewise).
 */
static struct
{
	uint64		epoch;			/* txbox_generation_epoch when read; 0: not read */
	bool		any;			/* a message is there */
	pg_uuid_t	max_id;
}			inbox_older_bound;

/* older_last's fn: keep the largest id in inbox_older_bound */
static void
older_max_uuid(Datum value, void *arg)
{
	pg_uuid_t  *id = DatumGetUUIDP(value);

	if (!inbox_older_bound.any || memcmp(id->data, inbox_older_bound.max_id.data, UUID_LEN) > 0)
	{
		inbox_older_bound.max_id = *id;
		inbox_older_bound.any = true;
	}
}

/* whether id sorts at or below inbox_older_bound (which holds a message) */
static bool
inbox_below_older_bound(Datum id)
{
	return memcmp(DatumGetUUIDP(id)->data, inbox_older_bound.max_id.data, UUID_LEN) <= 0;
}

/*
 * inbox_stored_elsewhere -- ids (a uuid[]) with NULL in place of the ids
 * stored in an inbox generation other than gen, or ids itself if none is
 * (or if others_empty: txbox_current_generation says they are all empty).
 *
 * Each other generation's partition is probed by its primary key, one
 * index lookup per id that sorts at or below their largest one
 * (inbox_older_bound), with the latest snapshot: the cost does not depend
 * on how many messages the inbox retains, whatever plan the planner would
 * have chosen for an anti-join.  Other generations are not written
 * (receives are serialized and write the current one, and a switch waits
 * for our lock on txbox.inbox), so the probes stay true until we insert.
 */
static Datum
inbox_stored_elsewhere(Datum ids, int16 gen, bool others_empty)
{
	ArrayType  *arr = DatumGetArrayTypeP(ids);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	bool		below = false;	/* an id sorts at or below inbox_older_bound */
	bool		any = false;
	int16		generations = txbox_generations(TXBOX_INBOX);
	Snapshot	snapshot;

	deconstruct_array(arr, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("message id %d of the page is NULL", i + 1),
					 errhint("txbox._inbox_receive is called by txbox relays, not by applications.")));

	if (others_empty || n == 0)
		return ids;
	if (inbox_older_bound.epoch != txbox_generation_epoch(TXBOX_INBOX))
	{
		inbox_older_bound.epoch = 0;	/* until the bound is read */
		inbox_older_bound.any = false;
		older_last(TXBOX_INBOX, gen, NULL, 0, "message_id", older_max_uuid, NULL);
		inbox_older_bound.epoch = txbox_generation_epoch(TXBOX_INBOX);
	}
	for (int i = 0; i < n && !below; i++)
		below = inbox_older_bound.any && inbox_below_older_bound(elems[i]);
	if (!below)
		return ids;				/* every id sorts above the other generations' */

	snapshot = RegisterSnapshot(GetLatestSnapshot());
	for (int16 older = 0; older < generations; older++)
	{
		TxboxIndexScan probe;

		if (older == gen)
			continue;
		txbox_index_scan_begin(&probe, txbox_generation_relid(TXBOX_INBOX, older), InvalidOid,
							   snapshot, 1);
		for (int i = 0; i < n; i++)
		{
			ScanKeyData key;

			if (nulls[i] || !inbox_below_older_bound(elems[i]))
				continue;
			/* (message_id, gen): the leading column */
			ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, elems[i]);
			if (pk_probe_found(&probe, &key, 1))
				nulls[i] = any = true;
		}
		txbox_index_scan_end(&probe);
	}
	UnregisterSnapshot(snapshot);

	if (!any)
		return ids;
	return PointerGetDatum(construct_md_array(elems, nulls, 1, &n, ARR_LBOUND(arr), UUIDOID,
											  UUID_LEN, false, TYPALIGN_CHAR));
}

/*
 * txbox._inbox_receive(source, message_ids, topics, keys, headers, payloads,
 *		payloads_bytes, published_at) RETURNS integer
 *
 * Store a page of messages delivered by a relay in txbox.inbox, dropping
 * message ids it already holds (in any generation), and return how many
 * were new.  A payload over this database's txbox.max_payload_size is
 * refused with 54000 (the relay dead-letters it after max_attempts).
 *
 * The messages' source is "login/label": the role the relay logged in as
 * (the session user: a relay cannot pose as another login) and the label
 * the sender passes (txbox relays pass "database/relay").
 *
 * Whatever the session's defaults, the receive reads the latest committed
 * state and commits durably: the relay saves its position once this
 * returns, so a commit lost in a crash (synchronous_commit = off) would
 * lose the messages.
 */
PG_FUNCTION_INFO_V1(txbox_inbox_receive);
Datum
txbox_inbox_receive(PG_FUNCTION_ARGS)
{
	Datum		values[10];
	int			inserted;
	LOCKTAG		tag;
	bool		isnull;
	int16		gen;
	bool		others_empty;
	char	   *oversized;

	for (int i = 0; i < 8; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %d of txbox._inbox_receive must not be NULL", i + 1),
					 errhint("txbox._inbox_receive is called by txbox relays, not by applications.")));

	SPI_connect();

	oversized = receive_oversized(PG_GETARG_DATUM(1), PG_GETARG_DATUM(5), PG_GETARG_DATUM(6));
	if (oversized != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("payload of message %s exceeds txbox.max_payload_size (%d bytes) of the receiving database",
						oversized, txbox_max_payload_size),
				 errhint("Raise txbox.max_payload_size where the relay delivers, or publish smaller messages.")));

	/*
	 * One receiver at a time, until commit: inbox.seq then grows in commit
	 * order, so a reader that has seen seq s has seen every committed
	 * message below it (handler.c relies on it to skip what it handled).
	 * Receives are pages of up to batch_size messages: waiting is rare.
	 */
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, 0, TXBOX_LOCKTAG_INBOX_RECEIVE);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);

	gen = txbox_current_generation(TXBOX_INBOX, &others_empty);
	values[0] = Int16GetDatum(gen);
	values[1] = CStringGetTextDatum(psprintf("%s/%s", GetUserNameFromId(GetSessionUserId(), false),
											 text_to_cstring(PG_GETARG_TEXT_PP(0))));
	for (int i = 1; i < 8; i++)
		values[i + 1] = PG_GETARG_DATUM(i);
	values[2] = inbox_stored_elsewhere(values[2], gen, others_empty);
	values[9] = Int16GetDatum(txbox_current_generation(TXBOX_INBOX_DEDUP, NULL));

	/*
	 * The probes above and the insert read the latest snapshot, taken
	 * after the lock: a REPEATABLE READ session's snapshot may predate a
	 * receive of the same ids that committed while we waited (its copy, in
	 * another generation, would be missed and stored twice).
	 */
	txbox_exec(&receive_insert_plan, values, NULL, true, 0);
	inserted = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	SPI_finish();

	/* durable before the relay hears of it, whatever synchronous_commit says */
	ForceSyncCommit();

	/* this database's handlers look at the inbox once we commit */
	if (inserted > 0)
		txbox_wake_at_commit(TXBOX_WAKE_HANDLERS);
	PG_RETURN_INT32(inserted);
}
