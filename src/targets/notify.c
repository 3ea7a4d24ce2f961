/*-------------------------------------------------------------------------
 * targets/notify.c
 *		The notify target: NOTIFY a channel for every message, for
 *		listeners in the same database.
 *
 * Runs inside the relay's own transaction (in_relay_xact, target.h), which
 * also saves the relay's position: the notifications are sent if and only
 * if the position moves, so each message is notified once per commit of
 * the relay.  The payload is
 * JSON: message_id, topic, key, headers and the payload (binary ones as
 * payload_base64); a message over NOTIFY's 8000-byte limit is sent without
 * its payload, with "payload_omitted": true.  One still over the limit
 * without its payload (a key or headers that large) makes NOTIFY fail: the
 * relay retries it alone and dead-letters it after max_attempts, like any
 * message a target rejects.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/resowner.h"

#include "target.h"
#include "txbox.h"

static TxboxPlan notify_plan = {
	"SELECT pg_catalog.count(pg_catalog.pg_notify($3,"
	"   CASE WHEN pg_catalog.octet_length((m.meta OPERATOR(pg_catalog.||) m.body)::pg_catalog.text) OPERATOR(pg_catalog.<) 7900"
	"        THEN (m.meta OPERATOR(pg_catalog.||) m.body)::pg_catalog.text"
	"        ELSE (m.meta OPERATOR(pg_catalog.||) '{\"payload_omitted\": true}'::pg_catalog.jsonb)::pg_catalog.text END))"
	" FROM (SELECT pg_catalog.jsonb_build_object('message_id', o.message_id, 'topic', o.topic,"
	"              'key', o.key, 'headers', o.headers) AS meta,"
	"         CASE WHEN o.payload_bytes IS NULL THEN pg_catalog.jsonb_build_object('payload', o.payload)"
	"              ELSE pg_catalog.jsonb_build_object('payload_base64', pg_catalog.encode(o.payload_bytes, 'base64')) END AS body"
	"       FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.xid8[]), pg_catalog.unnest($2::pg_catalog.int8[]))"
	"       WITH ORDINALITY AS k(txid, id, ord)"
	"       JOIN txbox.outbox o ON o.txid OPERATOR(pg_catalog.=) k.txid AND o.id OPERATOR(pg_catalog.=) k.id"
	"       ORDER BY k.ord OFFSET 0) m",
	3, {XID8ARRAYOID, INT8ARRAYOID, TEXTOID}
};

/*
 * notify_deliver -- the deliver callback: NOTIFY the relay's channel for the
 * page's messages, in its order.  Runs in the relay's transaction,
 * connected to SPI (in_relay_xact).  Returns DELIVERY_OK (no duplicates:
 * what is notified is not notified again), or, when NOTIFY raised an error,
 * what it means for the page (the subtransaction the notifications ran in
 * is rolled back, so none of them is sent) and *error says why (palloc'd in
 * the caller's context).
 */
static DeliveryResult
notify_deliver(const RelayConfig *cfg, const RelayPage *page, int *duplicates,
			   char **error)
{
	Datum		args[3] = {page->txids, page->ids, CStringGetTextDatum(txbox_option_text(cfg->options, "notify", "channel"))};
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	DeliveryResult res = DELIVERY_OK;

	*duplicates = 0;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		txbox_exec(&notify_plan, args, NULL, false, 1);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		char	   *sqlstate;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
		*error = psprintf("NOTIFY failed (SQLSTATE %s): %s", sqlstate, edata->message);
		res = txbox_delivery_result(sqlstate);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return res;
}

const TargetCallbacks txbox_notify_target = {
	.name = "notify",
	.in_relay_xact = true,
	.deliver = notify_deliver,
};
