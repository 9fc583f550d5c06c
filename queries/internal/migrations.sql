-- Bookkeeping for `coderunner-sql migrate`: yoyo tracks *which* migrations ran (by a hash
-- of their id); this table adds *what* ran: a SHA-256 of each applied file's content.

-- name: migration_checksums_table_exists()$
-- Whether the checksum table exists yet (to_regclass is NULL for a missing table).
SELECT to_regclass('_coderunner_migrations') IS NOT NULL;

-- name: create_migration_checksums_table#
-- Create the checksum table when it does not exist yet.
CREATE TABLE IF NOT EXISTS _coderunner_migrations (
    migration_id text        PRIMARY KEY,
    sha256       text        NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    recorded_by  text        NOT NULL
);

-- name: get_applied_migrations()
-- Every migration yoyo marked applied, its recorded checksum (NULL when applied by plain
-- `yoyo apply` and not seen since), oldest first.
SELECT y.migration_id, y.applied_at_utc, c.sha256
FROM _yoyo_migration AS y
LEFT JOIN _coderunner_migrations AS c ON c.migration_id = y.migration_id
ORDER BY y.applied_at_utc, y.migration_id;

-- name: record_migration_checksum(migration_id, sha256, recorded_by)!
-- Remember the content hash of an applied migration.
INSERT INTO _coderunner_migrations (migration_id, sha256, recorded_by)
VALUES (:migration_id, :sha256, :recorded_by)
ON CONFLICT (migration_id) DO UPDATE
SET sha256 = excluded.sha256, recorded_at = now(), recorded_by = excluded.recorded_by;

-- name: forget_migration_checksum(migration_id)!
-- Drop the hash of a migration that was rolled back.
DELETE FROM _coderunner_migrations WHERE migration_id = :migration_id;

-- name: try_migration_lock(lock_key)$
-- Take the session-level advisory lock that serialises migration runs; it dies with the
-- session, so a crashed run never blocks the next deploy.
SELECT pg_try_advisory_lock(:lock_key);

-- name: release_migration_lock(lock_key)$
-- Release the migration lock.
SELECT pg_advisory_unlock(:lock_key);

-- name: migration_repairs_table_exists()$
-- Whether the repair history table exists yet.
SELECT to_regclass('_coderunner_migration_repairs') IS NOT NULL;

-- name: create_migration_repairs_table#
-- Create the history of `migrate repair`: who re-recorded which checksum, and when.
CREATE TABLE IF NOT EXISTS _coderunner_migration_repairs (
    repair_id    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    migration_id text        NOT NULL,
    old_sha256   text        NOT NULL,
    new_sha256   text        NOT NULL,
    repaired_at  timestamptz NOT NULL DEFAULT now(),
    repaired_by  text        NOT NULL DEFAULT session_user,
    operator     text
);

-- name: record_migration_repair(migration_id, old_sha256, new_sha256, operator)!
-- Keep one repair in the history (the database role is taken from the session).
INSERT INTO _coderunner_migration_repairs (migration_id, old_sha256, new_sha256, operator)
VALUES (:migration_id, :old_sha256, :new_sha256, :operator);

-- name: get_migration_repairs()
-- Every repair, oldest first.
SELECT migration_id, old_sha256, new_sha256, repaired_at, repaired_by, operator
FROM _coderunner_migration_repairs
ORDER BY repaired_at, repair_id;

-- name: repeatables_table_exists()$
-- Whether the table of applied repeatable (post-apply) migrations exists yet.
SELECT to_regclass('_coderunner_repeatables') IS NOT NULL;

-- name: create_repeatables_table#
-- Create the table of repeatable migrations: the checksum each was last applied with.
CREATE TABLE IF NOT EXISTS _coderunner_repeatables (
    name       text        PRIMARY KEY,
    sha256     text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text        NOT NULL DEFAULT session_user
);

-- name: get_repeatables()
-- Every repeatable migration applied by `coderunner-sql migrate`, with its checksum.
SELECT name, sha256, applied_at FROM _coderunner_repeatables ORDER BY name;

-- name: record_repeatable(name, sha256)!
-- Remember the content hash a repeatable migration was just applied with.
INSERT INTO _coderunner_repeatables (name, sha256)
VALUES (:name, :sha256)
ON CONFLICT (name) DO UPDATE
SET sha256 = excluded.sha256, applied_at = now(), applied_by = session_user;

-- name: get_schema_objects()
-- What the migrations built, one row per object (kind, name, definition), bookkeeping
-- tables left out: `migrate baseline` compares it with a scratch database's. Positions
-- (attnum) and owners are left out too, as a restored dump need not keep them.
WITH rel AS (
    SELECT c.oid, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity,
           n.nspname, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND NOT starts_with(n.nspname, 'pg_toast') AND NOT starts_with(n.nspname, 'pg_temp')
      AND NOT starts_with(c.relname, '_yoyo') AND c.relname <> 'yoyo_lock'
      AND NOT starts_with(c.relname, '_coderunner_')
      AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
),
user_types AS (
    SELECT t.oid, t.typtype, t.typbasetype, t.typtypmod, t.typnotnull,
           quote_ident(n.nspname) || '.' || quote_ident(t.typname) AS qualified
    FROM pg_catalog.pg_type AS t
    JOIN pg_catalog.pg_namespace AS n ON n.oid = t.typnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND NOT starts_with(n.nspname, 'pg_toast') AND NOT starts_with(n.nspname, 'pg_temp')
      AND t.typtype IN ('e', 'd', 'r', 'm')
)
SELECT kind, name, definition FROM (
    SELECT 'relation' AS kind, rel.qualified AS name,
           concat_ws(' ', rel.relkind::text,
                     CASE WHEN rel.relrowsecurity THEN 'row-level-security' END,
                     CASE WHEN rel.relforcerowsecurity THEN 'forced' END) AS definition
    FROM rel
    UNION ALL
    SELECT 'column', rel.qualified || '.' || quote_ident(a.attname),
           concat_ws(' ', pg_catalog.format_type(a.atttypid, a.atttypmod),
                     CASE WHEN a.attnotnull THEN 'NOT NULL' END,
                     CASE WHEN a.attidentity <> '' THEN 'IDENTITY ' || a.attidentity::text END,
                     CASE WHEN a.attgenerated <> '' THEN 'GENERATED' END,
                     'DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid))
    FROM rel
    JOIN pg_catalog.pg_attribute AS a ON a.attrelid = rel.oid
    LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped AND rel.relkind <> 'S'
    UNION ALL
    SELECT 'view', rel.qualified, pg_catalog.pg_get_viewdef(rel.oid)
    FROM rel WHERE rel.relkind IN ('v', 'm')
    UNION ALL
    SELECT 'constraint', rel.qualified || '.' || quote_ident(con.conname),
           pg_catalog.pg_get_constraintdef(con.oid)
    FROM rel JOIN pg_catalog.pg_constraint AS con ON con.conrelid = rel.oid
    UNION ALL
    SELECT 'index', rel.qualified || '.' || quote_ident(i.relname), pg_catalog.pg_get_indexdef(i.oid)
    FROM rel
    JOIN pg_catalog.pg_index AS x ON x.indrelid = rel.oid
    JOIN pg_catalog.pg_class AS i ON i.oid = x.indexrelid
    UNION ALL
    SELECT 'trigger', rel.qualified || '.' || quote_ident(tg.tgname),
           pg_catalog.pg_get_triggerdef(tg.oid)
    FROM rel JOIN pg_catalog.pg_trigger AS tg ON tg.tgrelid = rel.oid
    WHERE NOT tg.tgisinternal
    UNION ALL
    SELECT 'policy', rel.qualified || '.' || quote_ident(p.polname),
           concat_ws(' ', p.polcmd::text, CASE WHEN p.polpermissive THEN 'permissive' END,
                     (SELECT string_agg(CASE WHEN r = 0 THEN 'public'
                                             ELSE pg_catalog.pg_get_userbyid(r)::text END,
                                        ',' ORDER BY 1)
                      FROM unnest(p.polroles) AS r),
                     'USING ' || pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                     'CHECK ' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid))
    FROM rel JOIN pg_catalog.pg_policy AS p ON p.polrelid = rel.oid
    UNION ALL
    SELECT 'function', p.oid::regprocedure::text, pg_catalog.pg_get_functiondef(p.oid)
    FROM pg_catalog.pg_proc AS p
    JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND p.prokind IN ('f', 'p')
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS dep
                      WHERE dep.classid = 'pg_catalog.pg_proc'::regclass
                        AND dep.objid = p.oid AND dep.deptype = 'e')
    UNION ALL
    SELECT 'type', ut.qualified,
           concat_ws(' ', ut.typtype::text,
                     (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                      FROM pg_catalog.pg_enum AS e WHERE e.enumtypid = ut.oid),
                     CASE WHEN ut.typtype = 'd'
                          THEN pg_catalog.format_type(ut.typbasetype, ut.typtypmod) END,
                     CASE WHEN ut.typnotnull THEN 'NOT NULL' END,
                     (SELECT string_agg(pg_catalog.pg_get_constraintdef(c.oid), ' '
                                        ORDER BY c.conname)
                      FROM pg_catalog.pg_constraint AS c WHERE c.contypid = ut.oid))
    FROM user_types AS ut
    UNION ALL
    SELECT 'extension', x.extname, x.extversion
    FROM pg_catalog.pg_extension AS x WHERE x.extname <> 'plpgsql'
) AS objects
ORDER BY kind, name;

-- name: grant_bookkeeping_reads#
-- Let the application role read the repair history and the repeatables, as the
-- row_level_security migration lets it read the checksums: migrate status works as that role.
-- Run after every apply, since the role is created by a migration (after these tables).
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'coderunner_app') THEN
        GRANT SELECT ON _coderunner_migration_repairs, _coderunner_repeatables TO coderunner_app;
    END IF;
END
$$;
