/*-------------------------------------------------------------------------
 * targets/target.c
 *		The table of targets, and what every target shares: the meaning of
 *		an error's SQLSTATE for a page, and a wait on a socket that honours
 *		interrupts.
 *
 * Adding a target: a file in targets/ that defines its TargetCallbacks, and
 * its line in the table below (plus its options' rows in src/options.c, and
 * its name and further option checks in the install script's
 * txbox._create_relay and txbox._relay_check_options).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
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
