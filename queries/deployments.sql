-- Deployments: a project's sandboxes. Every query returns the full row (the `Deployment`
-- record) unless noted.

-- name: create_deployment(project_id, runtime_type, app_sandbox_id, public_url, db_sandbox_id, db_connection_info, status)<!
-- Insert one deployment.
-- record: Deployment
-- nullable: app_sandbox_id, public_url, db_sandbox_id, db_connection_info
INSERT INTO deployments (project_id, runtime_type, app_sandbox_id, public_url, db_sandbox_id,
                         db_connection_info, status)
VALUES (:project_id, :runtime_type, :app_sandbox_id, :public_url, :db_sandbox_id,
        :db_connection_info, :status)
RETURNING id, project_id, app_sandbox_id, public_url, db_sandbox_id, db_connection_info,
          status, runtime_type, created_at, updated_at;

-- name: create_deployments(project_ids, runtime_types, app_sandbox_ids, public_urls, db_sandbox_ids, db_connection_infos, statuses)
-- Insert many deployments in one statement (all or nothing): one array per column, same length.
-- record: Deployment
INSERT INTO deployments (project_id, runtime_type, app_sandbox_id, public_url, db_sandbox_id,
                         db_connection_info, status)
SELECT *
FROM unnest(:project_ids::uuid[], :runtime_types::text[], :app_sandbox_ids::text[],
            :public_urls::text[], :db_sandbox_ids::text[], :db_connection_infos::jsonb[],
            :statuses::deployment_status[])
RETURNING id, project_id, app_sandbox_id, public_url, db_sandbox_id, db_connection_info,
          status, runtime_type, created_at, updated_at;

-- name: get_deployment_by_id(id)^
-- One deployment by id.
-- record: Deployment
SELECT id, project_id, app_sandbox_id, public_url, db_sandbox_id, db_connection_info,
       status, runtime_type, created_at, updated_at
FROM deployments
WHERE id = :id;

-- name: get_deployment_status(id)$
-- The current status of one deployment (tells "missing" from "changed" after a failed update).
SELECT status FROM deployments WHERE id = :id;

-- name: list_deployments_by_project_id(project_id, limit, offset)
-- A page of one project's deployments, newest first.
-- record: Deployment
SELECT id, project_id, app_sandbox_id, public_url, db_sandbox_id, db_connection_info,
       status, runtime_type, created_at, updated_at
FROM deployments
WHERE project_id = :project_id
ORDER BY created_at DESC, id DESC
LIMIT :limit OFFSET :offset;

-- name: list_deployments_by_project_id_after(project_id, after_created_at, after_id, limit)
-- The page of one project's deployments after a keyset cursor.
-- record: Deployment
SELECT id, project_id, app_sandbox_id, public_url, db_sandbox_id, db_connection_info,
       status, runtime_type, created_at, updated_at
FROM deployments
WHERE project_id = :project_id AND (created_at, id) < (:after_created_at, :after_id)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: count_deployments_by_project_id(project_id)$
-- How many deployments one project has.
SELECT count(*) FROM deployments WHERE project_id = :project_id;

-- name: list_deployments_by_status(status, limit, offset)
-- A page of the deployments in one status, newest first. (`status` leads the ORDER BY to
-- match deployments_status_created_idx: under row-level security the planner may not
-- treat status as fixed, enum equality being not leakproof, and would sort instead.)
-- record: Deployment
SELECT id, project_id, app_sandbox_id, public_url, db_sandbox_id, db_connection_info,
       status, runtime_type, created_at, updated_at
FROM deployments
WHERE status = :status
ORDER BY status, created_at DESC, id DESC
LIMIT :limit OFFSET :offset;

-- name: list_deployments_by_status_after(status, after_created_at, after_id, limit)
-- The page of deployments in one status after a keyset cursor.
-- record: Deployment
SELECT id, project_id, app_sandbox_id, public_url, db_sandbox_id, db_connection_info,
       status, runtime_type, created_at, updated_at
FROM deployments
WHERE status = :status AND (created_at, id) < (:after_created_at, :after_id)
ORDER BY status, created_at DESC, id DESC
LIMIT :limit;

-- name: stream_deployments_by_status(status)
-- Every deployment in one status, newest first, read through a server-side cursor.
-- record: Deployment
SELECT id, project_id, app_sandbox_id, public_url, db_sandbox_id, db_connection_info,
       status, runtime_type, created_at, updated_at
FROM deployments
WHERE status = :status
ORDER BY status, created_at DESC, id DESC;

-- name: count_deployments_by_status(status)$
-- How many deployments are in one status (exact, from the counters in row_counts).
SELECT coalesce(sum(n), 0)::bigint FROM row_counts WHERE counter = 'deployments.' || :status;

-- name: update_deployment_status(id, status, expected)^
-- Set the status; when expected is not NULL, only if the current status equals it.
-- record: Deployment
-- nullable: expected
UPDATE deployments
SET status = :status
WHERE id = :id
  AND (:expected::deployment_status IS NULL OR status = :expected::deployment_status)
RETURNING id, project_id, app_sandbox_id, public_url, db_sandbox_id, db_connection_info,
          status, runtime_type, created_at, updated_at;

-- name: update_deployment(id, set_app_sandbox_id, app_sandbox_id, set_public_url, public_url, set_db_sandbox_id, db_sandbox_id, set_db_connection_info, db_connection_info, set_status, status, set_runtime_type, runtime_type)^
-- Change only the fields whose set_* flag is true (nullable ones may be set to NULL).
-- record: Deployment
-- nullable: app_sandbox_id, public_url, db_sandbox_id, db_connection_info, status, runtime_type
UPDATE deployments
SET app_sandbox_id = CASE WHEN :set_app_sandbox_id THEN :app_sandbox_id ELSE app_sandbox_id END,
    public_url = CASE WHEN :set_public_url THEN :public_url ELSE public_url END,
    db_sandbox_id = CASE WHEN :set_db_sandbox_id THEN :db_sandbox_id ELSE db_sandbox_id END,
    db_connection_info = CASE WHEN :set_db_connection_info THEN :db_connection_info::jsonb
                              ELSE db_connection_info END,
    status = CASE WHEN :set_status THEN :status::deployment_status ELSE status END,
    runtime_type = CASE WHEN :set_runtime_type THEN :runtime_type ELSE runtime_type END
WHERE id = :id
RETURNING id, project_id, app_sandbox_id, public_url, db_sandbox_id, db_connection_info,
          status, runtime_type, created_at, updated_at;

-- name: delete_deployment(id)!
-- Delete one deployment.
DELETE FROM deployments WHERE id = :id;

-- name: get_deployment_with_details(id)^
-- A deployment with its project and the project's owner (the `DeploymentDetails` record).
-- record: DeploymentDetails
SELECT d.id AS deployment__id, d.project_id AS deployment__project_id,
       d.app_sandbox_id AS deployment__app_sandbox_id, d.public_url AS deployment__public_url,
       d.db_sandbox_id AS deployment__db_sandbox_id,
       d.db_connection_info AS deployment__db_connection_info, d.status AS deployment__status,
       d.runtime_type AS deployment__runtime_type, d.created_at AS deployment__created_at,
       d.updated_at AS deployment__updated_at,
       p.id AS project__id, p.user_id AS project__user_id, p.name AS project__name,
       p.description AS project__description, p.created_at AS project__created_at,
       p.updated_at AS project__updated_at,
       u.id AS user__id, u.email AS user__email, u.password_hash AS user__password_hash,
       u.plan_type AS user__plan_type, u.created_at AS user__created_at,
       u.updated_at AS user__updated_at
FROM deployments AS d
JOIN projects AS p ON p.id = d.project_id
JOIN users AS u ON u.id = p.user_id
WHERE d.id = :id;

-- name: get_running_deployment_count_by_user(user_id)$
-- How many of one user's deployments are RUNNING (0 for none or an unknown user).
SELECT count(*)
FROM deployments AS d
JOIN projects AS p ON p.id = d.project_id
WHERE p.user_id = :user_id AND d.status = 'RUNNING';

-- name: list_connection_infos_to_rotate(after_id, kid, batch_size)
-- The next batch, by id, of connection infos not yet encrypted under key `kid` (plaintext
-- ones too), locked until the rotating transaction commits.
SELECT id, db_connection_info
FROM deployments
WHERE id > :after_id
  AND db_connection_info IS NOT NULL
  AND (db_connection_info -> '$encrypted' ->> 'kid') IS DISTINCT FROM :kid
ORDER BY id
LIMIT :batch_size
FOR UPDATE;

-- name: update_connection_infos(ids, infos)!
-- Replace the connection info of many deployments in one statement (two arrays, one order).
UPDATE deployments AS d
SET db_connection_info = u.info
FROM unnest(:ids::uuid[], :infos::jsonb[]) AS u (id, info)
WHERE d.id = u.id;

-- name: count_deployments_by_status_in_scope(status)$
-- How many deployments in one status a user-scoped transaction sees (counted, as the
-- platform-wide counters in row_counts are hidden inside a scope).
SELECT count(*) FROM deployments WHERE status = :status;
