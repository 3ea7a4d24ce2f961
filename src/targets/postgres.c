/*-------------------------------------------------------------------------
 * targets/postgres.c
 *		The postgres target: deliver a relay's messages into another
 *		PostgreSQL database's txbox.inbox, over libpq.
 *
 * Delivers outside the relay's transaction (target.h): the relay reads a
 * page into memory, connects, sends it, then saves its position.
 *
 * The endpoint is a FOREIGN SERVER of txbox_fdw and the credentials the
 * relay owner's USER MAPPING, as postgres_fdw keeps them (fdw.c validates
 * the options).  A relay owned by a non-superuser must authenticate with
 * the non-empty password of its mapping, unless a superuser set
 * password_required 'false' on the mapping, exactly as postgres_fdw
 * requires: an empty or missing one would let libpq take a password from
 * the server account's ~/.pgpass, service file or environment.
 *
 * The remote session is pinned in the startup packet (no round trip, and
 * it wins over the remote role's ALTER ROLE ... SET): search_path,
 * client_encoding (ours), TimeZone, DateStyle, IntervalStyle and
 * extra_float_digits as postgres_fdw sets them, and a durable, READ
 * COMMITTED receive.
 *
 * libpq is used without ever blocking: PQconnectStartParams/PQconnectPoll
 * and PQsendQueryParams/PQconsumeInput, each wait on the socket with a
 * deadline (txbox_target_wait_socket), so SIGTERM, pg_terminate_backend
 * and postmaster death are honoured at once even when the target hangs.  TCP keepalives are on.  A
 * page of messages is one statement, SELECT txbox._inbox_receive(...) with
 * one binary array per column, run as its own remote transaction: the
 * remote inbox drops message ids it already has, so repeating a page after
 * an unknown outcome (timeout, crash) is harmless.
 *
 * Error texts returned to the relay (and shown in txbox.relay_status) come
 * from libpq's messages and the remote server's; they never include the
 * connection options, so no password can leak into them.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "libpq-fe.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "target.h"
#include "txbox.h"

static PGconn *remote_conn = NULL;
static char *remote_conn_key = NULL;	/* server and options remote_conn was made with */
static bool remote_conn_stale = false;	/* a server or user mapping changed since */
static bool remote_callbacks_registered = false;

static const char *remote_receive_sql =
"SELECT txbox._inbox_receive($1, $2::pg_catalog.uuid[], $3::pg_catalog.text[],"
" $4::pg_catalog.text[], $5::pg_catalog.jsonb[], $6::pg_catalog.jsonb[],"
" $7::pg_catalog.bytea[], $8::pg_catalog.timestamptz[])";

/* prepared on remote_conn (as remote_receive_name), once per connection */
static bool remote_prepared = false;
static const char *remote_receive_name = "txbox_receive";

static void
remote_disconnect(void)
{
	if (remote_conn != NULL)
		PQfinish(remote_conn);
	remote_conn = NULL;
	remote_prepared = false;
	if (remote_conn_key != NULL)
		pfree(remote_conn_key);
	remote_conn_key = NULL;
}

/*
 * ALTER SERVER / ALTER USER MAPPING (or their drop) may change where or as
 * whom we connect: reconnect before the next delivery, as postgres_fdw does.
 */
static void
remote_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	remote_conn_stale = true;
}

/* *error = a copy of libpq's message, one line, prefixed with what failed */
static char *
remote_error(const char *what, const char *msg)
{
	char	   *s = psprintf("%s: %s", what, msg ? msg : "unknown error");
	int			len = strlen(s);

	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' '))
		s[--len] = '\0';
	for (char *p = s; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return s;
}

/* Look up the server and the owner's user mapping: libpq keywords/values. */
static void
remote_conn_params(const RelayConfig *cfg, const char ***keywords, const char ***values,
			   bool *has_password, bool *password_required)
{
	ForeignServer *server = GetForeignServerByName(cfg->server, false);
	UserMapping *um = GetUserMapping(cfg->owner, server->serverid);
	int			n = list_length(server->options) + list_length(um->options) + 10;
	const char **kw = palloc0(sizeof(char *) * n);
	const char **val = palloc0(sizeof(char *) * n);
	int			i = 0;
	ListCell   *lc;

	*has_password = false;
	*password_required = true;
	foreach(lc, server->options)
	{
		DefElem    *d = lfirst(lc);

		kw[i] = d->defname;
		val[i++] = defGetString(d);
	}
	foreach(lc, um->options)
	{
		DefElem    *d = lfirst(lc);

		if (strcmp(d->defname, "password_required") == 0)
		{
			*password_required = defGetBoolean(d);
			continue;
		}
		if (strcmp(d->defname, "password") == 0)
			*has_password = defGetString(d)[0] != '\0';
		kw[i] = d->defname;
		val[i++] = defGetString(d);
	}
	kw[i] = "fallback_application_name";
	val[i++] = psprintf("txbox relay %s", cfg->name);
	kw[i] = "keepalives";
	val[i++] = "1";
	kw[i] = "keepalives_idle";
	val[i++] = "10";
	kw[i] = "keepalives_interval";
	val[i++] = "5";
	kw[i] = "keepalives_count";
	val[i++] = "3";
	kw[i] = "client_encoding";
	val[i++] = GetDatabaseEncodingName();
	kw[i] = "options";
	val[i++] = psprintf("-c statement_timeout=%d -c search_path=pg_catalog"
						" -c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres"
						" -c extra_float_digits=3 -c synchronous_commit=on"
						" -c default_transaction_isolation=read\\ committed",
						cfg->statement_timeout_ms);
	kw[i] = NULL;
	val[i] = NULL;
	*keywords = kw;
	*values = val;
}

/*
 * Connect without blocking.  Returns NULL when connected, else the reason.
 * Configuration errors (no such server, no user mapping, a non-superuser
 * without a password) are raised as ERRORs: the relay records them.
 */
static char *
remote_connect(const RelayConfig *cfg)
{
	const char **keywords;
	const char **values;
	bool		has_password;
	bool		password_required;
	bool		superuser = superuser_arg(cfg->owner);
	TimestampTz deadline;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;

	char	   *key = psprintf("%s/%d", cfg->server, cfg->statement_timeout_ms);

	if (!remote_callbacks_registered)
	{
		CacheRegisterSyscacheCallback(FOREIGNSERVEROID, remote_inval_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(USERMAPPINGOID, remote_inval_callback, (Datum) 0);
		remote_callbacks_registered = true;
	}
	/* reuse the connection unless the server, its options or ours changed */
	if (remote_conn != NULL && !remote_conn_stale && remote_conn_key != NULL &&
		strcmp(remote_conn_key, key) == 0 && PQstatus(remote_conn) == CONNECTION_OK)
		return NULL;
	remote_disconnect();
	remote_conn_stale = false;

	remote_conn_params(cfg, &keywords, &values, &has_password, &password_required);
	if (!superuser && password_required && !has_password)
		ereport(ERROR,
				(errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
				 errmsg("password is required"),
				 errdetail("Relay \"%s\" belongs to a non-superuser, whose user mapping for server \"%s\" must contain a non-empty password.",
						   cfg->name, cfg->server),
				 errhint("Add the option password to the user mapping (ALTER USER MAPPING ... OPTIONS (ADD password '...')).")));

	remote_conn = PQconnectStartParams(keywords, values, false);
	if (remote_conn == NULL)
		return pstrdup("could not connect: out of memory");
	if (PQstatus(remote_conn) == CONNECTION_BAD)
	{
		char	   *e = remote_error("could not connect to the target", PQerrorMessage(remote_conn));

		remote_disconnect();
		return e;
	}

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), cfg->connect_timeout_ms);
	for (;;)
	{
		if (st == PGRES_POLLING_OK)
			break;
		if (st == PGRES_POLLING_FAILED)
		{
			char	   *e = remote_error("could not connect to the target", PQerrorMessage(remote_conn));

			remote_disconnect();
			return e;
		}
		if (!txbox_target_wait_socket(PQsocket(remote_conn), st == PGRES_POLLING_WRITING, deadline))
		{
			remote_disconnect();
			return psprintf("could not connect to the target: timed out after %d ms",
							cfg->connect_timeout_ms);
		}
		st = PQconnectPoll(remote_conn);
	}

	if (!superuser && password_required && !PQconnectionUsedPassword(remote_conn))
	{
		remote_disconnect();
		ereport(ERROR,
				(errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
				 errmsg("password is required"),
				 errdetail("Non-superuser relay \"%s\" cannot connect if the target server does not request a password.",
						   cfg->name),
				 errhint("Target server's authentication method must be changed, or a superuser may set password_required 'false' in the user mapping.")));
	}
	if (PQsetnonblocking(remote_conn, 1) != 0)
	{
		char	   *e = remote_error("could not configure the connection", PQerrorMessage(remote_conn));

		remote_disconnect();
		return e;
	}
	remote_conn_key = MemoryContextStrdup(TopMemoryContext, key);
	return NULL;
}

/*
 * postgres_connect -- the connect callback: reuse the connection or make a
 * new one, outside any transaction.
 */
static char *
postgres_connect(const RelayConfig *cfg)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *error;

	/* catalog lookups for the connection need a transaction */
	StartTransactionCommand();
	MemoryContextSwitchTo(caller);
	error = remote_connect(cfg);
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	return error;
}

/*
 * Wait for what was sent on remote_conn (by PQsend*) until deadline: flush
 * it, then collect every result until NULL, keeping the first failure.
 * Returns DELIVERY_OK, with *count = the int4 of a one-row result (if any),
 * else what the failure means for the page and *error why.
 */
static DeliveryResult
remote_finish(const RelayConfig *cfg, TimestampTz deadline, int *count, char **error)
{
	PGresult   *res;
	DeliveryResult result = DELIVERY_OK;
	int			flush;

	while ((flush = PQflush(remote_conn)) == 1)
	{
		if (!txbox_target_wait_socket(PQsocket(remote_conn), true, deadline))
			break;
	}
	if (flush != 0)
	{
		*error = flush < 0 ? remote_error("could not send to the target", PQerrorMessage(remote_conn))
			: psprintf("timed out after %d ms sending to the target", cfg->statement_timeout_ms + 5000);
		remote_disconnect();
		return flush < 0 ? DELIVERY_RETRY : DELIVERY_TIMEOUT;
	}

	for (;;)
	{
		while (PQisBusy(remote_conn))
		{
			if (!txbox_target_wait_socket(PQsocket(remote_conn), false, deadline) || !PQconsumeInput(remote_conn))
			{
				bool		lost = PQstatus(remote_conn) == CONNECTION_BAD || !PQconsumeInput(remote_conn);

				if (*error == NULL)
					*error = lost
						? remote_error("lost the connection to the target", PQerrorMessage(remote_conn))
						: psprintf("timed out after %d ms waiting for the target",
								   cfg->statement_timeout_ms + 5000);
				remote_disconnect();
				return lost ? DELIVERY_RETRY : DELIVERY_TIMEOUT;
			}
		}
		res = PQgetResult(remote_conn);
		if (res == NULL)
			break;
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
			*count = atoi(PQgetvalue(res, 0, 0));
		else if (PQresultStatus(res) != PGRES_COMMAND_OK && *error == NULL)
		{
			const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);

			*error = remote_error(psprintf("the target refused the messages (SQLSTATE %s)",
									   sqlstate ? sqlstate : "unknown"),
							  PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
			result = txbox_delivery_result(sqlstate);
		}
		PQclear(res);
	}
	if (PQstatus(remote_conn) == CONNECTION_BAD)
		remote_disconnect();
	return result;
}

/*
 * postgres_deliver -- the deliver callback: store page in the target's
 * txbox.inbox, over the connection postgres_connect made.
 *
 * Called outside any transaction.  Returns DELIVERY_OK with *duplicates =
 * the number of messages the target already had, else what the failure
 * means for the page (DELIVERY_REJECTED, DELIVERY_TIMEOUT: the target's
 * statement timeout or our deadline, DELIVERY_RETRY); *error says why.
 * The receive is prepared once per connection: the target parses and
 * plans it once, not for every page.
 */
static DeliveryResult
postgres_deliver(const RelayConfig *cfg, const RelayPage *page, int *duplicates,
				 char **error)
{
	const char *values[RELAY_PAGE_COLUMNS + 1];
	int			lengths[RELAY_PAGE_COLUMNS + 1];
	int			formats[RELAY_PAGE_COLUMNS + 1];
	Oid			types[RELAY_PAGE_COLUMNS + 1] = {TEXTOID, UUIDARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID, BYTEAARRAYOID, TIMESTAMPTZARRAYOID};
	TimestampTz deadline;
	DeliveryResult result;
	int			stored = page->count;

	*error = NULL;
	values[0] = cfg->source;
	lengths[0] = 0;
	formats[0] = 0;
	for (int c = 0; c < RELAY_PAGE_COLUMNS; c++)
	{
		values[c + 1] = VARDATA_ANY(page->columns[c]);
		lengths[c + 1] = VARSIZE_ANY_EXHDR(page->columns[c]);
		formats[c + 1] = 1;
	}

	/* the statement may take statement_timeout there; allow a little more */
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   cfg->statement_timeout_ms + 5000);
	if (!remote_prepared)
	{
		if (!PQsendPrepare(remote_conn, remote_receive_name, remote_receive_sql,
						   RELAY_PAGE_COLUMNS + 1, types))
		{
			*error = remote_error("could not send to the target", PQerrorMessage(remote_conn));
			remote_disconnect();
			return DELIVERY_RETRY;
		}
		result = remote_finish(cfg, deadline, &stored, error);
		if (result != DELIVERY_OK)
			return result;
		remote_prepared = true;
	}
	if (!PQsendQueryPrepared(remote_conn, remote_receive_name, RELAY_PAGE_COLUMNS + 1,
							 values, lengths, formats, 0))
	{
		*error = remote_error("could not send to the target", PQerrorMessage(remote_conn));
		remote_disconnect();
		return DELIVERY_RETRY;
	}
	result = remote_finish(cfg, deadline, &stored, error);
	*duplicates = page->count - stored;
	return result;
}

const TargetCallbacks txbox_postgres_target = {
	.name = "postgres",
	.wrapper = "txbox_fdw",
	.in_relay_xact = false,
	.connect = postgres_connect,
	.deliver = postgres_deliver,
	.disconnect = remote_disconnect,
};
