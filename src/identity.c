/*-------------------------------------------------------------------------
 * identity.c
 *		Which cluster and timeline this server is: the xid space that
 *		relay positions (pg_snapshot) and outbox txids belong to.
 *
 * A relay saves its position with the identity of the cluster it saved it
 * on (txbox.relays.position_cluster).  A position read on another cluster
 * (pg_dump and pg_restore elsewhere, pg_upgrade) or on another timeline
 * (failover to a standby, point-in-time recovery) is not trusted:
 * txbox._relays_adopt restarts such relays from what the outbox retains,
 * and the targets drop what they already have.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "txbox.h"

/*
 * txbox._cluster() -- "system identifier:timeline" of this server, e.g.
 * '7443516373468187812:1'.  On a standby, the timeline being replayed.
 */
PG_FUNCTION_INFO_V1(txbox_cluster);
Datum
txbox_cluster(PG_FUNCTION_ARGS)
{
	TimeLineID	tli;

	if (RecoveryInProgress())
		(void) GetXLogReplayRecPtr(&tli);
	else
		tli = GetWALInsertionTimeLine();
	PG_RETURN_TEXT_P(cstring_to_text(psprintf(UINT64_FORMAT ":%u",
											  GetSystemIdentifier(), tli)));
}
