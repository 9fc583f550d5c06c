-- The test plugin's own statements (`coderunner_sql.testing`): throwaway databases made,
-- sealed as templates, and dropped. Every value is bound; identifiers are quoted by the
-- server (CREATE and ALTER DATABASE take no parameters, so the name cannot be bound there).

-- name: get_test_database_statements(name, template)^
-- The statements that create `name` (a copy of `template` unless it is NULL), seal it as a
-- template nobody may connect to, unseal it again, and drop it even while it is in use.
SELECT 'CREATE DATABASE ' || quote_ident(:name::text)
           || coalesce(' TEMPLATE ' || quote_ident(:template::text), '') AS create_statement,
       'ALTER DATABASE ' || quote_ident(:name::text)
           || ' WITH IS_TEMPLATE true ALLOW_CONNECTIONS false' AS seal_statement,
       'ALTER DATABASE ' || quote_ident(:name::text)
           || ' WITH IS_TEMPLATE false ALLOW_CONNECTIONS true' AS unseal_statement,
       'DROP DATABASE IF EXISTS ' || quote_ident(:name::text) || ' WITH (FORCE)'
           AS drop_statement;

-- name: disconnect_test_database(name)$
-- End every other session on database `name` (a template is copied only when nobody is
-- connected); returns how many were ended.
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
FROM pg_stat_activity
WHERE datname = :name::text AND pid <> pg_backend_pid();

-- name: test_database_exists(name)$
-- Whether a database of this name exists.
SELECT EXISTS (SELECT FROM pg_database WHERE datname = :name::text);
