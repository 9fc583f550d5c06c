-- Migration: row level security
-- Created: 2026-11-25T11:05:00Z
-- Description: tenant isolation with two roles (NOLOGIN: grant coderunner_app to the login
--   your application uses). coderunner_app reads and writes every row (platform-wide work:
--   stats, admin) but cannot change the schema. coderunner_tenant sees and changes one
--   user's row, projects and deployments: the user named by the transaction-local setting
--   coderunner.user_id, and nothing when it is unset. DatabaseService.for_user() switches a
--   transaction to it (SET LOCAL ROLE, which coderunner_app may do). Superusers and the
--   tables' owner, the role that runs migrations, are not bound by row-level security.

-- Roles are cluster-wide: the first database migrated creates them, the others (and a
-- concurrent migration of another database) find them there. A migrating role that may
-- not create roles (a database owner without CREATEROLE) skips this with a notice: the
-- policies below still bind every role but the owner, and an administrator can create the
-- roles and run this block later.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['coderunner_app', 'coderunner_tenant'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE'
                               ' NOBYPASSRLS', role_name);
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN
                    NULL;
                WHEN insufficient_privilege THEN
                    RAISE NOTICE 'roles coderunner_app and coderunner_tenant not created: '
                                 '% may not create roles', current_user;
                    RETURN;
            END;
        END IF;
    END LOOP;
    IF NOT pg_has_role('coderunner_app', 'coderunner_tenant', 'MEMBER') THEN
        GRANT coderunner_tenant TO coderunner_app;
    END IF;
    GRANT SELECT, INSERT, UPDATE, DELETE ON users, projects, deployments
        TO coderunner_app, coderunner_tenant;
    -- Counters change only through the triggers, which run as the owner (below): the
    -- platform may read them; a tenant has no business with platform-wide counts.
    GRANT SELECT ON row_counts TO coderunner_app;
    -- `initialize()` reads the migration bookkeeping (the checksum table exists when
    -- `coderunner-sql migrate` applied this file, not after a plain `yoyo apply`).
    IF to_regclass('_yoyo_migration') IS NOT NULL THEN
        GRANT SELECT ON _yoyo_migration, _yoyo_version TO coderunner_app;
    END IF;
    IF to_regclass('_coderunner_migrations') IS NOT NULL THEN
        GRANT SELECT ON _coderunner_migrations TO coderunner_app;
    END IF;
END
$$;

-- The user a transaction is limited to, or NULL.
CREATE FUNCTION coderunner_scope_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('coderunner.user_id', true), '')::uuid $$;

-- That user's projects, as an array a policy compares with `= ANY`, which an index on
-- project_id serves (a correlated EXISTS would be checked row by row).
CREATE FUNCTION coderunner_scope_project_ids() RETURNS uuid[]
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(id), '{}') FROM projects WHERE user_id = coderunner_scope_user_id()
$$;

-- Pinned, with pg_temp last: otherwise a temporary table called projects would stand in for
-- the real one when a tenant's own SQL made one.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION coderunner_scope_project_ids()'
                   ' SET search_path = %I, pg_temp', current_schema());
END
$$;

-- Policies are called as `(SELECT coderunner_scope_…())`: run once per statement, not per row.
-- For coderunner_app the policy is `true`, which the planner drops: no cost, every index.
ALTER TABLE users ENABLE ROW LEVEL SECURITY;

CREATE POLICY users_platform ON users TO coderunner_app USING (true) WITH CHECK (true);

CREATE POLICY users_tenant ON users TO coderunner_tenant
    USING (id = (SELECT coderunner_scope_user_id()));

ALTER TABLE projects ENABLE ROW LEVEL SECURITY;

CREATE POLICY projects_platform ON projects TO coderunner_app USING (true) WITH CHECK (true);

CREATE POLICY projects_tenant ON projects TO coderunner_tenant
    USING (user_id = (SELECT coderunner_scope_user_id()));

ALTER TABLE deployments ENABLE ROW LEVEL SECURITY;

CREATE POLICY deployments_platform ON deployments TO coderunner_app
    USING (true) WITH CHECK (true);

CREATE POLICY deployments_tenant ON deployments TO coderunner_tenant
    USING (project_id = ANY ((SELECT coderunner_scope_project_ids())::uuid[]));

-- The counter triggers (every trigger function here that writes row_counts) run as its
-- owner, so a tenant's writes still count without a grant on the counters; with a fixed
-- search_path, as every SECURITY DEFINER function must have.
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
