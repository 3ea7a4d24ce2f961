-- bench/handler/throughput.sql -- objects of bench/handler/throughput.sh,
-- in database billing (txbox installed).

-- The work each message does, for both sides: one row.
CREATE TABLE effects (message_id uuid NOT NULL, n integer NOT NULL);

-- The txbox side: a handler function doing that work.
CREATE FUNCTION bench_handle(m txbox.message) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO effects (message_id, n) VALUES (m.message_id, (m.payload->>'n')::int);
END
$$;

-- The same work for a handler taking a window of messages per call (a
-- set-based handler: one INSERT for the whole window).
CREATE FUNCTION bench_handle_window(ms txbox.message[]) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO effects (message_id, n)
	SELECT m.message_id, (m.payload->>'n')::int FROM unnest(ms) m
$$;

-- The baseline: a hand-made queue table (the same messages) with the index
-- a hand-written consumer would give it: the unprocessed rows, by id.
CREATE TABLE queue (
	id			bigserial PRIMARY KEY,
	message_id	uuid NOT NULL,
	key			text,
	payload		jsonb NOT NULL,
	processed	boolean NOT NULL DEFAULT false
);
CREATE INDEX queue_todo_idx ON queue (id) WHERE NOT processed;

-- The hand-written consumer loop: one transaction per batch of 100.
CREATE PROCEDURE bench_consume(batch integer DEFAULT 100)
LANGUAGE plpgsql AS $$
DECLARE
	n integer;
BEGIN
	LOOP
		WITH b AS (SELECT id, message_id, payload FROM queue
					WHERE NOT processed ORDER BY id LIMIT batch
					  FOR UPDATE SKIP LOCKED),
			 e AS (INSERT INTO effects (message_id, n)
				   SELECT message_id, (payload->>'n')::int FROM b)
		UPDATE queue q SET processed = true FROM b WHERE q.id = b.id;
		GET DIAGNOSTICS n = ROW_COUNT;
		COMMIT;
		EXIT WHEN n = 0;
	END LOOP;
END
$$;

-- The hand-written loop calling the per-message function for each row
-- (variant baseline_each: the counterpart of a handler taking one message).
CREATE PROCEDURE bench_consume_each(batch integer DEFAULT 100)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	n integer;
BEGIN
	LOOP
		n := 0;
		FOR r IN SELECT id, message_id, key, payload FROM queue
				  WHERE NOT processed ORDER BY id LIMIT batch
					FOR UPDATE SKIP LOCKED
		LOOP
			PERFORM bench_handle(ROW(r.message_id, 'orders', r.key, NULL, r.payload, NULL, 'shop',
									 now(), now())::txbox.message);
			UPDATE queue SET processed = true WHERE id = r.id;
			n := n + 1;
		END LOOP;
		COMMIT;
		EXIT WHEN n = 0;
	END LOOP;
END
$$;

-- txbox's SQL consumer API in the same loop (diagnostic variant fetch_done):
-- per transaction, inbox_fetch 100, their effects, inbox_done.
CREATE PROCEDURE bench_fetch_done(batch integer DEFAULT 100)
LANGUAGE plpgsql AS $$
DECLARE
	n integer;
BEGIN
	LOOP
		WITH m AS (SELECT * FROM txbox.inbox_fetch('sql', ARRAY['orders'], batch)),
			 e AS (INSERT INTO effects (message_id, n)
				   SELECT message_id, (payload->>'n')::int FROM m RETURNING message_id)
		SELECT txbox.inbox_done('sql', coalesce(array_agg(message_id), '{}')) INTO n FROM e;
		COMMIT;
		EXIT WHEN n = 0;
	END LOOP;
END
$$;

-- N test messages: key = one of 1000 customers, payload ~90 bytes.
CREATE FUNCTION bench_messages(n integer)
RETURNS TABLE (g integer, message_id uuid, key text, payload jsonb)
LANGUAGE sql AS $$
	SELECT g, gen_random_uuid(), 'customer-' || (g % 1000),
		   jsonb_build_object('n', g, 'order', 100000 + g, 'total', (g % 997) * 1.25,
							  'currency', 'EUR')
	  FROM generate_series(1, n) g
$$;

-- Place n messages in txbox.inbox as a relay would: _inbox_receive with
-- pages of 1000.
CREATE PROCEDURE bench_load_inbox(n integer)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM txbox._inbox_receive('shop', array_agg(message_id ORDER BY g),
			array_fill('orders'::text, ARRAY[count(*)::int]), array_agg(key ORDER BY g),
			array_fill(NULL::jsonb, ARRAY[count(*)::int]), array_agg(payload ORDER BY g),
			array_fill(NULL::bytea, ARRAY[count(*)::int]),
			array_fill(now(), ARRAY[count(*)::int]))
	  FROM bench_messages(n)
	 GROUP BY (g - 1) / 1000
	 ORDER BY (g - 1) / 1000;
END
$$;

-- Wait until query returns at least target, polling every 10 ms in short
-- transactions (a long one would hold back the cleanup of dead rows), or
-- until timeout_s.  Returns the seconds since t0 and the last count.
CREATE PROCEDURE bench_wait(query text, target bigint, t0 timestamptz,
							timeout_s double precision,
							INOUT seconds double precision DEFAULT NULL,
							INOUT done bigint DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
	LOOP
		EXECUTE query INTO done;
		seconds := extract(epoch FROM clock_timestamp() - t0);
		EXIT WHEN done >= target OR seconds > timeout_s;
		COMMIT;
		PERFORM pg_sleep(0.01);
	END LOOP;
END
$$;
