-- Platform-wide statistics and server facts.

-- name: get_system_stats()^
-- Every count the `SystemStats` record holds, in one round trip, from the exact counters
-- that triggers keep in row_counts (summing a few dozen rows, not counting millions).
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

-- name: get_server_info()^
-- The server's version string and clock, for health checks.
SELECT version() AS version, now() AS server_time;
