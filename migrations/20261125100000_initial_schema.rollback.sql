-- Rollback: initial schema

DROP TABLE deployments;

DROP TABLE projects;

DROP TABLE users;

DROP FUNCTION set_updated_at();

DROP TYPE deployment_status;

DROP TYPE plan_type;
