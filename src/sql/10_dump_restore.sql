------------------------------------------------------------------------
-- pg_dump, pg_restore, failover (README "Backup, restore and failover")
------------------------------------------------------------------------

-- Relays whose position was saved on another cluster or timeline (a dump
-- restored elsewhere, a promoted standby, point-in-time recovery,
-- pg_upgrade): their snapshots belong to another xid space and compare
-- nonsense here, so they start again from the beginning of what the outbox
-- retains; the targets drop the messages they already have.  Each relay
-- calls this before it uses its position, and retention before it compares
-- positions; the row locks make one caller adopt each relay.
CREATE FUNCTION txbox._relays_adopt()
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	here text := txbox._cluster();
	r record;
BEGIN
	FOR r IN SELECT x.relay_id, x.name, x.position_cluster FROM txbox.relays x
			  WHERE x.position_cluster <> here FOR UPDATE OF x
	LOOP
		UPDATE txbox.relays x
		   SET snapshot = '1:1:', batch_snapshot = NULL, batch_last_id = NULL,
			   position_cluster = here
		 WHERE x.relay_id = r.relay_id;
		RAISE LOG 'txbox relay "%": position saved on cluster:timeline %, this is %: delivering every message the outbox retains again (targets drop those they have)',
			r.name, r.position_cluster, here;
	END LOOP;
END
$$;

-- Generation gen of rotated_table got rows restored by this transaction:
-- for retention it ends no earlier than now, by this transaction (a relay
-- position that includes ended_xid includes the restored messages).
CREATE FUNCTION txbox._generation_restored(rotated_table name, generation smallint)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO txbox._generation_end AS e (relname, gen, ended_at, ended_xid)
	SELECT _generation_restored.rotated_table, _generation_restored.generation,
		   now(), pg_current_xact_id()
	 WHERE NOT EXISTS (SELECT 1 FROM txbox._generation_end x
						WHERE x.relname = _generation_restored.rotated_table
						  AND x.gen = _generation_restored.generation
						  AND x.ended_xid = pg_current_xact_id())
	ON CONFLICT (relname, gen) DO UPDATE SET ended_at = excluded.ended_at, ended_xid = excluded.ended_xid
$$;

-- pg_restore loads txbox's state (marked below) with COPY after CREATE
-- EXTENSION, and these triggers adapt what it loads:
--  outbox, idempotency_keys: restored txids belong to the dumped cluster.
--    Restored rows take the restoring transaction's: their messages are new
--    to every relay position and are delivered (again), and the targets
--    drop the duplicates; a restored generation ends now, by this
--    transaction.  Statement triggers on the partitions, with the rows of
--    the statement: pg_restore writes into the partitions, txbox only
--    through the parent, which fires none of them (publishing pays nothing).
--  _generation_end: restored rows likewise (txbox writes ended_xid as
--    pg_current_xact_id(); a restored row carries an older one).
--  _generation: the install script's rows take the restored generations;
--    no rotation until the retention intervals passed from now.
--  relays, handlers: a restored copy must not deliver to the original's
--    targets, nor handle messages before the restore is complete: restored
--    relays and handlers (created_at is not now) are paused until
--    txbox.resume_relay / txbox.resume_handler.
CREATE FUNCTION txbox._restored_rows()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('UPDATE txbox.%I t SET txid = pg_current_xact_id() FROM restored r WHERE %s
					   AND r.txid <> pg_current_xact_id()',
				   TG_TABLE_NAME, CASE TG_ARGV[0]
				   WHEN 'outbox' THEN 't.txid = r.txid AND t.id = r.id'
				   ELSE 't.scope = r.scope AND t.key = r.key AND t.gen = r.gen' END);
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n > 0 AND TG_ARGV[0] = 'outbox' THEN
		PERFORM txbox._generation_restored('outbox', TG_ARGV[1]::smallint);
	END IF;
	RETURN NULL;
END
$$;
CREATE TRIGGER restored AFTER INSERT ON txbox.outbox_0 REFERENCING NEW TABLE AS restored
	FOR EACH STATEMENT EXECUTE FUNCTION txbox._restored_rows('outbox', '0');
CREATE TRIGGER restored AFTER INSERT ON txbox.outbox_1 REFERENCING NEW TABLE AS restored
	FOR EACH STATEMENT EXECUTE FUNCTION txbox._restored_rows('outbox', '1');
CREATE TRIGGER restored AFTER INSERT ON txbox.outbox_2 REFERENCING NEW TABLE AS restored
	FOR EACH STATEMENT EXECUTE FUNCTION txbox._restored_rows('outbox', '2');
CREATE TRIGGER restored AFTER INSERT ON txbox.idempotency_keys_0 REFERENCING NEW TABLE AS restored
	FOR EACH STATEMENT EXECUTE FUNCTION txbox._restored_rows('idempotency_keys', '0');
CREATE TRIGGER restored AFTER INSERT ON txbox.idempotency_keys_1 REFERENCING NEW TABLE AS restored
	FOR EACH STATEMENT EXECUTE FUNCTION txbox._restored_rows('idempotency_keys', '1');

CREATE FUNCTION txbox._restored_generation_end()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM txbox._generation_restored(NEW.relname, NEW.gen);
	RETURN NULL;
END
$$;
CREATE TRIGGER restored BEFORE INSERT ON txbox._generation_end FOR EACH ROW
	WHEN (NEW.ended_xid OPERATOR(pg_catalog.<>) pg_catalog.pg_current_xact_id())
	EXECUTE FUNCTION txbox._restored_generation_end();

CREATE FUNCTION txbox._restored_generation()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE txbox._generation g SET current_gen = NEW.current_gen, switched_at = now()
	 WHERE g.relname = NEW.relname;
	RETURN NULL;
END
$$;
CREATE TRIGGER restored BEFORE INSERT ON txbox._generation FOR EACH ROW
	EXECUTE FUNCTION txbox._restored_generation();

CREATE FUNCTION txbox._restored_paused()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	NEW.paused := true;
	RETURN NEW;
END
$$;
CREATE TRIGGER restored BEFORE INSERT ON txbox.relays FOR EACH ROW
	WHEN (NEW.created_at OPERATOR(pg_catalog.<>) pg_catalog.now())
	EXECUTE FUNCTION txbox._restored_paused();
CREATE TRIGGER restored BEFORE INSERT ON txbox.handlers FOR EACH ROW
	WHEN (NEW.created_at OPERATOR(pg_catalog.<>) pg_catalog.now())
	EXECUTE FUNCTION txbox._restored_paused();

-- What pg_dump keeps: every table of state (a partitioned table's rows are
-- in its partitions) and every sequence.
SELECT pg_catalog.pg_extension_config_dump('txbox._generation', '');
SELECT pg_catalog.pg_extension_config_dump('txbox._generation_end', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.outbox_0', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.outbox_1', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.outbox_2', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.inbox_0', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.inbox_1', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.inbox_2', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.inbox_seq', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.inbox_dedup_0', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.inbox_dedup_1', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.idempotency_keys_0', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.idempotency_keys_1', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.consumers', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.relays', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.relays_relay_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.handlers', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.handlers_handler_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.handler_failures', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.handler_floors', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('txbox.dead_letters_dead_letter_id_seq', '');

