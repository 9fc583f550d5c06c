"""Transactions (`execute_in_transaction`, `transaction()`, begin/commit/rollback), raw SQL
through `query()`, and the rule that no driver exception ever reaches the caller.

Each test runs against `DatabaseService` and `AsyncDatabaseService` (the `db` fixture); the
async flavour's own syntax (`async with`, `async def fn(tx)`) is in test_async_service.py.
"""

from __future__ import annotations

import uuid

import pytest

from coderunner_sql import (
    AlreadyExistsError,
    DatabaseError,
    NotFoundError,
    PlanType,
    ValidationError,
)
from coderunner_sql.errors import QueryError
from coderunner_sql.service import DataAPI, Transaction
from coderunner_sql.service_async import AsyncDataAPI, AsyncTransaction
from tests.helpers import (
    assert_library_error,
    count,
    make_deployment,
    make_project,
    make_user,
    unique_email,
)

DATA_METHODS = sorted(name for name in vars(DataAPI) if not name.startswith("_"))
EXPECTED_DATA_METHODS = {
    "query",
    "run",
    "create_user",
    "get_user_by_id",
    "get_user_by_email",
    "update_user",
    "delete_user",
    "get_users",
    "create_project",
    "get_project_by_id",
    "get_projects_by_user_id",
    "update_project",
    "delete_project",
    "get_project_with_user",
    "create_deployment",
    "create_deployments",
    "get_deployment_by_id",
    "get_deployments_by_project_id",
    "get_deployments_by_status",
    "iter_deployments_by_status",
    "update_deployment_status",
    "update_deployment",
    "delete_deployment",
    "get_deployment_with_details",
    "get_running_deployment_count_by_user",
    "get_system_stats",
}


class Boom(Exception):
    """Raised by test bodies to force a rollback."""


# -- execute_in_transaction -------------------------------------------------------------


def test_execute_in_transaction_commits_and_returns_the_result(db):
    def body(tx):
        user = tx.create_user(email="tx@example.com", password_hash="h")
        project = tx.create_project(user_id=user.id, name="in-tx")
        tx.create_deployment(project_id=project.id, runtime_type="python")
        return user, project

    user, project = db.execute_in_transaction(body)

    assert db.get_user_by_id(user.id) == user
    assert db.get_project_by_id(project.id) == project
    assert db.get_deployments_by_project_id(project.id).total == 1


def test_execute_in_transaction_rolls_back_and_reraises(db):
    kept = make_user(db)

    def body(tx):
        tx.create_user(email="gone@example.com", password_hash="h")
        tx.update_user(kept.id, plan_type="team")
        tx.delete_user(kept.id)
        raise Boom("stop here")

    with pytest.raises(Boom, match="stop here"):
        db.execute_in_transaction(body)

    assert db.get_user_by_email("gone@example.com") is None
    assert db.get_user_by_id(kept.id) == kept
    assert count(db, "users") == 1


def test_execute_in_transaction_rolls_back_on_a_database_error(db):
    make_user(db, email="taken@example.com")

    def body(tx):
        tx.create_user(email="first@example.com", password_hash="h")
        tx.create_user(email="TAKEN@example.com", password_hash="h")

    with pytest.raises(AlreadyExistsError, match="email already exists") as caught:
        db.execute_in_transaction(body)

    assert_library_error(caught)
    assert db.get_user_by_email("first@example.com") is None
    assert count(db, "users") == 1


def test_a_transaction_whose_statement_failed_does_not_pretend_to_commit(db):
    # The body swallows the error and returns; PostgreSQL can only roll such a
    # transaction back, so returning normally would silently lose the first insert.
    make_user(db, email="taken@example.com")

    def body(tx):
        tx.create_user(email="would-be-lost@example.com", password_hash="h")
        with pytest.raises(AlreadyExistsError):
            tx.create_user(email="taken@example.com", password_hash="h")
        return "done"

    with pytest.raises(QueryError, match="rolled back") as caught:
        db.execute_in_transaction(body)

    assert_library_error(caught)
    assert db.get_user_by_email("would-be-lost@example.com") is None
    assert count(db, "users") == 1
    assert db.get_pool_info().connected_clients == 0  # the connection went back


# -- transaction() ----------------------------------------------------------------------


def test_transaction_block_commits_at_the_end(db):
    with db.transaction() as tx:
        user = tx.create_user(email="block@example.com", password_hash="h")
        # Not visible to other connections until the commit.
        assert db.get_user_by_id(user.id) is None
        assert tx.get_user_by_id(user.id) == user

    assert db.get_user_by_id(user.id) == user


def test_transaction_block_rolls_back_when_it_raises(db):
    user = make_user(db)

    def block():
        with db.transaction() as tx:
            tx.update_user(user.id, plan_type=PlanType.TEAM)
            tx.create_project(user_id=user.id, name="never")
            raise Boom

    with pytest.raises(Boom):
        block()

    assert db.get_user_by_id(user.id) == user
    assert count(db, "projects") == 0


def test_transaction_block_whose_statement_failed_raises_at_the_end(db):
    make_user(db, email="taken@example.com")

    def block():
        with db.transaction() as tx:
            tx.create_user(email="lost@example.com", password_hash="h")
            with pytest.raises(AlreadyExistsError):
                tx.create_user(email="taken@example.com", password_hash="h")

    with pytest.raises(QueryError, match="rolled back"):
        block()

    assert db.get_user_by_email("lost@example.com") is None


def test_a_stream_stopped_early_inside_a_transaction_still_commits(db):
    project = make_project(db)
    db.create_deployments([{"project_id": project.id, "runtime_type": "go"}] * 3)

    with db.transaction() as tx:
        stream = tx.iter_deployments_by_status("PENDING", batch_size=1)
        assert next(stream).project_id == project.id
        stream.close()
        user = tx.create_user(email="after-stream@example.com", password_hash="h")

    assert db.get_user_by_id(user.id) == user
    assert db.get_pool_info().connected_clients == 0


def test_streaming_in_a_failed_transaction_is_a_library_error(db):
    make_deployment(db)
    make_user(db, email="taken@example.com")

    def block():
        with db.transaction() as tx:
            with pytest.raises(AlreadyExistsError):
                tx.create_user(email="taken@example.com", password_hash="h")
            list(tx.iter_deployments_by_status("PENDING"))

    with pytest.raises(QueryError) as caught:
        block()

    assert_library_error(caught)
    assert db.get_pool_info().connected_clients == 0


# -- begin / commit / rollback ----------------------------------------------------------


def test_begin_and_commit_transaction(db):
    tx = db.begin_transaction()
    assert tx.active

    user = tx.create_user(email="begun@example.com", password_hash="h")
    assert db.get_user_by_id(user.id) is None
    db.commit_transaction(tx)

    assert not tx.active
    assert db.get_user_by_id(user.id) == user


def test_begin_and_rollback_transaction(db):
    project = make_project(db)

    tx = db.begin_transaction()
    tx.create_deployment(project_id=project.id, runtime_type="python")
    tx.delete_project(project.id)
    db.rollback_transaction(tx)

    assert not tx.active
    assert db.get_project_by_id(project.id) == project
    assert count(db, "deployments") == 0


def test_commit_and_rollback_on_the_transaction_itself(db):
    tx = db.begin_transaction()
    user = tx.create_user(email="own@example.com", password_hash="h")
    tx.commit()
    assert db.get_user_by_id(user.id) == user

    tx = db.begin_transaction()
    tx.delete_user(user.id)
    tx.rollback()
    assert db.get_user_by_id(user.id) == user


@pytest.mark.parametrize("finish", ["commit", "rollback"])
def test_a_finished_transaction_refuses_every_call(db, finish):
    tx = db.begin_transaction()
    getattr(tx, finish)()

    calls = [
        lambda: tx.query("SELECT 1"),
        lambda: tx.get_users(),
        lambda: tx.create_user(email=unique_email(), password_hash="h"),
        lambda: tx.get_system_stats(),
        tx.commit,
        tx.rollback,
        lambda: db.commit_transaction(tx),
        lambda: db.rollback_transaction(tx),
    ]
    for call in calls:
        with pytest.raises(DatabaseError, match="already finished") as caught:
            call()
        assert_library_error(caught)
    assert count(db, "users") == 0
    assert db.get_pool_info().connected_clients == 0


def test_transaction_classes_have_every_data_method():
    # A new data method fails this test until it is added here (and tested).
    assert set(DATA_METHODS) == EXPECTED_DATA_METHODS
    async_methods = sorted(name for name in vars(AsyncDataAPI) if not name.startswith("_"))
    assert async_methods == DATA_METHODS
    for name in DATA_METHODS:
        assert callable(getattr(Transaction, name))
        assert callable(getattr(AsyncTransaction, name))


def test_every_data_method_works_inside_one_transaction(db):
    def block():
        with db.transaction() as tx:
            user = tx.create_user(email="all@example.com", password_hash="h")
            assert tx.get_user_by_id(user.id) == user
            assert tx.get_user_by_email("ALL@example.com") == user
            user = tx.update_user(user.id, plan_type="personal")
            assert tx.get_users().items == [user]

            project = tx.create_project(user_id=user.id, name="all")
            assert tx.get_project_by_id(project.id) == project
            project = tx.update_project(project.id, description="every method")
            assert tx.get_projects_by_user_id(user.id).items == [project]
            assert tx.get_project_with_user(project.id).user == user

            one = tx.create_deployment(project_id=project.id, runtime_type="python")
            many = tx.create_deployments([{"project_id": project.id, "runtime_type": "go"}] * 2)
            assert tx.get_deployment_by_id(one.id) == one
            assert tx.get_deployments_by_project_id(project.id).total == 3
            one = tx.update_deployment_status(one.id, "RUNNING", expected="PENDING")
            assert tx.get_deployments_by_status("RUNNING").items == [one]
            assert list(tx.iter_deployments_by_status("RUNNING")) == [one]
            one = tx.update_deployment(one.id, public_url="https://all.example.com")
            assert tx.get_deployment_with_details(one.id).deployment == one
            assert tx.get_running_deployment_count_by_user(user.id) == 1
            stats = tx.get_system_stats()
            assert (stats.total_users, stats.total_projects, stats.total_deployments) == (1, 1, 3)
            assert tx.query("SELECT count(*) AS n FROM deployments") == [{"n": 3}]

            tx.delete_deployment(many[0].id)
            tx.delete_project(project.id)
            tx.delete_user(user.id)
            assert tx.get_system_stats().total_users == 0
            tx.create_user(email="left-behind@example.com", password_hash="h")
            raise Boom

    with pytest.raises(Boom):
        block()

    assert (count(db, "users"), count(db, "projects"), count(db, "deployments")) == (0, 0, 0)


def test_errors_inside_a_transaction_are_the_library_errors(db):
    with pytest.raises(NotFoundError) as caught, db.transaction() as tx:
        tx.update_user(uuid.uuid4(), plan_type="team")
    assert_library_error(caught)

    with pytest.raises(ValidationError, match="id must be a UUID"), db.transaction() as tx:
        tx.delete_project("nope")

    assert db.get_pool_info().connected_clients == 0


# -- query() ----------------------------------------------------------------------------


def test_query_with_positional_placeholders(db):
    user = make_user(db, email="raw@example.com")

    assert db.query("SELECT %s::int + %s::int AS total", [2, 3]) == [{"total": 5}]
    assert db.query("SELECT email FROM users WHERE id = %s", (user.id,)) == [
        {"email": "raw@example.com"}
    ]


def test_query_with_named_placeholders(db):
    make_user(db, email="a@example.com", plan_type="team")
    make_user(db, email="b@example.com", plan_type="team")
    make_user(db, email="c@example.com")

    rows = db.query(
        "SELECT email FROM users WHERE plan_type = %(plan)s::plan_type AND email <> %(skip)s"
        " ORDER BY email",
        {"plan": "team", "skip": "b@example.com"},
    )

    assert rows == [{"email": "a@example.com"}]


def test_query_binds_values_and_never_splices_them(db):
    make_user(db)
    nasty = "x'); DROP TABLE users; --"

    assert db.query("SELECT %s AS v", [nasty]) == [{"v": nasty}]
    assert count(db, "users") == 1


def test_query_without_rows_returns_an_empty_list(db):
    user = make_user(db)

    assert db.query("UPDATE users SET plan_type = 'team' WHERE id = %s", [user.id]) == []
    assert db.get_user_by_id(user.id).plan_type is PlanType.TEAM
    assert db.query("SELECT 1 AS one WHERE false") == []
    assert db.query("SELECT 1 AS one") == [{"one": 1}]


def test_query_takes_any_iterable_of_parameters(db):
    assert db.query("SELECT %s::int AS a, %s::int AS b", iter([1, 2])) == [{"a": 1, "b": 2}]
    assert db.query("SELECT %s::int AS a", (n for n in [7])) == [{"a": 7}]


@pytest.mark.parametrize("params", ["text", b"bytes", 5, object()])
def test_query_rejects_parameters_that_are_not_a_list_or_dict(db, params):
    with pytest.raises(ValidationError, match="params") as caught:
        db.query("SELECT %s AS v", params)
    assert_library_error(caught)


@pytest.mark.parametrize(
    ("sql", "params", "error"),
    [
        ("SELEC 1", None, QueryError),
        ("SELECT * FROM no_such_table", None, QueryError),
        ("SELECT 1/0", None, ValidationError),
        ("SELECT %s::int, %s::int", [1], QueryError),
        ("SELECT %(a)s", {"b": 1}, QueryError),
        ("SELECT %s", [object()], QueryError),
        ("SELECT 'x'::uuid", None, ValidationError),
        ("INSERT INTO users (email, password_hash) VALUES ('bad', 'h')", None, ValidationError),
        ("INSERT INTO projects (user_id, name) VALUES (gen_random_uuid(), 'x')", None,
         NotFoundError),
    ],
)  # fmt: skip
def test_query_errors_are_library_errors(db, sql, params, error):
    with pytest.raises(error) as caught:
        db.query(sql, params)

    assert_library_error(caught)
    assert str(caught.value).startswith("query: ")
    assert db.query("SELECT 1 AS alive") == [{"alive": 1}]  # the pool is still fine


def test_no_driver_exception_escapes_any_data_method(db):
    user = make_user(db, email="taken@example.com")
    project = make_project(db, user, name="taken")
    deployment = make_deployment(db, project, status="RUNNING")
    missing = uuid.uuid4()
    calls = [
        lambda: db.create_user(email="taken@example.com", password_hash="h"),
        lambda: db.create_user(email="bad", password_hash="h"),
        lambda: db.create_user(email=unique_email(), password_hash="h", plan_type="x"),
        lambda: db.get_user_by_id("nope"),
        lambda: db.update_user(missing),
        lambda: db.delete_user(missing),
        lambda: db.get_users(limit=0),
        lambda: db.create_project(user_id=user.id, name="TAKEN"),
        lambda: db.create_project(user_id=missing, name="x"),
        lambda: db.update_project(project.id, name=""),
        lambda: db.delete_project(missing),
        lambda: db.get_projects_by_user_id(user.id, offset=-1),
        lambda: db.create_deployment(project_id=missing, runtime_type="python"),
        lambda: db.create_deployments([{"project_id": missing, "runtime_type": "python"}]),
        lambda: db.update_deployment_status(deployment.id, "STOPPED", expected="PENDING"),
        lambda: db.update_deployment(deployment.id, runtime_type="NOPE"),
        lambda: db.delete_deployment(missing),
        lambda: db.get_deployments_by_status("nope"),
        lambda: db.query("SELECT broken("),
    ]
    for call in calls:
        with pytest.raises(DatabaseError) as caught:
            call()
        assert_library_error(caught)
    assert db.get_deployment_by_id(deployment.id) == deployment
