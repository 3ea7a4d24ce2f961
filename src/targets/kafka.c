/*-------------------------------------------------------------------------
 * targets/kafka.c
 *		The kafka target: produce a relay's messages to Kafka with
 *		librdkafka, and txbox_kafka, the foreign-data wrapper whose servers
 *		and user mappings hold the cluster's address and credentials.
 *
 * Delivers outside the relay's transaction (target.h).  One record per
 * message: key = the message key (none when NULL), value = the payload
 * (jsonb as its JSON text, bytea byte-exact), headers = the message's
 * headers (string values as they are, others as JSON text), then
 * txbox-message-id, txbox-topic and txbox-published-at (RFC 3339, UTC);
 * with "cloudevents": true also the CloudEvents binary-mode headers
 * (ce_specversion, ce_id, ce_source, ce_type, ce_time, content-type).
 * The Kafka topic is topic_prefix || (topic_map->topic, else the topic).
 *
 * The producer is always idempotent (enable.idempotence: acks=all, at most
 * 5 requests in flight, retries within message.timeout.ms =
 * statement_timeout), with the Java client's partitioner (murmur2_random),
 * so that a key keeps its partition and its order.  A page is delivered
 * when every one of its messages has a successful delivery report; only
 * then does the relay save its position (at least once).  At least once,
 * deliver produces the page and answers DELIVERY_PENDING: the relay reads
 * and produces the next pages while this one's reports come in, and
 * deliver_finish waits for them, oldest page first (KAFKA_MAX_PAGES in
 * flight at most: the relay's main thread would otherwise wait for the
 * reports of each page before it reads the next ones).  A message
 * Kafka refuses for its data (too large, invalid) rejects the page, which
 * the relay narrows to the message and dead-letters after max_attempts;
 * anything else (brokers down, timeouts, a fatal producer error) retries
 * the page.  A page that failed first lets everything still in flight
 * settle (the rest of its reports, the pages' after it: their outcome is
 * dropped), then drops its producer: the next attempt makes a new one, so
 * nothing of the failed one lingers or is delivered behind the relay's
 * back, and the page and the ones after it go out again in order, behind
 * everything of the failed attempt.
 *
 * "exactly_once": true makes the producer transactional, with the
 * transactional.id txbox-SYSID-DBOID-RELAYID (stable across restarts and
 * failovers to a physical standby, so a new producer fences any older
 * one).  A page and the relay's position after it (a record keyed by that
 * id in partition 0 of the topic txbox.positions) commit in one Kafka
 * transaction, from the relay's save_position, before the relay commits
 * its own copy of the position.  When the relay (re)reads its position,
 * load_position reads the last committed one back from Kafka
 * (read_committed), which wins: a crash between the two commits delivers
 * nothing twice.
 *
 * Never blocking: librdkafka signals its events on a pipe we wait on with
 * the latch (txbox_target_wait_socket); the calls that block (the
 * transactional ones, and rd_kafka_flush, which sends a complete page at
 * once instead of after linger.ms) are made with short timeouts and
 * repeated, checking for interrupts in between; every second of waiting
 * also looks for DROP DATABASE.  On exit the producer's queue is purged
 * and it is destroyed without waiting for brokers.
 *
 * SSRF: every address librdkafka is about to connect to (a bootstrap
 * server, a broker the cluster names), after its own name resolution, is
 * checked in its connect callback, as the http target does: internal
 * addresses are refused unless the server has allow_private 'true', which
 * only a superuser may set; the relay retries, with the refusal and how to
 * allow it as its error.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/socket.h>
#include <librdkafka/rdkafka.h>

#include "access/reloptions.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "target.h"
#include "txbox.h"
#include "workers.h"

/* where exactly-once relays keep their positions (partition 0) */
#define KAFKA_POSITIONS_TOPIC "txbox.positions"

/* the longest a blocking librdkafka call may block between interrupt checks */
#define KAFKA_CALL_MS 200

/*
 * Producer properties a txbox_kafka server may set, verbatim (librdkafka's
 * names); the superuser-only ones name a file on this server.  Everything
 * else is refused: txbox sets the delivery guarantees itself.
 */
static const char *const kafka_server_properties[] = {
	"client.id", "security.protocol", "sasl.mechanism", "sasl.mechanisms",
	"ssl.endpoint.identification.algorithm", "compression.type", "compression.codec",
	"linger.ms", "queue.buffering.max.ms", "batch.num.messages", "batch.size",
	"message.max.bytes", "request.timeout.ms", "retry.backoff.ms",
	"socket.keepalive.enable", "broker.address.family",
	"topic.metadata.refresh.interval.ms", "queue.buffering.max.messages",
	"queue.buffering.max.kbytes", "sticky.partitioning.linger.ms",
	"ssl.ca.location", "ssl.certificate.location", "ssl.key.location", "ssl.crl.location",
	NULL
};

/* user mapping option -> librdkafka property: the secrets */
static const char *const kafka_secrets[][2] = {
	{"sasl_username", "sasl.username"},
	{"sasl_password", "sasl.password"},
	{"ssl_key_password", "ssl.key.password"},
	{NULL, NULL}
};

/*
 * Why only a superuser may give a server property this value (NULL: anyone
 * may): a relay would act with the database server's own rights, as
 * postgres_fdw refuses a password-less connection to non-superusers.
 */
static const char *
kafka_superuser_only(const char *name, const char *value)
{
	if (strncmp(name, "ssl.", 4) == 0 && strstr(name, ".location") != NULL)
		return "With it, a relay would read a file on the database server with the server account's rights.";
	if ((strcmp(name, "sasl.mechanism") == 0 || strcmp(name, "sasl.mechanisms") == 0) &&
		pg_strcasecmp(value, "GSSAPI") == 0)
		return "With it, a relay would authenticate to Kafka with the Kerberos credentials of the database server's account (librdkafka runs kinit with its keytab).";
	return NULL;
}

/* the relay's options that shape the records (RelayConfig.options) */
typedef struct KafkaOptions
{
	char	   *topic_prefix;
	Jsonb	   *topic_map;		/* or NULL */
	bool		exactly_once;
	bool		cloudevents;
} KafkaOptions;

static rd_kafka_t *kafka_rk = NULL;
static char *kafka_rk_key = NULL;	/* what kafka_rk was made for */
static bool kafka_stale = false;	/* a server or user mapping changed since */
static bool kafka_callbacks_registered = false;
static bool kafka_txn_ready = false;	/* transactional: init_transactions done */
static bool kafka_txn_open = false;
static int	kafka_pipe[2] = {-1, -1};	/* librdkafka's events: a byte each */
static KafkaOptions kafka_opts;
static MemoryContext kafka_cxt = NULL;	/* kafka_opts, kafka_rk_key */

/*
 * The pages in flight, oldest first, and their delivery reports (counted
 * by kafka_dr_cb).  A message's opaque is its page's seq << 32 | its index:
 * reports of a page dropped (no longer here) are ignored.  Eight: with two,
 * the relay waited 130-570 ms per 100 pages of 1,000 for the oldest page's
 * reports, with eight 7-84 ms (bench/README.md, kafka, round 5).
 */
#define KAFKA_MAX_PAGES 8
StaticAssertDecl(KAFKA_MAX_PAGES <= TXBOX_MAX_PAGES_IN_FLIGHT, "the relay's queue is shorter");
typedef struct KafkaPage
{
	uint32		seq;
	int			outstanding;	/* produced, not yet reported */
	rd_kafka_resp_err_t err;	/* the first error (a report's or producev's) */
	TimestampTz deadline;
} KafkaPage;
static KafkaPage kafka_pages[KAFKA_MAX_PAGES];
static int	kafka_npages = 0;
static uint32 kafka_page_seq = 0;
static char kafka_last_error[256];	/* the last error librdkafka reported */

/*
 * The last address kafka_connect_cb refused, and why ("" if none since
 * kafka_conf_endpoint): written by librdkafka's broker threads.
 */
static pthread_mutex_t kafka_refused_lock = PTHREAD_MUTEX_INITIALIZER;
static char kafka_refused[160];

static void kafka_disconnect(void);
static DeliveryResult kafka_deliver_finish(const RelayConfig *cfg, int *duplicates, char **error);

/*
 * Delivery report, called from rd_kafka_poll in this process: count the
 * page's message done and keep its first error.  When that settles the
 * page (its last report, or its first error), make rd_kafka_flush return
 * (rd_kafka_yield): its waiter need not wait for the next pages too.  No
 * palloc, no ereport here.
 */
static void
kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	uint32		seq = (uint32) ((uintptr_t) m->_private >> 32);

	for (int i = 0; i < kafka_npages; i++)
	{
		KafkaPage  *kp = &kafka_pages[i];

		if (kp->seq != seq)
			continue;
		kp->outstanding--;
		if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR && kp->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			kp->err = m->err;
			rd_kafka_yield(rk);
		}
		else if (kp->outstanding == 0)
			rd_kafka_yield(rk);
		return;
	}
}

/* librdkafka's error events (all brokers down, authentication...) */
static void
kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	strlcpy(kafka_last_error, reason, sizeof(kafka_last_error));
}

/*
 * librdkafka's connect callback, in a broker thread, for a server without
 * allow_private: refuse an internal address (EACCES, remembered in
 * kafka_refused), else connect as librdkafka does (the socket is
 * non-blocking: EINPROGRESS is success, librdkafka waits for the outcome).
 * No palloc, no ereport here.
 */
static int
kafka_connect_cb(int sockfd, const struct sockaddr *addr, int addrlen, const char *id,
				 void *opaque)
{
	char		why[sizeof(kafka_refused)];

	if (txbox_address_refused(addr, why, sizeof(why)))
	{
		pthread_mutex_lock(&kafka_refused_lock);
		strlcpy(kafka_refused, why, sizeof(kafka_refused));
		pthread_mutex_unlock(&kafka_refused_lock);
		return EACCES;
	}
	if (connect(sockfd, addr, addrlen) != 0 && errno != EINPROGRESS)
		return errno;
	return 0;
}

/*
 * The error of a relay of cfg's server that could not reach its cluster
 * because kafka_connect_cb refused an address (palloc'd), or NULL.
 */
static char *
kafka_refusal(const RelayConfig *cfg)
{
	char		why[sizeof(kafka_refused)];

	pthread_mutex_lock(&kafka_refused_lock);
	strlcpy(why, kafka_refused, sizeof(why));
	pthread_mutex_unlock(&kafka_refused_lock);
	if (why[0] == '\0')
		return NULL;
	return psprintf("refused to connect to %s (server \"%s\" leads into the database server's network). " TXBOX_PRIVATE_HINT,
					why, cfg->server, cfg->server);
}

/* librdkafka's log, forwarded from its log queue: warnings and worse */
static void
kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	if (level <= 4)
		ereport(LOG, (errmsg("txbox kafka: %s: %s", fac, buf)));
}

/* Serve librdkafka's events (callbacks) and empty the event pipe. */
static void
kafka_poll(void)
{
	char		buf[256];

	while (read(kafka_pipe[0], buf, sizeof(buf)) > 0)
		;
	rd_kafka_poll(kafka_rk, 0);
}

/*
 * Wait until librdkafka has events, at most ms; with flush, until every
 * message produced is delivered or failed, at most ms, sending at once
 * what waits for linger.ms (the page is complete: nothing more is coming
 * to batch it with; rd_kafka_flush blocks, so ms is short, and interrupts
 * and postmaster death are checked after it).  Every second, see whether
 * our database is being dropped (PostgreSQL before 18 does not end
 * background workers for DROP DATABASE): if so, ERROR, and the relay
 * exits on its next wake-up instead of waiting out its deliveries.
 */
static void
kafka_wait(long ms, bool flush)
{
	static TimestampTz last_check = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (TimestampDifferenceExceeds(last_check, now, 1000))
	{
		last_check = now;
		if (txbox_database_is_being_dropped())
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("the relay's database is being dropped")));
	}
	if (flush)
	{
		rd_kafka_flush(kafka_rk, ms);
		CHECK_FOR_INTERRUPTS();
		if (!PostmasterIsAlive())
			proc_exit(1);
	}
	else
		txbox_target_wait_socket(kafka_pipe[0], false, TimestampTzPlusMilliseconds(now, ms));
	kafka_poll();
}

static void
kafka_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	kafka_stale = true;
}

static void
kafka_on_exit(int code, Datum arg)
{
	kafka_disconnect();
}

/* Read the relay's options into kafka_opts, in kafka_cxt (src/options.c). */
static void
kafka_parse_options(Jsonb *jb)
{
	JsonbValue	buf;
	JsonbValue *v = getKeyJsonValueFromContainer(&jb->root, "topic_map", strlen("topic_map"), &buf);

	memset(&kafka_opts, 0, sizeof(kafka_opts));
	kafka_opts.topic_prefix = txbox_option_text(jb, "kafka", "topic_prefix");
	kafka_opts.exactly_once = txbox_option_bool(jb, "kafka", "exactly_once");
	kafka_opts.cloudevents = txbox_option_bool(jb, "kafka", "cloudevents");
	if (v && v->type == jbvBinary)
		kafka_opts.topic_map = JsonbValueToJsonb(v);
}

static void
kafka_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid Kafka property \"%s\": %s", name, errstr)));
	}
}

/*
 * The stable transactional.id of an exactly-once relay, also the key of its
 * position record: this cluster's system identifier, database and relay.
 */
static char *
kafka_transactional_id(const RelayConfig *cfg)
{
	return psprintf("txbox-" UINT64_FORMAT "-%u-%d", GetSystemIdentifier(),
					MyDatabaseId, cfg->relay_id);
}

/*
 * A librdkafka configuration with cfg's server's properties (only those
 * that reach the cluster if connection_only: for a consumer), the owner's
 * user mapping's secrets, and without allow_private kafka_connect_cb.
 * Needs a transaction (catalog lookups).
 */
static rd_kafka_conf_t *
kafka_conf_endpoint(const RelayConfig *cfg, bool connection_only)
{
	ForeignServer *server = GetForeignServerByName(cfg->server, false);
	UserMapping *um = GetUserMapping(cfg->owner, server->serverid);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	bool		allow_private = false;
	ListCell   *lc;

	foreach(lc, server->options)
	{
		DefElem    *d = lfirst(lc);
		bool		bootstrap = strcmp(d->defname, "bootstrap_servers") == 0;

		if (strcmp(d->defname, "allow_private") == 0)
			allow_private = defGetBoolean(d);
		else if (!connection_only || bootstrap ||
			strncmp(d->defname, "ssl.", 4) == 0 || strncmp(d->defname, "sasl.", 5) == 0 ||
			strcmp(d->defname, "security.protocol") == 0 || strcmp(d->defname, "client.id") == 0)
			kafka_set(conf, bootstrap ? "bootstrap.servers" : d->defname, defGetString(d));
	}
	foreach(lc, um->options)
	{
		DefElem    *d = lfirst(lc);

		for (int i = 0; kafka_secrets[i][0]; i++)
			if (strcmp(d->defname, kafka_secrets[i][0]) == 0)
				kafka_set(conf, kafka_secrets[i][1], defGetString(d));
	}
	if (!allow_private)
		rd_kafka_conf_set_connect_cb(conf, kafka_connect_cb);
	pthread_mutex_lock(&kafka_refused_lock);
	kafka_refused[0] = '\0';
	pthread_mutex_unlock(&kafka_refused_lock);
	return conf;
}

/*
 * Make the producer for cfg: the server's properties, the owner's user
 * mapping's secrets, and the guarantees txbox sets.  Needs a transaction
 * (catalog lookups).  ERROR on a configuration librdkafka refuses.
 */
static void
kafka_create(const RelayConfig *cfg)
{
	rd_kafka_conf_t *conf = kafka_conf_endpoint(cfg, false);
	rd_kafka_queue_t *mainq;
	char		errstr[512];
	kafka_set(conf, "enable.idempotence", "true");
	kafka_set(conf, "partitioner", "murmur2_random");
	kafka_set(conf, "message.timeout.ms", psprintf("%d", cfg->statement_timeout_ms));
	kafka_set(conf, "socket.connection.setup.timeout.ms", psprintf("%d", Max(cfg->connect_timeout_ms, 1000)));
	kafka_set(conf, "log.queue", "true");
	if (kafka_opts.exactly_once)
	{
		kafka_set(conf, "transactional.id", kafka_transactional_id(cfg));
		kafka_set(conf, "transaction.timeout.ms", psprintf("%d", Max(cfg->statement_timeout_ms * 2, 1000)));
	}
	rd_kafka_conf_set_dr_msg_cb(conf, kafka_dr_cb);
	rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);

	kafka_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (kafka_rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("could not create the Kafka producer for server \"%s\": %s", cfg->server, errstr)));
	}
	if (kafka_pipe[0] < 0)
	{
		if (pipe(kafka_pipe) != 0 ||
			fcntl(kafka_pipe[0], F_SETFL, O_NONBLOCK) != 0 ||
			fcntl(kafka_pipe[1], F_SETFL, O_NONBLOCK) != 0)
			elog(ERROR, "could not create a pipe: %m");
	}
	mainq = rd_kafka_queue_get_main(kafka_rk);
	rd_kafka_set_log_queue(kafka_rk, mainq);
	rd_kafka_queue_io_event_enable(mainq, kafka_pipe[1], "1", 1);
	rd_kafka_queue_destroy(mainq);
	kafka_txn_ready = false;
	kafka_txn_open = false;
}

/*
 * Run a blocking transactional call (one of init/commit/abort) in slices
 * of KAFKA_CALL_MS until it succeeds, fails for good, or the deadline
 * passes.  Returns NULL on success, else the error (the caller destroys
 * it); interrupts are checked between slices.
 */
static rd_kafka_error_t *
kafka_txn_call(rd_kafka_error_t *(*call) (rd_kafka_t *, int), TimestampTz deadline)
{
	for (;;)
	{
		rd_kafka_error_t *err = call(kafka_rk, KAFKA_CALL_MS);

		if (err == NULL || !rd_kafka_error_is_retriable(err) ||
			GetCurrentTimestamp() >= deadline)
			return err;
		rd_kafka_error_destroy(err);
		kafka_poll();
		CHECK_FOR_INTERRUPTS();
	}
}

/* ERROR with what a transactional call's error says, dropping the producer. */
static void
kafka_txn_fail(const char *what, rd_kafka_error_t *err)
{
	char	   *msg = pstrdup(rd_kafka_error_string(err));

	rd_kafka_error_destroy(err);
	kafka_disconnect();
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("could not %s the Kafka transaction: %s", what, msg)));
}

/*
 * Make the producer, in a transaction, unless the one we have is for the
 * same server, options and relay options and has no fatal error; an
 * exactly-once one is initialized (fencing older producers of the relay).
 * Returns NULL when ready, else why not.
 */
static char *
kafka_ready(const RelayConfig *cfg)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *key = psprintf("%s/%d/%d/%s", cfg->server, cfg->statement_timeout_ms,
							   cfg->connect_timeout_ms,
							   JsonbToCString(NULL, &cfg->options->root, VARSIZE(cfg->options)));
	char		errstr[512];

	if (kafka_rk != NULL && !kafka_stale && strcmp(kafka_rk_key, key) == 0 &&
		rd_kafka_fatal_error(kafka_rk, errstr, sizeof(errstr)) == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		if (!kafka_opts.exactly_once || kafka_txn_ready)
			return NULL;
	}
	else
	{
		kafka_disconnect();
		kafka_stale = false;
		if (kafka_cxt == NULL)
		{
			kafka_cxt = AllocSetContextCreate(TopMemoryContext, "txbox kafka", ALLOCSET_SMALL_SIZES);
			on_proc_exit(kafka_on_exit, (Datum) 0);
		}
		if (!kafka_callbacks_registered)
		{
			CacheRegisterSyscacheCallback(FOREIGNSERVEROID, kafka_inval_callback, (Datum) 0);
			CacheRegisterSyscacheCallback(USERMAPPINGOID, kafka_inval_callback, (Datum) 0);
			kafka_callbacks_registered = true;
		}
		MemoryContextReset(kafka_cxt);
		MemoryContextSwitchTo(kafka_cxt);
		kafka_rk_key = pstrdup(key);
		kafka_parse_options(cfg->options);
		MemoryContextSwitchTo(caller);
		kafka_create(cfg);
	}

	if (kafka_opts.exactly_once)
	{
		rd_kafka_error_t *err;

		err = kafka_txn_call(rd_kafka_init_transactions,
							 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), cfg->connect_timeout_ms));
		if (err != NULL)
		{
			char	   *msg = kafka_refusal(cfg);

			if (msg == NULL)
				msg = psprintf("could not initialize the Kafka transactions: %s",
							   rd_kafka_error_string(err));

			if (!rd_kafka_error_is_retriable(err))
				kafka_disconnect();
			rd_kafka_error_destroy(err);
			return msg;
		}
		kafka_txn_ready = true;
	}
	return NULL;
}

/* kafka_connect -- the connect callback, outside any transaction */
static char *
kafka_connect(const RelayConfig *cfg)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *error;

	/* catalog lookups need a transaction */
	StartTransactionCommand();
	MemoryContextSwitchTo(caller);
	error = kafka_ready(cfg);
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	return error;
}

/*
 * RFC 3339 in UTC of a timestamptz's binary form (microseconds since 2000),
 * into out (28 bytes); the date and time up to the second are formatted
 * again only when they change.
 */
static void
kafka_timestamp(const char *data, char *out)
{
	static int64 last_sec = PG_INT64_MIN;
	static char last[20];
	uint64		raw;
	TimestampTz ts;
	int64		sec;
	int64		usec;

	memcpy(&raw, data, sizeof(raw));
	ts = (TimestampTz) pg_ntoh64(raw);
	sec = ts / USECS_PER_SEC;
	usec = ts % USECS_PER_SEC;
	if (usec < 0)
	{
		usec += USECS_PER_SEC;
		sec--;
	}
	if (sec != last_sec)
	{
		struct pg_tm tm;
		fsec_t		fsec;

		if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		{
			out[0] = '\0';
			return;
		}
		snprintf(last, sizeof(last), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year, tm.tm_mon,
				 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		last_sec = sec;
	}
	memcpy(out, last, 19);
	out[19] = '.';
	for (int i = 25; i >= 20; i--, usec /= 10)
		out[i] = '0' + usec % 10;
	out[26] = 'Z';
	out[27] = '\0';
}

/* The Kafka topic of a txbox topic: topic_prefix || (topic_map->topic, else topic) */
static char *
kafka_topic(const char *topic, int len)
{
	if (kafka_opts.topic_map != NULL)
	{
		JsonbValue	k,
				   *v;

		k.type = jbvString;
		k.val.string.val = (char *) topic;
		k.val.string.len = len;
		v = findJsonbValueFromContainer(&kafka_opts.topic_map->root, JB_FOBJECT, &k);
		if (v && v->type == jbvString)
			return psprintf("%s%.*s", kafka_opts.topic_prefix, v->val.string.len, v->val.string.val);
	}
	return psprintf("%s%.*s", kafka_opts.topic_prefix, len, topic);
}

static void
kafka_add_header(void *arg, const char *name, int name_len, const char *value, int value_len)
{
	rd_kafka_header_add((rd_kafka_headers_t *) arg, name, name_len, value, value_len);
}

/*
 * The record headers of one message: its headers (its element of the
 * headers column), then txbox's, then CloudEvents' if asked.
 */
static rd_kafka_headers_t *
kafka_headers(const RelayConfig *cfg, const char *headers, int headers_len,
			  const char *id, const char *topic, int topic_len, const char *published)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(8);

	txbox_page_headers(headers, headers_len, kafka_add_header, h);
	rd_kafka_header_add(h, "txbox-message-id", -1, id, -1);
	rd_kafka_header_add(h, "txbox-topic", -1, topic, topic_len);
	rd_kafka_header_add(h, "txbox-published-at", -1, published, -1);
	if (kafka_opts.cloudevents)
	{
		rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
		rd_kafka_header_add(h, "ce_id", -1, id, -1);
		rd_kafka_header_add(h, "ce_source", -1, cfg->source, -1);
		rd_kafka_header_add(h, "ce_type", -1, topic, topic_len);
		rd_kafka_header_add(h, "ce_time", -1, published, -1);
	}
	return h;
}

/* What a message's error means for its page: refused for its data, or not. */
static DeliveryResult
kafka_result(rd_kafka_resp_err_t err)
{
	switch (err)
	{
		case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
		case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
		case RD_KAFKA_RESP_ERR_INVALID_RECORD:
		case RD_KAFKA_RESP_ERR_INVALID_MSG:
		case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
			return DELIVERY_REJECTED;
		default:
			return DELIVERY_RETRY;
	}
}

/*
 * kafka_deliver -- the deliver callback: produce the page's records,
 * outside any transaction.  At least once, DELIVERY_PENDING: the delivery
 * reports are kafka_deliver_finish's to wait for.  Exactly once, wait for
 * them (kafka_deliver_finish): DELIVERY_OK when all are delivered, produced
 * in the open Kafka transaction, which save_position commits; else what
 * the first failure means for the page and *error why (nothing of it
 * committed).
 */
static DeliveryResult
kafka_deliver(const RelayConfig *cfg, const RelayPage *page, int *duplicates,
			  char **error)
{
	PageColumn	cols[RELAY_PAGE_COLUMNS];
	KafkaPage  *kp;
	int			produced = 0;
	char		published[28];
	char	   *topic = NULL;

	for (int c = 0; c < RELAY_PAGE_COLUMNS; c++)
		txbox_page_column(page, c, &cols[c]);

	if (kafka_opts.exactly_once)
	{
		rd_kafka_error_t *e = rd_kafka_begin_transaction(kafka_rk);

		if (e != NULL)
			kafka_txn_fail("begin", e);
		kafka_txn_open = true;
	}

	if (kafka_npages == KAFKA_MAX_PAGES)
		elog(ERROR, "txbox kafka: more than %d pages in flight", KAFKA_MAX_PAGES);
	if (kafka_npages == 0)
		kafka_last_error[0] = '\0';
	kp = &kafka_pages[kafka_npages++];
	kp->seq = ++kafka_page_seq;
	kp->outstanding = 0;
	kp->err = RD_KAFKA_RESP_ERR_NO_ERROR;
	kp->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											   cfg->statement_timeout_ms + 5000);
	while (produced < page->count)
	{
		int			i = produced;
		const char *payload = cols[4].data[i];
		int			payload_len = cols[4].len[i];
		char		id[37];
		rd_kafka_headers_t *h;
		rd_kafka_resp_err_t err;

		txbox_page_uuid(cols[0].data[i], id);
		kafka_timestamp(cols[6].data[i], published);
		/* a page's messages mostly share their topic */
		if (i == 0 || cols[1].len[i] != cols[1].len[i - 1] ||
			memcmp(cols[1].data[i], cols[1].data[i - 1], cols[1].len[i]) != 0)
			topic = kafka_topic(cols[1].data[i], cols[1].len[i]);
		if (payload_len > 0)
		{
			/* jsonb: skip the version byte */
			payload++;
			payload_len--;
		}
		else if (cols[5].len[i] >= 0)
		{
			payload = cols[5].data[i];
			payload_len = cols[5].len[i];
		}
		h = kafka_headers(cfg, cols[3].data[i], cols[3].len[i], id,
						  cols[1].data[i], cols[1].len[i], published);
		err = rd_kafka_producev(kafka_rk,
								RD_KAFKA_V_TOPIC(topic),
								RD_KAFKA_V_KEY(cols[2].data[i], Max(cols[2].len[i], 0)),
								RD_KAFKA_V_VALUE((void *) payload, Max(payload_len, 0)),
								RD_KAFKA_V_HEADERS(h),
								RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								RD_KAFKA_V_OPAQUE((void *) (((uintptr_t) kp->seq << 32) | (uintptr_t) i)),
								RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && GetCurrentTimestamp() < kp->deadline)
		{
			rd_kafka_headers_destroy(h);
			kafka_wait(KAFKA_CALL_MS, false);
			continue;
		}
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			/* the rest of the page is not produced: the page failed */
			rd_kafka_headers_destroy(h);
			kp->err = err;
			break;
		}
		produced++;
		kp->outstanding++;
		if (produced % 1000 == 0)
			kafka_poll();
	}

	if (!kafka_opts.exactly_once)
		return DELIVERY_PENDING;
	return kafka_deliver_finish(cfg, duplicates, error);
}

/*
 * kafka_deliver_finish -- the deliver_finish callback: wait for the
 * delivery reports of the oldest page in flight.  DELIVERY_OK when all are
 * successful; else, once everything still in flight has settled (or the
 * last page's deadline passed), drop the producer with the pages in
 * flight, and return what the first failure means for the page and *error
 * why.
 */
static DeliveryResult
kafka_deliver_finish(const RelayConfig *cfg, int *duplicates, char **error)
{
	KafkaPage  *kp = &kafka_pages[0];
	rd_kafka_resp_err_t err;

	*duplicates = 0;
	if (kafka_npages == 0)
	{
		/* (kafka_disconnect dropped it: a server or option changed) */
		*error = pstrdup("Kafka did not take the messages: the producer was dropped with them in flight");
		return DELIVERY_RETRY;
	}
	while (kp->outstanding > 0 && kp->err == RD_KAFKA_RESP_ERR_NO_ERROR &&
		   GetCurrentTimestamp() < kp->deadline)
		kafka_wait(KAFKA_CALL_MS, true);
	err = kp->err;
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR && kp->outstanding > 0)
		err = RD_KAFKA_RESP_ERR__TIMED_OUT;
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		kafka_npages--;
		memmove(&kafka_pages[0], &kafka_pages[1], sizeof(KafkaPage) * kafka_npages);
		return DELIVERY_OK;
	}

	/*
	 * Let what is still in flight settle (this page's other records, the
	 * next pages'): then nothing of this attempt is on its way any more
	 * when the relay delivers this page again, with a new producer.
	 */
	while (rd_kafka_outq_len(kafka_rk) > 0 &&
		   GetCurrentTimestamp() < kafka_pages[kafka_npages - 1].deadline)
		kafka_wait(KAFKA_CALL_MS, true);
	kafka_disconnect();
	*error = kafka_refusal(cfg);
	if (*error == NULL)
		*error = psprintf("Kafka did not take the messages: %s%s%s", rd_kafka_err2str(err),
						  kafka_last_error[0] ? " (" : "", kafka_last_error[0] ? psprintf("%s)", kafka_last_error) : "");
	return kafka_result(err);
}

/*
 * kafka_save_position -- the save_position callback, in the relay's
 * transaction saving pos: for an exactly-once relay, add pos to the Kafka
 * transaction (opening one if deliver did not) and commit it.  ERROR if the
 * commit fails; its outcome is then read back by kafka_load_position.
 */
static void
kafka_save_position(const RelayConfig *cfg, const RelayPosition *pos)
{
	char	   *key;
	char	   *value;
	rd_kafka_error_t *err;
	rd_kafka_resp_err_t rerr;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   cfg->statement_timeout_ms);

	if (!kafka_opts.exactly_once)
		return;
	if (kafka_rk == NULL || !kafka_txn_ready)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("no Kafka producer to save relay \"%s\"'s position with", cfg->name)));
	if (!kafka_txn_open)
	{
		err = rd_kafka_begin_transaction(kafka_rk);
		if (err != NULL)
			kafka_txn_fail("begin", err);
		kafka_txn_open = true;
	}
	key = kafka_transactional_id(cfg);
	value = psprintf("%s\n%s\n" INT64_FORMAT, pos->prev, pos->cur ? pos->cur : "",
					 pos->last_id);
	rerr = rd_kafka_producev(kafka_rk, RD_KAFKA_V_TOPIC(KAFKA_POSITIONS_TOPIC),
							 RD_KAFKA_V_PARTITION(0),
							 RD_KAFKA_V_KEY(key, strlen(key)),
							 RD_KAFKA_V_VALUE(value, strlen(value)),
							 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
							 RD_KAFKA_V_OPAQUE(NULL),
							 RD_KAFKA_V_END);
	if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		kafka_disconnect();
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not produce relay \"%s\"'s position to Kafka: %s",
						cfg->name, rd_kafka_err2str(rerr))));
	}
	err = kafka_txn_call(rd_kafka_commit_transaction, deadline);
	kafka_txn_open = false;
	if (err != NULL)
		kafka_txn_fail("commit", err);
}

/*
 * kafka_load_position -- the load_position callback, in the relay's
 * transaction: for an exactly-once relay, the last position committed to
 * Kafka (read_committed, every record of partition 0 of txbox.positions up
 * to the end seen after our producer fenced any older one).  Returns false
 * when there is none (or the relay is not exactly-once); ERROR when Kafka
 * cannot be read.
 */
static bool
kafka_load_position(const RelayConfig *cfg, RelayPosition *pos)
{
	rd_kafka_conf_t *conf;
	rd_kafka_t *consumer;
	rd_kafka_topic_partition_list_t *parts;
	char		errstr[512];
	char	   *error;
	char	   *key;
	char	   *found = NULL;
	int64		low,
				high;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   cfg->connect_timeout_ms + cfg->statement_timeout_ms);
	rd_kafka_resp_err_t err;

	error = kafka_ready(cfg);
	if (error != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read relay \"%s\"'s position from Kafka: %s", cfg->name, error)));
	if (!kafka_opts.exactly_once)
		return false;

	conf = kafka_conf_endpoint(cfg, true);
	key = kafka_transactional_id(cfg);
	kafka_set(conf, "group.id", key);
	kafka_set(conf, "enable.auto.commit", "false");
	kafka_set(conf, "enable.partition.eof", "true");
	kafka_set(conf, "isolation.level", "read_committed");
	kafka_set(conf, "log.queue", "true");
	consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (consumer == NULL)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not create a Kafka consumer: %s", errstr)));
	}

	/* the end of the partition now, everything of ours being resolved */
	for (;;)
	{
		err = rd_kafka_query_watermark_offsets(consumer, KAFKA_POSITIONS_TOPIC, 0, &low, &high,
											   KAFKA_CALL_MS);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR || GetCurrentTimestamp() >= deadline ||
			err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
			break;
		CHECK_FOR_INTERRUPTS();
	}
	if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || (err == RD_KAFKA_RESP_ERR_NO_ERROR && high <= low))
	{
		rd_kafka_destroy_flags(consumer, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
		return false;
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		char	   *refusal = kafka_refusal(cfg);

		rd_kafka_destroy_flags(consumer, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read relay \"%s\"'s position from Kafka: %s",
						cfg->name, refusal ? refusal : rd_kafka_err2str(err))));
	}

	parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(parts, KAFKA_POSITIONS_TOPIC, 0)->offset = low;
	rd_kafka_assign(consumer, parts);
	for (bool end = false; !end;)
	{
		rd_kafka_message_t *m;

		if (GetCurrentTimestamp() >= deadline)
		{
			rd_kafka_topic_partition_list_destroy(parts);
			rd_kafka_destroy_flags(consumer, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not read relay \"%s\"'s position from Kafka: timed out", cfg->name)));
		}
		CHECK_FOR_INTERRUPTS();
		m = rd_kafka_consumer_poll(consumer, KAFKA_CALL_MS);
		if (m == NULL)
		{
			/* read up to the end seen before (no more records come) */
			rd_kafka_position(consumer, parts);
			end = parts->elems[0].offset >= high;
			continue;
		}
		if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->key_len == strlen(key) &&
			memcmp(m->key, key, m->key_len) == 0)
			found = pnstrdup(m->payload, m->len);

		/*
		 * The end under read_committed is the last stable offset: past it
		 * lie the records of transactions still open (another relay's), and
		 * ours may follow them, so read on until it reaches the end seen
		 * before (the position may stay before it when the last record is
		 * a transaction marker, never delivered).
		 */
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && m->offset >= high)
			end = true;
		rd_kafka_message_destroy(m);
	}
	rd_kafka_topic_partition_list_destroy(parts);
	rd_kafka_destroy_flags(consumer, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);

	if (found == NULL)
		return false;
	{
		char	   *nl1 = strchr(found, '\n');
		char	   *nl2 = nl1 ? strchr(nl1 + 1, '\n') : NULL;

		if (nl2 == NULL)
			elog(ERROR, "txbox kafka: relay \"%s\"'s position in Kafka is malformed", cfg->name);
		*nl1 = *nl2 = '\0';
		pos->prev = found;
		pos->cur = nl1[1] ? nl1 + 1 : NULL;
		pos->last_id = pg_strtoint64(nl2 + 1);
	}
	return true;
}

/*
 * kafka_disconnect -- the disconnect callback (also at exit): drop the
 * producer without waiting for brokers; what it still held is purged (the
 * relay delivers it again, or, exactly once, its transaction is aborted).
 */
static void
kafka_disconnect(void)
{
	if (kafka_rk != NULL)
	{
		rd_kafka_purge(kafka_rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
					   RD_KAFKA_PURGE_F_NON_BLOCKING);
		rd_kafka_destroy_flags(kafka_rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	}
	kafka_rk = NULL;
	kafka_txn_ready = false;
	kafka_txn_open = false;
	kafka_npages = 0;
}

const TargetCallbacks txbox_kafka_target = {
	.name = "kafka",
	.wrapper = "txbox_kafka",
	.in_relay_xact = false,
	.connect = kafka_connect,
	.deliver = kafka_deliver,
	.deliver_finish = kafka_deliver_finish,
	.max_pages_in_flight = KAFKA_MAX_PAGES,
	.disconnect = kafka_disconnect,
	.load_position = kafka_load_position,
	.save_position = kafka_save_position,
};

/*
 * txbox_kafka_validator -- the validator of txbox_kafka: servers take
 * bootstrap_servers (required), allow_private (superuser-only) and the
 * producer properties of kafka_server_properties (those naming a file
 * superuser-only), user mappings the secrets of kafka_secrets; values
 * librdkafka refuses are refused here.
 */
PG_FUNCTION_INFO_V1(txbox_kafka_validator);
Datum
txbox_kafka_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			context = PG_GETARG_OID(1);
	bool		has_bootstrap = false;
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		const char *name = def->defname;
		const char *value = defGetString(def);
		const char *property = NULL;
		const char *reason;
		rd_kafka_conf_t *conf;
		char		errstr[512];
		rd_kafka_conf_res_t res;

		if (context == ForeignServerRelationId)
		{
			if (strcmp(name, "allow_private") == 0)
			{
				txbox_check_allow_private(def);
				continue;
			}
			if (strcmp(name, "bootstrap_servers") == 0)
			{
				property = "bootstrap.servers";
				has_bootstrap = true;
			}
			for (int i = 0; property == NULL && kafka_server_properties[i]; i++)
				if (strcmp(name, kafka_server_properties[i]) == 0)
					property = name;
		}
		else if (context == UserMappingRelationId)
		{
			for (int i = 0; property == NULL && kafka_secrets[i][0]; i++)
				if (strcmp(name, kafka_secrets[i][0]) == 0)
					property = kafka_secrets[i][1];
		}
		if (property == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\" for %s", name,
							context == ForeignServerRelationId ? "a txbox_kafka server" :
							context == UserMappingRelationId ? "a txbox_kafka user mapping" :
							"this object"),
					 context == ForeignServerRelationId ?
					 errhint("Servers take bootstrap_servers, allow_private and the librdkafka properties client.id, security.protocol, sasl.mechanism, compression.type, linger.ms, batch.size, message.max.bytes, ssl.ca.location and a few more (see README); txbox sets the delivery guarantees itself, and secrets go in the user mapping.") :
					 context == UserMappingRelationId ?
					 errhint("User mappings take sasl_username, sasl_password and ssl_key_password.") :
					 errhint("txbox_kafka takes options only on servers and user mappings.")));
		reason = kafka_superuser_only(name, value);
		if (reason != NULL && !superuser())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("option \"%s\" '%s' is superuser-only", name, value),
					 errdetail("%s", reason),
					 errhint("Servers with the options ssl.ca.location, ssl.certificate.location, ssl.key.location, ssl.crl.location or sasl.mechanism 'GSSAPI' may only be created or modified by a superuser.")));
		conf = rd_kafka_conf_new();
		res = rd_kafka_conf_set(conf, property, value, errstr, sizeof(errstr));
		rd_kafka_conf_destroy(conf);
		if (res != RD_KAFKA_CONF_OK)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("invalid value for option \"%s\": %s", name, errstr)));
	}
	if (context == ForeignServerRelationId && !has_bootstrap)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("a txbox_kafka server needs the option bootstrap_servers"),
				 errhint("CREATE SERVER name FOREIGN DATA WRAPPER txbox_kafka OPTIONS (bootstrap_servers 'host1:9092,host2:9092').")));
	PG_RETURN_VOID();
}
