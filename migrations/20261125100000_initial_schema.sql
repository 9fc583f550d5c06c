-- Migration: initial schema
-- Created: 2026-11-25T10:00:00Z
-- Description: users, projects and deployments, their enum types, the updated_at
--   trigger, and an index for every lookup the data API makes.

CREATE TYPE plan_type AS ENUM ('free', 'personal', 'team');

CREATE TYPE deployment_status AS ENUM ('PENDING', 'RUNNING', 'STOPPED', 'FAILED');

CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TABLE users (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text        NOT NULL,
    password_hash text        NOT NULL,
    plan_type     plan_type   NOT NULL DEFAULT 'free',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_shape CHECK (
        char_length(email) <= 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$'
    ),
    CONSTRAINT users_password_hash_length CHECK (char_length(password_hash) BETWEEN 1 AND 1024)
);

CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE INDEX users_created_at_idx ON users (created_at DESC, id DESC);

CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW) EXECUTE FUNCTION set_updated_at();

CREATE TABLE projects (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        text        NOT NULL,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT projects_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
    CONSTRAINT projects_description_length CHECK (char_length(description) <= 10000)
);

CREATE UNIQUE INDEX projects_user_name_lower_key ON projects (user_id, lower(name));

CREATE INDEX projects_user_created_idx ON projects (user_id, created_at DESC, id DESC);

CREATE TRIGGER projects_set_updated_at BEFORE UPDATE ON projects
    FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW) EXECUTE FUNCTION set_updated_at();

CREATE TABLE deployments (
    id                 uuid              PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id         uuid              NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    app_sandbox_id     text,
    public_url         text,
    db_sandbox_id      text,
    db_connection_info jsonb,
    status             deployment_status NOT NULL DEFAULT 'PENDING',
    runtime_type       text              NOT NULL,
    created_at         timestamptz       NOT NULL DEFAULT now(),
    updated_at         timestamptz       NOT NULL DEFAULT now(),
    CONSTRAINT deployments_public_url_shape CHECK (
        char_length(public_url) <= 2048 AND public_url ~ '^https?://[^[:space:]]+$'
    ),
    CONSTRAINT deployments_runtime_type_shape CHECK (runtime_type ~ '^[a-z][a-z0-9_.-]{0,31}$'),
    CONSTRAINT deployments_sandbox_id_length CHECK (
        char_length(app_sandbox_id) <= 255 AND char_length(db_sandbox_id) <= 255
    )
);

CREATE INDEX deployments_project_created_idx ON deployments (project_id, created_at DESC, id DESC);

CREATE INDEX deployments_status_created_idx ON deployments (status, created_at DESC, id DESC);

CREATE TRIGGER deployments_set_updated_at BEFORE UPDATE ON deployments
    FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW) EXECUTE FUNCTION set_updated_at();
