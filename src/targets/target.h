/*-------------------------------------------------------------------------
 * targets/target.h
 *		The target interface: what the relay worker (relay.c) knows of the
 *		places it delivers to, and the types a target needs.
 *
 * Every target is one file in targets/ that defines a TargetCallbacks, its
 * declaration below and one line in target.c's table, where the relay
 * looks it up by the relay's target name.  The relay calls, for every page
 * of messages:
 *
 *	connect		(optional) make sure the endpoint is reachable, outside any
 *				transaction, before the page is read: a target that is down
 *				costs no outbox read.  Connections are kept between pages.
 *	deliver		deliver the page, in the relay's transaction when
 *				in_relay_xact (the page's keys only; the target reads the
 *				messages itself, and the relay saves its position in the same
 *				transaction: NOTIFY and the position commit together), else
 *				outside any transaction with the page's messages read into
 *				memory (a remote call, after which the relay saves the
 *				position in a transaction of its own).
 *	disconnect	(optional) drop what connect kept; called from the relay's
 *				error recovery, so it must not fail.
 *
 * A target waits only through txbox_target_wait_socket or WaitLatchOrSocket
 * on MyLatch with a deadline, so SIGTERM and postmaster death are honoured
 * while an endpoint hangs.
 *
 * Options are not validated here: txbox._relay_check_options (SQL) checks
 * them when the relay is created or altered, in the caller's transaction,
 * with the error and hint the caller sees.  The worker reads them later,
 * already checked.
 *-------------------------------------------------------------------------
 */
#ifndef TXBOX_TARGET_H
#define TXBOX_TARGET_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* A relay's configuration, re-read at every iteration. */
typedef struct RelayConfig
{
	int32		relay_id;
	char	   *name;
	char	   *source;			/* "database/relay", as the inbox records it */
	char	   *target;			/* a name in target.c's table */
	char	   *server;			/* postgres */
	char	   *channel;		/* notify */
	Oid			owner;
	int			batch_size;
	int			max_attempts;
	int			backoff_max_ms;
	int			connect_timeout_ms;
	int			statement_timeout_ms;
} RelayConfig;

/*
 * What a delivery attempt came to, for the whole page.  A page that is
 * REJECTED is retried one message at a time, so a rejection (and its
 * reason) ends up belonging to one message, which is dead-lettered after
 * max_attempts; RETRY and TIMEOUT never dead-letter anything.
 */
typedef enum DeliveryResult
{
	DELIVERY_OK,				/* every message delivered (some perhaps duplicates) */
	DELIVERY_RETRY,				/* target down, slow, or failing: retry later */
	DELIVERY_TIMEOUT,			/* the page timed out: retry a smaller one */
	DELIVERY_REJECTED			/* the target refused these messages' data */
} DeliveryResult;

/*
 * One page of messages, in delivery order: always their outbox keys (txids
 * xid8[], ids bigint[]); for a target that runs outside the relay's
 * transaction also the messages, as the binary send format of one array per
 * column (what the remote's txbox._inbox_receive takes).
 */
#define RELAY_PAGE_COLUMNS 7
typedef struct RelayPage
{
	int			count;
	Datum		txids;
	Datum		ids;
	bytea	   *columns[RELAY_PAGE_COLUMNS];	/* message_id uuid[], topic text[],
												 * key text[], headers jsonb[],
												 * payload jsonb[], payload_bytes
												 * bytea[], published_at
												 * timestamptz[] */
} RelayPage;

typedef struct TargetCallbacks
{
	const char *name;			/* txbox.relays.target */
	bool		in_relay_xact;	/* deliver runs in the relay's transaction */

	/* NULL when connected (or nothing to connect), else why not (palloc'd) */
	char	   *(*connect) (const RelayConfig *cfg);

	/*
	 * DELIVERY_OK with *duplicates = how many of the page the target already
	 * had, else what the failure means for the page and *error why
	 * (palloc'd, never containing a secret).
	 */
	DeliveryResult (*deliver) (const RelayConfig *cfg, const RelayPage *page,
							   int *duplicates, char **error);

	void		(*disconnect) (void);
} TargetCallbacks;

/* the targets, each defined in its own file (declared here for all) */
extern const TargetCallbacks txbox_postgres_target;
extern const TargetCallbacks txbox_notify_target;

/* target.c */
extern const TargetCallbacks *txbox_target_lookup(const char *name);
extern DeliveryResult txbox_delivery_result(const char *sqlstate);
extern bool txbox_target_wait_socket(pgsocket sock, bool for_write, TimestampTz deadline);

#endif							/* TXBOX_TARGET_H */
