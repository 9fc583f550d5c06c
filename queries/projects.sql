-- Projects: a user's apps. Every query returns the full row (the `Project` record) unless noted.

-- name: create_project(user_id, name, description)<!
-- Insert a project; the name is unique per user ignoring case (projects_user_name_fold_key).
-- record: Project
-- nullable: description
INSERT INTO projects (user_id, name, description)
VALUES (:user_id, :name, :description)
RETURNING id, user_id, name, description, created_at, updated_at;

-- name: get_project_by_id(id)^
-- One project by id.
-- record: Project
SELECT id, user_id, name, description, created_at, updated_at
FROM projects
WHERE id = :id;

-- name: list_projects_by_user_id(user_id, limit, offset)
-- A page of one user's projects, newest first.
-- record: Project
SELECT id, user_id, name, description, created_at, updated_at
FROM projects
WHERE user_id = :user_id
ORDER BY created_at DESC, id DESC
LIMIT :limit OFFSET :offset;

-- name: list_projects_by_user_id_after(user_id, after_created_at, after_id, limit)
-- The page of one user's projects after a keyset cursor.
-- record: Project
SELECT id, user_id, name, description, created_at, updated_at
FROM projects
WHERE user_id = :user_id AND (created_at, id) < (:after_created_at, :after_id)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: count_projects_by_user_id(user_id)$
-- How many projects one user has.
SELECT count(*) FROM projects WHERE user_id = :user_id;

-- name: update_project(id, set_name, name, set_description, description)^
-- Change only the fields whose set_* flag is true (description may be set to NULL).
-- record: Project
-- nullable: name, description
UPDATE projects
SET name = CASE WHEN :set_name THEN :name ELSE name END,
    description = CASE WHEN :set_description THEN :description ELSE description END
WHERE id = :id
RETURNING id, user_id, name, description, created_at, updated_at;

-- name: delete_project(id)!
-- Delete a project and its deployments.
DELETE FROM projects WHERE id = :id;

-- name: get_project_with_user(id)^
-- A project and its owner (the `ProjectWithUser` record: columns prefixed project__ / user__).
-- record: ProjectWithUser
SELECT p.id AS project__id, p.user_id AS project__user_id, p.name AS project__name,
       p.description AS project__description, p.created_at AS project__created_at,
       p.updated_at AS project__updated_at,
       u.id AS user__id, u.email AS user__email, u.password_hash AS user__password_hash,
       u.plan_type AS user__plan_type, u.created_at AS user__created_at,
       u.updated_at AS user__updated_at
FROM projects AS p
JOIN users AS u ON u.id = p.user_id
WHERE p.id = :id;
