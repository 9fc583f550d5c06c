-- Platform-wide statistics and server facts.

-- name: get_system_stats()^
-- Every count the `SystemStats` record holds, in one round trip, from the exact counters
-- that triggers keep in row_counts (summing a few dozen rows, not counting millions).
-- record: SystemStats
SELECT coalesce(sum(n) FILTER (WHERE counter = 'users'), 0)::bigint AS total_users,
       coalesce(sum(n) FILTER (WHERE counter = 'projects'), 0)::bigint AS total_projects,
       coalesce(sum(n) FILTER (WHERE starts_with(counter, 'deployments.')), 0)::bigint
           AS total_deployments,
       coalesce(sum(n) FILTER (WHERE counter = 'deployments.RUNNING'), 0)::bigint
           AS running_deployments,
       coalesce(
           (SELECT jsonb_object_agg(substr(s.counter, 13), s.n)
            FROM (SELECT counter, sum(n) AS n FROM row_counts
                  WHERE starts_with(counter, 'deployments.') GROUP BY counter) AS s),
           '{}'::jsonb
       ) AS deployments_by_status
FROM row_counts;

-- name: get_system_stats_in_scope()^
-- The `SystemStats` counts of what a user-scoped transaction sees: counted row by row, as
-- row-level security filters the tables and hides the platform-wide counters.
-- record: SystemStats
SELECT (SELECT count(*) FROM users) AS total_users,
       (SELECT count(*) FROM projects) AS total_projects,
       (SELECT count(*) FROM deployments) AS total_deployments,
       (SELECT count(*) FROM deployments WHERE status = 'RUNNING') AS running_deployments,
       (SELECT coalesce(jsonb_object_agg(s.status, s.n), '{}'::jsonb)
        FROM (SELECT status, count(*) AS n FROM deployments GROUP BY status) AS s)
           AS deployments_by_status;

-- name: get_server_info()^
-- The server's version string and clock, for health checks.
SELECT version() AS version, now() AS server_time;
