-- Platform-wide statistics and server facts.

-- name: get_system_stats()^
-- Every count the `SystemStats` record holds, in one round trip.
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
