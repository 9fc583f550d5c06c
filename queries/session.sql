-- Per-connection and per-transaction settings the services apply. Values are bound
-- parameters passed to set_config, never spliced into SQL.

-- name: set_statement_timeout(timeout, is_local)$
-- Cap how long one statement may run (milliseconds, as text); is_local limits it to the
-- current transaction.
SELECT set_config('statement_timeout', :timeout, :is_local);
