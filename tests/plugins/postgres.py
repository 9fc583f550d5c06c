"""Real PostgreSQL for the tests: `TEST_DATABASE_URL`, else an embedded server of our own.

Each test that asks for `db_config` gets a fresh database cloned from a template migrated
once per session, so tests are isolated and cheap (a template copy, not a migration run).
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from coderunner_sql import AsyncDatabaseService, DatabaseConfig, DatabaseService
from coderunner_sql.embedded import EmbeddedServer
from coderunner_sql.migrations import Migrator
from tests.plugins.proxy import SyncProxy

# Settings for throwaway test clusters: durability is not what these tests measure.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def _admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def create_database(admin_url: str, *, template: str | None = None, prefix: str = "crsql_t") -> str:
    """A new database (optionally a copy of `template`) on the admin URL's server."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _admin(admin_url) as conn:
        if template:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(admin_url: str, name: str) -> None:
    """Drop a test database, disconnecting whoever still uses it."""
    with _admin(admin_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def pg_admin_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseConfig]:
    """A server the tests may create databases on (config points at an admin database)."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield DatabaseConfig.from_url(url)
        return
    server = EmbeddedServer(tmp_path_factory.mktemp("pg") / "data", settings=FAST_SETTINGS)
    server.start()
    try:
        yield server.config("postgres")
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def pg_admin_url(pg_admin_config: DatabaseConfig) -> str:
    """`pg_admin_config` as a URL (with its password, if any)."""
    return pg_admin_config.url()


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str, pg_admin_config: DatabaseConfig) -> Iterator[str]:
    """A database with every migration applied, copied for each test."""
    name = create_database(pg_admin_url, prefix="crsql_tmpl")
    try:
        Migrator(pg_admin_config.replace(dbname=name)).apply()
        yield name
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture
def db_config(
    pg_admin_url: str, pg_admin_config: DatabaseConfig, template_db: str
) -> Iterator[DatabaseConfig]:
    """A fresh, fully migrated database of this test's own."""
    name = create_database(pg_admin_url, template=template_db)
    try:
        yield pg_admin_config.replace(
            dbname=name, pool_min=1, pool_max=4, acquire_timeout_ms=10_000
        )
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture
def empty_db_config(pg_admin_url: str, pg_admin_config: DatabaseConfig) -> Iterator[DatabaseConfig]:
    """A fresh database with no migrations applied."""
    name = create_database(pg_admin_url)
    try:
        yield pg_admin_config.replace(dbname=name)
    finally:
        drop_database(pg_admin_url, name)


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


@pytest.fixture(params=["sync", "async"])
def db(request: pytest.FixtureRequest, db_config: DatabaseConfig) -> Iterator[Any]:
    """The same test against `DatabaseService` and against `AsyncDatabaseService`.

    The async service is driven through `SyncProxy`, which runs each call on a dedicated
    event loop, so one test body checks both.
    """
    if request.param == "sync":
        service = DatabaseService(db_config)
        service.connect()
        try:
            yield service
        finally:
            service.disconnect()
        return
    loop = request.getfixturevalue("event_loop_thread")
    aservice = AsyncDatabaseService(db_config)
    proxy = SyncProxy(aservice, loop)
    proxy.connect()
    try:
        yield proxy
    finally:
        proxy.disconnect()
