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
