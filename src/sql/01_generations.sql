-- The current generation of each rotated table.
CREATE TABLE txbox._generation (
	relname		name PRIMARY KEY,
	current_gen	smallint NOT NULL,
	generations	smallint NOT NULL CHECK (generations >= 2),
	switched_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	CHECK (current_gen >= 0 AND current_gen < generations)
);
INSERT INTO txbox._generation (relname, current_gen, generations) VALUES
	('outbox', 0, 3),
	('inbox_dedup', 0, 2),
	('idempotency_keys', 0, 2),
	('inbox', 0, 3);

-- When each generation stopped being current: by which transaction
-- (ended_xid) and when.  Retention truncates a generation only once every
-- relay's position includes ended_xid (txbox._maintain).
CREATE TABLE txbox._generation_end (
	relname		name NOT NULL,
	gen			smallint NOT NULL,
	ended_at	timestamptz NOT NULL,
	ended_xid	xid8 NOT NULL,
	PRIMARY KEY (relname, gen)
);

