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
 *	deliver_finish	(optional, with deliver outside the relay's transaction)
 *				when deliver answered DELIVERY_PENDING: the page is on its way
 *				(deliver copied what it still needs of it: the RelayPage does
 *				not outlive the call), and the relay reads and delivers the
 *				next pages, up to max_pages_in_flight in flight, before it
 *				calls deliver_finish, which waits for the outcome of the
 *				oldest page in flight, after which the relay saves its
 *				position (pages are finished, and positions saved, oldest
 *				first).  On a failure the target first lets every page
 *				started after it settle (their outcome waited for, then
 *				dropped), so that nothing of them is still on its way when
 *				the relay delivers again from the failed page.  A deliver
 *				that answers anything else with pages in flight gets its
 *				outcome acted on after theirs (the relay finishes them
 *				first).
 *	disconnect	(optional) drop what connect kept, pages in flight too;
 *				called from the relay's error recovery, so it must not fail.
 *
 * A target that keeps the relay's position itself, committed together with
 * what it delivers (Kafka's exactly-once mode), also has:
 *
 *	load_position	when the relay (re)reads its saved position, in its
 *				transaction: the position the target holds, if any, which
 *				the relay then uses instead of its own copy.
 *	save_position	in the relay's transaction saving a position, before it
 *				commits: commit what deliver sent since with the position;
 *				an ERROR rolls the relay's transaction back.
 *
 * A target waits only through txbox_target_wait_socket or WaitLatchOrSocket
 * on MyLatch with a deadline, so SIGTERM and postmaster death are honoured
 * while an endpoint hangs.
 *
 * Options are not validated here: txbox._relay_check_options (SQL) checks
 * them when the relay is created or altered, in the caller's transaction,
 * with the error and hint the caller sees, against the table of options in
 * src/options.c.  The worker reads them later, already checked, with
 * txbox_option_int/ms/text (RelayConfig).
 *-------------------------------------------------------------------------
 */
#ifndef TXBOX_TARGET_H
#define TXBOX_TARGET_H

#include "datatype/timestamp.h"
#include "nodes/parsenodes.h"
#include "utils/jsonb.h"

struct sockaddr;

/* A relay's configuration, re-read at every iteration. */
typedef struct RelayConfig
{
	int32		relay_id;
	char	   *name;
	char	   *source;			/* "database/relay", as the inbox records it */
	char	   *target;			/* a name in target.c's table */
	char	   *server;			/* the foreign server of a target with a wrapper */
	Jsonb	   *options;		/* all of them: a target reads its own with
								 * txbox_option_text/int/ms(options, its name, ...) */
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
	DELIVERY_REJECTED,			/* the target refused these messages' data */
	DELIVERY_PENDING			/* on its way: deliver_finish tells the outcome */
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

/*
 * A page's messages as a target outside the relay's transaction reads
 * them: column c's element i is data[i], len[i] bytes (NULL and -1 for a
 * NULL), pointing into the page (target.c).
 */
typedef struct PageColumn
{
	const char **data;
	int		   *len;
} PageColumn;
extern void txbox_page_column(const RelayPage *page, int c, PageColumn *col);
/* a message_id element as text, into out (37 bytes: 36 and a NUL) */
extern void txbox_page_uuid(const char *data, char *out);
/*
 * fn(arg, name, name_len, value, value_len) for each header of a headers
 * element (name and value not NUL-terminated)
 */
typedef void (*PageHeaderFn) (void *arg, const char *name, int name_len, const char *value, int value_len);
extern void txbox_page_headers(const char *data, int len, PageHeaderFn fn, void *arg);

/* A relay's position (txbox.relays.snapshot, batch_snapshot, batch_last_id) */
typedef struct RelayPosition
{
	char	   *prev;			/* snapshot text: delivered up to here */
	char	   *cur;			/* the batch in progress, or NULL */
	int64		last_id;		/* delivered within the batch up to this id */
} RelayPosition;

/* the deepest a target's max_pages_in_flight may be (the relay's queue) */
#define TXBOX_MAX_PAGES_IN_FLIGHT 16

typedef struct TargetCallbacks
{
	const char *name;			/* txbox.relays.target */
	const char *wrapper;		/* the foreign-data wrapper of its servers
								 * (option "server"), or NULL */
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

	/* the outcome of the oldest page deliver left DELIVERY_PENDING, as deliver's */
	DeliveryResult (*deliver_finish) (const RelayConfig *cfg, int *duplicates, char **error);

	/*
	 * With deliver_finish: the most pages in flight at once, counting the
	 * one deliver just took (2 to TXBOX_MAX_PAGES_IN_FLIGHT).
	 */
	int			max_pages_in_flight;

	void		(*disconnect) (void);

	/* true and *pos (palloc'd) when the target holds the relay's position */
	bool		(*load_position) (const RelayConfig *cfg, RelayPosition *pos);
	void		(*save_position) (const RelayConfig *cfg, const RelayPosition *pos);
} TargetCallbacks;

/* the targets, each defined in its own file (declared here for all) */
extern const TargetCallbacks txbox_postgres_target;
extern const TargetCallbacks txbox_notify_target;
extern const TargetCallbacks txbox_http_target;
extern const TargetCallbacks txbox_kafka_target;

/* target.c */
extern const TargetCallbacks *txbox_target_lookup(const char *name);
extern DeliveryResult txbox_delivery_result(const char *sqlstate);
extern bool txbox_target_wait_socket(pgsocket sock, bool for_write, TimestampTz deadline);
extern bool txbox_address_refused(const struct sockaddr *sa, char *why, size_t len);
extern void txbox_check_allow_private(DefElem *def);

/* how to allow what txbox_address_refused refuses (%s: the server) */
#define TXBOX_PRIVATE_HINT "Loopback, private, link-local, CGNAT, multicast and reserved addresses are refused; a superuser may allow them with ALTER SERVER %s OPTIONS (ADD allow_private 'true')."

#endif							/* TXBOX_TARGET_H */
