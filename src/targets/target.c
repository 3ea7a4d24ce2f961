/*-------------------------------------------------------------------------
 * targets/target.c
 *		The table of targets, and what every target shares: the meaning of
 *		an error's SQLSTATE for a page, a wait on a socket that honours
 *		interrupts, reading a page's messages, and the SSRF rule of the
 *		targets that connect to an address a server names (http, kafka):
 *		internal addresses only with the superuser-only server option
 *		allow_private.
 *
 * Adding a target: a file in targets/ that defines its TargetCallbacks, and
 * its line in the table below (plus its options' rows in src/options.c, and
 * its name and further option checks in the install script's
 * txbox._create_relay and txbox._relay_check_options).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "commands/defrem.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/pg_bswap.h"
#include "storage/latch.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "target.h"

static const TargetCallbacks *const txbox_targets[] = {
	&txbox_postgres_target,
	&txbox_notify_target,
	&txbox_http_target,
	&txbox_kafka_target,
};

/*
 * txbox_target_lookup -- the callbacks of the target called name.  The
 * install script admits only known names, so an unknown one is an internal
 * error (a library older than the relay's row).
 */
const TargetCallbacks *
txbox_target_lookup(const char *name)
{
	for (int i = 0; i < lengthof(txbox_targets); i++)
		if (strcmp(txbox_targets[i]->name, name) == 0)
			return txbox_targets[i];
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown relay target \"%s\"", name),
			 errhint("The txbox library loaded does not know this target: install the version the relay was created with.")));
	return NULL;				/* keep the compiler quiet */
}

/*
 * txbox_delivery_result -- what a target's error with sqlstate (five
 * characters, NULL if unknown) means for the page of messages that raised
 * it, remotely or here: a data error (class 22 or 23, or 54000: too large)
 * rejects its messages, a statement timeout or cancel (57014) asks for a
 * smaller page, anything else is retried as it is.
 */
DeliveryResult
txbox_delivery_result(const char *sqlstate)
{
	if (sqlstate == NULL)
		return DELIVERY_RETRY;
	if (strncmp(sqlstate, "22", 2) == 0 || strncmp(sqlstate, "23", 2) == 0 ||
		strcmp(sqlstate, "54000") == 0)
		return DELIVERY_REJECTED;
	if (strcmp(sqlstate, "57014") == 0)
		return DELIVERY_TIMEOUT;
	return DELIVERY_RETRY;
}

/*
 * txbox_target_wait_socket -- wait until sock is ready for reading or
 * writing, or the deadline.  Returns false on timeout.  Our latch (a
 * commit, a reload) does not end the wait; interrupts (SIGTERM) do, through
 * CHECK_FOR_INTERRUPTS, and postmaster death ends the process.
 */
bool
txbox_target_wait_socket(pgsocket sock, bool for_write, TimestampTz deadline)
{
	for (;;)
	{
		long		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		int			rc;

		if (timeout <= 0)
			return false;
		rc = WaitLatchOrSocket(MyLatch,
							   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH |
							   (for_write ? WL_SOCKET_WRITEABLE : WL_SOCKET_READABLE),
							   sock, timeout, txbox_wait_event(TXBOX_WAIT_TARGET_SOCKET));
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (rc & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
			return true;
	}
}

/* a big-endian int32 at *p, which moves past it */
static int32
page_read32(const char **p)
{
	uint32		v;

	memcpy(&v, *p, 4);
	*p += 4;
	return (int32) pg_ntoh32(v);
}

/*
 * txbox_page_column -- decode column c of page (the binary send format of
 * a one-dimensional array: ndim, flags, element type, then per dimension
 * its size and lower bound, then each element as a length and its bytes)
 * into col, palloc'd; the elements point into the page.
 */
void
txbox_page_column(const RelayPage *page, int c, PageColumn *col)
{
	const char *p = VARDATA_ANY(page->columns[c]);
	const char *end = p + VARSIZE_ANY_EXHDR(page->columns[c]);
	int32		ndim = page_read32(&p);

	col->data = palloc0(sizeof(char *) * Max(page->count, 1));
	col->len = palloc(sizeof(int) * Max(page->count, 1));
	p += 8 + 8 * ndim;			/* flags, element type, dimensions */
	for (int i = 0; i < page->count; i++)
	{
		if (p + 4 > end)
			elog(ERROR, "txbox relay: a page's column %d is short", c);
		col->len[i] = page_read32(&p);
		if (col->len[i] >= 0)
		{
			col->data[i] = p;
			p += col->len[i];
		}
	}
}

/* txbox_page_uuid -- the text form of a uuid's 16 bytes, into out (37 bytes) */
void
txbox_page_uuid(const char *data, char *out)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *) data;

	for (int i = 0; i < 16; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*out++ = '-';
		*out++ = hex[u[i] >> 4];
		*out++ = hex[u[i] & 15];
	}
	*out = '\0';
}

/* a quoted string without escapes at *p (moved past it): its text, or NULL */
static const char *
page_plain_string(const char **p, const char *end, int *len)
{
	const char *close;

	if (*p >= end || **p != '"' || (close = memchr(*p + 1, '"', end - *p - 1)) == NULL)
		return NULL;
	*len = close - *p - 1;
	*p = close + 1;
	return close - *len;
}

/* whether the next bytes at *p are token (moved past it) */
static bool
page_token(const char **p, const char *end, const char *token)
{
	size_t		n = strlen(token);

	if (end - *p < (ptrdiff_t) n || memcmp(*p, token, n) != 0)
		return false;
	*p += n;
	return true;
}

/*
 * Call fn for each header of a message, given its element of the headers
 * column (jsonb's send format: a version byte, then the JSON text of a flat
 * object of strings, as txbox.publish checks), if jsonb wrote it {"name":
 * "value", ...} with nothing escaped: checked whole before fn is called.
 * Returns false, fn never called, when it is not in that form.
 */
static bool
page_headers_plain(const char *data, int len, PageHeaderFn fn, void *arg)
{
	const char *end = data + len;

	if (len <= 1)
		return true;
	if (memchr(data + 1, '\\', len - 1) != NULL)
		return false;
	for (int pass = 0; pass < 2; pass++)
	{
		const char *p = data + 1;
		bool		more;

		if (!page_token(&p, end, "{"))
			return false;
		for (more = p < end && *p != '}'; more; more = page_token(&p, end, ", "))
		{
			int			name_len,
						value_len;
			const char *n = page_plain_string(&p, end, &name_len);
			const char *v = n && page_token(&p, end, ": ") ?
				page_plain_string(&p, end, &value_len) : NULL;

			if (v == NULL)
				return false;
			if (pass == 1)
				fn(arg, n, name_len, v, value_len);
		}
		if (more || !page_token(&p, end, "}") || p != end)
			return false;
	}
	return true;
}

/*
 * txbox_page_headers -- call fn for each header of a message's headers
 * element: read as page_headers_plain does, else parsed as JSON.
 */
void
txbox_page_headers(const char *data, int len, PageHeaderFn fn, void *arg)
{
	Jsonb	   *jb;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbValue	name = {0};

	if (page_headers_plain(data, len, fn, arg))
		return;
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pnstrdup(data + 1, len - 1))));
	if (!JB_ROOT_IS_OBJECT(jb))
		return;
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			name = v;
		else if (tok == WJB_VALUE && v.type == jbvString)
			fn(arg, name.val.string.val, name.val.string.len, v.val.string.val, v.val.string.len);
	}
}

/*----------
 * SSRF: the addresses a target may not connect to without allow_private.
 *----------
 */

/* what kind of internal address a (host order) IPv4 address is, or NULL */
static const char *
txbox_internal_ipv4(uint32 a)
{
	if ((a >> 24) == 0)
		return "\"this network\" (0.0.0.0/8)";
	if ((a >> 24) == 127)
		return "loopback";
	if ((a >> 24) == 10 || (a >> 20) == 0xac1 || (a >> 16) == 0xc0a8)
		return "private (RFC 1918)";
	if ((a >> 16) == 0xa9fe)
		return "link-local (169.254.0.0/16, cloud metadata)";
	if ((a >> 22) == (0x64400000 >> 22))
		return "shared (CGNAT, 100.64.0.0/10)";
	if ((a >> 28) == 0xe)
		return "multicast";
	if ((a >> 28) == 0xf)
		return "reserved (240.0.0.0/4)";
	return NULL;
}

static const char *
txbox_internal_address(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return txbox_internal_ipv4(pg_ntoh32(((const struct sockaddr_in *) sa)->sin_addr.s_addr));
	if (sa->sa_family == AF_INET6)
	{
		const uint8 *b = ((const struct sockaddr_in6 *) sa)->sin6_addr.s6_addr;
		static const uint8 zeros[10] = {0};
		static const uint8 nat64[12] = {0, 0x64, 0xff, 0x9b};
		uint32		v4;

		memcpy(&v4, b + 12, 4);
		if (IN6_IS_ADDR_LOOPBACK((const struct in6_addr *) b))
			return "loopback";
		/* ::/96 (:: and IPv4-compatible), ::ffff:0:0/96, 64:ff9b::/96 */
		if ((memcmp(b, zeros, 10) == 0 && ((b[10] == 0 && b[11] == 0) || (b[10] == 0xff && b[11] == 0xff))) ||
			memcmp(b, nat64, 12) == 0)
			return txbox_internal_ipv4(pg_ntoh32(v4));
		if ((b[0] & 0xfe) == 0xfc)
			return "unique local (fc00::/7)";
		if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
			return "link-local (fe80::/10)";
		if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
			return "site-local (fec0::/10)";
		if (b[0] == 0xff)
			return "multicast";
		return NULL;
	}
	return "non-IP";
}

/*
 * txbox_address_refused -- whether sa is an internal address, refused
 * without allow_private; if so, why in why ("10.1.2.3, a private (RFC
 * 1918) address").  No palloc, no ereport: librdkafka calls it from its
 * own threads.
 */
bool
txbox_address_refused(const struct sockaddr *sa, char *why, size_t len)
{
	const char *internal = txbox_internal_address(sa);
	char		host[INET6_ADDRSTRLEN] = "?";

	if (internal == NULL)
		return false;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, host, sizeof(host));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, host, sizeof(host));
	snprintf(why, len, "%s, a %s address", host, internal);
	return true;
}

/* txbox_check_allow_private -- a validator's check of the option allow_private */
void
txbox_check_allow_private(DefElem *def)
{
	(void) defGetBoolean(def);
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("option \"allow_private\" is superuser-only"),
				 errdetail("With it, a relay may reach addresses inside the database server's network (loopback, private, link-local, cloud metadata)."),
				 errhint("Servers with the option allow_private may only be created or modified by a superuser.")));
}
