/*-------------------------------------------------------------------------
 * txbox.c
 *		Module load: the txbox.* settings.
 *
 * The SQL API works whether or not txbox is in shared_preload_libraries;
 * everything here is safe to run when the library is loaded on first use.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "txbox.h"

PG_MODULE_MAGIC;

int			txbox_max_payload_size = 1024 * 1024;	/* bytes */
int			txbox_idempotency_ttl = 24 * 60 * 60;	/* seconds */
int			txbox_dedup_retention = 7 * 24 * 60 * 60;	/* seconds */

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomIntVariable("txbox.max_payload_size",
							"Largest payload txbox.publish accepts.",
							"Measured on the stored form: jsonb or bytea bytes.",
							&txbox_max_payload_size,
							1024 * 1024, 1, 256 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("txbox.idempotency_ttl",
							"How long an idempotency key and its stored response are kept.",
							"A key older than this counts as new again.",
							&txbox_idempotency_ttl,
							24 * 60 * 60, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("txbox.dedup_retention",
							"How long inbox deduplication records are kept (the dedup window).",
							"Exactly-once processing holds for duplicates arriving within this window.",
							&txbox_dedup_retention,
							7 * 24 * 60 * 60, 60, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("txbox");

	txbox_generation_init();
}
