-- Rollback: row level security
-- The role coderunner_app stays: it is cluster-wide, and other databases may use it.

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

DROP POLICY row_counts_platform ON row_counts;

ALTER TABLE row_counts DISABLE ROW LEVEL SECURITY;

DROP POLICY deployments_scope ON deployments;

ALTER TABLE deployments DISABLE ROW LEVEL SECURITY;

DROP POLICY projects_scope ON projects;

ALTER TABLE projects DISABLE ROW LEVEL SECURITY;

DROP POLICY users_scope ON users;

ALTER TABLE users DISABLE ROW LEVEL SECURITY;

DROP FUNCTION coderunner_scope_user_id();

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'coderunner_app') THEN
        RETURN;
    END IF;
    IF to_regclass('_coderunner_migrations') IS NOT NULL THEN
        EXECUTE 'REVOKE SELECT ON _coderunner_migrations FROM coderunner_app';
    END IF;
    IF to_regclass('_yoyo_migration') IS NOT NULL THEN
        EXECUTE 'REVOKE SELECT ON _yoyo_migration, _yoyo_version FROM coderunner_app';
    END IF;
    EXECUTE 'REVOKE ALL ON row_counts FROM coderunner_app';
    EXECUTE 'REVOKE ALL ON users, projects, deployments FROM coderunner_app';
END
$$;
