SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txbox;
RESET client_min_messages;
--
-- dump_restore: what pg_dump keeps of txbox (SPEC 4), and how the rows
-- pg_restore loads are adapted (src/sql/10_dump_restore.sql).  Each case
-- loads rows as pg_restore does (COPY, in a transaction rolled back).
-- test/t/070_dump_restore.pl dumps and restores real clusters.
--

-- every table and sequence of txbox's state is marked for pg_dump
SELECT c.relname, c.relkind
  FROM pg_extension e, unnest(e.extconfig) t(oid) JOIN pg_class c ON c.oid = t.oid
 WHERE e.extname = 'txbox' ORDER BY 1;
-- and nothing else holds data: a new table must be marked too
SELECT c.relname AS not_marked
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
 WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'txbox')
   AND c.relkind IN ('r', 'S')
   AND c.oid <> ALL ((SELECT extconfig FROM pg_extension WHERE extname = 'txbox')::oid[]);

-- restored outbox rows take the restoring transaction's txid (theirs
-- belongs to the dumped cluster), and their generation ends by it
BEGIN;
COPY txbox.outbox_1 (gen, id, txid, message_id, topic, payload, published_at) FROM stdin;
1	9001	987654321	01a2325c-8924-74fb-9086-de08acfa04b3	restored	{"n": 1}	2026-01-01 00:00:00+00
1	9002	987654322	01a2325c-8924-74fb-9086-de08acfa04b4	restored	{"n": 2}	2026-01-01 00:00:01+00
\.
-- as pg_dump --inserts writes them
INSERT INTO txbox.outbox_1 (gen, id, txid, message_id, topic, payload, published_at)
VALUES (1, 9003, '987654323', '01a2325c-8924-74fb-9086-de08acfa04b5', 'restored', '{"n": 3}',
		'2026-01-01 00:00:02+00');
SELECT id, txid = pg_current_xact_id() AS restoring_txid
  FROM txbox.outbox WHERE topic = 'restored' ORDER BY id;
SELECT gen, ended_xid = pg_current_xact_id() AS ended_by_restore, ended_at = now() AS ended_now
  FROM txbox._generation_end WHERE relname = 'outbox';
ROLLBACK;

-- publishing (through the parent table) fires none of it
BEGIN;
SELECT txbox.publish('t', '{}') IS NOT NULL AS published;
SELECT count(*) AS generation_ends FROM txbox._generation_end
 WHERE ended_xid = pg_current_xact_id();
ROLLBACK;

-- restored idempotency keys likewise
BEGIN;
COPY txbox.idempotency_keys_0 (gen, scope, key, txid, response, response_status, created_at, expires_at, completed_at) FROM stdin;
0	api	req-1	987654321	{"ok": true}	200	2026-01-01 00:00:00+00	2999-01-01 00:00:00+00	2026-01-01 00:00:00+00
\.
SELECT key, txid = pg_current_xact_id() AS restoring_txid FROM txbox.idempotency_keys;
ROLLBACK;

-- restored generations replace the install script's rows, and rotation
-- waits from now; restored generation ends take the restoring transaction
BEGIN;
COPY txbox._generation (relname, current_gen, generations, switched_at) FROM stdin;
outbox	2	3	2026-01-01 00:00:00+00
inbox_dedup	1	2	2026-01-01 00:00:00+00
\.
COPY txbox._generation_end (relname, gen, ended_at, ended_xid) FROM stdin;
outbox	0	2026-01-01 00:00:00+00	987654321
outbox	1	2026-01-01 00:01:00+00	987654322
\.
SELECT relname, current_gen, switched_at = now() AS switched_now
  FROM txbox._generation ORDER BY relname;
SELECT gen, ended_xid = pg_current_xact_id() AS ended_by_restore, ended_at = now() AS ended_now
  FROM txbox._generation_end WHERE relname = 'outbox' ORDER BY gen;
ROLLBACK;

-- restored relays and handlers come back paused; relays created here do not
BEGIN;
INSERT INTO txbox.relays (name, target, options, owner, snapshot, created_at, position_cluster)
VALUES ('restored', 'notify', '{"channel": "c"}', current_user::regrole, '5000:5010:5003',
		'2026-01-01 00:00:00+00', '7000000000000000000:1')
RETURNING name, paused;
INSERT INTO txbox.handlers (name, handler, owner, created_at)
VALUES ('restored', 'txbox._cluster()', current_user::regrole, '2026-01-01 00:00:00+00')
RETURNING name, paused;
SELECT txbox.create_relay('created', 'notify', NULL, '{"channel": "c"}');
-- a position saved on another cluster or timeline starts from the beginning
SELECT name, paused, position_cluster = txbox._cluster() AS here
  FROM txbox.relays ORDER BY name;
SELECT txbox._relays_adopt();
SELECT name, snapshot, batch_snapshot, batch_last_id, position_cluster = txbox._cluster() AS here
  FROM txbox.relays WHERE name = 'restored';
ROLLBACK;

-- this server's "system identifier:timeline"
SELECT txbox._cluster() = (SELECT system_identifier::text FROM pg_control_system())
	|| ':' || (SELECT timeline_id FROM pg_control_checkpoint()) AS cluster;
