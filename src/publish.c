/*-------------------------------------------------------------------------
 * publish.c
 *		txbox.publish and txbox.publish_bytes: write a message into the
 *		outbox in the caller's transaction.
 *
 * A message is one row in the current generation of txbox.outbox, tagged
 * with the writing transaction's full xid (txid).  Relays read the outbox
 * by transaction snapshots on txid, so a message becomes visible to them
 * exactly when, and only if, its transaction commits: rolled-back
 * transactions, savepoints and PL/pgSQL blocks leave no row.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "txbox.h"
#include "workers.h"

#define TXBOX_TOPIC_MAX 249

/* txbox.outbox's columns (src/sql/02_outbox.sql) */
#define OUTBOX_NATTS 11

/*
 * outbox_insert -- write a message into the current generation of the
 * outbox: values[2..10] are message_id .. relay; gen, id and txid are set
 * here.
 */
static void
outbox_insert(Datum *values, bool *isnull)
{
	int16		gen;

	/* (before nextval: the error an INSERT gives) */
	PreventCommandIfReadOnly("INSERT");
	gen = txbox_current_generation(TXBOX_OUTBOX, NULL);
	values[0] = Int16GetDatum(gen);
	values[1] = Int64GetDatum(nextval_internal(txbox_table_oid("outbox_id_seq", false), true));
	values[2] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	isnull[0] = isnull[1] = isnull[2] = false;
	(void) txbox_generation_insert(TXBOX_OUTBOX, gen, OUTBOX_NATTS, 1, values, isnull, false);
}

/* Topic names follow Kafka's rule: 1-249 characters of [A-Za-z0-9._-]. */
static void
publish_check_topic(text *topic)
{
	const char *s = VARDATA_ANY(topic);
	int			len = VARSIZE_ANY_EXHDR(topic);

	if (len < 1 || len > TXBOX_TOPIC_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid topic name: length %d is not between 1 and %d",
						len, TXBOX_TOPIC_MAX),
				 errhint("Topic names are 1 to %d characters of A-Z, a-z, 0-9, '.', '_' and '-'.",
						 TXBOX_TOPIC_MAX)));

	for (int i = 0; i < len; i++)
	{
		char		ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("invalid topic name \"%s\"", text_to_cstring(topic)),
					 errdetail("Character %d is not allowed in a topic name.", i + 1),
					 errhint("Topic names are 1 to %d characters of A-Z, a-z, 0-9, '.', '_' and '-'.",
							 TXBOX_TOPIC_MAX)));
	}
}

/* A varlena argument's size as stored, uncompressed, without detoasting it. */
static Size
publish_stored_size(Datum datum)
{
	return toast_raw_datum_size(datum) - VARHDRSZ;
}

/*
 * Headers are NULL or a flat JSON object whose values are all strings, of
 * at most TXBOX_HEADERS_MAX bytes as stored.
 */
static void
publish_check_headers(Datum datum)
{
	Size		size = publish_stored_size(datum);
	Jsonb	   *headers;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (size > TXBOX_HEADERS_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("message headers of %zu bytes exceed the limit of %d bytes",
						size, TXBOX_HEADERS_MAX),
				 errhint("Keep headers to small metadata (trace ids, content type); put data in the payload.")));

	headers = DatumGetJsonbP(datum);

	if (!JB_ROOT_IS_OBJECT(headers) || JB_ROOT_IS_SCALAR(headers))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("message headers must be a JSON object"),
				 errhint("Pass headers as a flat object of strings, e.g. '{\"trace_id\": \"abc\"}'.")));

	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_VALUE && v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("message header values must be strings"),
					 errhint("Pass headers as a flat object of strings, e.g. '{\"trace_id\": \"abc\"}'.")));
	}
}

/*
 * publish_common -- validate the arguments of publish / publish_bytes and
 * insert the message.  The payload is argument 1, of type jsonb or bytea.
 * Returns the message id.
 */
static Datum
publish_common(FunctionCallInfo fcinfo, bool binary)
{
	text	   *topic;
	pg_uuid_t  *message_id;
	Datum		values[OUTBOX_NATTS];
	bool		isnull[OUTBOX_NATTS] = {false};
	Size		payload_size;
	Size		key_size;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topic must not be NULL"),
				 errhint("Pass a topic name such as 'orders'.")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payload must not be NULL"),
				 errhint("Publish a JSON null as 'null'::jsonb, or an empty binary payload as ''::bytea.")));

	topic = PG_GETARG_TEXT_PP(0);
	publish_check_topic(topic);

	payload_size = publish_stored_size(PG_GETARG_DATUM(1));
	if (payload_size > (Size) txbox_max_payload_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("payload of %zu bytes exceeds txbox.max_payload_size (%d bytes)",
						payload_size, txbox_max_payload_size),
				 errhint("Publish a reference to the data instead, or raise txbox.max_payload_size.")));

	key_size = PG_ARGISNULL(2) ? 0 : publish_stored_size(PG_GETARG_DATUM(2));
	if (key_size > TXBOX_KEY_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("message key of %zu bytes exceeds the limit of %d bytes",
						key_size, TXBOX_KEY_MAX),
				 errhint("Use a short key that names the entity, such as its id; hash a longer one.")));

	if (!PG_ARGISNULL(3))
		publish_check_headers(PG_GETARG_DATUM(3));

	if (PG_ARGISNULL(4))
	{
		message_id = palloc(sizeof(pg_uuid_t));
		txbox_uuid7_generate(message_id);
	}
	else
		message_id = PG_GETARG_UUID_P(4);

	values[3] = UUIDPGetDatum(message_id);
	values[4] = PointerGetDatum(topic);
	values[5] = PG_GETARG_DATUM(2);
	isnull[5] = PG_ARGISNULL(2);
	values[6] = PG_GETARG_DATUM(3);
	isnull[6] = PG_ARGISNULL(3);
	values[7] = binary ? (Datum) 0 : PG_GETARG_DATUM(1);
	isnull[7] = binary;
	values[8] = binary ? PG_GETARG_DATUM(1) : (Datum) 0;
	isnull[8] = !binary;
	values[9] = TimestampTzGetDatum(GetCurrentTimestamp());
	values[10] = (Datum) 0;
	isnull[10] = true;

	outbox_insert(values, isnull);

	/* the relays of this database look at the outbox once we commit */
	txbox_wake_at_commit(TXBOX_WAKE_RELAYS);

	PG_RETURN_UUID_P(message_id);
}

/* txbox.publish(topic, payload jsonb, key, headers, message_id) */
PG_FUNCTION_INFO_V1(txbox_publish);
Datum
txbox_publish(PG_FUNCTION_ARGS)
{
	return publish_common(fcinfo, false);
}

/* txbox.publish_bytes(topic, payload bytea, key, headers, message_id) */
PG_FUNCTION_INFO_V1(txbox_publish_bytes);
Datum
txbox_publish_bytes(PG_FUNCTION_ARGS)
{
	return publish_common(fcinfo, true);
}

/*
 * txbox._republish(relay, message_id, topic, key, headers, payload,
 *		payload_bytes) -- put a dead letter back in the outbox for one relay
 *		(txbox.replay_dead_letter), with its original message id.
 */
PG_FUNCTION_INFO_V1(txbox_republish);
Datum
txbox_republish(PG_FUNCTION_ARGS)
{
	Datum		values[OUTBOX_NATTS];
	bool		isnull[OUTBOX_NATTS];

	for (int i = 0; i < 3; i++)
		if (PG_ARGISNULL(i))
			elog(ERROR, "txbox._republish: argument %d is NULL", i + 1);

	/* message_id .. payload_bytes, then published_at and relay */
	for (int i = 1; i <= 6; i++)
	{
		values[i + 2] = PG_GETARG_DATUM(i);
		isnull[i + 2] = PG_ARGISNULL(i);
	}
	values[9] = TimestampTzGetDatum(GetCurrentTimestamp());
	isnull[9] = false;
	values[10] = PG_GETARG_DATUM(0);
	isnull[10] = false;

	outbox_insert(values, isnull);

	txbox_wake_at_commit(TXBOX_WAKE_RELAYS);
	PG_RETURN_VOID();
}
