-- Rollback: locale independent case folding
-- Plain (not CONCURRENTLY) statements, so this runs in a transaction or out of one; the
-- lower() indexes block writes to their table while they build. Statement for statement,
-- the migration in reverse: yoyo pairs them by position to undo a run that failed part-way.

CREATE UNIQUE INDEX IF NOT EXISTS projects_user_name_lower_key ON projects (user_id, lower(name));

CREATE UNIQUE INDEX IF NOT EXISTS users_email_lower_key ON users (lower(email));

DROP INDEX IF EXISTS projects_user_name_fold_key;

DROP INDEX IF EXISTS users_email_fold_key;

-- The duplicate check changed nothing.
SELECT;

DROP FUNCTION IF EXISTS coderunner_fold(text);
