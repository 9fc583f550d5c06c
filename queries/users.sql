-- Users: the people who sign in. Every query returns the full row (the `User` record).

-- name: create_user(email, password_hash, plan_type)<!
-- Insert a user; a taken email (in any letter case) violates users_email_fold_key.
-- record: User
INSERT INTO users (email, password_hash, plan_type)
VALUES (:email, :password_hash, :plan_type)
RETURNING id, email, password_hash, plan_type, created_at, updated_at;

-- name: get_user_by_id(id)^
-- One user by id.
-- record: User
SELECT id, email, password_hash, plan_type, created_at, updated_at
FROM users
WHERE id = :id;

-- name: get_user_by_email(email)^
-- One user by email, ignoring letter case as the unique index does (coderunner_fold, the
-- same on every server whatever its locale; served by users_email_fold_key).
-- record: User
SELECT id, email, password_hash, plan_type, created_at, updated_at
FROM users
WHERE coderunner_fold(email) = coderunner_fold(:email);

-- name: update_user(id, set_email, email, set_password_hash, password_hash, set_plan_type, plan_type)^
-- Change only the fields whose set_* flag is true; returns the row, or nothing when absent.
-- record: User
-- nullable: email, password_hash, plan_type
UPDATE users
SET email = CASE WHEN :set_email THEN :email ELSE email END,
    password_hash = CASE WHEN :set_password_hash THEN :password_hash ELSE password_hash END,
    plan_type = CASE WHEN :set_plan_type THEN :plan_type::plan_type ELSE plan_type END
WHERE id = :id
RETURNING id, email, password_hash, plan_type, created_at, updated_at;

-- name: delete_user(id)!
-- Delete a user; their projects and deployments go with them (ON DELETE CASCADE).
DELETE FROM users WHERE id = :id;

-- name: list_users(limit, offset)
-- A page of users, newest first; ties broken by id so pages are stable.
-- record: User
SELECT id, email, password_hash, plan_type, created_at, updated_at
FROM users
ORDER BY created_at DESC, id DESC
LIMIT :limit OFFSET :offset;

-- name: list_users_after(after_created_at, after_id, limit)
-- The page after a keyset cursor (the last row of the previous page): as cheap deep in the
-- listing as at its start, unlike OFFSET.
-- record: User
SELECT id, email, password_hash, plan_type, created_at, updated_at
FROM users
WHERE (created_at, id) < (:after_created_at, :after_id)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: count_users()$
-- How many users there are (exact, from the counters kept by triggers in row_counts).
SELECT coalesce(sum(n), 0)::bigint FROM row_counts WHERE counter = 'users';

-- name: count_users_in_scope()$
-- How many users a user-scoped transaction sees (row-level security filters the rows; the
-- platform-wide counters in row_counts are hidden inside a scope).
SELECT count(*) FROM users;
