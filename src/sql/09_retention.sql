------------------------------------------------------------------------
-- Retention, run by the per-database manager (src/manager.c)
------------------------------------------------------------------------

-- Rotate rotated_table (truncate its oldest generation, make it current)
-- if its current generation is at least min_age old and the oldest one may
-- go, as may_go(ended_at, ended_xid, gen) says (ended_* NULL: never used).
-- Returns whether it rotated; NULL when it was due but writers or readers
-- of the table held their locks past the caller's lock_timeout.
CREATE FUNCTION txbox._rotate_if(rotated_table name, min_age interval, may_go text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	g txbox._generation;
	e txbox._generation_end;
	oldest smallint;
	ok boolean;
BEGIN
	SELECT * INTO g FROM txbox._generation WHERE relname = rotated_table;
	IF g.switched_at > now() - min_age THEN
		RETURN false;
	END IF;
	oldest := (g.current_gen + 1) % g.generations;
	SELECT * INTO e FROM txbox._generation_end WHERE relname = rotated_table AND gen = oldest;
	EXECUTE 'SELECT ' || may_go USING e.ended_at, e.ended_xid, oldest INTO ok;
	IF NOT ok THEN
		RETURN false;
	END IF;
	BEGIN
		PERFORM txbox._switch_generation(rotated_table);
	EXCEPTION WHEN lock_not_available THEN
		RETURN NULL;		-- busy: try again soon
	END;
	RETURN true;
END
$$;

-- Whether every consumer processed every message of its topics in the
-- inbox's generation "generation".  A consumer whose floor
-- (txbox._consumer_floors) reaches the generation's last seq costs an
-- index probe; for the others, the generation's messages above their
-- floor (all of them without one) are checked against their dedup records,
-- in seq order through the indexes whatever the statistics suggest (a
-- truncated generation looks empty until it is analyzed again), and
-- without JIT (the disabled plans' costs would call for it).
CREATE FUNCTION txbox._inbox_processed(generation smallint)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_material = off
SET jit = off
AS $$
	SELECT NOT EXISTS (
		SELECT 1
		  FROM txbox._consumer_floors c,
			   (SELECT max(x.seq) AS seq FROM txbox.inbox x WHERE x.gen = _inbox_processed.generation) l
		 WHERE c.low < l.seq
		   -- the first unprocessed message up to there above the floor, by
		   -- the seq index (later generations' messages are all above)
		   AND (SELECT true FROM txbox.inbox i
				 WHERE i.seq > c.low AND i.seq <= l.seq
				   AND (c.topics IS NULL OR i.topic = ANY (c.topics))
				   AND NOT EXISTS (SELECT 1 FROM txbox.inbox_dedup d
									WHERE d.consumer = c.consumer
									  AND d.message_id = i.message_id::text)
				 ORDER BY i.seq LIMIT 1))
$$;

-- Retention, every few seconds: each rotated table drops its oldest
-- generation once nothing in it must be kept.
--  outbox: switched away from more than outbox_retention ago, and delivered
--    by every relay (paused ones too: a paused relay holds retention back).
--  inbox: switched away from more than inbox_retention ago (at most half
--    the dedup window), and every message processed by every consumer of
--    its topic (handlers included): txbox._inbox_processed.
--  inbox_dedup: the other generation stopped taking claims more than
--    dedup_retention ago, so every record lives at least that long; and the
--    inbox holds no message that could have its record there: the oldest
--    message (by seq, which follows commit order) was received after that
--    generation's last claim committed.  A message never outlives the
--    record that it was processed, even while unprocessed messages (a dead
--    letter, a stopped consumer) hold the inbox back.  A late duplicate
--    (stored again after the inbox let go of its first copy) gets its
--    consumers' records renewed in the current generation (src/inbox.c).
--  idempotency_keys: every key of the oldest generation expired.
--  dead_letters (not a hot table): deleted dead_letter_retention after
--    they were resolved (replayed or discarded); an unresolved one stays
--    until someone replays or discards it (SPEC 1.4).
-- Returns whether a rotation that was due could not have its locks (the
-- manager then runs it again sooner than at its next round: src/manager.c).
CREATE FUNCTION txbox._maintain()
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	outbox_keep interval := current_setting('txbox.outbox_retention')::interval;
	dedup_keep interval := current_setting('txbox.dedup_retention')::interval;
	inbox_keep interval := least(current_setting('txbox.inbox_retention')::interval, dedup_keep / 2);
	ttl interval := current_setting('txbox.idempotency_ttl')::interval;
	rotated boolean[];
BEGIN
	PERFORM txbox._relays_adopt();		-- before retention compares positions
	-- in this order (the inbox before its dedup records)
	rotated := ARRAY[
		txbox._rotate_if('outbox', greatest(outbox_keep / 2, interval '1s'), format(
			'$1 IS NULL OR ($1 <= now() - %L::interval AND NOT EXISTS (SELECT 1 FROM txbox.relays r
				WHERE NOT pg_visible_in_snapshot($2, r.snapshot)))', outbox_keep)),
		txbox._rotate_if('inbox', greatest(inbox_keep / 2, interval '1s'), format(
			'$1 IS NULL OR ($1 <= now() - %L::interval AND txbox._inbox_processed($3))', inbox_keep)),
		txbox._rotate_if('inbox_dedup', dedup_keep,
			'$1 IS NULL OR coalesce((SELECT i.received_at > $1 FROM txbox.inbox i ORDER BY i.seq LIMIT 1), true)'),
		txbox._rotate_if('idempotency_keys', least(ttl, interval '1 hour'),
			'NOT EXISTS (SELECT 1 FROM txbox.idempotency_keys k WHERE k.gen = $3 AND k.expires_at > now())')];
	DELETE FROM txbox.dead_letters d
	 WHERE coalesce(d.replayed_at, d.discarded_at)
		   < now() - current_setting('txbox.dead_letter_retention')::interval;
	RETURN array_position(rotated, NULL) IS NOT NULL;	-- one was busy
END
$$;

