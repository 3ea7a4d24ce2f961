/*-------------------------------------------------------------------------
 * txbox--0.1.0--0.2.0.sql
 *		ALTER EXTENSION txbox UPDATE from 0.1.0: every schema change made
 *		in src/sql/ since 0.1.0, in the order it was made.  A new function
 *		here is revoked from PUBLIC like every other (src/sql/11_grants.sql).
 *		test/t/080_upgrade.pl checks that 0.1.0 + this script gives the
 *		same catalog as a fresh 0.2.0 install.
 *-------------------------------------------------------------------------
 */
\echo Use "ALTER EXTENSION txbox UPDATE" to load this file. \quit

-- shape: the options of relays and handlers in one table (txbox.options(),
-- src/options.c); handlers' batch and backoff are now batch_size and
-- backoff_max, the old names still accepted
DROP FUNCTION txbox._check_options(text, jsonb, text[], jsonb, text[]);
-- The options of relays and handlers, one row each (src/options.c, where
-- the workers read the same table): what they apply to ('relay': every
-- relay, a relay target's name, 'handler'), the 0.1.0 spelling still
-- accepted (alias), kind (integer from min to max; interval over 0 and at
-- most a day; text), default (a value, or the setting that gives it).
CREATE FUNCTION txbox.options(OUT applies_to text, OUT name text, OUT alias text,
							  OUT kind text, OUT min integer, OUT max integer,
							  OUT default_value text)
RETURNS SETOF record
LANGUAGE c IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'txbox_options_sql';
COMMENT ON FUNCTION txbox.options() IS
	'the options of relays and handlers: names, 0.1.0 aliases, kinds, ranges, defaults';

-- Check the options of a relay or handler (what) against txbox.options()
-- rows of applies_to: a JSON object of known keys, integers within their
-- range, intervals over 0 and at most a day.  Returns them with every
-- alias replaced by its option's name.
CREATE FUNCTION txbox._check_options(what text, options jsonb, applies_to text[])
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	allowed text := (SELECT string_agg(o.name, ', ') FROM txbox.options() o
					  WHERE o.applies_to = ANY (_check_options.applies_to));
	o record;
	k text;
	example text;
BEGIN
	IF options IS NULL OR jsonb_typeof(options) <> 'object' THEN
		RAISE EXCEPTION '% options must be a JSON object', what
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = format('Options of a %s: %s.', what, allowed);
	END IF;
	FOR k IN SELECT jsonb_object_keys(options) LOOP
		IF NOT EXISTS (SELECT 1 FROM txbox.options() x
						WHERE x.applies_to = ANY (_check_options.applies_to)
						  AND k IN (x.name, x.alias)) THEN
			RAISE EXCEPTION 'unknown % option "%"', what, k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = format('Options of a %s: %s.', what, allowed);
		END IF;
	END LOOP;
	FOR o IN SELECT * FROM txbox.options() x WHERE x.applies_to = ANY (_check_options.applies_to) LOOP
		IF options ? o.name AND options ? o.alias THEN
			RAISE EXCEPTION '% option "%" is given twice, also as "%"', what, o.name, o.alias
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = format('"%s" is the earlier name of "%s": give only "%s".', o.alias, o.name, o.name);
		END IF;
		k := CASE WHEN options ? o.name THEN o.name WHEN options ? o.alias THEN o.alias END;
		CONTINUE WHEN k IS NULL;
		example := CASE WHEN o.default_value LIKE 'txbox.%' THEN current_setting(o.default_value)
						ELSE o.default_value END;
		IF o.kind = 'integer' AND (jsonb_typeof(options->k) <> 'number'
		   OR (options->>k)::numeric NOT BETWEEN o.min AND o.max
		   OR (options->>k)::numeric <> trunc((options->>k)::numeric)) THEN
			RAISE EXCEPTION '% option "%" must be an integer from % to %', what, k, o.min, o.max
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = format('For example ''{"%s": %s}''.', k, example);
		END IF;
		IF o.kind = 'interval' THEN
			BEGIN
				IF (options->>k)::interval <= interval '0' OR (options->>k)::interval > interval '1 day' THEN
					RAISE EXCEPTION USING ERRCODE = 'invalid_datetime_format';
				END IF;
			EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_text_representation THEN
				RAISE EXCEPTION '% option "%" must be an interval between 0 and 1 day', what, k
					USING ERRCODE = 'invalid_parameter_value', HINT = format('For example ''{"%s": "%s"}''.', k, example);
			END;
		END IF;
		IF k = o.alias THEN
			options := options - o.alias || jsonb_build_object(o.name, options->o.alias);
		END IF;
	END LOOP;
	RETURN options;
END
$$;

CREATE OR REPLACE FUNCTION txbox._relay_check_options(target text, options jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	options := txbox._check_options('relay', options, ARRAY['relay', target]);
	IF target = 'postgres' AND NOT options ? 'server' THEN
		RAISE EXCEPTION 'a postgres relay needs the option "server"'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Create a server with CREATE SERVER name FOREIGN DATA WRAPPER txbox_fdw OPTIONS (host ..., dbname ...) and a USER MAPPING, then pass ''{"server": "name"}''.';
	END IF;
	IF target = 'notify' AND (NOT options ? 'channel' OR jsonb_typeof(options->'channel') <> 'string'
	   OR options->>'channel' = '' OR length(options->>'channel') >= 64) THEN
		RAISE EXCEPTION 'a notify relay needs the option "channel" (a name of up to 63 characters)'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass ''{"channel": "orders_events"}''.';
	END IF;
	IF options ? 'from' AND NOT (options->>'from') IN ('now', 'beginning') THEN
		RAISE EXCEPTION 'relay option "from" must be "now" or "beginning"'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = '"beginning" also delivers the messages still retained in the outbox.';
	END IF;
	RETURN options;
END
$$;

CREATE OR REPLACE FUNCTION txbox._handler_check_options(handler_options jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT txbox._check_options('handler', handler_options, ARRAY['handler'])
$$;

REVOKE ALL ON FUNCTION txbox.options() FROM PUBLIC;
REVOKE ALL ON FUNCTION txbox._check_options(text, jsonb, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION txbox.options() TO PUBLIC;
