-- Rollback: row counts

DROP TRIGGER deployments_count_status ON deployments;

DROP TRIGGER deployments_count_delete ON deployments;

DROP TRIGGER deployments_count_insert ON deployments;

DROP TRIGGER projects_count_delete ON projects;

DROP TRIGGER projects_count_insert ON projects;

DROP TRIGGER users_count_delete ON users;

DROP TRIGGER users_count_insert ON users;

DROP TRIGGER deployments_count_truncate ON deployments;

DROP TRIGGER projects_count_truncate ON projects;

DROP TRIGGER users_count_truncate ON users;

DROP FUNCTION row_counts_reset();

DROP FUNCTION deployment_counts_apply();

DROP FUNCTION row_counts_apply();

DROP TABLE row_counts;
