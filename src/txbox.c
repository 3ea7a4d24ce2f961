/*-------------------------------------------------------------------------
 * txbox.c
 *		Module load: the txbox.* settings, and the worker tree when preloaded.
 *
 * The SQL API works whether or not txbox is in shared_preload_libraries;
 * only shared memory and the launcher need preloading.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "txbox.h"
#include "workers.h"

PG_MODULE_MAGIC;

int			txbox_max_payload_size = 1024 * 1024;	/* bytes */
int			txbox_idempotency_ttl = 24 * 60 * 60;	/* seconds */
int			txbox_dedup_retention = 7 * 24 * 60 * 60;	/* seconds */
int			txbox_max_workers = 16;
int			txbox_poll_interval = 1000; /* ms */
static int	txbox_batch_size = 1000;	/* read by name: the relays' batch_size default (options.c) */
int			txbox_outbox_retention = 5 * 60;	/* seconds */
static int	txbox_inbox_retention = 24 * 60 * 60;	/* seconds */
static int	txbox_dead_letter_retention = 30 * 24 * 60 * 60;	/* seconds */
int			txbox_max_workers_per_database = 0;	/* 0: no cap */
int			txbox_max_workers_per_role = 0; /* 0: no cap */
int			txbox_reserved_manager_slots = 2;
int			txbox_max_parallel = 4;

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
							"Counted from the commit of the request that held the key; at most 30 days.",
							&txbox_idempotency_ttl,
							24 * 60 * 60, 1, TXBOX_IDEMPOTENCY_TTL_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("txbox.dedup_retention",
							"How long inbox deduplication records are kept (the dedup window).",
							"Exactly-once processing holds for duplicates arriving within this window.",
							&txbox_dedup_retention,
							7 * 24 * 60 * 60, 10, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("txbox.poll_interval",
							"How often relays look at the outbox when no commit woke them.",
							"Publishing transactions wake relays at commit; this is the fallback.",
							&txbox_poll_interval,
							1000, 10, 60 * 60 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("txbox.batch_size",
							"Messages a relay delivers per round trip, unless its batch_size option says otherwise.",
							NULL,
							&txbox_batch_size,
							1000, 1, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("txbox.outbox_retention",
							"How long delivered messages stay in the outbox.",
							"Undelivered messages are never removed.",
							&txbox_outbox_retention,
							5 * 60, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("txbox.inbox_retention",
							"How long processed inbox messages stay in txbox.inbox.",
							"A message stays until every consumer of its topic processed it; never longer than half txbox.dedup_retention after that.",
							&txbox_inbox_retention,
							24 * 60 * 60, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("txbox.dead_letter_retention",
							"How long dead letters are kept once replayed or discarded.",
							NULL,
							&txbox_dead_letter_retention,
							30 * 24 * 60 * 60, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("txbox.max_workers_per_database",
							"Most relay and handler workers one database runs at once (0: no cap).",
							"Others wait, shown as waiting in txbox.relay_status and txbox.handler_status.",
							&txbox_max_workers_per_database,
							0, 0, 1024,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("txbox.max_workers_per_role",
							"Most relay and handler workers the relays and handlers of one role run at once, in all databases (0: no cap).",
							"Others wait, shown as waiting in txbox.relay_status and txbox.handler_status.",
							&txbox_max_workers_per_role,
							0, 0, 1024,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("txbox.reserved_manager_slots",
							"txbox.max_workers slots relays and handlers leave free for database managers.",
							"Managers running count against it: set it to the number of databases with txbox.",
							&txbox_reserved_manager_slots,
							2, 0, 1024,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("txbox.max_parallel",
							"Most workers one handler runs, whatever its \"parallel\" option asks.",
							NULL,
							&txbox_max_parallel,
							4, 1, 16,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("txbox.max_workers",
								"Most txbox background workers (managers and relays) at once.",
								"Each also takes one of max_worker_processes.",
								&txbox_max_workers,
								16, 1, 1024,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);

	MarkGUCPrefixReserved("txbox");

	txbox_generation_init();

	/* the worker tree exists only when preloaded, and never in pg_upgrade */
	if (process_shared_preload_libraries_in_progress && !IsBinaryUpgrade)
	{
		txbox_shmem_init();
		txbox_launcher_register();
	}
}
