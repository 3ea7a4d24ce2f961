/*-------------------------------------------------------------------------
 * test/kafka_mock.c
 *		A Kafka cluster for the tests: librdkafka's mock cluster on
 *		127.0.0.1, driven through stdin, no JVM.
 *
 *	kafka_mock BROKERS TOPIC:PARTITIONS...
 *
 * Prints "bootstrap HOST:PORT,..." once the cluster runs, then reads one
 * command a line and answers each with "ok" (or "error ..."):
 *
 *	down ID | up ID			take broker ID (1..BROKERS, -1 all) down / up
 *	errors N CODE			the next N produce requests fail with Kafka error CODE
 *	leader TOPIC PART ID	make broker ID the leader of partition PART of TOPIC
 *	dump TOPIC FILE ISO		write every record of TOPIC to FILE, one a line:
 *							partition, offset, key (\N: none), headers
 *							(name=hexvalue,...), hex value, tab-separated;
 *							ISO is read_committed or read_uncommitted
 *	quit
 *
 * Built by the TAP tests that use it (cc kafka_mock.c -lrdkafka).
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static rd_kafka_mock_cluster_t *mcluster;

static void
hex(FILE *f, const void *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		fprintf(f, "%02x", ((const unsigned char *) p)[i]);
}

/* Write every record of topic to path; NULL when done, else why not. */
static const char *
dump(const char *topic, const char *path, const char *isolation)
{
	static char errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	const rd_kafka_metadata_t *md;
	rd_kafka_topic_partition_list_t *parts;
	rd_kafka_topic_t *rkt;
	FILE	   *f;
	int			left;

	if (rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mcluster),
						  errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "group.id", "kafka_mock_dump", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "isolation.level", isolation, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		return errstr;
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
		return errstr;
	rkt = rd_kafka_topic_new(rk, topic, NULL);
	if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
		md->topic_cnt != 1 || md->topics[0].err)
	{
		rd_kafka_topic_destroy(rkt);
		rd_kafka_destroy(rk);
		return "no such topic";
	}
	left = md->topics[0].partition_cnt;
	parts = rd_kafka_topic_partition_list_new(left);
	for (int p = 0; p < left; p++)
		rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	rd_kafka_assign(rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);

	f = fopen(path, "w");
	if (f == NULL)
	{
		rd_kafka_destroy(rk);
		return "cannot open the file";
	}
	while (left > 0)
	{
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 10000);
		rd_kafka_headers_t *hdrs;

		if (m == NULL)
			break;				/* stuck: the caller sees a short file */
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
			left--;
		else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			fprintf(f, "%d\t%lld\t", (int) m->partition, (long long) m->offset);
			if (m->key)
				fwrite(m->key, 1, m->key_len, f);
			else
				fputs("\\N", f);
			fputc('\t', f);
			if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
			{
				const char *name;
				const void *val;
				size_t		len;

				for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &len) == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
				{
					fprintf(f, "%s%s=", i ? "," : "", name);
					hex(f, val, len);
				}
			}
			fputc('\t', f);
			hex(f, m->payload, m->len);
			fputc('\n', f);
		}
		rd_kafka_message_destroy(m);
	}
	fclose(f);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return left > 0 ? "timed out" : NULL;
}

int
main(int argc, char **argv)
{
	char		errstr[512];
	char		line[4096];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;

	if (argc < 2)
	{
		fprintf(stderr, "usage: kafka_mock BROKERS TOPIC:PARTITIONS...\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL || (mcluster = rd_kafka_mock_cluster_new(rk, atoi(argv[1]))) == NULL)
	{
		fprintf(stderr, "kafka_mock: %s\n", rk ? "cannot create the mock cluster" : errstr);
		return 1;
	}
	for (int i = 2; i < argc; i++)
	{
		char	   *colon = strrchr(argv[i], ':');

		*colon = '\0';
		rd_kafka_mock_topic_create(mcluster, argv[i], atoi(colon + 1), 1);
	}
	/*
	 * Answer without Nagle's delay, as Kafka's brokers do (TCP_NODELAY,
	 * inherited by the sockets accepted on the listeners): else the second
	 * of two answers on a connection waits for the client's delayed ACK,
	 * about 40 ms, which stalls every producer that waits for its
	 * delivery reports before producing more.
	 */
	for (int fd = 3; fd < 1024; fd++)
	{
		int			listening = 0,
					on = 1;
		socklen_t	len = sizeof(listening);

		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	}
	printf("bootstrap %s\n", rd_kafka_mock_cluster_bootstraps(mcluster));

	while (fgets(line, sizeof(line), stdin))
	{
		char		a[1024],
					b[1024],
					c[64];
		int			id,
					n;
		const char *err = NULL;

		if (sscanf(line, "down %d", &id) == 1)
			rd_kafka_mock_broker_set_down(mcluster, id);
		else if (sscanf(line, "up %d", &id) == 1)
			rd_kafka_mock_broker_set_up(mcluster, id);
		else if (sscanf(line, "errors %d %d", &n, &id) == 2)
		{
			rd_kafka_resp_err_t *errs = malloc(sizeof(*errs) * n);

			for (int i = 0; i < n; i++)
				errs[i] = (rd_kafka_resp_err_t) id;
			rd_kafka_mock_push_request_errors_array(mcluster, 0 /* Produce */ , n, errs);
			free(errs);
		}
		else if (sscanf(line, "leader %1023s %d %d", a, &n, &id) == 3)
		{
			if (rd_kafka_mock_partition_set_leader(mcluster, a, n, id) != RD_KAFKA_RESP_ERR_NO_ERROR)
				err = "no such partition";
		}
		else if (sscanf(line, "dump %1023s %1023s %63s", a, b, c) == 3)
			err = dump(a, b, c);
		else if (strncmp(line, "quit", 4) == 0)
			break;
		else
			err = "unknown command";
		if (err)
			printf("error %s\n", err);
		else
			printf("ok\n");
	}
	rd_kafka_mock_cluster_destroy(mcluster);
	rd_kafka_destroy(rk);
	return 0;
}
