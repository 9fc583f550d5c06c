"""Small builders for test data: each makes a real row through the service under test."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from coderunner_sql import DatabaseError, Deployment, Project, User


def unique_email(prefix: str = "user") -> str:
    """An address no other test row uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def make_user(db: Any, **fields: Any) -> User:
    """A new user; any field may be given."""
    fields.setdefault("email", unique_email())
    fields.setdefault("password_hash", "argon2$test-hash")
    user: User = db.create_user(**fields)
    return user


def make_project(db: Any, user: User | None = None, **fields: Any) -> Project:
    """A new project of `user` (a new user when None)."""
    owner = user if user is not None else make_user(db)
    fields.setdefault("name", f"project-{uuid.uuid4().hex[:8]}")
    project: Project = db.create_project(user_id=owner.id, **fields)
    return project


def make_deployment(db: Any, project: Project | None = None, **fields: Any) -> Deployment:
    """A new deployment of `project` (a new project when None)."""
    target = project if project is not None else make_project(db)
    fields.setdefault("runtime_type", "python")
    deployment: Deployment = db.create_deployment(project_id=target.id, **fields)
    return deployment


def count(db: Any, table: str) -> int:
    """How many rows `table` holds (read through the service's own `query()`)."""
    assert table in ("users", "projects", "deployments")
    rows = db.query(f"SELECT count(*) AS n FROM {table}")  # noqa: S608 - fixed table names
    return int(rows[0]["n"])


def assert_library_error(exc_info: pytest.ExceptionInfo[Any]) -> None:
    """The error is the library's own, never a driver error, and carries no driver cause."""
    exc = exc_info.value
    assert isinstance(exc, DatabaseError)
    assert not isinstance(exc, psycopg.Error)
    assert exc.__cause__ is None
    assert exc.__suppress_context__ or exc.__context__ is None
