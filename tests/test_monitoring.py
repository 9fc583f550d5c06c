"""Monitoring and lifecycle: health checks, pool info, system statistics, the slow-query log,
connect/disconnect, `get_instance`, `initialize`, and many threads sharing one pool.

Tests taking `db` or `open_service` run against both services; `with` and `get_instance`
of the sync service are here, their async twins in test_async_service.py. Tests that need a
service of their own but not an empty database open it on `shared_db_config` (the `db`
services' database) rather than paying for a fresh database.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from coderunner_sql import (
    AsyncDatabaseService,
    DatabaseError,
    DatabaseService,
    DatabaseUnavailableError,
    DeploymentStatus,
    HealthReport,
    PoolInfo,
    SchemaNotReadyError,
    SystemStats,
)
from coderunner_sql.embedded import free_port
from coderunner_sql.resources import migrations_dir
from tests.helpers import count, make_deployment, make_project, make_user

ALL_MIGRATIONS = [
    path.name.removesuffix(".sql")
    for path in sorted(migrations_dir().glob("*.sql"))
    if not path.name.endswith(".rollback.sql")
]


def closed_port_config(config):
    """`config` pointed at a local port nothing listens on."""
    return config.replace(host="127.0.0.1", port=free_port(), connection_timeout_ms=1_000)


def wait_until(predicate, timeout=5.0):
    """Poll `predicate` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


# -- health -----------------------------------------------------------------------------


def test_health_check_of_a_connected_service_is_healthy(db):
    before = datetime.now(UTC)

    report = db.health_check()

    assert isinstance(report, HealthReport)
    assert report.status == "healthy"
    assert report.healthy
    details = report.details
    assert details.error is None
    assert details.version.startswith("PostgreSQL ")
    assert isinstance(details.response_time_ms, float)
    assert 0 < details.response_time_ms < 10_000
    assert isinstance(details.pool, PoolInfo)
    assert details.pool.total_count >= 1
    assert details.timestamp.tzinfo is not None
    assert abs(details.timestamp - before) < timedelta(minutes=5)


def test_health_check_of_a_service_never_connected_is_unhealthy(open_service, shared_db_config):
    service = open_service(shared_db_config, connect=False)

    report = service.health_check()

    assert report.status == "unhealthy"
    assert not report.healthy
    assert "not connected" in report.details.error
    assert report.details.version is None
    assert report.details.response_time_ms is None
    assert report.details.pool is None
    assert report.details.timestamp.tzinfo is not None


def test_a_closed_port_is_unavailable_and_unhealthy_without_raising(open_service, shared_db_config):
    config = closed_port_config(shared_db_config)
    service = open_service(config, connect=False)

    with pytest.raises(DatabaseUnavailableError) as caught:
        service.connect()

    assert f"127.0.0.1:{config.port}" in str(caught.value)
    report = service.health_check()
    assert report.status == "unhealthy"
    assert report.details.error
    assert service.get_pool_info() == PoolInfo(0, 0, 0, 0)


def test_health_check_after_disconnect_is_unhealthy(open_service, shared_db_config):
    service = open_service(shared_db_config)
    assert service.health_check().healthy

    service.disconnect()

    report = service.health_check()
    assert report.status == "unhealthy"
    assert "not connected" in report.details.error


# -- pool info --------------------------------------------------------------------------


def test_get_pool_info_at_rest_and_with_a_connection_out(db):
    db.get_users()

    resting = db.get_pool_info()

    assert isinstance(resting, PoolInfo)
    assert resting.total_count >= 1
    assert resting.idle_count == resting.total_count
    assert resting.waiting_count == 0
    assert resting.connected_clients == 0

    tx = db.begin_transaction()
    try:
        busy = db.get_pool_info()
        assert busy.connected_clients >= 1
        assert busy.idle_count == busy.total_count - busy.connected_clients
        assert busy.total_count <= 4  # the test config's pool_max
    finally:
        tx.rollback()

    assert db.get_pool_info().connected_clients == 0


def test_get_pool_info_of_a_disconnected_service_is_all_zero(open_service, shared_db_config):
    service = open_service(shared_db_config)
    assert service.get_pool_info().total_count >= 1

    service.disconnect()

    assert service.get_pool_info() == PoolInfo(
        total_count=0, idle_count=0, waiting_count=0, connected_clients=0
    )


# -- system statistics ------------------------------------------------------------------


def test_get_system_stats_of_an_empty_database(db):
    stats = db.get_system_stats()

    assert stats == SystemStats(
        total_users=0,
        total_projects=0,
        total_deployments=0,
        running_deployments=0,
        deployments_by_status=dict.fromkeys(DeploymentStatus, 0),
    )
    assert list(stats.deployments_by_status) == list(DeploymentStatus)


def test_get_system_stats_counts_every_row(db):
    users = [make_user(db) for _ in range(3)]
    projects = [make_project(db, users[0]), make_project(db, users[0]), make_project(db, users[1])]
    for project, status in (
        (projects[0], "RUNNING"),
        (projects[0], "RUNNING"),
        (projects[1], "RUNNING"),
        (projects[1], "PENDING"),
        (projects[2], "STOPPED"),
    ):
        make_deployment(db, project, status=status)
    db.create_deployments([{"project_id": projects[2].id, "runtime_type": "go"}] * 2)

    stats = db.get_system_stats()

    assert (stats.total_users, stats.total_projects, stats.total_deployments) == (3, 3, 7)
    assert stats.running_deployments == 3
    assert stats.deployments_by_status == {
        DeploymentStatus.PENDING: 3,
        DeploymentStatus.RUNNING: 3,
        DeploymentStatus.STOPPED: 1,
        DeploymentStatus.FAILED: 0,
    }
    assert all(type(n) is int for n in stats.deployments_by_status.values())


def test_get_system_stats_follows_updates_and_cascading_deletes(db):
    user = make_user(db)
    project = make_project(db, user)
    first = make_deployment(db, project, status="RUNNING")
    make_deployment(db, project, status="PENDING")
    other = make_deployment(db, status="FAILED")

    db.update_deployment_status(first.id, "STOPPED")
    db.update_deployment(other.id, status="RUNNING")
    db.update_deployment(other.id, public_url="https://same-status.example.com")
    moved = db.get_system_stats()

    assert moved.running_deployments == 1
    assert moved.deployments_by_status == {
        DeploymentStatus.PENDING: 1,
        DeploymentStatus.RUNNING: 1,
        DeploymentStatus.STOPPED: 1,
        DeploymentStatus.FAILED: 0,
    }

    db.delete_user(user.id)  # takes its project and two deployments along
    after = db.get_system_stats()

    assert (after.total_users, after.total_projects, after.total_deployments) == (1, 1, 1)
    assert after.deployments_by_status[DeploymentStatus.RUNNING] == 1
    assert sum(after.deployments_by_status.values()) == after.total_deployments
    assert (count(db, "users"), count(db, "projects"), count(db, "deployments")) == (1, 1, 1)


def test_get_system_stats_sees_a_rolled_back_transaction_as_nothing(db):
    make_deployment(db, status="RUNNING")
    before = db.get_system_stats()

    def body(tx):
        deployment = make_deployment(tx, status="RUNNING")
        tx.update_deployment_status(deployment.id, "FAILED")
        assert tx.get_system_stats().total_deployments == 2
        raise RuntimeError("undo")

    with pytest.raises(RuntimeError, match="undo"):
        db.execute_in_transaction(body)

    assert db.get_system_stats() == before


# -- slow-query log ---------------------------------------------------------------------


def test_slow_queries_are_logged_with_name_and_milliseconds_never_parameters(
    open_service, db_config, caplog
):
    service = open_service(db_config.replace(slow_query_ms=1))

    with caplog.at_level(logging.WARNING, logger="coderunner_sql.queries"):
        rows = service.query(
            "SELECT pg_sleep(0.01), %s::text AS token", ["hunter2-parameter-secret"]
        )

    assert rows[0]["token"] == "hunter2-parameter-secret"
    slow = [r for r in caplog.records if r.name == "coderunner_sql.queries"]
    assert slow, "no slow-query warning was logged"
    record = slow[-1]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith("slow query query took ")
    assert message.endswith(" ms")
    assert int(message.split()[-2]) >= 10
    assert "hunter2" not in caplog.text
    assert all("hunter2" not in repr(r.args) for r in caplog.records)


def test_a_slow_named_query_is_logged_by_name_without_its_secrets(
    open_service, shared_db_config, caplog
):
    service = open_service(shared_db_config.replace(slow_query_ms=1))
    user = make_user(service)
    # Hold the user's row locked so the update waits (and is slow) for a moment.
    blocker = service.begin_transaction()
    blocker.update_user(user.id, plan_type="team")

    with (
        caplog.at_level(logging.WARNING, logger="coderunner_sql.queries"),
        ThreadPoolExecutor(1) as pool,
    ):
        pending = pool.submit(service.update_user, user.id, password_hash="argon2$very-secret-hash")
        time.sleep(0.05)
        blocker.commit()
        updated = pending.result(timeout=10)

    assert updated.password_hash == "argon2$very-secret-hash"
    messages = [r.getMessage() for r in caplog.records if r.name == "coderunner_sql.queries"]
    assert any(m.startswith("slow query update_user took ") for m in messages), messages
    assert "very-secret" not in caplog.text
    assert user.email not in caplog.text


def test_fast_queries_under_the_threshold_are_not_logged(db, caplog):
    with caplog.at_level(logging.DEBUG, logger="coderunner_sql.queries"):
        db.query("SELECT pg_sleep(0.01)")
        make_user(db)

    assert [r for r in caplog.records if r.name == "coderunner_sql.queries"] == []


# -- lifecycle --------------------------------------------------------------------------


def test_with_block_connects_and_disconnects(shared_db_config):
    with DatabaseService(shared_db_config) as service:
        assert service.health_check().healthy
        user = make_user(service)
        assert service.get_user_by_id(user.id) == user

    with pytest.raises(DatabaseUnavailableError, match="not connected"):
        service.get_user_by_id(user.id)
    assert not service.health_check().healthy


def test_with_block_disconnects_when_the_body_raises(shared_db_config):
    service = DatabaseService(shared_db_config)

    def block():
        with service:
            make_user(service)
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        block()

    assert service.get_pool_info().total_count == 0
    with pytest.raises(DatabaseUnavailableError):
        service.get_users()


def test_connect_twice_disconnect_twice_and_reconnect(open_service, shared_db_config):
    service = open_service(shared_db_config)
    user = make_user(service)

    service.connect()  # already connected: nothing changes
    assert service.get_user_by_id(user.id) == user
    service.disconnect()
    service.disconnect()  # already disconnected: nothing to do
    with pytest.raises(DatabaseUnavailableError) as caught:
        service.get_users()
    assert isinstance(caught.value, DatabaseError)
    with pytest.raises(DatabaseUnavailableError):
        service.begin_transaction()

    service.connect()
    assert service.get_user_by_id(user.id) == user


def test_get_instance_returns_one_object_per_class(fresh_instances, shared_db_config):
    first = DatabaseService.get_instance(shared_db_config)
    again = DatabaseService.get_instance()
    ignored = DatabaseService.get_instance(shared_db_config.replace(pool_max=9))
    other_kind = AsyncDatabaseService.get_instance(shared_db_config)

    assert first is again
    assert first is ignored
    assert first.config == shared_db_config
    assert other_kind is not first
    assert isinstance(other_kind, AsyncDatabaseService)
    assert not first.health_check().healthy  # get_instance does not connect
    first.connect()
    try:
        assert DatabaseService.get_instance().health_check().healthy
    finally:
        first.disconnect()


def test_get_instance_registry_is_shared_by_threads(fresh_instances, shared_db_config):
    barrier = threading.Barrier(8)

    def grab(_):
        barrier.wait()
        return DatabaseService.get_instance(shared_db_config)

    with ThreadPoolExecutor(8) as pool:
        instances = list(pool.map(grab, range(8)))

    assert all(instance is instances[0] for instance in instances)


def test_initialize_passes_on_a_migrated_database(open_service, shared_db_config):
    service = open_service(shared_db_config, connect=False)

    service.initialize()


def test_initialize_on_an_empty_database_lists_pending_migrations(open_service, empty_db_config):
    service = open_service(empty_db_config, connect=False)

    with pytest.raises(SchemaNotReadyError) as caught:
        service.initialize()

    assert list(caught.value.pending) == ALL_MIGRATIONS
    assert ALL_MIGRATIONS[0] == "20261125100000_initial_schema"
    for migration in ALL_MIGRATIONS:
        assert migration in str(caught.value)


def test_disconnect_waits_for_a_call_in_flight(open_service, shared_db_config):
    service = open_service(shared_db_config)

    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(service.query, "SELECT 'finished' AS outcome FROM pg_sleep(0.5)")
        wait_until(lambda: service.get_pool_info().connected_clients >= 1)
        started = time.monotonic()
        service.disconnect()
        waited = time.monotonic() - started

        assert in_flight.result(timeout=10) == [{"outcome": "finished"}]
    assert waited >= 0.3
    assert service.get_pool_info().total_count == 0
    with pytest.raises(DatabaseUnavailableError):
        service.query("SELECT 1")


def test_disconnect_refuses_new_calls_while_it_waits(open_service, shared_db_config):
    service = open_service(shared_db_config)

    with ThreadPoolExecutor(2) as pool:
        in_flight = pool.submit(service.query, "SELECT pg_sleep(0.5)")
        wait_until(lambda: service.get_pool_info().connected_clients >= 1)
        closing = pool.submit(service.disconnect)
        time.sleep(0.1)
        assert not closing.done()
        with pytest.raises(DatabaseUnavailableError, match="not connected"):
            service.get_users()
        closing.result(timeout=10)
        in_flight.result(timeout=10)


# -- concurrency ------------------------------------------------------------------------


def test_eight_threads_share_one_pool(db):
    def worker(n):
        user = make_user(db, email=f"worker-{n}@example.com")
        project = make_project(db, user, name=f"project-{n}")
        made = [make_deployment(db, project) for _ in range(3)]
        db.update_deployment_status(made[0].id, "RUNNING", expected="PENDING")
        db.update_deployment(made[1].id, public_url=f"https://w{n}.example.com")
        db.delete_deployment(made[2].id)

        def more(tx):
            extra = tx.create_project(user_id=user.id, name=f"extra-{n}")
            tx.create_deployments([{"project_id": extra.id, "runtime_type": "node"}] * 2)
            return extra

        extra = db.execute_in_transaction(more)
        assert db.get_user_by_email(f"WORKER-{n}@example.com") == user
        assert db.get_projects_by_user_id(user.id).total == 2
        assert db.get_deployments_by_project_id(extra.id).total == 2
        assert db.get_running_deployment_count_by_user(user.id) == 1
        assert db.get_deployment_with_details(made[0].id).user == user
        db.get_system_stats()
        db.health_check()
        return user.id

    with ThreadPoolExecutor(8) as pool:
        user_ids = list(pool.map(worker, range(8)))

    assert len(set(user_ids)) == 8
    stats = db.get_system_stats()
    assert (stats.total_users, stats.total_projects, stats.total_deployments) == (8, 16, 32)
    assert stats.deployments_by_status[DeploymentStatus.RUNNING] == 8
    assert stats.deployments_by_status[DeploymentStatus.PENDING] == 24
    assert (count(db, "users"), count(db, "projects"), count(db, "deployments")) == (8, 16, 32)
    pool_info = db.get_pool_info()
    assert pool_info.total_count <= 4
    assert pool_info.connected_clients == 0
