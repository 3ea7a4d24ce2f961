/*-------------------------------------------------------------------------
 * uuid7.c
 *		Time-ordered message ids: UUID version 7 (RFC 9562).
 *
 * Layout: 48 bits of Unix time in milliseconds, version 7, a 12-bit
 * counter (rand_a), variant 10, then 62 random bits.  Within one backend the
 * ids are strictly increasing: a second id in the same millisecond
 * increments the counter, and when the counter runs out the timestamp is
 * advanced by one millisecond (RFC 9562 section 6.2, method 1), so ids
 * never go backwards even if the clock does.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "txbox.h"

static uint64 uuid7_last_ms = 0;
static uint16 uuid7_counter = 0;

/*
 * txbox_uuid7_generate -- fill *uuid with a new version 7 UUID.
 */
void
txbox_uuid7_generate(pg_uuid_t *uuid)
{
	TimestampTz now = GetCurrentTimestamp();
	uint64		ms;
	uint8		rnd[10];

	/* TimestampTz counts microseconds since 2000-01-01 */
	ms = (uint64) (now / 1000) +
		(uint64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;

	if (!pg_strong_random(rnd, sizeof(rnd)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for a message id")));

	if (ms > uuid7_last_ms)
	{
		uuid7_last_ms = ms;
		/* start each millisecond at a random counter in the lower half */
		uuid7_counter = ((rnd[8] << 8) | rnd[9]) & 0x07FF;
	}
	else if (uuid7_counter < 0x0FFF)
		uuid7_counter++;
	else
	{
		uuid7_last_ms++;
		uuid7_counter = 0;
	}
	ms = uuid7_last_ms;

	uuid->data[0] = (uint8) (ms >> 40);
	uuid->data[1] = (uint8) (ms >> 32);
	uuid->data[2] = (uint8) (ms >> 24);
	uuid->data[3] = (uint8) (ms >> 16);
	uuid->data[4] = (uint8) (ms >> 8);
	uuid->data[5] = (uint8) ms;
	uuid->data[6] = 0x70 | (uint8) (uuid7_counter >> 8);
	uuid->data[7] = (uint8) uuid7_counter;
	uuid->data[8] = 0x80 | (rnd[0] & 0x3F);
	memcpy(&uuid->data[9], &rnd[1], 7);
}
