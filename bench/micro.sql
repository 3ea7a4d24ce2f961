-- bench/micro.sql -- server-side loops that time one operation, for
-- bench/micro.sh.  Loaded after bench/setup.sql.
--
-- bench.micro(op, n) runs op n times in a PL/pgSQL loop, in one transaction
-- of one backend, and returns the microseconds per call.  No client, no
-- protocol, no commit: what remains is the cost of the operation itself
-- (plus the same few hundred nanoseconds of PL/pgSQL loop for every op).

-- The same trivial built-in function (int4abs) under the attributes
-- txbox's functions carry: the cost of the attributes alone.
CREATE FUNCTION bench.fn_plain(int) RETURNS int
	LANGUAGE internal VOLATILE AS 'int4abs';
CREATE FUNCTION bench.fn_secdef(int) RETURNS int
	LANGUAGE internal VOLATILE SECURITY DEFINER AS 'int4abs';
CREATE FUNCTION bench.fn_set(int) RETURNS int
	LANGUAGE internal VOLATILE SET search_path = pg_catalog, pg_temp AS 'int4abs';
CREATE FUNCTION bench.fn_secdef_set(int) RETURNS int
	LANGUAGE internal VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS 'int4abs';

CREATE FUNCTION bench.micro(op text, n int) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
	t0		timestamptz;
	g		smallint := 0;		-- the current generation (parameter, as in txbox)
	older	smallint := 1;
	-- message ids not claimed yet: a fresh range each call
	base	bigint := 200000000000000000 + (random() * 1e17)::bigint;
	-- pre-claimed ids (bench/micro.sh loads pre_lo+1 .. pre_lo+n)
	pre_lo	bigint := 100000000000000000;
	dummy	int;
BEGIN
	t0 := clock_timestamp();
	CASE op
	-- function call overhead
	WHEN 'fn_plain' THEN
		FOR i IN 1..n LOOP dummy := bench.fn_plain(i); END LOOP;
	WHEN 'fn_secdef' THEN
		FOR i IN 1..n LOOP dummy := bench.fn_secdef(i); END LOOP;
	WHEN 'fn_set' THEN
		FOR i IN 1..n LOOP dummy := bench.fn_set(i); END LOOP;
	WHEN 'fn_secdef_set' THEN
		FOR i IN 1..n LOOP dummy := bench.fn_secdef_set(i); END LOOP;

	-- publish
	WHEN 'outbox_insert' THEN		-- (b): the hand-made outbox
		FOR i IN 1..n LOOP
			INSERT INTO bench.outbox (message_id, topic, payload)
			VALUES (gen_random_uuid(), 'orders',
					jsonb_build_object('order_id', i, 'customer_id', 7, 'amount', 42.50,
									   'currency', 'EUR', 'status', 'new'));
		END LOOP;
	WHEN 'outbox_parent_sql' THEN	-- txbox's INSERT, by SQL, into the parent
		FOR i IN 1..n LOOP
			INSERT INTO txbox.outbox (gen, id, txid, message_id, topic, key, headers,
									  payload, payload_bytes, published_at)
			VALUES (g, nextval('txbox.outbox_id_seq'), pg_current_xact_id(), gen_random_uuid(),
					'orders', NULL, NULL,
					jsonb_build_object('order_id', i, 'customer_id', 7, 'amount', 42.50,
									   'currency', 'EUR', 'status', 'new'),
					NULL, clock_timestamp());
		END LOOP;
	WHEN 'outbox_partition_sql' THEN	-- the same, straight into the partition
		FOR i IN 1..n LOOP
			INSERT INTO txbox.outbox_0 (gen, id, txid, message_id, topic, key, headers,
										payload, payload_bytes, published_at)
			VALUES (g, nextval('txbox.outbox_id_seq'), pg_current_xact_id(), gen_random_uuid(),
					'orders', NULL, NULL,
					jsonb_build_object('order_id', i, 'customer_id', 7, 'amount', 42.50,
									   'currency', 'EUR', 'status', 'new'),
					NULL, clock_timestamp());
		END LOOP;
	WHEN 'publish_plain' THEN		-- txbox_publish without SECDEF / SET
		FOR i IN 1..n LOOP
			PERFORM bench.publish_plain('orders',
					jsonb_build_object('order_id', i, 'customer_id', 7, 'amount', 42.50,
									   'currency', 'EUR', 'status', 'new'));
		END LOOP;
	WHEN 'publish' THEN				-- (c): txbox.publish
		FOR i IN 1..n LOOP
			PERFORM txbox.publish('orders',
					jsonb_build_object('order_id', i, 'customer_id', 7, 'amount', 42.50,
									   'currency', 'EUR', 'status', 'new'));
		END LOOP;

	-- inbox, new ids
	WHEN 'dedup_insert_new' THEN	-- (d): the hand-made dedup table
		FOR i IN 1..n LOOP
			INSERT INTO bench.dedup (consumer, message_id) VALUES ('billing', (base + i)::text)
			ON CONFLICT DO NOTHING;
		END LOOP;
	WHEN 'claim_parent_sql_new' THEN	-- claim's INSERT, by SQL, into the parent
		FOR i IN 1..n LOOP
			INSERT INTO txbox.inbox_dedup (gen, consumer, message_id, claimed_at)
			VALUES (g, 'billing', (base + i)::text, clock_timestamp()) ON CONFLICT DO NOTHING;
		END LOOP;
	WHEN 'claim_partition_sql_new' THEN	-- the same, straight into the partition
		FOR i IN 1..n LOOP
			INSERT INTO txbox.inbox_dedup_0 (gen, consumer, message_id, claimed_at)
			VALUES (g, 'billing', (base + i)::text, clock_timestamp()) ON CONFLICT DO NOTHING;
		END LOOP;
	WHEN 'older_probe_ne' THEN		-- claim's older-generation probe, as written (gen <> current)
		FOR i IN 1..n LOOP
			PERFORM 1 FROM txbox.inbox_dedup
			WHERE consumer = 'billing' AND message_id = (pre_lo + 1 + i % 1000)::text AND gen <> g
			LIMIT 1;
		END LOOP;
	WHEN 'older_probe_eq' THEN		-- the same probe naming the older generation (gen = older)
		FOR i IN 1..n LOOP
			PERFORM 1 FROM txbox.inbox_dedup
			WHERE consumer = 'billing' AND message_id = (pre_lo + 1 + i % 1000)::text AND gen = older
			LIMIT 1;
		END LOOP;
	WHEN 'claim_plain_new' THEN		-- txbox_inbox_claim without the wrapper
		FOR i IN 1..n LOOP
			PERFORM bench.inbox_claim_plain(current_user::regrole, 'billing', (base + i)::text);
		END LOOP;
	-- (e): txbox.inbox_claim; after a rotation (claim_new_rot, micro.sh
	-- switches the generation first) new ids sort above the older one's
	WHEN 'claim_new', 'claim_new_rot' THEN
		FOR i IN 1..n LOOP
			PERFORM txbox.inbox_claim('billing', (base + i)::text);
		END LOOP;
	-- new ids that sort among the pre-claimed ones (after pre_lo + i)
	WHEN 'dedup_insert_unord' THEN
		FOR i IN 1..n LOOP
			INSERT INTO bench.dedup (consumer, message_id)
			VALUES ('billing', (pre_lo + i)::text || '-' || base::text) ON CONFLICT DO NOTHING;
		END LOOP;
	WHEN 'claim_unord_rot' THEN
		FOR i IN 1..n LOOP
			PERFORM txbox.inbox_claim('billing', (pre_lo + i)::text || '-' || base::text);
		END LOOP;

	-- inbox, duplicates (ids pre-claimed by bench/micro.sh)
	WHEN 'dedup_insert_dup' THEN
		FOR i IN 1..n LOOP
			INSERT INTO bench.dedup (consumer, message_id) VALUES ('billing', (pre_lo + i)::text)
			ON CONFLICT DO NOTHING;
		END LOOP;
	WHEN 'claim_dup' THEN
		FOR i IN 1..n LOOP
			PERFORM txbox.inbox_claim('billing', (pre_lo + i)::text);
		END LOOP;
	ELSE
		RAISE EXCEPTION 'unknown op %', op;
	END CASE;
	RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END
$$;
