"""A pytest plugin for applications built on coderunner-sql: a real, migrated, empty
PostgreSQL database for every test.

Installed with `pip install 'coderunner-sql[testing]'` and loaded by pytest on its own (the
`pytest11` entry point `coderunner_sql.testing`). Once per run (per xdist worker) it starts
a server — `TEST_DATABASE_URL` if set, else an embedded PostgreSQL — and migrates a template
database with this package's migrations plus the application's (`coderunner_migrations` in
the pytest ini, or `--coderunner-migrations DIR`). Each test that asks gets a copy of that
template, dropped when the test ends, pass or fail; the template is dropped at session end.
Nothing happens unless a test requests one of the fixtures. See docs/testing.md.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.records import Deployment, Project, User
from coderunner_sql.service import DatabaseService
from coderunner_sql.service_async import AsyncDatabaseService
from coderunner_sql.testing.databases import (
    COPY_PREFIX,
    TEMPLATE_PREFIX,
    ScratchServer,
    combined_migrations,
    scratch_server,
)
from coderunner_sql.testing.factories import RecordFactory

# The fixtures are found by pytest, not imported: a star import would register them twice.
__all__ = ["INI_OPTION", "OPTION", "RecordFactory", "ScratchServer"]

INI_OPTION = "coderunner_migrations"
OPTION = "--coderunner-migrations"

_F = TypeVar("_F", bound=Callable[..., Any])


def _async_fixture(function: _F) -> _F:
    """A fixture that pytest-asyncio runs on the test's loop; without pytest-asyncio (no
    testing extra), a plain one that fails with pytest's own message when used."""
    try:
        import pytest_asyncio
    except ImportError:
        return cast(_F, pytest.fixture(function))
    return cast(_F, pytest_asyncio.fixture(function, loop_scope="function"))


def pytest_addoption(parser: pytest.Parser) -> None:
    """The migrations folders of the application, as an ini option and a command-line one."""
    help_text = (
        "folders of the application's own migrations, applied after coderunner-sql's "
        "to the template every test database is copied from"
    )
    parser.addini(INI_OPTION, help_text, type="paths", default=[])
    group = parser.getgroup("coderunner-sql")
    group.addoption(OPTION, action="append", default=[], metavar="DIR", help=help_text)


def _worker() -> str:
    # pytest-xdist names its workers gw0, gw1…; each has a server and a template of its own.
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def coderunner_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchServer]:
    """The server of this run (of this xdist worker): `TEST_DATABASE_URL` if set (a role
    that may create databases), else an embedded PostgreSQL started now and deleted at the
    end. Every database made on it is dropped at session end."""
    with scratch_server(tmp_path_factory.mktemp("coderunner-pg") / "data") as server:
        yield server


@pytest.fixture(scope="session")
def coderunner_migrations_dir(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """One folder of every migration the template gets: this package's, then the
    application's (set `CODERUNNER_SQL_MIGRATIONS` to it for code that calls `initialize()`)."""
    config = request.config
    folders = [*config.getini(INI_OPTION), *config.getoption(OPTION)]
    return combined_migrations(folders, tmp_path_factory.mktemp("coderunner-migrations"))


@pytest.fixture(scope="session")
def coderunner_template(
    coderunner_server: ScratchServer, coderunner_migrations_dir: Path
) -> Iterator[str]:
    """The name of the migrated, sealed template database, made once per run (per worker)."""
    name = coderunner_server.make_template(
        coderunner_migrations_dir, prefix=f"{TEMPLATE_PREFIX}_{_worker()}"
    )
    try:
        yield name
    finally:
        coderunner_server.drop(name)


@pytest.fixture
def coderunner_database_config(
    coderunner_server: ScratchServer, coderunner_template: str
) -> Iterator[DatabaseConfig]:
    """A `DatabaseConfig` for this test's own database, a fresh copy of the template."""
    name = coderunner_server.create(template=coderunner_template, prefix=COPY_PREFIX)
    try:
        yield coderunner_server.config(name, pool_min=1)
    finally:
        coderunner_server.drop(name)


@pytest.fixture
def coderunner_database_url(coderunner_database_config: DatabaseConfig) -> str:
    """This test's own migrated, empty database as a `postgresql://` URL."""
    return coderunner_database_config.url()


@pytest.fixture
def coderunner_db(coderunner_database_config: DatabaseConfig) -> Iterator[DatabaseService]:
    """A connected `DatabaseService` on this test's database, disconnected after the test."""
    service = DatabaseService(coderunner_database_config)
    service.connect()
    try:
        yield service
    finally:
        service.disconnect()


@_async_fixture
async def coderunner_async_db(
    coderunner_database_config: DatabaseConfig,
) -> AsyncIterator[AsyncDatabaseService]:
    """A connected `AsyncDatabaseService` on this test's database (pytest-asyncio)."""
    service = AsyncDatabaseService(coderunner_database_config)
    await service.connect()
    try:
        yield service
    finally:
        await service.disconnect()


@pytest.fixture
def _coderunner_records(coderunner_db: DatabaseService) -> RecordFactory:
    return RecordFactory(coderunner_db)


@pytest.fixture
def make_user(_coderunner_records: RecordFactory) -> Callable[..., User]:
    """`make_user(email=…, password_hash=…, plan_type=…)`: a new user, every field optional."""
    return _coderunner_records.user


@pytest.fixture
def make_project(_coderunner_records: RecordFactory) -> Callable[..., Project]:
    """`make_project(user_id=…, name=…, description=…)`: a new project (of a new user
    unless `user_id` is given)."""
    return _coderunner_records.project


@pytest.fixture
def make_deployment(_coderunner_records: RecordFactory) -> Callable[..., Deployment]:
    """`make_deployment(project_id=…, runtime_type=…, **fields)`: a new deployment (of a new
    project unless `project_id` is given)."""
    return _coderunner_records.deployment
