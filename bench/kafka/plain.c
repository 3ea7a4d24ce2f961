/*-------------------------------------------------------------------------
 * bench/kafka/plain.c
 *		The baseline of the kafka relay benchmark: a plain librdkafka
 *		producer sending the records a kafka relay sends for the messages
 *		bench/kafka/run.sh publishes (same keys, values, headers, producer
 *		settings: idempotent, murmur2_random), waiting for every delivery
 *		report.  Prints the seconds taken and the CPU seconds used (all
 *		threads).
 *
 *	plain BOOTSTRAP TOPIC N
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <librdkafka/rdkafka.h>

static int	outstanding = 0;
static int	failed = 0;

static void
dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	outstanding--;
	if (m->err)
		failed++;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	char		errstr[512];
	char		pad[201];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	int			n;
	double		t0;

	if (argc != 4)
	{
		fprintf(stderr, "usage: plain BOOTSTRAP TOPIC N\n");
		return 2;
	}
	n = atoi(argv[3]);
	memset(pad, 'x', 200);
	pad[200] = '\0';
	if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, sizeof(errstr)))
	{
		fprintf(stderr, "%s\n", errstr);
		return 1;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		fprintf(stderr, "%s\n", errstr);
		return 1;
	}
	t0 = now();
	for (int i = 1; i <= n; i++)
	{
		char		key[32],
					value[300],
					trace[32],
					id[40];
		rd_kafka_headers_t *h = rd_kafka_headers_new(8);
		rd_kafka_resp_err_t err;

		snprintf(key, sizeof(key), "customer-%d", i % 1000);
		snprintf(value, sizeof(value), "{\"n\": %d, \"pad\": \"%s\"}", i, pad);
		snprintf(trace, sizeof(trace), "t-%d", i);
		snprintf(id, sizeof(id), "018c2b6e-0000-7000-8000-%012d", i);
		rd_kafka_header_add(h, "trace", -1, trace, -1);
		rd_kafka_header_add(h, "txbox-message-id", -1, id, -1);
		rd_kafka_header_add(h, "txbox-topic", -1, argv[2], -1);
		rd_kafka_header_add(h, "txbox-published-at", -1, "2026-12-01T18:00:00.000000Z", -1);
		for (;;)
		{
			err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(argv[2]),
									RD_KAFKA_V_KEY(key, strlen(key)),
									RD_KAFKA_V_VALUE(value, strlen(value)),
									RD_KAFKA_V_HEADERS(h),
									RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
									RD_KAFKA_V_END);
			if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
				break;
			rd_kafka_poll(rk, 10);
		}
		if (err)
		{
			fprintf(stderr, "produce: %s\n", rd_kafka_err2str(err));
			return 1;
		}
		outstanding++;
		rd_kafka_poll(rk, 0);
	}
	while (outstanding > 0)
		rd_kafka_poll(rk, 100);
	{
		struct rusage ru;

		getrusage(RUSAGE_SELF, &ru);
		printf("%.3f %.2f\n", now() - t0,
			   ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
			   (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	}
	rd_kafka_destroy(rk);
	return failed ? 1 : 0;
}
