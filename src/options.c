/*-------------------------------------------------------------------------
 * options.c
 *		The options of relays and handlers, in one table: their names, the
 *		0.1.0 spelling still accepted for a few (alias), kinds, ranges and
 *		defaults.
 *
 * The table is read by the validators (txbox._check_options, in SQL,
 * through txbox.options()), by the workers (txbox_option_int and
 * txbox_option_ms, txbox_option_text, txbox_option_bool on a relay's or handler's stored
 * options), and users
 * read it with SELECT * FROM txbox.options() (README "Options").  Workers
 * read it here, not through SQL, so that they run unchanged in a database
 * whose txbox is still at an earlier version.
 *
 * A relay's or handler's stored options are a JSON object checked by
 * txbox._check_options, which stores every option under its name (not
 * its alias).  Options stored by 0.1.0 may still carry an alias: the
 * workers read an option by its name, then by its alias, then take its
 * default.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "txbox.h"

typedef enum TxboxOptionKind
{
	TXBOX_OPTION_INTEGER,		/* a JSON number, an integer from min to max */
	TXBOX_OPTION_INTERVAL,		/* a JSON string, an interval over 0, at most a day */
	TXBOX_OPTION_TEXT,			/* a JSON string, checked by its owner's validator */
	TXBOX_OPTION_BOOLEAN,		/* true or false, checked by its owner's validator */
	TXBOX_OPTION_JSON			/* any JSON, checked by its owner's validator */
} TxboxOptionKind;

typedef struct TxboxOption
{
	const char *applies_to;		/* "relay" (every relay), a relay target, "handler" */
	const char *name;
	const char *alias;			/* the 0.1.0 spelling still accepted, or NULL */
	TxboxOptionKind kind;
	int			min;			/* integers */
	int			max;
	const char *default_value;	/* NULL: none; "txbox.*": that setting */
} TxboxOption;

static const TxboxOption txbox_options[] = {
	{"relay", "from", NULL, TXBOX_OPTION_TEXT, 0, 0, "now"},
	{"relay", "batch_size", NULL, TXBOX_OPTION_INTEGER, 1, 100000, "txbox.batch_size"},
	{"relay", "max_attempts", NULL, TXBOX_OPTION_INTEGER, 1, 1000000, "10"},
	{"relay", "backoff_max", NULL, TXBOX_OPTION_INTERVAL, 0, 0, "30s"},
	{"relay", "connect_timeout", NULL, TXBOX_OPTION_INTERVAL, 0, 0, "10s"},
	{"relay", "statement_timeout", NULL, TXBOX_OPTION_INTERVAL, 0, 0, "60s"},
	{"postgres", "server", NULL, TXBOX_OPTION_TEXT, 0, 0, NULL},
	{"notify", "channel", NULL, TXBOX_OPTION_TEXT, 0, 0, NULL},
	{"http", "server", NULL, TXBOX_OPTION_TEXT, 0, 0, NULL},
	{"http", "concurrency", NULL, TXBOX_OPTION_INTEGER, 1, 256, "8"},
	{"http", "timeout", NULL, TXBOX_OPTION_INTERVAL, 0, 0, "30s"},
	{"http", "format", NULL, TXBOX_OPTION_TEXT, 0, 0, "webhooks"},
	{"kafka", "server", NULL, TXBOX_OPTION_TEXT, 0, 0, NULL},
	{"kafka", "topic_prefix", NULL, TXBOX_OPTION_TEXT, 0, 0, ""},
	{"kafka", "topic_map", NULL, TXBOX_OPTION_JSON, 0, 0, NULL},
	{"kafka", "exactly_once", NULL, TXBOX_OPTION_BOOLEAN, 0, 0, "false"},
	{"kafka", "cloudevents", NULL, TXBOX_OPTION_BOOLEAN, 0, 0, "false"},
	{"handler", "max_attempts", NULL, TXBOX_OPTION_INTEGER, 1, 1000000, "10"},
	{"handler", "backoff_max", "backoff", TXBOX_OPTION_INTERVAL, 0, 0, "30s"},
	{"handler", "batch_size", "batch", TXBOX_OPTION_INTEGER, 1, 10000, "100"},
	{"handler", "parallel", NULL, TXBOX_OPTION_INTEGER, 1, 16, "1"},
	{"handler", "statement_timeout", NULL, TXBOX_OPTION_INTERVAL, 0, 0, "60s"},
};

static const char *const txbox_option_kinds[] = {"integer", "interval", "text", "boolean", "json"};

static const TxboxOption *
option_lookup(const char *applies_to, const char *name)
{
	for (int i = 0; i < lengthof(txbox_options); i++)
		if (strcmp(txbox_options[i].applies_to, applies_to) == 0 &&
			strcmp(txbox_options[i].name, name) == 0)
			return &txbox_options[i];
	elog(ERROR, "txbox: no %s option \"%s\"", applies_to, name);
	return NULL;				/* keep the compiler quiet */
}

/* The default of opt as text: its value, or the value of its setting. */
static const char *
option_default(const TxboxOption *opt)
{
	if (opt->default_value != NULL && strncmp(opt->default_value, "txbox.", 6) == 0)
		return GetConfigOption(opt->default_value, false, false);
	return opt->default_value;
}

/*
 * The stored value of opt in options (by its name, else its alias), in
 * *buf; NULL when it has none (or options is NULL: its default is wanted).
 */
static JsonbValue *
option_stored(Jsonb *options, const TxboxOption *opt, JsonbValue *buf)
{
	JsonbValue *v;

	if (options == NULL || !JB_ROOT_IS_OBJECT(options))
		return NULL;
	v = getKeyJsonValueFromContainer(&options->root, opt->name, strlen(opt->name), buf);
	if (v == NULL && opt->alias != NULL)
		v = getKeyJsonValueFromContainer(&options->root, opt->alias, strlen(opt->alias), buf);
	return v;
}

/*
 * txbox_option_int -- an integer option of a relay's or handler's options
 * (NULL: its default).
 */
int
txbox_option_int(Jsonb *options, const char *applies_to, const char *name)
{
	const TxboxOption *opt = option_lookup(applies_to, name);
	JsonbValue	buf;
	JsonbValue *v = option_stored(options, opt, &buf);

	if (v != NULL && v->type == jbvNumeric)
		return DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v->val.numeric)));
	return pg_strtoint32(option_default(opt));
}

/* txbox_option_text -- a text option (palloc'd), or NULL when unset without default. */
char *
txbox_option_text(Jsonb *options, const char *applies_to, const char *name)
{
	const TxboxOption *opt = option_lookup(applies_to, name);
	JsonbValue	buf;
	JsonbValue *v = option_stored(options, opt, &buf);
	const char *def;

	if (v != NULL && v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	def = option_default(opt);
	return def ? pstrdup(def) : NULL;
}

/* txbox_option_bool -- a boolean option. */
bool
txbox_option_bool(Jsonb *options, const char *applies_to, const char *name)
{
	const TxboxOption *opt = option_lookup(applies_to, name);
	JsonbValue	buf;
	JsonbValue *v = option_stored(options, opt, &buf);

	if (v != NULL && v->type == jbvBool)
		return v->val.boolean;
	return strcmp(option_default(opt), "true") == 0;
}

/* txbox_option_ms -- an interval option, in milliseconds. */
int
txbox_option_ms(Jsonb *options, const char *applies_to, const char *name)
{
	const TxboxOption *opt = option_lookup(applies_to, name);
	JsonbValue	buf;
	JsonbValue *v = option_stored(options, opt, &buf);
	const char *text;
	Interval   *iv;

	text = v != NULL && v->type == jbvString ?
		pnstrdup(v->val.string.val, v->val.string.len) : option_default(opt);
	iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(text),
											   ObjectIdGetDatum(InvalidOid),
											   Int32GetDatum(-1)));
	/* at most a day (txbox._check_options): no overflow */
	return (int) (((int64) iv->month * DAYS_PER_MONTH + iv->day) * SECS_PER_DAY * 1000 +
				  iv->time / 1000);
}

/*
 * txbox.options() -- the table, one row per option: applies_to, name,
 * alias, kind, min, max (integers), default_value (a value, or the name of
 * the setting that gives it).
 */
PG_FUNCTION_INFO_V1(txbox_options_sql);
Datum
txbox_options_sql(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;

	if (SRF_IS_FIRSTCALL())
	{
		MemoryContext old;
		TupleDesc	desc;

		funcctx = SRF_FIRSTCALL_INIT();
		old = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);
		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "txbox.options() must return a composite type");
		funcctx->tuple_desc = BlessTupleDesc(desc);
		MemoryContextSwitchTo(old);
	}
	funcctx = SRF_PERCALL_SETUP();
	if (funcctx->call_cntr < lengthof(txbox_options))
	{
		const TxboxOption *opt = &txbox_options[funcctx->call_cntr];
		bool		integer = opt->kind == TXBOX_OPTION_INTEGER;
		Datum		values[7];
		bool		nulls[7] = {false, false, opt->alias == NULL, false, !integer, !integer,
		opt->default_value == NULL};

		values[0] = CStringGetTextDatum(opt->applies_to);
		values[1] = CStringGetTextDatum(opt->name);
		values[2] = opt->alias ? CStringGetTextDatum(opt->alias) : (Datum) 0;
		values[3] = CStringGetTextDatum(txbox_option_kinds[opt->kind]);
		values[4] = Int32GetDatum(opt->min);
		values[5] = Int32GetDatum(opt->max);
		values[6] = opt->default_value ? CStringGetTextDatum(opt->default_value) : (Datum) 0;
		SRF_RETURN_NEXT(funcctx,
						HeapTupleGetDatum(heap_form_tuple(funcctx->tuple_desc, values, nulls)));
	}
	SRF_RETURN_DONE(funcctx);
}
