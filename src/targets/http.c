/*-------------------------------------------------------------------------
 * targets/http.c
 *		The http target: webhooks.  One POST per message, signed in the
 *		Standard Webhooks format, over libcurl's multi interface driven by
 *		the worker's latch and sockets; and txbox_http, the foreign-data
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
 * Outcomes: a 2xx delivers the message.  408, 429, 5xx, a connection
 * error or a timeout is transient: the page is retried with the relay's
 * backoff, at the earliest when Retry-After says (at most an hour), and
 * nothing is dead-lettered.  Any other status (3xx included: redirects are
 * not followed) rejects that message: the relay retries it alone and
 * dead-letters it after max_attempts, with the status and the first bytes
 * of the answer.  410 Gone fails the relay (an ERROR).  Messages of a page
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
	char	   *bearer_token;	/* or NULL */
	int			nsecrets;
	char	   *secret[2];		/* decoded signing secrets, current first */
	int			secret_len[2];
	EVP_MAC_CTX *mac[2];		/* HMAC-SHA256 keyed with each (http_mac_new) */
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

/* A request slot, with its easy handle (kept: no set-up per request). */
typedef struct HttpRequest
{
	CURL	   *easy;			/* NULL: not made yet */
	bool		busy;			/* a request is in flight */
	StringInfoData head;		/* its headers, each ending in a NUL */
	int			nheaders;
	struct curl_slist *header_list; /* pointing into head, for curl */
	int			header_list_size;
	HttpMessage *msg;
	bool		allow_private;
	char		error[CURL_ERROR_SIZE];
	char		refused[160];	/* why an address was refused, or "" */
	char		answer[HTTP_ANSWER_QUOTED + 1];
	int			answer_len;
} HttpRequest;

/*
 * A socket curl watches, or one of ours (http_open_socket) it watched and
 * keeps for the next request (a kept-alive connection, between requests):
 * such an idle socket stays in http_set, waiting for readable (the server
 * closing it), so that curl watching it again changes only what it waits
 * for, not the set.  It leaves the set when it becomes readable while
 * idle, and the table when curl closes it (http_close_socket).
 */
typedef struct HttpSocket
{
	curl_socket_t fd;
	uint32		events;			/* WL_SOCKET_* curl waits for, 0: none (idle) */
	uint32		waiting;		/* WL_SOCKET_* it waits for in http_set */
	int			pos;			/* in http_set, -1: not in it */
	bool		ours;			/* opened by http_open_socket */
	bool		keep;			/* idle, stays in http_set */
} HttpSocket;

/* what a socket in http_set waits for */
#define HTTP_SOCKET_WAIT(s) ((s)->events != 0 ? (s)->events : WL_SOCKET_READABLE)

static MemoryContext http_cxt = NULL;	/* the endpoint */
static HttpEndpoint *http_endpoint = NULL;
static bool http_endpoint_stale = false;
static bool http_callbacks_registered = false;
static CURLM *http_multi = NULL;
/* the relay's http options, read at each page (http_deliver) */
static int	http_concurrency;
static int	http_timeout_ms;
static bool http_cloudevents;
static HttpSocket http_sockets[HTTP_MAX_SOCKETS];
static int	http_nsockets = 0;
static WaitEventSet *http_set = NULL;	/* our latch and http_sockets, or NULL:
										 * to be made again (a socket came or
										 * went) */
static long http_timer_ms = -1; /* curl's timer, -1: none */
static TimestampTz http_timer_at = 0;
static HttpRequest *http_requests = NULL;	/* HTTP_MAX_CONCURRENCY slots */
static HttpPage *http_pages[2];	/* in flight, the oldest first */
static int	http_npages = 0;
static int	http_in_flight = 0; /* requests, of all pages */
static HTAB *http_delivered = NULL; /* message ids delivered, page not yet complete */
static TimestampTz http_not_before = 0; /* Retry-After */

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
		bool		server_option = strcmp(name, "url") == 0 || strcmp(name, "allow_private") == 0;
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
					 errhint("Servers take url and allow_private; secrets go in the user mapping.") :
					 context == UserMappingRelationId ?
					 errhint("User mappings take signing_secret, signing_secret_previous and bearer_token.") :
					 errhint("txbox_http takes options only on servers and user mappings.")));

		if (strcmp(name, "url") == 0)
			http_check_url(defGetString(def));
		else if (strcmp(name, "allow_private") == 0)
			txbox_check_allow_private(def);
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

/* forget every connection, page in flight and remembered message */
static void
http_reset_connections(void)
{
	http_drop_pages(false);
	for (int i = 0; http_requests != NULL && i < HTTP_MAX_CONCURRENCY; i++)
	{
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
 * The sockets curl watches, and http_set, the wait event set of our latch
 * and these sockets.
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

/* CURLOPT_OPENSOCKETFUNCTION: refuse internal addresses, at connect time */
static curl_socket_t
http_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
	HttpRequest *req = clientp;
	curl_socket_t fd;

	if (!req->allow_private && txbox_address_refused(&addr->addr, req->refused, sizeof(req->refused)))
		return CURL_SOCKET_BAD;
	fd = socket(addr->family, addr->socktype, addr->protocol);
	if (fd != CURL_SOCKET_BAD)
	{
		/* an entry of this number is of a socket closed behind our back */
		HttpSocket *s = http_find_socket(fd, false);

		if (s != NULL)
			http_forget_socket(s);
		s = http_find_socket(fd, true);
		if (s != NULL)
			s->ours = true;
	}
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

/*----------
 * The multi handle, driven by our latch and the sockets curl watches.
 *----------
 */

static int
http_socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	HttpSocket *s = http_find_socket(fd, what != CURL_POLL_REMOVE);

	if (s == NULL)
		return what == CURL_POLL_REMOVE ? 0 : -1;
	if (what == CURL_POLL_REMOVE)
	{
		/* ours is closed through http_close_socket: kept, idle, till then */
		s->events = 0;
		s->keep = s->ours;
		if (!s->ours)
			http_forget_socket(s);
		return 0;
	}
	s->events = ((what & CURL_POLL_IN) ? WL_SOCKET_READABLE : 0) |
		((what & CURL_POLL_OUT) ? WL_SOCKET_WRITEABLE : 0);
	s->keep = false;
	if (s->pos < 0)
		http_set_stale();
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

static void
http_multi_init(int concurrency)
{
	if (http_multi == NULL)
	{
		http_curl_init();
		http_multi = curl_multi_init();
		if (http_multi == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		curl_multi_setopt(http_multi, CURLMOPT_SOCKETFUNCTION, http_socket_callback);
		curl_multi_setopt(http_multi, CURLMOPT_TIMERFUNCTION, http_timer_callback);
	}
	/* keep a connection per request in flight */
	curl_multi_setopt(http_multi, CURLMOPT_MAXCONNECTS, (long) concurrency);
}

/*
 * Wait for curl's sockets, its timer or our latch (at most a second), and
 * let curl act on what happened.  Interrupts are handled as in every wait:
 * SIGTERM ends the worker here, a reload is applied.  The wait event set
 * lives as long as curl's sockets do (kept-alive connections, HttpSocket):
 * only what a socket waits for changes from one request to the next.
 */
static void
http_wait(void)
{
	WaitEvent	events[HTTP_MAX_SOCKETS + 2];
	long		timeout = http_timer_ms < 0 ? 1000 : Min(http_timer_ms, 1000);
	int			n;
	int			running;

	if (http_set == NULL)
	{
		http_set = txbox_create_wait_event_set(http_nsockets + 2);
		AddWaitEventToSet(http_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(http_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (int i = 0; i < http_nsockets; i++)
			if (http_sockets[i].events != 0 || http_sockets[i].keep)
			{
				http_sockets[i].waiting = HTTP_SOCKET_WAIT(&http_sockets[i]);
				http_sockets[i].pos = AddWaitEventToSet(http_set, http_sockets[i].waiting,
														http_sockets[i].fd, NULL, NULL);
			}
	}
	for (int i = 0; i < http_nsockets; i++)
		if (http_sockets[i].pos >= 0 && http_sockets[i].waiting != HTTP_SOCKET_WAIT(&http_sockets[i]))
		{
			http_sockets[i].waiting = HTTP_SOCKET_WAIT(&http_sockets[i]);
			ModifyWaitEvent(http_set, http_sockets[i].pos, http_sockets[i].waiting, NULL);
		}
	n = WaitEventSetWait(http_set, timeout, events, lengthof(events),
						 txbox_wait_event(TXBOX_WAIT_TARGET_SOCKET));

	for (int i = 0; i < n; i++)
	{
		HttpSocket *s;

		if (events[i].events & WL_LATCH_SET)
			(void) txbox_worker_wait(0, txbox_wait_event(TXBOX_WAIT_TARGET_SOCKET));	/* reset, interrupts, reload */
		else if ((s = http_find_socket(events[i].fd, false)) != NULL && s->events == 0)
		{
			/* idle, readable: the server closed it (curl sees it at its next use) */
			s->keep = false;
			http_set_stale();
		}
		else
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
}

/*----------
 * A request.
 *----------
 */

static size_t
http_write_callback(char *data, size_t size, size_t nmemb, void *userp)
{
	HttpRequest *req = userp;
	size_t		n = Min(size * nmemb, (size_t) (HTTP_ANSWER_QUOTED - req->answer_len));

	memcpy(req->answer + req->answer_len, data, n);
	req->answer_len += n;
	return size * nmemb;
}

/* Append a header "name: value": value's bytes outside printable ASCII and '%' percent-encoded if encode, else the header is left out. */
static void
http_add_header(HttpRequest *req, const char *name, const char *value, int len, bool encode)
{
	StringInfo	h = &req->head;
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
	appendStringInfoChar(h, '\0');
	req->nheaders++;
}

/*
 * The request's headers as curl's list: nodes of our own (kept from one
 * request to the next) pointing into req->head, instead of a list of
 * curl_slist_append's, two mallocs a header.  curl only reads the list.
 */
static struct curl_slist *
http_header_list(HttpRequest *req)
{
	const char *line = req->head.data;

	if (req->nheaders > req->header_list_size)
	{
		req->header_list_size = Max(req->nheaders, 2 * req->header_list_size);
		if (req->header_list != NULL)
			pfree(req->header_list);
		req->header_list = MemoryContextAlloc(TopMemoryContext,
											  sizeof(struct curl_slist) * req->header_list_size);
	}
	for (int i = 0; i < req->nheaders; i++)
	{
		req->header_list[i].data = (char *) line;
		req->header_list[i].next = i + 1 < req->nheaders ? &req->header_list[i + 1] : NULL;
		line += strlen(line) + 1;
	}
	return req->header_list;
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
http_add_message_header(void *arg, const char *name, const char *value, int value_len)
{
	if (http_token(name) && !http_reserved_header(name))
		http_add_header((HttpRequest *) arg, name, value, value_len, false);
}

/* webhook-signature: "v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>" per secret */
static void
http_add_signature(HttpRequest *req, const HttpEndpoint *ep, const HttpMessage *m, const char *ts)
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
	http_add_header(req, "webhook-signature", sig, len, false);
}

static void
http_start(HttpRequest *req, const RelayConfig *cfg, HttpMessage *m)
{
	const HttpEndpoint *ep = http_endpoint;
	char		ts[32];
	CURL	   *e = req->easy;

	if (e == NULL)
	{
		e = curl_easy_init();
		if (e == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(e, CURLOPT_PROXY, "");
		/* and not even a look at no_proxy in the environment, per request */
		curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
		curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(e, CURLOPT_USERAGENT, "txbox");
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->error);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_write_callback);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
		curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, http_open_socket);
		curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, req);
		curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, http_close_socket);
		curl_easy_setopt(e, CURLOPT_PRIVATE, req);
		/* the endpoint's (a new endpoint makes new handles) */
		curl_easy_setopt(e, CURLOPT_URL, ep->url);
		req->easy = e;
	}
	req->busy = true;
	if (req->head.data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&req->head);
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(&req->head);
	req->nheaders = 0;
	req->error[0] = '\0';
	req->refused[0] = '\0';
	req->answer_len = 0;
	req->msg = m;
	req->allow_private = ep->allow_private;
	m->state = HTTP_IN_FLIGHT;
	m->page->in_flight++;
	http_in_flight++;

	snprintf(ts, sizeof(ts), "%lld", (long long) time(NULL));
	http_add_header(req, "Content-Type", m->binary ? "application/octet-stream" : "application/json", -1, false);
	http_add_header(req, "Expect", "", 0, false);
	http_add_header(req, "webhook-id", m->id, -1, false);
	http_add_header(req, "webhook-timestamp", ts, -1, false);
	if (ep->nsecrets > 0)
		http_add_signature(req, ep, m, ts);
	if (ep->bearer_token != NULL)
		http_add_header(req, "Authorization", psprintf("Bearer %s", ep->bearer_token), -1, false);
	http_add_header(req, "txbox-topic", m->topic, -1, false);
	if (m->key != NULL)
		http_add_header(req, "txbox-key", m->key, m->key_len, true);
	if (http_cloudevents)
	{
		http_add_header(req, "ce-specversion", "1.0", -1, false);
		http_add_header(req, "ce-id", m->id, -1, false);
		http_add_header(req, "ce-source", psprintf("/txbox/%s", cfg->source), -1, true);
		http_add_header(req, "ce-type", m->topic, -1, false);
		if (m->key != NULL)
			http_add_header(req, "ce-subject", m->key, m->key_len, true);
	}
	txbox_page_headers(m->headers, m->headers_len, http_add_message_header, req);

	curl_easy_setopt(e, CURLOPT_POSTFIELDS, m->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) m->body_len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, http_header_list(req));
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) cfg->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) http_timeout_ms);
	if (curl_multi_add_handle(http_multi, e) != CURLM_OK)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("could not start an HTTP request")));
}

static void
http_finish(HttpRequest *req)
{
	curl_multi_remove_handle(http_multi, req->easy);
	req->busy = false;
	req->msg->page->in_flight--;
	http_in_flight--;
}

/* the first bytes of the answer, printable, without the bearer token */
static char *
http_quote_answer(HttpRequest *req)
{
	char	   *s = pnstrdup(req->answer, req->answer_len);
	char	   *token = http_endpoint->bearer_token;

	for (char *p = s; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			*p = ' ';
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
	for (int r = 0; http_requests != NULL && r < HTTP_MAX_CONCURRENCY; r++)
		if (http_requests[r].busy)
			http_finish(&http_requests[r]);
	for (int i = 0; i < http_npages; i++)
	{
		for (int j = 0; remember && j < http_pages[i]->n; j++)
			if (http_pages[i]->msgs[j].state == HTTP_DONE)
				(void) http_remembered(&http_pages[i]->msgs[j], HASH_ENTER);
		MemoryContextDelete(http_pages[i]->cxt);
	}
	http_npages = 0;
}

/* Start ready messages while the window (concurrency) has room. */
static void
http_start_ready(const RelayConfig *cfg)
{
	int			r = 0;

	for (int i = 0; i < http_npages; i++)
	{
		HttpPage   *p = http_pages[i];

		while (p->ready != NULL && http_in_flight < http_concurrency)
		{
			HttpMessage *m = p->ready;

			p->ready = m->next_ready;
			if (p->ready == NULL)
				p->ready_last = NULL;
			while (http_requests[r].busy)
				r++;
			http_start(&http_requests[r], cfg, m);
		}
		/* a rejected page will be sent again: nothing more after it */
		if (p->rejection != NULL)
			break;
	}
}

/* What stops every page in flight (a transient failure or worse). */
typedef struct HttpFailure
{
	char	   *transient;		/* the first transient failure, or NULL */
	bool		gone;			/* 410 */
	char	   *refused;		/* a refused address, or NULL */
} HttpFailure;

/* A request was answered (or failed): its message's state, and what it means. */
static void
http_answered(HttpRequest *req, CURLcode result, HttpFailure *f)
{
	HttpMessage *m = req->msg;
	long		status = 0;
	curl_off_t	retry_after = 0;

	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(req->easy, CURLINFO_RETRY_AFTER, &retry_after);
	m->state = HTTP_PENDING;
	if (result != CURLE_OK)
	{
		if (req->refused[0] != '\0')
			f->refused = pstrdup(req->refused);
		else if (f->transient == NULL)
			f->transient = psprintf("could not deliver message %s: %s", m->id,
									req->error[0] ? req->error : curl_easy_strerror(result));
	}
	else if (status >= 200 && status < 300)
	{
		m->state = HTTP_DONE;
		m->page->delivered++;
		/* its key's next message may go */
		if (m->next_same_key != NULL)
			http_ready(m->next_same_key);
	}
	else if (status == 410)
		f->gone = true;
	else if (status == 408 || status == 429 || status >= 500)
	{
		if (f->transient == NULL)
			f->transient = psprintf("HTTP %ld for message %s%s: %s", status, m->id,
									retry_after > 0 ? psprintf(" (Retry-After: %lld s)", (long long) retry_after) : "",
									http_quote_answer(req));
		if (retry_after > 0)
			http_not_before = Max(http_not_before,
								  TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															  Min(retry_after, HTTP_RETRY_AFTER_MAX) * 1000));
	}
	else
	{
		if (m->page->rejection == NULL)
			m->page->rejection = MemoryContextStrdup(m->page->cxt,
													 psprintf("HTTP %ld for message %s: %s", status, m->id,
															  http_quote_answer(req)));
		m->state = HTTP_REJECTED;
	}
	http_finish(req);
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
	http_concurrency = txbox_option_int(cfg->options, "http", "concurrency");
	http_timeout_ms = txbox_option_ms(cfg->options, "http", "timeout");
	http_cloudevents = strcmp(txbox_option_text(cfg->options, "http", "format"), "cloudevents") == 0;
	http_multi_init(http_concurrency);
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
	HttpFailure f = {0};
	TimestampTz drop_check = GetCurrentTimestamp();
	bool		dropped = false;

	*duplicates = 0;
	*error = NULL;
	for (;;)
	{
		CURLMsg    *cm;
		int			left;

		http_start_ready(cfg);
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
		while ((cm = curl_multi_info_read(http_multi, &left)) != NULL)
		{
			HttpRequest *req;

			if (cm->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(cm->easy_handle, CURLINFO_PRIVATE, (char **) &req);
			http_answered(req, cm->data.result, &f);
		}
		if (f.transient != NULL || f.gone || f.refused != NULL)
			break;
	}

	if (f.refused != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("refused to connect to %s (the url of server \"%s\" leads into the database server's network)",
						f.refused, cfg->server),
				 errhint(TXBOX_PRIVATE_HINT, cfg->server)));
	if (f.gone)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the endpoint of server \"%s\" answered 410 Gone: it no longer takes these webhooks",
						cfg->server),
				 errhint("Point the server at a live endpoint (ALTER SERVER ... OPTIONS (SET url '...')) or drop the relay; it retries with backoff meanwhile.")));
	if (dropped || f.transient != NULL || oldest->rejection != NULL)
	{
		*error = dropped ? pstrdup("the database is being dropped") :
			pstrdup(f.transient != NULL ? f.transient : oldest->rejection);
		http_drop_pages(true);
		return f.transient == NULL && !dropped ? DELIVERY_REJECTED : DELIVERY_RETRY;
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
	.disconnect = http_reset_connections,
};
