"""This repository's own database fixtures, built on the `coderunner_sql.testing` plugin.

The plugin (loaded first, by `-p coderunner_sql.testing` in pyproject.toml, or its entry
point) owns the server (`TEST_DATABASE_URL`, else an embedded one) and the migrated template.
Here are the names the tests use: `db_config` is a fresh copy of the template per test; the
`db` services share one such database for the session and empty it before each test, which
is cheaper still (a few DELETEs, not a database copy).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from coderunner_sql import AsyncDatabaseService, DatabaseConfig, DatabaseService
from coderunner_sql.testing import ScratchServer
from coderunner_sql.testing.databases import COPY_PREFIX, FAST_SETTINGS
from tests.plugins.pgbouncer import PgBouncer, via_pgbouncer_requested
from tests.plugins.proxy import SyncProxy

__all__ = ["FAST_SETTINGS", "create_database", "drop_database"]


def create_database(
    admin_url: str, *, template: str | None = None, prefix: str = COPY_PREFIX
) -> str:
    """A new database (optionally a copy of `template`) on the admin URL's server; the
    caller drops it with `drop_database`."""
    server = ScratchServer(DatabaseConfig.from_url(admin_url))
    try:
        return server.create(template=template, prefix=prefix)
    finally:
        server.close(drop=False)


def drop_database(admin_url: str, name: str) -> None:
    """Drop a test database, disconnecting whoever still uses it."""
    with ScratchServer(DatabaseConfig.from_url(admin_url)) as server:
        server.drop(name)


@pytest.fixture(scope="session")
def pg_admin_config(coderunner_server: ScratchServer) -> DatabaseConfig:
    """A server the tests may create databases on (config points at an admin database)."""
    return coderunner_server.admin


@pytest.fixture(scope="session")
def pg_admin_url(pg_admin_config: DatabaseConfig) -> str:
    """`pg_admin_config` as a URL (with its password, if any)."""
    return pg_admin_config.url()


@pytest.fixture(scope="session")
def template_db(coderunner_template: str) -> str:
    """A database with every migration applied (sealed: copy it, never connect to it)."""
    return coderunner_template


@pytest.fixture(scope="session")
def pgbouncer(
    tmp_path_factory: pytest.TempPathFactory, pg_admin_config: DatabaseConfig
) -> Iterator[PgBouncer | None]:
    """With `TEST_VIA_PGBOUNCER=1`, a transaction-pooling PgBouncer in front of the test
    server that `db_config` and `db` connect through; else None."""
    if not via_pgbouncer_requested():
        yield None
        return
    with PgBouncer(tmp_path_factory.mktemp("pgbouncer"), pg_admin_config) as bouncer:
        yield bouncer


@pytest.fixture
def db_config(
    coderunner_database_config: DatabaseConfig, pgbouncer: PgBouncer | None
) -> DatabaseConfig:
    """A fresh, fully migrated database of this test's own (through PgBouncer when
    `TEST_VIA_PGBOUNCER=1`)."""
    config = coderunner_database_config.replace(pool_max=4, acquire_timeout_ms=10_000)
    return config if pgbouncer is None else pgbouncer.config(config)


@pytest.fixture
def empty_db_config(coderunner_server: ScratchServer) -> Iterator[DatabaseConfig]:
    """A fresh database with no migrations applied."""
    name = coderunner_server.create()
    try:
        yield coderunner_server.config(name)
    finally:
        coderunner_server.drop(name)


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    """A private copy of migrations/ that a test may edit."""
    import shutil

    from coderunner_sql.resources import migrations_dir

    target = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), target)
    return target


@pytest.fixture(scope="session")
def event_loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread of its own, for driving async services from sync tests."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def sync_db(db_config: DatabaseConfig) -> Iterator[DatabaseService]:
    """A connected `DatabaseService` on this test's database."""
    service = DatabaseService(db_config)
    service.connect()
    try:
        yield service
    finally:
        service.disconnect()


@pytest.fixture(scope="session")
def shared_db_config(
    coderunner_server: ScratchServer, coderunner_template: str
) -> Iterator[DatabaseConfig]:
    """One migrated database that the `db` services use for the whole session.

    Creating a database per test costs half a second or more on a small machine; the
    data-API tests instead share this one and `db` empties it before each test.
    """
    name = coderunner_server.create(template=coderunner_template, prefix="crsql_shared")
    try:
        yield coderunner_server.config(name, pool_min=1, pool_max=4, acquire_timeout_ms=10_000)
    finally:
        coderunner_server.drop(name)


@pytest.fixture(scope="session")
def _wipe_shared_db(shared_db_config: DatabaseConfig) -> Iterator[Callable[[], None]]:
    """A function that empties every data table of the shared database (bookkeeping
    tables, yoyo's and ours, are kept). It fails, rather than hangs, when a test left a
    transaction holding locks."""
    conn = psycopg.connect(**shared_db_config.connect_kwargs(), autocommit=True)
    conn.execute("SET lock_timeout = '10s'")
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    superuser = bool(row and row[0])

    def wipe() -> None:
        names = conn.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename NOT LIKE '\\_%'"
            " AND tablename <> 'yoyo_lock'"
        ).fetchall()
        tables = [sql.SQL(name) for (name,) in names]
        if not tables:
            return
        if not superuser:
            conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.SQL(", ").join(tables)))
            return
        # DELETE of a few rows costs milliseconds where TRUNCATE (new files for every table
        # and index) costs a hundred or more. With triggers off, foreign keys and the
        # counter triggers stay quiet; the counter table is emptied along with the rest.
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            for table in tables:
                conn.execute(sql.SQL("DELETE FROM {}").format(table))

    try:
        yield wipe
    finally:
        conn.close()


@pytest.fixture(scope="session")
def _db_services(
    shared_db_config: DatabaseConfig,
    event_loop_thread: asyncio.AbstractEventLoop,
    pgbouncer: PgBouncer | None,
) -> Iterator[dict[str, Any]]:
    """The sync service and the proxied async service on the shared database, connected
    once for the session (through PgBouncer when `TEST_VIA_PGBOUNCER=1`)."""
    config = shared_db_config if pgbouncer is None else pgbouncer.config(shared_db_config)
    services: dict[str, Any] = {
        "sync": DatabaseService(config),
        "async": SyncProxy(AsyncDatabaseService(config), event_loop_thread),
    }
    try:
        yield services
    finally:
        for service in services.values():
            service.disconnect()


@pytest.fixture(params=["sync", "async"])
def db(
    request: pytest.FixtureRequest,
    _db_services: dict[str, Any],
    _wipe_shared_db: Callable[[], None],
) -> Any:
    """The same test against `DatabaseService` and against `AsyncDatabaseService`.

    The async service is driven through `SyncProxy`, which runs each call on a dedicated
    event loop, so one test body checks both. Both services live for the session on
    `shared_db_config`'s database, which is emptied before each test: every test starts
    from a migrated database with no rows. A test that needs a service of its own (to
    disconnect it, or with other settings) uses `db_config` or `open_service` instead.
    """
    service = _db_services[request.param]
    service.connect()  # a no-op unless an earlier test disconnected it
    _wipe_shared_db()
    return service


@pytest.fixture(params=["sync", "async"])
def open_service(request: pytest.FixtureRequest) -> Iterator[Any]:
    """`open_service(config, connect=True)`: a service of the `db` kind on a config of the
    test's choosing (sync, or async through `SyncProxy`); disconnected when the test ends."""
    opened: list[Any] = []
    loop = request.getfixturevalue("event_loop_thread") if request.param == "async" else None

    def open_(config: DatabaseConfig, *, connect: bool = True) -> Any:
        service: Any
        if loop is None:
            service = DatabaseService(config)
        else:
            service = SyncProxy(AsyncDatabaseService(config), loop)
        opened.append(service)
        if connect:
            service.connect()
        return service

    try:
        yield open_
    finally:
        for service in opened:
            service.disconnect()


@pytest.fixture
def fresh_instances() -> Iterator[None]:
    """An empty `get_instance()` registry for the test, restored afterwards."""
    from coderunner_sql.service_base import ServiceBase

    saved = dict(ServiceBase._instances)
    ServiceBase._instances.clear()
    try:
        yield
    finally:
        ServiceBase._instances.clear()
        ServiceBase._instances.update(saved)
