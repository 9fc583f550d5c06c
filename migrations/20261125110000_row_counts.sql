-- Migration: row counts
-- Created: 2026-11-25T11:00:00Z
-- Description: exact row counts without count(*): users, projects, and deployments per
--   status, kept by statement-level triggers in sharded counter rows. count(*) grows with
--   the table (well over 100 ms at a million deployments); summing a few dozen counter rows
--   does not. Each writer adds to the shard of its backend (pid % 32), so concurrent writers
--   do not queue on one hot row; readers sum the shards. Counters change in the writer's own
--   transaction, so the sums are exact for every snapshot.

CREATE TABLE row_counts (
    counter text     NOT NULL,
    shard   smallint NOT NULL,
    n       bigint   NOT NULL,
    PRIMARY KEY (counter, shard)
);

CREATE FUNCTION row_counts_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    delta bigint;
BEGIN
    -- users and projects: one counter named after the table.
    IF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO delta FROM new_rows;
    ELSE
        SELECT -count(*) INTO delta FROM old_rows;
    END IF;
    IF delta <> 0 THEN
        INSERT INTO row_counts AS c (counter, shard, n)
        VALUES (TG_TABLE_NAME, pg_backend_pid() % 32, delta)
        ON CONFLICT (counter, shard) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION deployment_counts_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- deployments: one counter per status, changed by the statement's net effect. Rows are
    -- locked in counter order, so two statements never take one shard's rows in opposite
    -- orders. (A transition table exists only for the events its trigger names, hence the
    -- three branches.)
    IF TG_OP = 'INSERT' THEN
        INSERT INTO row_counts AS c (counter, shard, n)
        SELECT 'deployments.' || r.status, pg_backend_pid() % 32, count(*)
        FROM new_rows AS r GROUP BY r.status ORDER BY 1
        ON CONFLICT (counter, shard) DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO row_counts AS c (counter, shard, n)
        SELECT 'deployments.' || r.status, pg_backend_pid() % 32, -count(*)
        FROM old_rows AS r GROUP BY r.status ORDER BY 1
        ON CONFLICT (counter, shard) DO UPDATE SET n = c.n + excluded.n;
    ELSE
        INSERT INTO row_counts AS c (counter, shard, n)
        SELECT 'deployments.' || m.status, pg_backend_pid() % 32, sum(m.n)
        FROM (
            SELECT o.status, -1 AS n FROM old_rows AS o
            UNION ALL
            SELECT w.status, 1 FROM new_rows AS w
        ) AS m
        GROUP BY m.status
        HAVING sum(m.n) <> 0
        ORDER BY 1
        ON CONFLICT (counter, shard) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION row_counts_reset() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- TRUNCATE fires no row or statement DML triggers; start the table's counters over.
    DELETE FROM row_counts WHERE counter = TG_TABLE_NAME OR counter LIKE TG_TABLE_NAME || '.%';
    RETURN NULL;
END
$$;

CREATE TRIGGER users_count_truncate AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION row_counts_reset();

CREATE TRIGGER projects_count_truncate AFTER TRUNCATE ON projects
    FOR EACH STATEMENT EXECUTE FUNCTION row_counts_reset();

CREATE TRIGGER deployments_count_truncate AFTER TRUNCATE ON deployments
    FOR EACH STATEMENT EXECUTE FUNCTION row_counts_reset();

CREATE TRIGGER users_count_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION row_counts_apply();

CREATE TRIGGER users_count_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION row_counts_apply();

CREATE TRIGGER projects_count_insert AFTER INSERT ON projects
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION row_counts_apply();

CREATE TRIGGER projects_count_delete AFTER DELETE ON projects
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION row_counts_apply();

CREATE TRIGGER deployments_count_insert AFTER INSERT ON deployments
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deployment_counts_apply();

CREATE TRIGGER deployments_count_delete AFTER DELETE ON deployments
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION deployment_counts_apply();

CREATE TRIGGER deployments_count_status AFTER UPDATE ON deployments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deployment_counts_apply();

-- Rows that existed before this migration, all in shard 0.
INSERT INTO row_counts (counter, shard, n)
SELECT 'users', 0, count(*) FROM users
UNION ALL
SELECT 'projects', 0, count(*) FROM projects
UNION ALL
SELECT 'deployments.' || status, 0, count(*) FROM deployments GROUP BY status;
