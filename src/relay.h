/*-------------------------------------------------------------------------
 * relay.h
 *		The interface between the relay worker (relay.c) and its targets
 *		(the files in targets/).
 *-------------------------------------------------------------------------
 */
#ifndef TXBOX_RELAY_H
#define TXBOX_RELAY_H

#include "postgres.h"

/* A relay's configuration, re-read at every iteration. */
typedef struct RelayConfig
{
	int32		relay_id;
	char	   *name;
	char	   *target;			/* "postgres" or "notify" */
	char	   *server;			/* postgres */
	char	   *channel;		/* notify */
	Oid			owner;
	int			batch_size;
	int			max_attempts;
	int			backoff_max_ms;
	int			connect_timeout_ms;
	int			statement_timeout_ms;
} RelayConfig;

/* What a delivery attempt came to. */
typedef enum DeliveryResult
{
	DELIVERY_OK,
	DELIVERY_RETRY,				/* target down, slow, or failing: retry later */
	DELIVERY_TIMEOUT,			/* the page timed out: retry a smaller one */
	DELIVERY_REJECTED			/* the target refused these messages' data */
} DeliveryResult;

/* relay.c: what a target's error with this SQLSTATE means for its page */
extern DeliveryResult txbox_delivery_result(const char *sqlstate);

/*
 * One page of messages for a remote target, as the binary send format of
 * one array per column (what the remote's txbox._inbox_receive takes).
 */
#define RELAY_PAGE_COLUMNS 7
typedef struct RelayPage
{
	int			count;
	bytea	   *columns[RELAY_PAGE_COLUMNS];	/* message_id uuid[], topic text[],
												 * key text[], headers jsonb[],
												 * payload jsonb[], payload_bytes
												 * bytea[], published_at
												 * timestamptz[] */
} RelayPage;

/* targets/postgres.c */
extern DeliveryResult txbox_postgres_deliver(const RelayConfig *cfg,
											 const char *source,
											 const RelayPage *page,
											 int *inserted, char **error);
extern void txbox_postgres_disconnect(void);

/* targets/notify.c */
extern DeliveryResult txbox_notify_deliver(const RelayConfig *cfg, Datum txids,
										   Datum ids, char **error);

#endif							/* TXBOX_RELAY_H */
