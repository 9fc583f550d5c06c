-- Rollback: row level security
-- The roles stay: they are cluster-wide, and other databases may use them.

DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure
        FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = current_schema()::regnamespace
          AND p.prorettype = 'pg_catalog.trigger'::regtype
          AND p.prosecdef
          AND p.prosrc LIKE '%row_counts%'
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY INVOKER RESET search_path', fn);
    END LOOP;
END
$$;

DROP POLICY deployments_tenant ON deployments;

DROP POLICY deployments_platform ON deployments;

ALTER TABLE deployments DISABLE ROW LEVEL SECURITY;

DROP POLICY projects_tenant ON projects;

DROP POLICY projects_platform ON projects;

ALTER TABLE projects DISABLE ROW LEVEL SECURITY;

DROP POLICY users_tenant ON users;

DROP POLICY users_platform ON users;

ALTER TABLE users DISABLE ROW LEVEL SECURITY;

DROP FUNCTION coderunner_scope_project_ids();

DROP FUNCTION coderunner_scope_user_id();

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'coderunner_app') THEN
        RETURN;
    END IF;
    IF to_regclass('_coderunner_migrations') IS NOT NULL THEN
        REVOKE SELECT ON _coderunner_migrations FROM coderunner_app;
    END IF;
    IF to_regclass('_yoyo_migration') IS NOT NULL THEN
        REVOKE SELECT ON _yoyo_migration, _yoyo_version FROM coderunner_app;
    END IF;
    REVOKE ALL ON row_counts FROM coderunner_app;
    REVOKE ALL ON users, projects, deployments FROM coderunner_app, coderunner_tenant;
END
$$;
