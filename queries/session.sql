-- Per-connection and per-transaction settings the services apply. Values are bound
-- parameters passed to set_config, never spliced into SQL.

-- name: set_statement_timeout(timeout, is_local)$
-- Cap how long one statement may run (milliseconds, as text); is_local limits it to the
-- current transaction.
SELECT set_config('statement_timeout', :timeout, :is_local);

-- name: set_user_scope(user_id)!
-- Limit the current transaction to one user's rows: switch to the role the row-level
-- security policies bind (migrations/*_row_level_security.sql) and name the user, both
-- transaction-local (SET LOCAL ROLE and SET LOCAL, as set_config's third argument says).
SELECT set_config('role', 'coderunner_tenant', true),
       set_config('coderunner.user_id', :user_id, true);
