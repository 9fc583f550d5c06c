-- What `coderunner-sql check` reads from the system catalogs, and the names of its
-- scratch database. Every value is a bound parameter; identifiers are quoted by the server.

-- name: get_scratch_database_statements(name)^
-- The statements that create and drop the check's scratch database, the name quoted by
-- quote_ident (CREATE DATABASE takes no parameters, so the name cannot be bound there).
SELECT 'CREATE DATABASE ' || quote_ident(:name::text) AS create_statement,
       'DROP DATABASE IF EXISTS ' || quote_ident(:name::text) || ' WITH (FORCE)'
           AS drop_statement;

-- name: get_table_columns()
-- Every column of every table, view and foreign table outside the system schemas: where it
-- lives, whether it is NOT NULL, and whether an INSERT may leave it out (default, identity,
-- generated).
SELECT c.oid AS table_oid, n.nspname AS schema_name, c.relname AS table_name,
       c.relkind::text AS table_kind, a.attnum AS column_number, a.attname AS column_name,
       a.attnotnull AS not_null,
       (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_attribute AS a ON a.attrelid = c.oid
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND a.attnum > 0
  AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT starts_with(n.nspname, 'pg_toast')
ORDER BY c.oid, a.attnum;

-- name: get_types(oids)
-- Name, kind, element type (of an array), base type (of a domain) and enum labels (in
-- order) of the given types.
SELECT t.oid, n.nspname AS schema_name, t.typname AS type_name,
       format_type(t.oid, NULL) AS display_name, t.typtype::text AS type_kind,
       CASE WHEN t.typcategory = 'A' THEN t.typelem END AS element_oid,
       t.typbasetype AS base_oid,
       ARRAY(SELECT e.enumlabel::text
             FROM pg_enum AS e
             WHERE e.enumtypid = t.oid
             ORDER BY e.enumsortorder) AS labels
FROM pg_type AS t
JOIN pg_namespace AS n ON n.oid = t.typnamespace
WHERE t.oid = ANY(:oids::oid[]);

-- name: has_migration_table()$
-- Whether yoyo's bookkeeping table exists (a database never migrated has none).
SELECT to_regclass('_yoyo_migration') IS NOT NULL;

-- name: get_applied_migration_ids()
-- Ids of the migrations yoyo marked applied, oldest first.
SELECT migration_id FROM _yoyo_migration ORDER BY applied_at_utc, migration_id;

-- name: get_volatile_functions(names)
-- Which of the given function names have a volatile overload (one that may write).
SELECT DISTINCT p.proname::text AS function_name
FROM pg_proc AS p
WHERE p.provolatile = 'v' AND p.proname = ANY(:names::text[])
ORDER BY 1;
