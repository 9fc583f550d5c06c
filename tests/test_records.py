"""Records the services return: secrets stay out of repr/str and (unless asked) out of
`to_dict`, `to_dict` output is JSON-ready, and records are frozen.

The records come from the real database through the `db` fixture, so what is checked is
what callers get (both services build them through the same converter).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import attrs
import pytest

from coderunner_sql import (
    DeploymentStatus,
    NewDeployment,
    PlanType,
    to_dict,
)
from tests.helpers import make_deployment, make_project, make_user

PASSWORD_HASH = "argon2id$v=19$m=65536$SECRET-HASH-VALUE"
CONNECTION_INFO = {"host": "db.internal", "password": "SECRET-DB-PASSWORD", "port": 5432}


@pytest.fixture
def rows(db):
    """One of each record, read back from the database."""
    user = make_user(db, email="Owner@Example.com", password_hash=PASSWORD_HASH, plan_type="team")
    project = make_project(db, user, name="records", description="has secrets below")
    deployment = make_deployment(
        db,
        project,
        runtime_type="python",
        public_url="https://records.example.com",
        db_connection_info=CONNECTION_INFO,
        status=DeploymentStatus.RUNNING,
    )
    return {
        "user": db.get_user_by_id(user.id),
        "project": db.get_project_by_id(project.id),
        "deployment": db.get_deployment_by_id(deployment.id),
        "project_with_user": db.get_project_with_user(project.id),
        "details": db.get_deployment_with_details(deployment.id),
        "users_page": db.get_users(),
        "deployments_page": db.get_deployments_by_status("RUNNING"),
        "stats": db.get_system_stats(),
        "health": db.health_check(),
        "pool": db.get_pool_info(),
    }


def assert_no_secret(text):
    assert "SECRET-HASH-VALUE" not in text
    assert "SECRET-DB-PASSWORD" not in text
    assert "password_hash" not in text
    assert "db_connection_info" not in text


# -- repr and str -----------------------------------------------------------------------


def test_user_repr_and_str_leave_the_password_hash_out(rows):
    user = rows["user"]

    assert user.password_hash == PASSWORD_HASH  # it is there, just not shown
    for text in (repr(user), str(user), f"{user}", f"{user!r}"):
        assert_no_secret(text)
        assert "Owner@Example.com" in text
        assert str(user.id) in text


def test_deployment_repr_and_str_leave_the_connection_info_out(rows):
    deployment = rows["deployment"]

    assert deployment.db_connection_info == CONNECTION_INFO
    for text in (repr(deployment), str(deployment)):
        assert_no_secret(text)
        assert "db.internal" not in text
        assert "https://records.example.com" in text
        assert "RUNNING" in text


@pytest.mark.parametrize("name", ["project_with_user", "details", "users_page", "deployments_page"])
def test_nested_records_leave_secrets_out_of_repr(rows, name):
    record = rows[name]

    assert_no_secret(repr(record))
    assert_no_secret(str(record))


def test_new_deployment_repr_leaves_the_connection_info_out(rows):
    new = NewDeployment(
        project_id=rows["project"].id, runtime_type="python", db_connection_info=CONNECTION_INFO
    )

    assert_no_secret(repr(new))
    assert "python" in repr(new)


# -- to_dict ----------------------------------------------------------------------------


def test_to_dict_of_a_user_leaves_the_hash_out_unless_asked(rows):
    user = rows["user"]

    plain = to_dict(user)
    full = to_dict(user, secrets=True)

    assert "password_hash" not in plain
    assert plain == {
        "id": str(user.id),
        "email": "Owner@Example.com",
        "plan_type": "team",
        "created_at": user.created_at.isoformat(),
        "updated_at": user.updated_at.isoformat(),
    }
    assert full == {**plain, "password_hash": PASSWORD_HASH}
    assert datetime.fromisoformat(plain["created_at"]) == user.created_at
    assert uuid.UUID(plain["id"]) == user.id
    assert PlanType(plain["plan_type"]) is user.plan_type


def test_to_dict_of_a_deployment_leaves_the_connection_info_out_unless_asked(rows):
    deployment = rows["deployment"]

    plain = to_dict(deployment)
    full = to_dict(deployment, secrets=True)

    assert "db_connection_info" not in plain
    assert plain["status"] == "RUNNING"
    assert plain["project_id"] == str(deployment.project_id)
    assert plain["public_url"] == "https://records.example.com"
    assert plain["app_sandbox_id"] is None
    assert full["db_connection_info"] == CONNECTION_INFO
    assert set(full) - set(plain) == {"db_connection_info"}


def test_to_dict_of_nested_records(rows):
    details = rows["details"]

    plain = to_dict(details)
    full = to_dict(details, secrets=True)

    assert set(plain) == {"deployment", "project", "user"}
    assert "password_hash" not in plain["user"]
    assert "db_connection_info" not in plain["deployment"]
    assert plain["project"]["description"] == "has secrets below"
    assert full["user"]["password_hash"] == PASSWORD_HASH
    assert full["deployment"]["db_connection_info"] == CONNECTION_INFO
    assert to_dict(rows["project_with_user"])["user"] == to_dict(rows["user"])


@pytest.mark.parametrize("name", ["users_page", "deployments_page"])
def test_to_dict_of_a_page(rows, name):
    page = rows[name]

    plain = to_dict(page)

    assert plain["total"] == page.total == 1
    assert plain["limit"] == 50
    assert plain["offset"] == 0
    assert len(plain["items"]) == 1
    assert plain["items"][0]["id"] == str(page.items[0].id)
    assert_no_secret(json.dumps(plain))


def test_to_dict_of_stats_health_and_pool(rows):
    stats = to_dict(rows["stats"])
    health = to_dict(rows["health"])
    pool = to_dict(rows["pool"])

    assert stats["deployments_by_status"] == {
        "PENDING": 0,
        "RUNNING": 1,
        "STOPPED": 0,
        "FAILED": 0,
    }
    assert stats["total_users"] == 1
    assert health["status"] == "healthy"
    assert health["details"]["version"].startswith("PostgreSQL")
    assert datetime.fromisoformat(health["details"]["timestamp"]).tzinfo is not None
    assert health["details"]["pool"]["total_count"] >= 1
    assert set(pool) == {"total_count", "idle_count", "waiting_count", "connected_clients"}


@pytest.mark.parametrize("secrets", [False, True])
def test_to_dict_output_is_json_serialisable(rows, secrets):
    for name, record in rows.items():
        plain = to_dict(record, secrets=secrets)
        text = json.dumps(plain)
        assert json.loads(text) == plain, name
        if not secrets:
            assert_no_secret(text)


# -- frozen -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("user", "email"),
        ("user", "password_hash"),
        ("project", "name"),
        ("deployment", "status"),
        ("deployment", "db_connection_info"),
        ("project_with_user", "user"),
        ("details", "deployment"),
        ("users_page", "total"),
        ("stats", "total_users"),
        ("health", "status"),
        ("pool", "idle_count"),
    ],
)
def test_records_are_frozen(rows, name, field):
    record = rows[name]
    before = getattr(record, field)

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(record, field, None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        delattr(record, field)

    assert getattr(record, field) == before


def test_records_compare_by_value(db, rows):
    assert db.get_user_by_id(rows["user"].id) == rows["user"]
    assert db.get_deployment_by_id(rows["deployment"].id) == rows["deployment"]
    assert attrs.evolve(rows["user"], email="other@example.com") != rows["user"]
    assert hash(rows["user"]) == hash(db.get_user_by_id(rows["user"].id))
