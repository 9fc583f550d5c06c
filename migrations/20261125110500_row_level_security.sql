-- Migration: row level security
-- Created: 2026-11-25T11:05:00Z
-- Description: tenant isolation. coderunner_app is the application's role (NOLOGIN: grant it
--   to the login your application uses): it may read and write rows but not change the
--   schema. When a transaction sets coderunner.user_id (DatabaseService.for_user does, with
--   set_config(..., true)), row-level security limits it to that user's row, projects and
--   deployments, whatever SQL it runs. Unset, the role sees every row (platform-wide work:
--   stats, admin). Superusers and the tables' owner, the role that runs migrations, are not
--   bound by row-level security.

-- Roles are cluster-wide: the first database migrated creates it, the others (and a
-- concurrent migration of another database) find it there. A migrating role that may not
-- create roles (a database owner without CREATEROLE) skips it with a notice: the policies
-- below bind every role but the owner all the same, and an administrator can create the
-- role and run the GRANTs of this file later.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'coderunner_app') THEN
        BEGIN
            CREATE ROLE coderunner_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'role coderunner_app not created: % may not create roles',
                    current_user;
                RETURN;
        END;
    END IF;
    EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON users, projects, deployments TO coderunner_app';
    -- Counters change only through the triggers, which run as the owner (below): the
    -- application may read them, not write them.
    EXECUTE 'GRANT SELECT ON row_counts TO coderunner_app';
    -- `initialize()` reads the migration bookkeeping (the checksum table exists when
    -- `coderunner-sql migrate` applied this file, not after a plain `yoyo apply`).
    IF to_regclass('_yoyo_migration') IS NOT NULL THEN
        EXECUTE 'GRANT SELECT ON _yoyo_migration, _yoyo_version TO coderunner_app';
    END IF;
    IF to_regclass('_coderunner_migrations') IS NOT NULL THEN
        EXECUTE 'GRANT SELECT ON _coderunner_migrations TO coderunner_app';
    END IF;
END
$$;

-- The user a transaction is limited to, or NULL for none. Policies call it as
-- `(SELECT coderunner_scope_user_id())`, so it runs once per statement, not once per row.
CREATE FUNCTION coderunner_scope_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('coderunner.user_id', true), '')::uuid $$;

ALTER TABLE users ENABLE ROW LEVEL SECURITY;

CREATE POLICY users_scope ON users
    USING ((SELECT coderunner_scope_user_id()) IS NULL
           OR id = (SELECT coderunner_scope_user_id()));

ALTER TABLE projects ENABLE ROW LEVEL SECURITY;

CREATE POLICY projects_scope ON projects
    USING ((SELECT coderunner_scope_user_id()) IS NULL
           OR user_id = (SELECT coderunner_scope_user_id()));

ALTER TABLE deployments ENABLE ROW LEVEL SECURITY;

CREATE POLICY deployments_scope ON deployments
    USING ((SELECT coderunner_scope_user_id()) IS NULL
           OR EXISTS (SELECT FROM projects AS p
                      WHERE p.id = deployments.project_id
                        AND p.user_id = (SELECT coderunner_scope_user_id())));

-- Platform-wide counters are not one user's business: hidden inside a user scope (a scoped
-- service counts the rows it can see instead).
ALTER TABLE row_counts ENABLE ROW LEVEL SECURITY;

CREATE POLICY row_counts_platform ON row_counts FOR SELECT
    USING ((SELECT coderunner_scope_user_id()) IS NULL);

-- The counter triggers (every trigger function here that writes row_counts) run as its owner,
-- so a scoped write still counts; with a fixed search_path, as every SECURITY DEFINER
-- function must have.
DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure
        FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = current_schema()::regnamespace
          AND p.prorettype = 'pg_catalog.trigger'::regtype
          AND p.prosrc LIKE '%row_counts%'
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp',
                       fn, current_schema());
    END LOOP;
END
$$;
