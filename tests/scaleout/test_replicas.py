"""Read replicas on real servers: a primary and streaming hot standbys (`pg_basebackup -R`).

Which server answered a read is proved two ways: the replica's read counter in
`health_check()` (`ReplicaHealth.reads`), and stale data — a row written straight to the
primary is invisible on a standby that applies WAL `APPLY_DELAY_MS` late, so a read that
misses it was served by that standby.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
import pytest

from coderunner_sql import AsyncDatabaseService, DatabaseConfig, PlanType, User
from coderunner_sql.embedded import EmbeddedServer, free_port
from coderunner_sql.routing import replica_config
from tests.helpers import make_deployment, make_project, make_user, unique_email
from tests.plugins.proxy import SyncProxy
from tests.scaleout.conftest import APP_DB, wait_received, wait_replayed

pytestmark = pytest.mark.slow


def with_replicas(config: DatabaseConfig, *urls: str, **changes: Any) -> DatabaseConfig:
    """`config` with read replicas at `urls`."""
    return config.replace(read_urls=urls, **changes)


def replica_reads(db: Any) -> list[int]:
    """How many reads each replica has served so far."""
    return [replica.reads for replica in db.health_check().details.replicas]


def insert_user_on_primary(primary: EmbeddedServer) -> str:
    """A user written straight to the primary, behind the service's back; its email."""
    email = unique_email("direct")
    with psycopg.connect(primary.url(APP_DB), autocommit=True) as conn:
        conn.execute("INSERT INTO users (email, password_hash) VALUES (%s, 'h')", [email])
    return email


def routing_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "coderunner_sql.routing" and r.levelno == logging.WARNING
    ]


def test_reads_go_to_the_replica_writes_and_raw_sql_to_the_primary(
    open_service, primary, standby, app_config
):
    db = open_service(with_replicas(app_config, standby.url(APP_DB)))
    user = make_user(db)  # a write: a hot standby would refuse it
    project = make_project(db, user)
    make_deployment(db, project)
    wait_replayed(primary, standby)
    assert replica_reads(db) == [0]

    assert db.get_user_by_id(user.id) == user
    assert db.get_user_by_email(user.email.upper()) == user
    assert db.get_users().total == 1
    assert db.get_projects_by_user_id(user.id).items == [project]
    assert db.get_system_stats().total_deployments == 1
    assert len(list(db.iter_deployments_by_status("PENDING"))) == 1
    assert db.get_running_deployment_count_by_user(user.id) == 0
    assert replica_reads(db) == [7]

    # query() runs whatever SQL it is given, writes included: always the primary.
    assert db.query("SELECT pg_is_in_recovery() AS standby") == [{"standby": False}]
    # Transactions are the primary's, reads in them too.
    with db.transaction() as tx:
        assert tx.query("SELECT pg_is_in_recovery() AS standby") == [{"standby": False}]
        assert tx.get_user_by_id(user.id) == user
    assert replica_reads(db) == [7]

    health = db.health_check()
    assert health.healthy
    (replica,) = health.details.replicas
    assert replica.status == "healthy"
    assert replica.lag_ms is not None
    assert replica.lag_ms < 5_000
    assert replica.pool is not None
    assert replica.pool.total_count >= 1
    assert replica.url == DatabaseConfig.from_url(standby.url(APP_DB)).describe()


def test_a_read_is_served_by_the_replica_and_primary_pins_it(
    open_service, primary, delayed_standby, app_config
):
    db = open_service(
        with_replicas(app_config, delayed_standby.url(APP_DB), replica_max_lag_ms=60_000)
    )
    email = insert_user_on_primary(primary)

    # The delayed standby has not applied the insert: a read served there misses it.
    assert db.get_user_by_email(email) is None
    with db.primary():
        found = db.get_user_by_email(email)
    assert found is not None
    assert found.email == email
    assert db.get_user_by_email(email) is None  # out of the block: the replica again

    wait_replayed(primary, delayed_standby)
    assert db.get_user_by_email(email) == found


def test_primary_block_in_async_code(event_loop_thread, primary, delayed_standby, app_config):
    config = with_replicas(app_config, delayed_standby.url(APP_DB), replica_max_lag_ms=60_000)
    db = SyncProxy(AsyncDatabaseService(config), event_loop_thread)
    db.connect()
    try:
        email = insert_user_on_primary(primary)
        service = db.wrapped

        async def reads() -> tuple[User | None, User | None, User | None]:
            go = asyncio.Event()

            async def elsewhere() -> User | None:
                await go.wait()
                found: User | None = await service.get_user_by_email(email)
                return found

            other = asyncio.create_task(elsewhere())  # started outside the block
            async with service.primary():
                pinned = await service.get_user_by_email(email)
                go.set()
                unpinned = await other
            return pinned, unpinned, await service.get_user_by_email(email)

        pinned, unpinned, after = db._run(reads())
        assert pinned is not None
        assert pinned.email == email
        # The block pins its own task only; the replica has not applied the row yet.
        assert unpinned is None
        assert after is None
    finally:
        db.disconnect()


def test_read_your_writes_with_a_lagging_replica(
    open_service, primary, delayed_standby, app_config
):
    db = open_service(
        with_replicas(app_config, delayed_standby.url(APP_DB), replica_max_lag_ms=60_000)
    )
    user = make_user(db)
    start = replica_reads(db)

    # The replica applies this write 1.5 s late; the service's own reads still see it.
    assert db.get_user_by_id(user.id) == user
    changed = db.update_user(user.id, plan_type=PlanType.TEAM)
    assert db.get_user_by_id(user.id) == changed
    with db.transaction() as tx:
        project = tx.create_project(user_id=user.id, name="after-commit")
    assert db.get_project_by_id(project.id) == project
    assert db.get_projects_by_user_id(user.id).total == 1
    assert replica_reads(db) == start  # all of them from the primary

    # Once the replica has replayed past the service's last write, it serves reads again.
    wait_replayed(primary, delayed_standby)
    assert db.get_user_by_id(user.id) == changed
    assert replica_reads(db) == [start[0] + 1]


def test_a_read_after_a_write_may_wait_for_the_replica(
    open_service, primary, delayed_standby, app_config
):
    db = open_service(
        with_replicas(
            app_config,
            delayed_standby.url(APP_DB),
            replica_max_lag_ms=60_000,
            replica_wait_ms=30_000,
        )
    )
    user = make_user(db)
    start = replica_reads(db)
    # Served by the replica once it has applied the write (about 1.5 s), not by the primary.
    assert db.get_user_by_id(user.id) == user
    assert replica_reads(db) == [start[0] + 1]


def test_a_lagging_replica_is_skipped_with_one_warning(
    open_service, primary, delayed_standby, app_config, caplog
):
    caplog.set_level(logging.INFO, logger="coderunner_sql.routing")
    db = open_service(
        with_replicas(app_config, delayed_standby.url(APP_DB), replica_max_lag_ms=100)
    )
    email = insert_user_on_primary(primary)
    wait_received(primary, delayed_standby)  # received, applied only 1.5 s later: lagging

    for _ in range(3):
        found = db.get_user_by_email(email)
        assert found is not None  # the primary answered: the lagging replica would not know
    (warning,) = routing_warnings(caplog)
    assert "lags" in warning
    assert "DB_REPLICA_MAX_LAG_MS=100" in warning
    (replica,) = db.health_check().details.replicas
    assert replica.status == "lagging"
    assert replica.lag_ms is not None
    assert replica.lag_ms > 100
    assert replica.reads == 0


def test_a_stopped_replica_sends_reads_to_the_primary(
    open_service, primary, private_standby, app_config, caplog
):
    caplog.set_level(logging.INFO, logger="coderunner_sql.routing")
    standby = private_standby()
    db = open_service(with_replicas(app_config, standby.url(APP_DB)))
    user = make_user(db)
    wait_replayed(primary, standby)
    assert db.get_user_by_id(user.id) == user
    assert replica_reads(db) == [1]

    standby.stop()
    for _ in range(3):
        assert db.get_user_by_id(user.id) == user
        assert db.get_users().total == 1
    assert len(list(db.iter_deployments_by_status("PENDING"))) == 0
    (warning,) = routing_warnings(caplog)
    assert "unavailable" in warning

    health = db.health_check()
    assert health.healthy  # the primary is; a replica down only moves reads
    (replica,) = health.details.replicas
    assert replica.status == "down"
    assert replica.error
    assert replica.reads == 1


def test_a_replica_down_from_the_start_never_fails_a_call(open_service, app_config, caplog):
    caplog.set_level(logging.INFO, logger="coderunner_sql.routing")
    nowhere = f"postgresql://postgres:secret-pw@127.0.0.1:{free_port()}/{APP_DB}"
    db = open_service(with_replicas(app_config, nowhere))
    user = make_user(db)
    for _ in range(3):
        assert db.get_user_by_id(user.id) == user
    assert len(routing_warnings(caplog)) == 1
    health = db.health_check()
    assert health.healthy
    (replica,) = health.details.replicas
    assert replica.status == "down"
    assert "secret-pw" not in repr(health)
    assert "secret-pw" not in caplog.text


def test_health_reports_every_pool_and_replica(
    open_service, primary, standby, delayed_standby, app_config
):
    db = open_service(
        with_replicas(
            app_config,
            standby.url(APP_DB),
            delayed_standby.url(APP_DB),
            replica_max_lag_ms=60_000,
        )
    )
    insert_user_on_primary(primary)
    wait_received(primary, delayed_standby)
    health = db.health_check()
    assert health.healthy
    assert health.details.pool is not None
    fresh, delayed = health.details.replicas
    assert fresh.status == delayed.status == "healthy"
    assert fresh.pool is not None
    assert delayed.pool is not None
    assert delayed.lag_ms is not None
    assert delayed.lag_ms > 0
    assert fresh.lag_ms is not None
    assert fresh.lag_ms < delayed.lag_ms


def test_reads_spread_over_replicas(open_service, primary, standby, private_standby, app_config):
    second = private_standby()
    db = open_service(with_replicas(app_config, standby.url(APP_DB), second.url(APP_DB)))
    user = make_user(db)
    wait_replayed(primary, standby)
    wait_replayed(primary, second)
    for _ in range(10):
        assert db.get_user_by_id(user.id) == user
    counts = replica_reads(db)
    assert sum(counts) == 10
    assert min(counts) >= 3


def test_read_urls_inherit_the_primarys_credentials():
    base = DatabaseConfig(host="db.internal", user="app", password="pw", dbname="main")
    bare = replica_config(base, "postgresql://replica.internal:6432")
    assert (bare.host, bare.port, bare.user, bare.password, bare.dbname) == (
        "replica.internal",
        6432,
        "app",
        "pw",
        "main",
    )
    other = replica_config(base, "postgresql://reader@replica.internal/main")
    assert (other.user, other.password) == ("reader", None)
    assert other.read_urls == ()
