/*-------------------------------------------------------------------------
 * fdw.c
 *		txbox_fdw: the foreign-data wrapper whose servers and user mappings
 *		hold the endpoints and credentials of postgres relay targets.
 *
 * Only the validator: txbox_fdw has no handler, so it can name servers but
 * never back a foreign table.  Options are libpq's, split as postgres_fdw
 * splits them: the endpoint on the server (host, port, dbname, sslmode,
 * ...), the credentials on the user mapping (user, password, sslcert,
 * sslkey, sslpassword), plus password_required on the user mapping, which
 * only a superuser may set to false.  Options naming a file on this server
 * are superuser-only wherever they appear, stricter than postgres_fdw: the
 * relay reads them with the server account's rights.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/reloptions.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "txbox.h"

/* libpq options that are credentials: user mapping only */
static bool
fdw_is_credential(const char *keyword)
{
	return strcmp(keyword, "user") == 0 || strcmp(keyword, "password") == 0 ||
		strcmp(keyword, "sslcert") == 0 || strcmp(keyword, "sslkey") == 0 ||
		strcmp(keyword, "sslpassword") == 0;
}

/*
 * libpq options naming a file on this server (or a section of its service
 * file, which can name the others): client keys and certificates, the
 * password file.  Whoever sets one borrows what the server account can
 * read, so only a superuser may.
 */
static bool
fdw_is_server_file(const char *keyword)
{
	return strcmp(keyword, "passfile") == 0 || strcmp(keyword, "service") == 0 ||
		strcmp(keyword, "sslcert") == 0 || strcmp(keyword, "sslkey") == 0 ||
		strcmp(keyword, "sslrootcert") == 0 || strcmp(keyword, "sslcrl") == 0 ||
		strcmp(keyword, "sslcrldir") == 0;
}

/* libpq options txbox sets itself, or that make no sense for a relay */
static bool
fdw_is_reserved(const char *keyword)
{
	return strcmp(keyword, "replication") == 0 ||
		strcmp(keyword, "fallback_application_name") == 0 ||
		strcmp(keyword, "client_encoding") == 0 ||
		strcmp(keyword, "options") == 0 ||
		strncmp(keyword, "keepalives", 10) == 0;
}

static bool
fdw_is_valid(const char *keyword, Oid context, PQconninfoOption *opts)
{
	if (context == UserMappingRelationId && strcmp(keyword, "password_required") == 0)
		return true;
	if (context != ForeignServerRelationId && context != UserMappingRelationId)
		return false;
	if (fdw_is_reserved(keyword))
		return false;
	if ((context == UserMappingRelationId) != fdw_is_credential(keyword))
		return false;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (strcmp(o->keyword, keyword) == 0 && strchr(o->dispchar, 'D') == NULL)
			return true;
	return false;
}

PG_FUNCTION_INFO_V1(txbox_fdw_validator);
Datum
txbox_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			context = PG_GETARG_OID(1);
	PQconninfoOption *opts = PQconndefaults();
	ListCell   *lc;

	if (opts == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not get libpq's default connection options.")));

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (!fdw_is_valid(def->defname, context, opts))
		{
			const char *where = context == ForeignServerRelationId ? "a txbox_fdw server" :
				context == UserMappingRelationId ? "a txbox_fdw user mapping" :
				"this object";

			PQconninfoFree(opts);
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\" for %s", def->defname, where),
					 context == ForeignServerRelationId ?
					 errhint("Servers take libpq connection options such as host, port, dbname, sslmode; credentials go in the user mapping.") :
					 context == UserMappingRelationId ?
					 errhint("User mappings take user, password, sslcert, sslkey, sslpassword and password_required.") :
					 errhint("txbox_fdw takes options only on servers and user mappings.")));
		}
		if (fdw_is_server_file(def->defname) && !superuser())
		{
			PQconninfoFree(opts);
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("option \"%s\" is superuser-only", def->defname),
					 errdetail("With it, a relay would read a file on the database server with the server account's rights."),
					 errhint("Servers and user mappings with the options passfile, service, sslcert, sslkey, sslrootcert, sslcrl or sslcrldir may only be created or modified by a superuser.")));
		}
		if (strcmp(def->defname, "password_required") == 0)
		{
			bool		pw_required = defGetBoolean(def);

			if (!pw_required && !superuser())
			{
				PQconninfoFree(opts);
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("password_required=false is superuser-only"),
						 errhint("User mappings with the password_required option set to false may only be created or modified by the superuser.")));
			}
		}
	}
	PQconninfoFree(opts);
	PG_RETURN_VOID();
}
