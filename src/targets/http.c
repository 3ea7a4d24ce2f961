/*-------------------------------------------------------------------------
 * targets/http.c
 *		The http target: webhooks.  One POST per message, signed in the
 *		Standard Webhooks format, HTTP/1.1 over kept-alive connections that
 *		libcurl's multi interface makes (name resolution, SSRF check, TLS)
 *		and that we write requests to and read answers from, driven by the
 *		worker's latch and sockets; and txbox_http, the foreign-data
 *		wrapper whose servers and user mappings hold its endpoint and
 *		secrets.
 *
 * Delivers outside the relay's transaction (target.h): the relay reads a
 * page into memory and the target sends its messages, up to concurrency
 * requests at once over kept-alive connections, but never two of one key
 * at once and never one before an earlier message of its key is delivered.
 * deliver answers DELIVERY_PENDING: the relay reads the next page while
 * this one's requests are in flight, and the next page's messages join the
 * same window (deliver_finish) as soon as their keys' messages in the page
 * before are delivered, so that the window does not drain at each page.
 * The relay saves its position only when the whole page is delivered.
 *
 * Outcomes: a 2xx delivers the message, unless it came before the whole
 * request was written (the server cannot have read it).  That, 408, 429,
 * 5xx (and a status outside 100-599), a connection error, an answer that
 * is not HTTP/1.x or a timeout is transient (a kept-alive connection the
 * server closed before it answered is not: the request goes again on a new
 * one): the page is retried with the relay's backoff, at the earliest
 * when Retry-After says (at most an hour), and nothing is dead-lettered.
 * Any other status (3xx included: redirects are not followed) rejects that
 * message: the relay retries it alone and dead-letters it after
 * max_attempts, with the status and the first bytes of the answer.  410
 * Gone fails the relay (an ERROR).  Messages of a page
 * already delivered when another one failed are remembered (by message
 * id) and not sent again when the page is retried.
 *
 * SSRF: every address curl is about to connect to, after its own name
 * resolution, is checked in CURLOPT_OPENSOCKETFUNCTION; loopback, private,
 * link-local, CGNAT, multicast, reserved and the IPv6 equivalents (and
 * IPv4-mapped forms) are refused unless the server has allow_private
 * 'true', which only a superuser may set.  Only http and https, no
 * redirects, no proxy from the environment.
 *
 * Secrets (signing secrets, bearer token) are in the user mapping, never
 * in an error or the log; the bearer token is scrubbed from answers
 * quoted in errors.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "access/reloptions.h"
#include "access/xact.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "common/base64.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/pg_bswap.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "target.h"
#include "txbox.h"
#include "workers.h"

/* bytes of an answer quoted in an error */
#define HTTP_ANSWER_QUOTED	200
/* Retry-After is honoured up to this many seconds */
#define HTTP_RETRY_AFTER_MAX 3600
/* delivered message ids remembered from pages not yet complete */
#define HTTP_REMEMBERED_MAX 100000
/* the relay option concurrency is at most this (txbox._relay_check_options) */
#define HTTP_MAX_CONCURRENCY 256
/* sockets curl may watch at once: two per request (happy eyeballs) */
#define HTTP_MAX_SOCKETS	(2 * HTTP_MAX_CONCURRENCY + 16)

/* The server and user mapping a relay delivers to, with the relay owner. */
typedef struct HttpEndpoint
{
	char	   *server;
	Oid			owner;
	char	   *url;
	bool		allow_private;
	char	   *ca_file;		/* certificates to verify the server with, or NULL: the system's */
	char	   *bearer_token;	/* or NULL */
	int			nsecrets;
	char	   *secret[2];		/* decoded signing secrets, current first */
	int			secret_len[2];
	EVP_MAC_CTX *mac[2];		/* HMAC-SHA256 keyed with each (http_mac_new) */
	char	   *head;			/* request line and constant headers (http_endpoint_head) */
	int			head_len;
} HttpEndpoint;

typedef enum HttpState
{
	HTTP_PENDING,
	HTTP_IN_FLIGHT,
	HTTP_DONE,
	HTTP_REJECTED
} HttpState;

/* A message of a page in flight (pointing into the page's copy). */
typedef struct HttpMessage
{
	struct HttpPage *page;
	const char *uuid;			/* 16 bytes */
	char		id[37];
	char	   *topic;
	char	   *key;			/* or NULL */
	int			key_len;
	const char *headers;		/* its headers element (jsonb, send format) */
	int			headers_len;
	const char *body;
	int			body_len;
	bool		binary;
	bool		blocked;		/* an earlier message of its key is not delivered */
	HttpState	state;
	struct HttpMessage *next_same_key;	/* its key's next, in this page or the next */
	struct HttpMessage *next_ready; /* in its page's ready list */
} HttpMessage;

/*
 * A page deliver took, until deliver_finish tells its outcome (target.h):
 * at most two, the oldest first.  A message is ready (to be sent) when
 * every earlier message of its key, in this page and the one before, is
 * delivered; ready messages go oldest page first, in the order they
 * became ready, and none of a page after one with a rejection.
 */
typedef struct HttpPage
{
	MemoryContext cxt;			/* the page's copy and all of this */
	int			n;
	HttpMessage *msgs;
	int		   *keyed;			/* keyed messages' indexes, by key, then position */
	int			nkeyed;
	int			delivered;		/* messages HTTP_DONE */
	int			in_flight;
	HttpMessage *ready;			/* the ready list: first, last */
	HttpMessage *ready_last;
	char	   *rejection;		/* the first rejection's error, or NULL */
} HttpPage;

/* What a request slot's connection is doing. */
typedef enum HttpConn
{
	HTTP_CONN_NONE,				/* no connection */
	HTTP_CONN_CONNECTING,		/* curl connects it (http_multi) */
	HTTP_CONN_READY,			/* connected, kept alive, no request */
	HTTP_CONN_SENDING,			/* the request is being written */
	HTTP_CONN_RECEIVING			/* its answer is being read */
} HttpConn;

/* Where the reading of an answer is (http_parse). */
typedef enum HttpPart
{
	HTTP_PART_HEAD,				/* status line and headers */
	HTTP_PART_LENGTH,			/* a body of Content-Length bytes */
	HTTP_PART_CHUNK_SIZE,		/* chunked: a chunk's size line */
	HTTP_PART_CHUNK,			/* a chunk's bytes */
	HTTP_PART_CHUNK_END,		/* the line end after them */
	HTTP_PART_TRAILER,			/* trailer lines, up to an empty one */
	HTTP_PART_TO_CLOSE,			/* a body that ends with the connection */
	HTTP_PART_DONE
} HttpPart;

/*
 * A request slot and its connection, kept alive from one request to the
 * next.  curl connects it (CURLOPT_CONNECT_ONLY: its name resolution, the
 * SSRF check in http_open_socket, TLS); the request is ours to write and
 * its answer ours to read (curl_easy_send, curl_easy_recv), HTTP/1.1: a
 * transfer of libcurl's per request cost more than the request itself.
 */
typedef struct HttpRequest
{
	CURL	   *easy;			/* in http_multi while it has a connection */
	HttpConn	conn;
	int			served;			/* answers read on the connection */
	uint64		ready_turn;		/* http_turns when it became HTTP_CONN_READY */
	HttpMessage *msg;			/* the request's message, NULL: none */
	bool		resent;			/* sent again on a new connection */
	bool		received;		/* some of its answer came */
	TimestampTz deadline;		/* of the request (timeout) */
	StringInfoData out;			/* the request: head, then body */
	int			sent;			/* bytes of out written */
	char	   *in;				/* the answer's bytes not yet taken */
	int			in_len;
	bool		unread;			/* http_receive stopped with more to read */
	HttpPart	part;
	int64		left;			/* body or chunk bytes still to come */
	int			status;
	long		retry_after;	/* seconds, 0: none */
	bool		close;			/* the connection ends with the answer */
	bool		allow_private;
	char		error[CURL_ERROR_SIZE];
	char		refused[160];	/* why an address was refused, or "" */
	char		answer[HTTP_ANSWER_QUOTED + 1]; /* the body's first bytes */
	int			answer_len;
} HttpRequest;

/* bytes read of an answer at once; its head (status line, headers) must fit */
#define HTTP_IN_SIZE		16384
/* reads of one answer before the others, the deadlines and interrupts get a turn */
#define HTTP_READS_AT_ONCE	16

/*
 * A socket curl watches (while it connects), or the socket of a slot's
 * connection (req).  Those are in http_set, the wait event set, waiting
 * for what curl asks, or for what the connection waits for (http_wait).
 */
typedef struct HttpSocket
{
	curl_socket_t fd;
	uint32		events;			/* WL_SOCKET_* curl waits for, 0: none */
	HttpRequest *req;			/* the slot whose connection it is, or NULL */
	uint32		waiting;		/* WL_SOCKET_* it waits for in http_set */
	int			pos;			/* in http_set, -1: not in it */
} HttpSocket;

/* What stops every page in flight (a transient failure or worse). */
typedef struct HttpFailure
{
	char	   *transient;		/* the first transient failure, or NULL */
	bool		gone;			/* 410 */
	char	   *refused;		/* a refused address, or NULL */
} HttpFailure;

static MemoryContext http_cxt = NULL;	/* the endpoint */
static HttpEndpoint *http_endpoint = NULL;
static bool http_endpoint_stale = false;
static bool http_callbacks_registered = false;
static CURLM *http_multi = NULL;
/* the relay's http options, read at each page (http_deliver) */
static int	http_concurrency;
static int	http_timeout_ms;
static int	http_connect_timeout_ms;
static bool http_cloudevents;
static HttpSocket http_sockets[HTTP_MAX_SOCKETS];
static int	http_nsockets = 0;
static WaitEventSet *http_set = NULL;	/* our latch and http_sockets, or NULL:
										 * to be made again (a socket came or
										 * went) */
static long http_timer_ms = -1; /* curl's timer, -1: none */
static TimestampTz http_timer_at = 0;
static HttpRequest *http_requests = NULL;	/* HTTP_MAX_CONCURRENCY slots */
static int	http_nslots = 0;	/* of them ever used: the first ones */
static HttpPage *http_pages[2];	/* in flight, the oldest first */
static int	http_npages = 0;
static int	http_in_flight = 0; /* requests, of all pages */
static HTAB *http_delivered = NULL; /* message ids delivered, page not yet complete */
static TimestampTz http_not_before = 0; /* Retry-After */
/* calls of deliver and deliver_finish: kept-alive connections are watched within one (http_wait) */
static uint64 http_turns = 0;
static HttpFailure http_failure;	/* of the pages in flight (in TopMemoryContext) */

static void
http_curl_init(void)
{
	static bool done = false;

	if (!done)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			elog(ERROR, "could not initialize libcurl");
		done = true;
	}
}

/*----------
 * The foreign-data wrapper txbox_http: its validator.
 *----------
 */

/* decode a Standard Webhooks secret: "whsec_" (optional) + base64 */
static char *
http_decode_secret(const char *secret, int *len)
{
	const char *b64 = strncmp(secret, "whsec_", 6) == 0 ? secret + 6 : secret;
	int			n = strlen(b64);
	char	   *out = palloc(pg_b64_dec_len(n) + 1);

	*len = n > 0 ? pg_b64_decode(b64, n, (void *) out, pg_b64_dec_len(n)) : -1;
	return *len > 0 ? out : NULL;
}

static void
http_check_url(const char *url)
{
	CURLU	   *u;
	CURLUcode	rc;
	char	   *scheme = NULL;
	char	   *part = NULL;
	bool		has_user;
	bool		has_host;

	http_curl_init();
	u = curl_url();
	if (u == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	rc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (rc != CURLUE_OK)
	{
		curl_url_cleanup(u);
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
				 errmsg("invalid url \"%s\"", url),
				 /* libcurl's words for it change between its versions */
				 errdetail("%s", curl_url_strerror(rc)),
				 errhint("For example url 'https://hooks.example.com/txbox'.")));
	}
	curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	has_user = curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK;
	curl_free(part);
	part = NULL;
	has_user |= curl_url_get(u, CURLUPART_PASSWORD, &part, 0) == CURLUE_OK;
	curl_free(part);
	part = NULL;
	has_host = curl_url_get(u, CURLUPART_HOST, &part, 0) == CURLUE_OK && part[0] != '\0';
	curl_free(part);
	if (scheme == NULL || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
	{
		curl_free(scheme);
		curl_url_cleanup(u);
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
				 errmsg("url of a txbox_http server must be http or https"),
				 errhint("For example url 'https://hooks.example.com/txbox'.")));
	}
	curl_free(scheme);
	curl_url_cleanup(u);
	if (has_user)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
				 errmsg("url of a txbox_http server must not contain a user name or password"),
				 errhint("Secrets go in the user mapping: bearer_token, signing_secret.")));
	if (!has_host)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
				 errmsg("url of a txbox_http server must name a host"),
				 errhint("For example url 'https://hooks.example.com/txbox'.")));
}

PG_FUNCTION_INFO_V1(txbox_http_validator);
Datum
txbox_http_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			context = PG_GETARG_OID(1);
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		const char *name = def->defname;
		bool		server_option = strcmp(name, "url") == 0 || strcmp(name, "allow_private") == 0 ||
			strcmp(name, "ca_file") == 0;
		bool		mapping_option = strcmp(name, "signing_secret") == 0 ||
			strcmp(name, "signing_secret_previous") == 0 || strcmp(name, "bearer_token") == 0;

		if (context == ForeignServerRelationId ? !server_option :
			context == UserMappingRelationId ? !mapping_option : true)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\" for %s", name,
							context == ForeignServerRelationId ? "a txbox_http server" :
							context == UserMappingRelationId ? "a txbox_http user mapping" :
							"this object"),
					 context == ForeignServerRelationId ?
					 errhint("Servers take url, allow_private and ca_file; secrets go in the user mapping.") :
					 context == UserMappingRelationId ?
					 errhint("User mappings take signing_secret, signing_secret_previous and bearer_token.") :
					 errhint("txbox_http takes options only on servers and user mappings.")));

		if (strcmp(name, "url") == 0)
			http_check_url(defGetString(def));
		else if (strcmp(name, "allow_private") == 0)
			txbox_check_allow_private(def);
		else if (strcmp(name, "ca_file") == 0 && !superuser())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("option \"ca_file\" is superuser-only"),
					 errdetail("It names a file on the database server, which the relay would read."),
					 errhint("Servers with the option ca_file may only be created or modified by a superuser.")));
		else if (strcmp(name, "bearer_token") == 0)
		{
			for (const char *p = defGetString(def); *p; p++)
				if (*p < 0x21 || *p > 0x7e)
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
							 errmsg("bearer_token must be printable ASCII without spaces"),
							 errhint("It is sent as the header Authorization: Bearer <token>.")));
		}
		else if (mapping_option)
		{
			int			len;

			if (http_decode_secret(defGetString(def), &len) == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
						 errmsg("%s must be \"whsec_\" followed by base64", name),
						 errhint("Standard Webhooks secrets look like whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw (base64 of 24 to 64 random bytes).")));
		}
	}
	PG_RETURN_VOID();
}

/*----------
 * The endpoint: the server and the owner's user mapping, read again when
 * either changes (ALTER SERVER, ALTER USER MAPPING).
 *----------
 */

static void
http_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	http_endpoint_stale = true;
}

static void http_drop_pages(bool remember);
static void http_close_conn(HttpRequest *req);
static void http_endpoint_head(HttpEndpoint *ep);

/* forget every connection, page in flight and remembered message */
static void
http_reset_connections(void)
{
	http_drop_pages(false);
	for (int i = 0; http_requests != NULL && i < HTTP_MAX_CONCURRENCY; i++)
	{
		http_close_conn(&http_requests[i]);
		if (http_requests[i].easy != NULL)
			curl_easy_cleanup(http_requests[i].easy);
		http_requests[i].easy = NULL;
	}
	if (http_multi != NULL)
		curl_multi_cleanup(http_multi);
	http_multi = NULL;
	http_nsockets = 0;
	if (http_set != NULL)
		FreeWaitEventSet(http_set);
	http_set = NULL;
	http_timer_ms = -1;
	if (http_delivered != NULL)
		hash_destroy(http_delivered);
	http_delivered = NULL;
}

/* an HMAC-SHA256 context keyed with a signing secret, for every message */
static EVP_MAC_CTX *
http_mac_new(const char *key, int len)
{
	static EVP_MAC *hmac = NULL;
	OSSL_PARAM	params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
		OSSL_PARAM_construct_end()
	};
	EVP_MAC_CTX *ctx;

	if (hmac == NULL)
		hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	ctx = hmac != NULL ? EVP_MAC_CTX_new(hmac) : NULL;
	if (ctx == NULL || !EVP_MAC_init(ctx, (const unsigned char *) key, len, params))
	{
		EVP_MAC_CTX_free(ctx);
		elog(ERROR, "could not set up HMAC-SHA256");
	}
	return ctx;
}

static void
http_load_endpoint(const RelayConfig *cfg)
{
	ForeignServer *server = GetForeignServerByName(cfg->server, false);
	ForeignDataWrapper *fdw = GetForeignDataWrapper(server->fdwid);
	UserMapping *um;
	MemoryContext old;
	HttpEndpoint *ep;
	ListCell   *lc;

	if (strcmp(fdw->fdwname, "txbox_http") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("server \"%s\" is not a txbox_http server", cfg->server),
				 errhint("CREATE SERVER name FOREIGN DATA WRAPPER txbox_http OPTIONS (url 'https://...'), then alter the relay's option server.")));
	um = GetUserMapping(cfg->owner, server->serverid);

	http_reset_connections();
	for (int i = 0; http_endpoint != NULL && i < http_endpoint->nsecrets; i++)
		EVP_MAC_CTX_free(http_endpoint->mac[i]);
	if (http_cxt == NULL)
		http_cxt = AllocSetContextCreate(TopMemoryContext, "txbox http endpoint",
										 ALLOCSET_SMALL_SIZES);
	MemoryContextReset(http_cxt);
	http_endpoint = NULL;
	old = MemoryContextSwitchTo(http_cxt);
	ep = palloc0(sizeof(HttpEndpoint));
	ep->server = pstrdup(cfg->server);
	ep->owner = cfg->owner;
	foreach(lc, server->options)
	{
		DefElem    *d = lfirst(lc);

		if (strcmp(d->defname, "url") == 0)
			ep->url = pstrdup(defGetString(d));
		else if (strcmp(d->defname, "allow_private") == 0)
			ep->allow_private = defGetBoolean(d);
		else if (strcmp(d->defname, "ca_file") == 0)
			ep->ca_file = pstrdup(defGetString(d));
	}
	foreach(lc, um->options)
	{
		DefElem    *d = lfirst(lc);
		int			i = strcmp(d->defname, "signing_secret") == 0 ? 0 :
			strcmp(d->defname, "signing_secret_previous") == 0 ? 1 : -1;

		if (strcmp(d->defname, "bearer_token") == 0)
			ep->bearer_token = pstrdup(defGetString(d));
		else if (i >= 0)
			ep->secret[i] = http_decode_secret(defGetString(d), &ep->secret_len[i]);
	}
	/* the current secret signs first; a previous one alone still signs */
	if (ep->secret[0] == NULL && ep->secret[1] != NULL)
	{
		ep->secret[0] = ep->secret[1];
		ep->secret_len[0] = ep->secret_len[1];
		ep->secret[1] = NULL;
	}
	ep->nsecrets = (ep->secret[0] != NULL) + (ep->secret[1] != NULL);
	MemoryContextSwitchTo(old);
	if (ep->url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("server \"%s\" has no url", cfg->server),
				 errhint("ALTER SERVER %s OPTIONS (ADD url 'https://...').", cfg->server)));
	for (int i = 0; i < ep->nsecrets; i++)
		ep->mac[i] = http_mac_new(ep->secret[i], ep->secret_len[i]);
	old = MemoryContextSwitchTo(http_cxt);
	http_endpoint_head(ep);
	MemoryContextSwitchTo(old);
	http_endpoint = ep;
}

/*
 * http_connect -- the connect callback: read the endpoint (again, after a
 * change), then wait out a Retry-After the endpoint asked for.  Returns
 * NULL, or why the relay must not deliver now.
 */
static char *
http_connect(const RelayConfig *cfg)
{
	MemoryContext caller = CurrentMemoryContext;

	/* catalog lookups need a transaction, which also reads invalidations */
	StartTransactionCommand();
	MemoryContextSwitchTo(caller);
	if (!http_callbacks_registered)
	{
		CacheRegisterSyscacheCallback(FOREIGNSERVEROID, http_inval_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(USERMAPPINGOID, http_inval_callback, (Datum) 0);
		http_callbacks_registered = true;
	}
	if (http_endpoint == NULL || http_endpoint_stale || http_endpoint->owner != cfg->owner ||
		strcmp(http_endpoint->server, cfg->server) != 0)
	{
		http_endpoint_stale = false;
		http_load_endpoint(cfg);
	}
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);

	for (;;)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), http_not_before);

		if (left <= 0)
			break;
		if (txbox_database_is_being_dropped())
			return pstrdup("the database is being dropped");
		(void) txbox_worker_wait(Min(left, 1000), txbox_wait_event(TXBOX_WAIT_TARGET_SOCKET));
	}
	return NULL;
}

/*----------
 * The sockets: those curl watches while it connects, and those of the
 * slots' connections; http_set, the wait event set of our latch and these.
 *----------
 */

/* the sockets changed: make the wait event set again before the next wait */
static void
http_set_stale(void)
{
	if (http_set != NULL)
		FreeWaitEventSet(http_set);
	http_set = NULL;
	for (int i = 0; i < http_nsockets; i++)
		http_sockets[i].pos = -1;
}

/* fd's entry in http_sockets, a new one (not in http_set) if add, or NULL */
static HttpSocket *
http_find_socket(curl_socket_t fd, bool add)
{
	HttpSocket *s;

	for (int i = 0; i < http_nsockets; i++)
		if (http_sockets[i].fd == fd)
			return &http_sockets[i];
	if (!add || http_nsockets == HTTP_MAX_SOCKETS)
		return NULL;
	s = &http_sockets[http_nsockets++];
	memset(s, 0, sizeof(HttpSocket));
	s->fd = fd;
	s->pos = -1;
	return s;
}

static void
http_forget_socket(HttpSocket *s)
{
	if (s->pos >= 0)
		http_set_stale();
	*s = http_sockets[--http_nsockets];
}

/*
 * What a socket waits for: what curl asks, and what its connection needs.
 * A connection waits for its answer even while it writes its request: the
 * server may answer early (413 for a large body) and close.
 */
static uint32
http_socket_wait(const HttpSocket *s)
{
	if (s->req == NULL)
		return s->events;
	return WL_SOCKET_READABLE | (s->req->conn == HTTP_CONN_SENDING ? WL_SOCKET_WRITEABLE : 0);
}

/* CURLOPT_OPENSOCKETFUNCTION: refuse internal addresses, at connect time */
static curl_socket_t
http_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
	HttpRequest *req = clientp;
	curl_socket_t fd;
	HttpSocket *s;

	if (!req->allow_private && txbox_address_refused(&addr->addr, req->refused, sizeof(req->refused)))
		return CURL_SOCKET_BAD;
	fd = socket(addr->family, addr->socktype, addr->protocol);
	/* an entry of this number is of a socket closed behind our back */
	if (fd != CURL_SOCKET_BAD && (s = http_find_socket(fd, false)) != NULL)
		http_forget_socket(s);
	return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the socket leaves the table (and the set) */
static int
http_close_socket(void *clientp, curl_socket_t fd)
{
	HttpSocket *s = http_find_socket(fd, false);

	if (s != NULL)
		http_forget_socket(s);
	return close(fd);
}

/* CURLMOPT_SOCKETFUNCTION: what curl waits for on a socket, while it connects */
static int
http_socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	HttpSocket *s = http_find_socket(fd, what != CURL_POLL_REMOVE);

	if (s == NULL)
		return what == CURL_POLL_REMOVE ? 0 : -1;
	s->events = what == CURL_POLL_REMOVE ? 0 :
		((what & CURL_POLL_IN) ? WL_SOCKET_READABLE : 0) |
		((what & CURL_POLL_OUT) ? WL_SOCKET_WRITEABLE : 0);
	if (s->events == 0 && s->req == NULL)
		http_forget_socket(s);
	return 0;
}

static int
http_timer_callback(CURLM *multi, long timeout_ms, void *userp)
{
	http_timer_ms = timeout_ms;
	if (timeout_ms >= 0)
		http_timer_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/*----------
 * A slot's connection: made by curl (http_multi), then ours.
 *----------
 */

static void
http_multi_init(void)
{
	if (http_multi != NULL)
		return;
	http_curl_init();
	http_multi = curl_multi_init();
	if (http_multi == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	curl_multi_setopt(http_multi, CURLMOPT_SOCKETFUNCTION, http_socket_callback);
	curl_multi_setopt(http_multi, CURLMOPT_TIMERFUNCTION, http_timer_callback);
}

/* Have curl connect the slot to the endpoint; http_connected takes it on. */
static void
http_open_conn(HttpRequest *req)
{
	CURL	   *e = req->easy;

	if (e == NULL)
	{
		e = curl_easy_init();
		if (e == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L);
		curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(e, CURLOPT_PROXY, "");
		/* and not even a look at no_proxy in the environment */
		curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
		curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->error);
		curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, http_open_socket);
		curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, req);
		curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, http_close_socket);
		curl_easy_setopt(e, CURLOPT_PRIVATE, req);
		/* the endpoint's (a new endpoint makes new handles) */
		curl_easy_setopt(e, CURLOPT_URL, http_endpoint->url);
		if (http_endpoint->ca_file != NULL)
			curl_easy_setopt(e, CURLOPT_CAINFO, http_endpoint->ca_file);
		req->easy = e;
	}
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) http_connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) http_timeout_ms);
	req->allow_private = http_endpoint->allow_private;
	req->error[0] = '\0';
	req->refused[0] = '\0';
	if (curl_multi_add_handle(http_multi, e) != CURLM_OK)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("could not start an HTTP connection")));
	req->conn = HTTP_CONN_CONNECTING;
}

/* Close the slot's connection, if any. */
static void
http_close_conn(HttpRequest *req)
{
	for (int i = 0; i < http_nsockets; i++)
		if (http_sockets[i].req == req)
		{
			http_sockets[i].req = NULL;
			if (http_sockets[i].events == 0)
				http_forget_socket(&http_sockets[i]);
			break;
		}
	/* a connect-only connection closes when its handle leaves the multi */
	if (req->conn != HTTP_CONN_NONE)
		curl_multi_remove_handle(http_multi, req->easy);
	req->conn = HTTP_CONN_NONE;
	req->served = 0;
	req->unread = false;
}

/*
 * A kept-alive connection between requests: closed if the server closed it
 * or talks out of turn (an answer to no request is not the next request's),
 * unless what came was TLS's own (a session ticket).
 */
static void
http_check_idle(HttpRequest *req)
{
	char		byte;
	size_t		n = 0;

	if (curl_easy_recv(req->easy, &byte, 1, &n) != CURLE_AGAIN)
		http_close_conn(req);
}

/* The request is over (answered, failed or abandoned): the slot is free. */
static void
http_finish(HttpRequest *req)
{
	req->msg->page->in_flight--;
	req->msg = NULL;
	http_in_flight--;
	/* a large body's copy does not stay */
	if (req->out.maxlen > 64 * 1024)
	{
		pfree(req->out.data);
		req->out.data = NULL;
	}
}

/* the first failure of the pages in flight, in TopMemoryContext */
static void
http_fail(char **what, const char *why)
{
	if (*what == NULL)
		*what = MemoryContextStrdup(TopMemoryContext, why);
}

#define HTTP_FAILED() \
	(http_failure.transient != NULL || http_failure.gone || http_failure.refused != NULL)

/* The request failed without an answer: transient. */
static void
http_failed(HttpRequest *req, const char *why)
{
	http_fail(&http_failure.transient, psprintf("could not deliver message %s: %s", req->msg->id, why));
	req->msg->state = HTTP_PENDING;
	http_finish(req);
}

/*
 * The connection failed or closed before the answer was complete.  A
 * kept-alive connection the server closed (or reset) before anything of
 * the answer came: the request goes once more, on a new connection, as
 * curl does; else the request failed.
 */
static void
http_lost(HttpRequest *req, const char *why)
{
	bool		again = req->served > 0 && !req->received && !req->resent;

	http_close_conn(req);
	if (!again)
		http_failed(req, why);
	else
	{
		req->resent = true;
		http_open_conn(req);
	}
}

static void http_answered(HttpRequest *req);

/* Write what the socket takes of the request; then wait for the answer. */
static void
http_send(HttpRequest *req)
{
	while (req->sent < req->out.len)
	{
		size_t		n = 0;
		CURLcode	rc = curl_easy_send(req->easy, req->out.data + req->sent,
										req->out.len - req->sent, &n);

		if (rc == CURLE_AGAIN)
			return;
		if (rc != CURLE_OK)
		{
			http_lost(req, curl_easy_strerror(rc));
			return;
		}
		req->sent += n;
	}
	req->conn = HTTP_CONN_RECEIVING;
}

/* Connections curl made (or failed to make): their requests go out. */
static void
http_connected(void)
{
	CURLMsg    *cm;
	int			left;

	while ((cm = curl_multi_info_read(http_multi, &left)) != NULL)
	{
		HttpRequest *req;
		CURLcode	result = cm->data.result;
		curl_socket_t fd = CURL_SOCKET_BAD;
		HttpSocket *s = NULL;

		if (cm->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(cm->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		if (result == CURLE_OK &&
			curl_easy_getinfo(req->easy, CURLINFO_ACTIVESOCKET, &fd) == CURLE_OK &&
			fd != CURL_SOCKET_BAD)
			s = http_find_socket(fd, true);
		if (s == NULL)
		{
			http_close_conn(req);
			if (req->msg == NULL)
				continue;
			if (req->refused[0] != '\0')
			{
				http_fail(&http_failure.refused, req->refused);
				req->msg->state = HTTP_PENDING;
				http_finish(req);
			}
			else
				http_failed(req, req->error[0] ? req->error :
							result != CURLE_OK ? curl_easy_strerror(result) : "no socket");
			continue;
		}
		s->req = req;
		req->conn = HTTP_CONN_SENDING;
		req->sent = 0;
		if (req->msg != NULL)
			http_send(req);
		else
		{
			req->conn = HTTP_CONN_READY;
			req->ready_turn = http_turns;
		}
	}
}

/*----------
 * An answer, HTTP/1.1: status line and headers, then a body of
 * Content-Length bytes, or chunked, or up to the connection's end; 1xx
 * answers before it are skipped.  What is kept: the status, Retry-After,
 * whether the connection ends, and the body's first bytes (quoted in
 * errors).  The server is not trusted: what is read at once is at most
 * HTTP_IN_SIZE bytes (a head or a line longer than that fails), the rest
 * of a body is counted, not kept, and whatever comes, the request's
 * deadline holds.  Bytes after the answer, or between requests, close the
 * connection: they answer no request of ours.
 *----------
 */

typedef enum HttpParse
{
	HTTP_PARSE_MORE,			/* the answer goes on */
	HTTP_PARSE_DONE,
	HTTP_PARSE_INVALID			/* why in req->error */
} HttpParse;

/* the line at pos: its length without its end (CR LF or LF), next after it; -1: not all read */
static int
http_line(const HttpRequest *req, int pos, int *next)
{
	const char *nl = memchr(req->in + pos, '\n', req->in_len - pos);
	int			len;

	if (nl == NULL)
		return -1;
	*next = nl - req->in + 1;
	len = nl - (req->in + pos);
	if (len > 0 && req->in[pos + len - 1] == '\r')
		len--;
	return len;
}

/* if the header line is "name: value", its value (blanks trimmed) */
static bool
http_header_value(const char *line, int len, const char *name, const char **value, int *value_len)
{
	int			n = strlen(name);

	if (len <= n || line[n] != ':' || pg_strncasecmp(line, name, n) != 0)
		return false;
	line += n + 1;
	len -= n + 1;
	while (len > 0 && (*line == ' ' || *line == '\t'))
		line++, len--;
	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	*value = line;
	*value_len = len;
	return true;
}

/* does a comma-separated value hold token */
static bool
http_has_token(const char *value, int len, const char *token)
{
	int			n = strlen(token);

	for (int i = 0; i + n <= len; i++)
		if (pg_strncasecmp(value + i, token, n) == 0 &&
			(i == 0 || value[i - 1] == ',' || value[i - 1] == ' ') &&
			(i + n == len || value[i + n] == ',' || value[i + n] == ' ' || value[i + n] == ';'))
			return true;
	return false;
}

static HttpParse
http_invalid(HttpRequest *req, const char *why)
{
	strlcpy(req->error, why, sizeof(req->error));
	return HTTP_PARSE_INVALID;
}

/*
 * The head of an answer at *pos, if all of it is read: its status and
 * headers, and what comes next (req->part); *pos after it.
 */
static HttpParse
http_parse_head(HttpRequest *req, int *pos)
{
	int			next;
	int			len = http_line(req, *pos, &next);
	const char *line = req->in + *pos;
	int64		length = -1;
	bool		chunked = false;
	bool		other_coding = false;
	bool		http10;

	if (len < 0)
		return HTTP_PARSE_MORE;
	if (len < 12 || strncmp(line, "HTTP/1.", 7) != 0 || !isdigit((unsigned char) line[7]) ||
		line[8] != ' ' || !isdigit((unsigned char) line[9]) || !isdigit((unsigned char) line[10]) ||
		!isdigit((unsigned char) line[11]) || (len > 12 && line[12] != ' '))
		return http_invalid(req, "the server's answer is not HTTP/1.x");
	req->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
	http10 = line[7] == '0';
	req->close = http10;
	req->retry_after = 0;
	for (;;)
	{
		const char *value;
		int			value_len;

		line = req->in + next;
		if ((len = http_line(req, next, &next)) < 0)
			return HTTP_PARSE_MORE;
		if (len == 0)
			break;
		if (http_header_value(line, len, "content-length", &value, &value_len))
		{
			int64		n = 0;

			for (int i = 0; i < value_len; i++)
				if (!isdigit((unsigned char) value[i]) || (n = n * 10 + (value[i] - '0')) > PG_INT32_MAX)
					return http_invalid(req, "the server's answer has an invalid Content-Length");
			if (value_len == 0 || (length >= 0 && length != n))
				return http_invalid(req, "the server's answer has an invalid Content-Length");
			length = n;
		}
		else if (http_header_value(line, len, "transfer-encoding", &value, &value_len))
		{
			/* chunked last: the body's framing; any other coding: up to the end */
			chunked = value_len >= 7 && pg_strncasecmp(value + value_len - 7, "chunked", 7) == 0 &&
				(value_len == 7 || strchr(", \t", value[value_len - 8]) != NULL);
			other_coding = !chunked;
		}
		else if (http_header_value(line, len, "connection", &value, &value_len))
		{
			if (http_has_token(value, value_len, "close"))
				req->close = true;
			else if (http10 && http_has_token(value, value_len, "keep-alive"))
				req->close = false;
		}
		else if (http_header_value(line, len, "retry-after", &value, &value_len) && value_len < 64)
		{
			char		text[64];
			time_t		at;

			memcpy(text, value, value_len);
			text[value_len] = '\0';
			if (value_len > 0 && strspn(text, "0123456789") == value_len)
				req->retry_after = value_len > 9 ? HTTP_RETRY_AFTER_MAX : atol(text);
			else if ((at = curl_getdate(text, NULL)) > 0 && at > time(NULL))
				req->retry_after = at - time(NULL);
		}
	}
	*pos = next;
	/* Transfer-Encoding wins over Content-Length, and a server that sends
	 * both may be smuggling: its connection is not used again (RFC 9112) */
	if ((chunked || other_coding) && length >= 0)
		req->close = true;
	if (req->status >= 100 && req->status < 200)
	{
		/* 100 Continue and the like: the answer comes after it */
		if (req->status == 101)
			return http_invalid(req, "the server switched protocols");
		return HTTP_PARSE_MORE;
	}
	if (req->status == 204 || req->status == 304 || (length == 0 && !chunked && !other_coding))
		req->part = HTTP_PART_DONE;
	else if (chunked)
		req->part = HTTP_PART_CHUNK_SIZE;
	else if (length > 0 && !other_coding)
	{
		req->part = HTTP_PART_LENGTH;
		req->left = length;
	}
	else
	{
		req->part = HTTP_PART_TO_CLOSE;
		req->close = true;
	}
	return HTTP_PARSE_MORE;
}

/* Take what was read of the answer (req->in); keep what is not complete. */
static HttpParse
http_parse(HttpRequest *req)
{
	int			pos = 0;

	for (;;)
	{
		int			next = 0;
		int			len;
		int			i;
		int			digits;
		int64		take;

		switch (req->part)
		{
			case HTTP_PART_HEAD:
				{
					int			before = pos;
					HttpParse	r = http_parse_head(req, &pos);

					if (r == HTTP_PARSE_INVALID)
						return r;
					if (pos == before)
						goto more;	/* the head is not all there */
					break;
				}
			case HTTP_PART_LENGTH:
			case HTTP_PART_CHUNK:
			case HTTP_PART_TO_CLOSE:
				take = req->in_len - pos;
				if (req->part != HTTP_PART_TO_CLOSE)
					take = Min(take, req->left);
				if (req->answer_len < HTTP_ANSWER_QUOTED)
				{
					int			quote = Min(take, HTTP_ANSWER_QUOTED - req->answer_len);

					memcpy(req->answer + req->answer_len, req->in + pos, quote);
					req->answer_len += quote;
				}
				pos += take;
				if (req->part == HTTP_PART_TO_CLOSE || (req->left -= take) > 0)
					goto more;
				req->part = req->part == HTTP_PART_LENGTH ? HTTP_PART_DONE : HTTP_PART_CHUNK_END;
				break;
			case HTTP_PART_CHUNK_SIZE:
				if ((len = http_line(req, pos, &next)) < 0)
					goto more;
				req->left = 0;
				for (i = 0; i < len && isxdigit((unsigned char) req->in[pos + i]); i++)
				{
					char		c = req->in[pos + i];

					req->left = req->left * 16 + (isdigit((unsigned char) c) ? c - '0' : (c | 0x20) - 'a' + 10);
					if (req->left > PG_INT32_MAX)
						return http_invalid(req, "the server's answer has an invalid chunk size");
				}
				/* hex digits, then nothing or extensions: [blanks] ";" ... */
				digits = i;
				while (i < len && (req->in[pos + i] == ' ' || req->in[pos + i] == '\t'))
					i++;
				if (digits == 0 || (i < len && req->in[pos + i] != ';'))
					return http_invalid(req, "the server's answer has an invalid chunk size");
				req->part = req->left > 0 ? HTTP_PART_CHUNK : HTTP_PART_TRAILER;
				pos = next;
				break;
			case HTTP_PART_CHUNK_END:
				if ((len = http_line(req, pos, &next)) < 0)
					goto more;
				if (len != 0)
					return http_invalid(req, "the server's answer has a chunk longer than its size");
				req->part = HTTP_PART_CHUNK_SIZE;
				pos = next;
				break;
			case HTTP_PART_TRAILER:
				if ((len = http_line(req, pos, &next)) < 0)
					goto more;
				if (len == 0)
					req->part = HTTP_PART_DONE;
				pos = next;
				break;
			case HTTP_PART_DONE:
				/* bytes after the answer: the server talks out of turn */
				if (pos < req->in_len)
					req->close = true;
				req->in_len = 0;
				return HTTP_PARSE_DONE;
		}
	}
more:
	memmove(req->in, req->in + pos, req->in_len - pos);
	req->in_len -= pos;
	return HTTP_PARSE_MORE;
}

/*
 * Read what the connection has of the answer, HTTP_READS_AT_ONCE reads at
 * most: a server that sends faster than we read does not keep us here past
 * the deadline (req->unread: http_wait comes back at once).
 */
static void
http_receive(HttpRequest *req)
{
	req->unread = false;
	for (int reads = 0;; reads++)
	{
		size_t		n = 0;
		CURLcode	rc;

		if (reads == HTTP_READS_AT_ONCE)
		{
			/* (TLS may hold what is left: the socket may not be readable) */
			req->unread = true;
			return;
		}
		if (req->in == NULL)
			req->in = MemoryContextAlloc(TopMemoryContext, HTTP_IN_SIZE);
		if (req->in_len == HTTP_IN_SIZE)
		{
			http_close_conn(req);
			http_failed(req, "the server's answer has a head or a line longer than 16 kB");
			return;
		}
		rc = curl_easy_recv(req->easy, req->in + req->in_len, HTTP_IN_SIZE - req->in_len, &n);
		if (rc == CURLE_AGAIN)
			return;
		if (rc != CURLE_OK)
		{
			http_lost(req, curl_easy_strerror(rc));
			return;
		}
		if (n == 0)
		{
			if (req->part == HTTP_PART_TO_CLOSE)
				http_answered(req);
			else
				http_lost(req, "the server closed the connection before its answer was complete");
			return;
		}
		req->received = true;
		req->in_len += n;
		switch (http_parse(req))
		{
			case HTTP_PARSE_MORE:
				break;
			case HTTP_PARSE_DONE:
				http_answered(req);
				return;
			case HTTP_PARSE_INVALID:
				http_close_conn(req);
				http_failed(req, req->error);
				return;
		}
	}
}

/* The socket of the slot's connection is ready (events: WL_SOCKET_*). */
static void
http_io(HttpRequest *req, uint32 events)
{
	if (req->conn == HTTP_CONN_READY)
		http_check_idle(req);
	if ((events & WL_SOCKET_WRITEABLE) && req->conn == HTTP_CONN_SENDING)
		http_send(req);
	if ((events & WL_SOCKET_READABLE) &&
		(req->conn == HTTP_CONN_SENDING || req->conn == HTTP_CONN_RECEIVING))
		http_receive(req);
}

/*----------
 * A request.
 *----------
 */

/* Append a header "name: value": value's bytes outside printable ASCII and '%' percent-encoded if encode, else the header is left out. */
static void
http_add_header(StringInfo h, const char *name, const char *value, int len, bool encode)
{
	int			start = h->len;
	int			plain = 0;

	if (len < 0)
		len = strlen(value);
	/* the bytes before the first that is not printable ASCII (or is '%') go as they are */
	while (plain < len && (unsigned char) value[plain] >= 0x20 && (unsigned char) value[plain] <= 0x7e &&
		   !(encode && value[plain] == '%'))
		plain++;
	appendStringInfoString(h, name);
	appendBinaryStringInfo(h, ": ", 2);
	appendBinaryStringInfo(h, value, plain);
	for (int i = plain; i < len; i++)
	{
		unsigned char c = value[i];

		if (c >= 0x20 && c <= 0x7e && !(encode && c == '%'))
			appendStringInfoChar(h, c);
		else if (encode)
			appendStringInfo(h, "%%%02X", c);
		else if (c != '\t')
		{
			h->len = start;
			h->data[start] = '\0';
			return;
		}
		else
			appendStringInfoChar(h, c);
	}
	appendBinaryStringInfo(h, "\r\n", 2);
}

/* header names a message's headers may not set */
static bool
http_reserved_header(const char *name)
{
	static const char *const reserved[] = {"content-type", "content-length", "host",
		"authorization", "connection", "transfer-encoding", "expect", "te", "upgrade",
	"keep-alive", "proxy-authorization", "trailer"};

	if (pg_strncasecmp(name, "webhook-", 8) == 0 || pg_strncasecmp(name, "txbox-", 6) == 0 ||
		pg_strncasecmp(name, "ce-", 3) == 0)
		return true;
	for (int i = 0; i < lengthof(reserved); i++)
		if (pg_strcasecmp(name, reserved[i]) == 0)
			return true;
	return false;
}

static bool
http_token(const char *name)
{
	if (*name == '\0' || strlen(name) > 256)
		return false;
	for (const char *p = name; *p; p++)
		if (!(isalnum((unsigned char) *p) || strchr("!#$%&'*+-.^_`|~", *p)))
			return false;
	return true;
}

/* a message's header as an HTTP header, where it may be */
static void
http_add_message_header(void *arg, const char *name_text, int name_len, const char *value,
						int value_len)
{
	char	   *name = pnstrdup(name_text, name_len);

	if (http_token(name) && !http_reserved_header(name))
		http_add_header((StringInfo) arg, name, value, value_len, false);
}

/* webhook-signature: "v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>" per secret */
static void
http_add_signature(StringInfo h, const HttpEndpoint *ep, const HttpMessage *m, const char *ts)
{
	char		prefix[sizeof(m->id) + 34];
	int			prefix_len = snprintf(prefix, sizeof(prefix), "%s.%s.", m->id, ts);
	char		sig[2 * (3 + 44) + 2];	/* 2 x "v1," + base64 of 32 bytes, " " */
	int			len = 0;

	for (int i = 0; i < ep->nsecrets; i++)
	{
		unsigned char mac[EVP_MAX_MD_SIZE];
		size_t		mac_len;

		/* a NULL key: the context's own */
		if (!EVP_MAC_init(ep->mac[i], NULL, 0, NULL) ||
			!EVP_MAC_update(ep->mac[i], (unsigned char *) prefix, prefix_len) ||
			!EVP_MAC_update(ep->mac[i], (const unsigned char *) m->body, m->body_len) ||
			!EVP_MAC_final(ep->mac[i], mac, &mac_len, sizeof(mac)))
			elog(ERROR, "could not compute an HMAC-SHA256 signature");
		if (i > 0)
			sig[len++] = ' ';
		memcpy(sig + len, "v1,", 3);
		len += 3;
		len += pg_b64_encode((void *) mac, mac_len, sig + len, sizeof(sig) - len);
	}
	http_add_header(h, "webhook-signature", sig, len, false);
}

/*
 * The request line and the headers every request has (http_load_endpoint):
 * the url's path and query, its host and port as written, the bearer token.
 */
static void
http_endpoint_head(HttpEndpoint *ep)
{
	CURLU	   *u;
	char	   *path = NULL;
	char	   *query = NULL;
	char	   *host = NULL;
	char	   *port = NULL;
	StringInfoData h;

	http_curl_init();
	u = curl_url();
	if (u == NULL || curl_url_set(u, CURLUPART_URL, ep->url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		elog(ERROR, "could not parse the url of server \"%s\"", ep->server);
	(void) curl_url_get(u, CURLUPART_QUERY, &query, 0);
	(void) curl_url_get(u, CURLUPART_PORT, &port, 0);	/* only as written */
	initStringInfo(&h);
	appendStringInfo(&h, "POST %s%s%s HTTP/1.1\r\nHost: %s%s%s\r\nUser-Agent: txbox\r\n",
					 path, query != NULL ? "?" : "", query != NULL ? query : "",
					 host, port != NULL ? ":" : "", port != NULL ? port : "");
	if (ep->bearer_token != NULL)
		http_add_header(&h, "Authorization", psprintf("Bearer %s", ep->bearer_token), -1, false);
	ep->head = h.data;
	ep->head_len = h.len;
	curl_free(path);
	curl_free(query);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
}

/* Send m's request from slot req (on its connection, or a new one). */
static void
http_start(HttpRequest *req, const RelayConfig *cfg, HttpMessage *m)
{
	const HttpEndpoint *ep = http_endpoint;
	StringInfo	h = &req->out;
	char		ts[32];

	if (h->data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(h);
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(h);
	req->msg = m;
	req->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), http_timeout_ms);
	req->sent = 0;
	req->resent = false;
	req->received = false;
	req->in_len = 0;
	req->unread = false;
	req->part = HTTP_PART_HEAD;
	req->answer_len = 0;
	m->state = HTTP_IN_FLIGHT;
	m->page->in_flight++;
	http_in_flight++;

	snprintf(ts, sizeof(ts), "%lld", (long long) time(NULL));
	appendBinaryStringInfo(h, ep->head, ep->head_len);
	http_add_header(h, "Content-Type", m->binary ? "application/octet-stream" : "application/json", -1, false);
	appendStringInfo(h, "Content-Length: %d\r\n", m->body_len);
	http_add_header(h, "webhook-id", m->id, -1, false);
	http_add_header(h, "webhook-timestamp", ts, -1, false);
	if (ep->nsecrets > 0)
		http_add_signature(h, ep, m, ts);
	http_add_header(h, "txbox-topic", m->topic, -1, false);
	if (m->key != NULL)
		http_add_header(h, "txbox-key", m->key, m->key_len, true);
	if (http_cloudevents)
	{
		http_add_header(h, "ce-specversion", "1.0", -1, false);
		http_add_header(h, "ce-id", m->id, -1, false);
		http_add_header(h, "ce-source", psprintf("/txbox/%s", cfg->source), -1, true);
		http_add_header(h, "ce-type", m->topic, -1, false);
		if (m->key != NULL)
			http_add_header(h, "ce-subject", m->key, m->key_len, true);
	}
	txbox_page_headers(m->headers, m->headers_len, http_add_message_header, h);
	appendBinaryStringInfo(h, "\r\n", 2);
	appendBinaryStringInfo(h, m->body, m->body_len);

	/*
	 * What came since the last answer while no one watched (http_wait
	 * does), e.g. while the relay backed off
	 */
	if (req->conn == HTTP_CONN_READY && req->ready_turn != http_turns)
		http_check_idle(req);
	if (req->conn == HTTP_CONN_READY)
	{
		req->conn = HTTP_CONN_SENDING;
		http_send(req);
	}
	else
		http_open_conn(req);
}

/* the first bytes of the answer, printable, without the bearer token */
static char *
http_quote_answer(HttpRequest *req)
{
	char	   *s = palloc(req->answer_len + 1);
	char	   *token = http_endpoint->bearer_token;

	for (int i = 0; i < req->answer_len; i++)
		s[i] = (unsigned char) req->answer[i] < 0x20 || (unsigned char) req->answer[i] > 0x7e ?
			' ' : req->answer[i];
	s[req->answer_len] = '\0';
	if (token != NULL && token[0] != '\0')
		for (char *p = strstr(s, token); p != NULL; p = strstr(p, token))
			memset(p, '*', strlen(token));
	return s;
}

/*----------
 * The pages in flight.
 *----------
 */

/* keys in the order of their length, then their bytes */
static int
http_key_order(const HttpMessage *x, const HttpMessage *y)
{
	if (x->key_len != y->key_len)
		return x->key_len < y->key_len ? -1 : 1;
	return memcmp(x->key, y->key, x->key_len);
}

static int
http_key_cmp(const void *a, const void *b, void *arg)
{
	const HttpMessage *msgs = arg;
	int			x = *(const int *) a;
	int			y = *(const int *) b;
	int			c = http_key_order(&msgs[x], &msgs[y]);

	return c != 0 ? c : x - y;
}

/* The page's messages, and its keyed ones by key, then position. */
static void
http_read_page(const RelayPage *page, HttpPage *p)
{
	int			n = page->count;
	HttpMessage *msgs = palloc0(sizeof(HttpMessage) * n);
	PageColumn	col;

	p->n = n;
	p->msgs = msgs;
	p->keyed = palloc(sizeof(int) * n);
	/* message_id, topic, key, headers, payload, payload_bytes */
	txbox_page_column(page, 0, &col);
	for (int i = 0; i < n; i++)
	{
		msgs[i].page = p;
		msgs[i].uuid = col.data[i];
		txbox_page_uuid(col.data[i], msgs[i].id);
	}
	txbox_page_column(page, 1, &col);
	for (int i = 0; i < n; i++)
		msgs[i].topic = pnstrdup(col.data[i], col.len[i]);
	txbox_page_column(page, 2, &col);
	for (int i = 0; i < n; i++)
		if (col.data[i] != NULL)
		{
			msgs[i].key = pnstrdup(col.data[i], col.len[i]);
			msgs[i].key_len = col.len[i];
			p->keyed[p->nkeyed++] = i;
		}
	txbox_page_column(page, 3, &col);
	for (int i = 0; i < n; i++)
	{
		msgs[i].headers = col.data[i];
		msgs[i].headers_len = col.len[i];
	}
	/* jsonb's binary format: a version byte, then the text */
	txbox_page_column(page, 4, &col);
	for (int i = 0; i < n; i++)
		if (col.data[i] != NULL)
		{
			msgs[i].body = col.data[i] + 1;
			msgs[i].body_len = col.len[i] - 1;
		}
	txbox_page_column(page, 5, &col);
	for (int i = 0; i < n; i++)
		if (col.data[i] != NULL)
		{
			msgs[i].body = col.data[i];
			msgs[i].body_len = col.len[i];
			msgs[i].binary = true;
		}
	qsort_arg(p->keyed, p->nkeyed, sizeof(int), http_key_cmp, msgs);
}

static bool
http_remembered(const HttpMessage *m, HASHACTION action)
{
	bool		found = false;

	if (http_delivered == NULL)
	{
		HASHCTL		ctl;

		if (action != HASH_ENTER)
			return false;
		ctl.keysize = UUID_LEN;
		ctl.entrysize = UUID_LEN;
		http_delivered = hash_create("txbox http delivered", 1024, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	if (action == HASH_ENTER && hash_get_num_entries(http_delivered) >= HTTP_REMEMBERED_MAX)
		return false;
	hash_search(http_delivered, m->uuid, action, &found);
	return found;
}

/* m joins its page's ready list */
static void
http_ready(HttpMessage *m)
{
	HttpPage   *p = m->page;

	m->next_ready = NULL;
	if (p->ready_last != NULL)
		p->ready_last->next_ready = m;
	else
		p->ready = m;
	p->ready_last = m;
}

/* m's (last) message of its key in page p, or NULL */
static HttpMessage *
http_last_of_key(const HttpPage *p, const HttpMessage *m)
{
	int			lo = 0;
	int			hi = p->nkeyed;

	/* the first of p's keyed messages whose key is after m's */
	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (http_key_order(&p->msgs[p->keyed[mid]], m) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0 && http_key_order(&p->msgs[p->keyed[lo - 1]], m) == 0)
		return &p->msgs[p->keyed[lo - 1]];
	return NULL;
}

/*
 * Take a page (a copy of it: the relay's does not outlive deliver) after
 * the one in flight, if any.  Each key's messages are chained
 * (next_same_key) from its last one in the page before on; what an
 * incomplete attempt delivered already (http_remembered) is delivered,
 * when every message of its key before it is; the first message of each
 * key that is not is ready, and so is every message without a key.
 */
static void
http_add_page(const RelayPage *page)
{
	HttpPage   *before = http_npages > 0 ? http_pages[http_npages - 1] : NULL;
	MemoryContext cxt;
	MemoryContext old;
	HttpPage   *p;
	RelayPage	copy = {.count = page->count};

	if (http_npages == lengthof(http_pages))
		elog(ERROR, "txbox http: a third page in flight");
	cxt = AllocSetContextCreate(TopMemoryContext, "txbox http page", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	p = palloc0(sizeof(HttpPage));
	for (int c = 0; c < RELAY_PAGE_COLUMNS; c++)
		copy.columns[c] = (bytea *) DatumGetPointer(datumCopy(PointerGetDatum(page->columns[c]),
															  false, -1));
	p->cxt = cxt;
	http_read_page(&copy, p);
	MemoryContextSwitchTo(old);

	for (int j = 0; j < p->nkeyed;)
	{
		HttpMessage *prev = before != NULL ? http_last_of_key(before, &p->msgs[p->keyed[j]]) : NULL;
		bool		clear = prev == NULL || prev->state == HTTP_DONE;
		int			k = j;

		for (; k < p->nkeyed && http_key_order(&p->msgs[p->keyed[k]], &p->msgs[p->keyed[j]]) == 0; k++)
		{
			HttpMessage *m = &p->msgs[p->keyed[k]];

			if (prev != NULL)
				prev->next_same_key = m;
			prev = m;
			if (clear && http_remembered(m, HASH_FIND))
				m->state = HTTP_DONE;
			else
			{
				m->blocked = !clear;
				clear = false;
			}
		}
		j = k;
	}
	for (int i = 0; i < p->n; i++)
	{
		HttpMessage *m = &p->msgs[i];

		if (m->key == NULL && http_remembered(m, HASH_FIND))
			m->state = HTTP_DONE;
		if (m->state == HTTP_DONE)
			p->delivered++;
		else if (!m->blocked)
			http_ready(m);
	}
	http_pages[http_npages++] = p;
}

/*
 * Drop every page in flight: their requests abandoned (sent again with
 * the pages), what they delivered remembered if remember.
 */
static void
http_drop_pages(bool remember)
{
	/* a connection amid a request is of no further use */
	for (int r = 0; http_requests != NULL && r < HTTP_MAX_CONCURRENCY; r++)
		if (http_requests[r].msg != NULL)
		{
			http_close_conn(&http_requests[r]);
			http_finish(&http_requests[r]);
		}
	for (int i = 0; i < http_npages; i++)
	{
		for (int j = 0; remember && j < http_pages[i]->n; j++)
			if (http_pages[i]->msgs[j].state == HTTP_DONE)
				(void) http_remembered(&http_pages[i]->msgs[j], HASH_ENTER);
		MemoryContextDelete(http_pages[i]->cxt);
	}
	http_npages = 0;
	if (http_failure.transient != NULL)
		pfree(http_failure.transient);
	if (http_failure.refused != NULL)
		pfree(http_failure.refused);
	memset(&http_failure, 0, sizeof(http_failure));
}

/* Start ready messages while the window (concurrency) has room. */
static void
http_start_ready(const RelayConfig *cfg)
{
	int			r = 0;

	for (int i = 0; i < http_npages; i++)
	{
		HttpPage   *p = http_pages[i];

		while (p->ready != NULL && http_in_flight < http_concurrency && !HTTP_FAILED())
		{
			HttpMessage *m = p->ready;

			p->ready = m->next_ready;
			if (p->ready == NULL)
				p->ready_last = NULL;
			while (http_requests[r].msg != NULL)
				r++;
			http_nslots = Max(http_nslots, r + 1);
			http_start(&http_requests[r], cfg, m);
		}
		/* a rejected page will be sent again: nothing more after it */
		if (p->rejection != NULL)
			break;
	}
}

/* A request was answered: its message's state, and what it means. */
static void
http_answered(HttpRequest *req)
{
	HttpMessage *m = req->msg;
	int			status = req->status;
	long		retry_after = Min(req->retry_after, HTTP_RETRY_AFTER_MAX);

	if (status >= 200 && status < 300 && req->conn == HTTP_CONN_SENDING)
	{
		/* the server cannot have read the whole request: no delivery */
		http_close_conn(req);
		http_failed(req, psprintf("the server answered %d before it had the whole request", status));
		return;
	}
	m->state = HTTP_PENDING;
	if (status >= 200 && status < 300)
	{
		m->state = HTTP_DONE;
		m->page->delivered++;
		/* its key's next message may go */
		if (m->next_same_key != NULL)
			http_ready(m->next_same_key);
	}
	else if (status == 410)
		http_failure.gone = true;
	else if (status == 408 || status == 429 || status >= 500 || status < 100)
	{
		/* (a status outside 100-599 is as a 5xx: RFC 9110, 15) */
		http_fail(&http_failure.transient,
				  psprintf("HTTP %03d for message %s%s: %s", status, m->id,
						   retry_after > 0 ? psprintf(" (Retry-After: %ld s)", retry_after) : "",
						   http_quote_answer(req)));
		if (retry_after > 0)
			http_not_before = Max(http_not_before,
								  TimestampTzPlusMilliseconds(GetCurrentTimestamp(), retry_after * 1000));
	}
	else
	{
		if (m->page->rejection == NULL)
			m->page->rejection = MemoryContextStrdup(m->page->cxt,
													 psprintf("HTTP %d for message %s: %s", status, m->id,
															  http_quote_answer(req)));
		m->state = HTTP_REJECTED;
	}
	http_finish(req);
	req->served++;
	/* (an answer before the whole request was written: the server stops) */
	if (req->close || req->conn == HTTP_CONN_SENDING)
		http_close_conn(req);
	else
	{
		req->conn = HTTP_CONN_READY;
		req->ready_turn = http_turns;
	}
}

/*
 * Wait for the sockets, curl's timer, the requests' deadlines or our
 * latch (at most a second), and act on what happened.  Interrupts are
 * handled as in every wait: SIGTERM ends the worker here, a reload is
 * applied.  The wait event set lives as long as its sockets do (kept-alive
 * connections): from one request to the next only what a socket waits for
 * changes.
 */
static void
http_wait(void)
{
	WaitEvent	events[HTTP_MAX_SOCKETS + 2];
	TimestampTz now = GetCurrentTimestamp();
	long		timeout = http_timer_ms < 0 ? 1000 : Min(http_timer_ms, 1000);
	int			n;
	int			running;

	for (int r = 0; r < http_nslots; r++)
		if (http_requests[r].msg != NULL)
			timeout = Min(timeout, http_requests[r].unread ? 0 :
						  Max(TimestampDifferenceMilliseconds(now, http_requests[r].deadline), 0));
	for (int i = 0; http_set != NULL && i < http_nsockets; i++)
		if ((http_sockets[i].pos >= 0) != (http_socket_wait(&http_sockets[i]) != 0))
			http_set_stale();
	if (http_set == NULL)
	{
		http_set = txbox_create_wait_event_set(http_nsockets + 2);
		AddWaitEventToSet(http_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(http_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (int i = 0; i < http_nsockets; i++)
			if ((http_sockets[i].waiting = http_socket_wait(&http_sockets[i])) != 0)
				http_sockets[i].pos = AddWaitEventToSet(http_set, http_sockets[i].waiting,
														http_sockets[i].fd, NULL, NULL);
	}
	for (int i = 0; i < http_nsockets; i++)
		if (http_sockets[i].pos >= 0 && http_sockets[i].waiting != http_socket_wait(&http_sockets[i]))
		{
			http_sockets[i].waiting = http_socket_wait(&http_sockets[i]);
			ModifyWaitEvent(http_set, http_sockets[i].pos, http_sockets[i].waiting, NULL);
		}
	n = WaitEventSetWait(http_set, timeout, events, lengthof(events),
						 txbox_wait_event(TXBOX_WAIT_TARGET_SOCKET));

	for (int i = 0; i < n; i++)
	{
		HttpSocket *s;

		if (events[i].events & WL_LATCH_SET)
			(void) txbox_worker_wait(0, txbox_wait_event(TXBOX_WAIT_TARGET_SOCKET));	/* reset, interrupts, reload */
		else if ((s = http_find_socket(events[i].fd, false)) == NULL)
			continue;			/* closed meanwhile */
		else if (s->req != NULL)
			http_io(s->req, events[i].events);
		else if (s->events != 0)
			curl_multi_socket_action(http_multi, events[i].fd,
									 ((events[i].events & WL_SOCKET_READABLE) ? CURL_CSELECT_IN : 0) |
									 ((events[i].events & WL_SOCKET_WRITEABLE) ? CURL_CSELECT_OUT : 0),
									 &running);
	}
	if (http_timer_ms >= 0 && GetCurrentTimestamp() >= http_timer_at)
	{
		http_timer_ms = -1;
		curl_multi_socket_action(http_multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	http_connected();
	for (int r = 0; r < http_nslots; r++)
		if (http_requests[r].msg != NULL && http_requests[r].unread)
			http_receive(&http_requests[r]);

	now = GetCurrentTimestamp();
	for (int r = 0; r < http_nslots; r++)
		if (http_requests[r].msg != NULL && now >= http_requests[r].deadline)
		{
			http_close_conn(&http_requests[r]);
			http_failed(&http_requests[r], psprintf("no answer within %d ms (the relay's timeout)", http_timeout_ms));
		}
}

/*
 * http_deliver -- the deliver callback: take the page, start what of it
 * may go, and answer DELIVERY_PENDING: http_deliver_finish tells the
 * outcome.
 */
static DeliveryResult
http_deliver(const RelayConfig *cfg, const RelayPage *page, int *duplicates, char **error)
{
	*duplicates = 0;
	*error = NULL;
	http_turns++;
	http_concurrency = txbox_option_int(cfg->options, "http", "concurrency");
	http_timeout_ms = txbox_option_ms(cfg->options, "http", "timeout");
	http_connect_timeout_ms = cfg->connect_timeout_ms;
	http_cloudevents = strcmp(txbox_option_text(cfg->options, "http", "format"), "cloudevents") == 0;
	http_multi_init();
	if (http_requests == NULL)
		http_requests = MemoryContextAllocZero(TopMemoryContext,
											   sizeof(HttpRequest) * HTTP_MAX_CONCURRENCY);
	http_add_page(page);
	http_start_ready(cfg);
	return DELIVERY_PENDING;
}

/*
 * http_deliver_finish -- the deliver_finish callback: POST the oldest
 * page's messages (and the next page's, in the same window), up to the
 * relay's "concurrency" at once, each only after its key's previous one
 * was delivered, until the oldest page is settled.  Returns DELIVERY_OK
 * when every message of it got a 2xx; DELIVERY_RETRY on a transient
 * failure of any page (the requests in flight are abandoned);
 * DELIVERY_REJECTED when a message got another status (the page's other
 * keys go on; the next page sends nothing more, and what it has in flight
 * is answered first).  On a failure the next page is dropped, and what
 * either delivered is remembered, not sent again.  410 Gone and a refused
 * address are ERRORs (the relay fails).
 */
static DeliveryResult
http_deliver_finish(const RelayConfig *cfg, int *duplicates, char **error)
{
	HttpPage   *oldest = http_pages[0];
	TimestampTz drop_check = GetCurrentTimestamp();
	bool		dropped = false;
	bool		transient;

	*duplicates = 0;
	*error = NULL;
	http_turns++;
	for (;;)
	{
		http_start_ready(cfg);
		if (HTTP_FAILED())
			break;
		if (oldest->in_flight == 0 &&
			(oldest->delivered == oldest->n ||
			 (oldest->rejection != NULL && oldest->ready == NULL && http_in_flight == 0)))
			break;

		http_wait();
		if (TimestampDifferenceExceeds(drop_check, GetCurrentTimestamp(), 1000))
		{
			drop_check = GetCurrentTimestamp();
			if (txbox_database_is_being_dropped())
			{
				dropped = true;
				break;
			}
		}
	}

	/* (the relay drops the pages: disconnect) */
	if (http_failure.refused != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("refused to connect to %s (the url of server \"%s\" leads into the database server's network)",
						http_failure.refused, cfg->server),
				 errhint(TXBOX_PRIVATE_HINT, cfg->server)));
	if (http_failure.gone)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the endpoint of server \"%s\" answered 410 Gone: it no longer takes these webhooks",
						cfg->server),
				 errhint("Point the server at a live endpoint (ALTER SERVER ... OPTIONS (SET url '...')) or drop the relay; it retries with backoff meanwhile.")));
	transient = dropped || http_failure.transient != NULL;
	if (transient || oldest->rejection != NULL)
	{
		*error = pstrdup(dropped ? "the database is being dropped" :
						 http_failure.transient != NULL ? http_failure.transient : oldest->rejection);
		http_drop_pages(true);
		return transient ? DELIVERY_RETRY : DELIVERY_REJECTED;
	}

	/* the page is complete: the relay saves its position past it */
	for (int i = 0; http_delivered != NULL && i < oldest->n; i++)
		(void) http_remembered(&oldest->msgs[i], HASH_REMOVE);
	if (http_delivered != NULL && hash_get_num_entries(http_delivered) == 0)
	{
		hash_destroy(http_delivered);
		http_delivered = NULL;
	}
	MemoryContextDelete(oldest->cxt);
	http_pages[0] = http_pages[1];
	http_npages--;
	return DELIVERY_OK;
}

const TargetCallbacks txbox_http_target = {
	.name = "http",
	.wrapper = "txbox_http",
	.in_relay_xact = false,
	.connect = http_connect,
	.deliver = http_deliver,
	.deliver_finish = http_deliver_finish,
	.max_pages_in_flight = lengthof(http_pages),
	.disconnect = http_reset_connections,
};
