/*-------------------------------------------------------------------------
 * spi_util.c
 *		Saved SPI plans for txbox's fixed queries, index scans without a
 *		plan, and argument checks.
 *
 * Every query txbox runs through SPI is a static TxboxPlan: prepared on
 * first use in a backend, kept for the backend's life (the plan cache
 * re-plans it after DDL), and always schema-qualified.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "catalog/partition.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "txbox.h"

/*
 * txbox_plan -- the saved plan of p, prepared on first call.
 *
 * Must be called while connected to SPI.
 */
SPIPlanPtr
txbox_plan(TxboxPlan *p)
{
	if (p->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(p->query, p->nargs, p->argtypes,
											  p->cursor_options);

		if (plan == NULL)
			elog(ERROR, "txbox: SPI_prepare failed for \"%s\": %s",
				 p->query, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "txbox: SPI_keepplan failed");
		p->plan = plan;
	}
	return p->plan;
}

/*
 * txbox_index_scan_begin -- open table relid and begin a scan, with nkeys
 * keys, of its primary key (parent_index InvalidOid), or of its piece of
 * the partitioned index parent_index (relid being a partition of its
 * table), read with snapshot.
 */
void
txbox_index_scan_begin(TxboxIndexScan *s, Oid relid, Oid parent_index, Snapshot snapshot,
					   int nkeys)
{
	s->rel = table_open(relid, AccessShareLock);
	s->index = index_open(OidIsValid(parent_index) ? index_get_partition(s->rel, parent_index) :
						  txbox_primary_key_index(s->rel),
						  AccessShareLock);
	s->scan = txbox_index_beginscan(s->rel, s->index, snapshot, nkeys, 0);
	s->slot = table_slot_create(s->rel, NULL);
}

void
txbox_index_scan_end(TxboxIndexScan *s)
{
	ExecDropSingleTupleTableSlot(s->slot);
	index_endscan(s->scan);
	index_close(s->index, AccessShareLock);
	table_close(s->rel, AccessShareLock);
}

/*
 * what a plan with index_probes is made without (and JIT, which the
 * disabled plans' costs would call for)
 */
static const char *const txbox_probes_off[] = {
	"enable_seqscan", "enable_bitmapscan", "enable_material", "enable_hashjoin", "enable_mergejoin",
	"jit"
};

/*
 * txbox_exec -- execute p's saved plan; returns SPI_processed.
 *
 * nulls follows SPI's convention (' ' not null, 'n' null) or is NULL.  With
 * latest_snapshot the query reads with a fresh snapshot even in REPEATABLE
 * READ, so that rows committed since the transaction's snapshot are seen:
 * used where a decision must not rest on a stale view (a duplicate check).
 * Errors from SPI are raised; the result stays in SPI_tuptable.
 *
 * A plan with index_probes reads a few rows per input row through indexes:
 * it is made (and remade after an invalidation) with the settings above
 * off, whatever stale statistics suggest.  A partition that rotation
 * truncated looks empty until it is analyzed again, and a generic plan
 * made then would scan it whole for every row for the session's life.
 * Only while the query runs: the session's own settings are untouched.
 */
int
txbox_exec(TxboxPlan *p, Datum *values, const char *nulls,
		   bool latest_snapshot, long tcount)
{
	SPIPlanPtr	plan;
	int			rc;
	int			nestlevel = 0;

	if (p->index_probes)
	{
		nestlevel = NewGUCNestLevel();
		for (int i = 0; i < lengthof(txbox_probes_off); i++)
			(void) set_config_option(txbox_probes_off[i], "off", PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);
	}
	plan = txbox_plan(p);
	if (latest_snapshot)
		rc = SPI_execute_snapshot(plan, values, nulls, GetLatestSnapshot(),
								  InvalidSnapshot, false, true, tcount);
	else
		rc = SPI_execute_plan(plan, values, nulls, false, tcount);
	if (p->index_probes)
		AtEOXact_GUC(true, nestlevel);

	if (rc < 0)
		elog(ERROR, "txbox: SPI failed for \"%s\": %s",
			 p->query, SPI_result_code_string(rc));
	return (int) SPI_processed;
}

/*
 * txbox_require_text_arg -- raise a clear error if argument argno is NULL
 * or an empty string.  argname names it in the message.
 */
void
txbox_require_text_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", argname),
				 errhint("Pass a non-empty text value as %s.", argname)));
	if (VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(argno)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname),
				 errhint("Pass a non-empty text value as %s.", argname)));
}
