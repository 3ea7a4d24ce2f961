-- try(sql): run sql and return 'ok', or the SQLSTATE, message and hint of
-- its error, so that every error path shows its SQLSTATE.  Included by
-- every sql/*.sql file (\i sql/include/try.sql; pg_regress runs psql in
-- the tree's root).
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
	hint text;
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		hint = PG_EXCEPTION_HINT;
	-- qualified: tests run it under hostile search_paths too
	RETURN st OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) msg OPERATOR(pg_catalog.||)
		CASE WHEN hint IS NULL OR hint OPERATOR(pg_catalog.=) '' THEN ''
			 ELSE ' (HINT: ' OPERATOR(pg_catalog.||) hint OPERATOR(pg_catalog.||) ')' END;
END $$;
