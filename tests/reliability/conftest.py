"""Fixtures of the reliability suite: a private server to break, app roles, and the figures.

Tests that stop, restart or reconfigure a server use `private_server`, an `EmbeddedServer`
of this suite's own in a temporary folder on a free loopback port, never the shared test
server. Every test here is marked `reliability` (run them alone with `-m reliability`).
Each test adds what it measured to `figures`. With RELIABILITY_FIGURES=1 (on the default
embedded server) they are merged into tests/reliability/figures.json at the end, which
docs/reliability.md quotes; ordinary runs leave the checkout clean.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from coderunner_sql import DatabaseConfig
from coderunner_sql.embedded import EmbeddedServer, free_port
from coderunner_sql.migrations import Migrator
from tests.plugins.postgres import FAST_SETTINGS, create_database, drop_database
from tests.plugins.secrets import register_secret

FIGURES_FILE = Path(__file__).with_name("figures.json")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


class Figures:
    """What the suite measured, by section (faults, load, …), merged into figures.json."""

    def __init__(self) -> None:
        self.sections: dict[str, dict[str, Any]] = {}
        self.server_version = ""

    def add(self, section: str, **counts: int | float) -> None:
        """Add numbers to a section (summed with what other tests added)."""
        target = self.sections.setdefault(section, {})
        for key, value in counts.items():
            target[key] = round(target.get(key, 0) + value, 3)

    def peak(self, section: str, **values: float) -> None:
        """Keep the largest value seen (latencies, recovery times)."""
        target = self.sections.setdefault(section, {})
        for key, value in values.items():
            target[key] = round(max(target.get(key, 0), value), 3)

    def label(self, section: str, **text: str) -> None:
        """Set text values (a section's own `server` when it ran on another build)."""
        self.sections.setdefault(section, {}).update(text)

    def write(self, path: Path) -> None:
        """Merge this run's sections into `path` (sections not run this time are kept)."""
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError):
            previous = {}
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        sections = dict(previous.get("sections", {}))
        for name, values in self.sections.items():
            sections[name] = {"server": self.server_version, **values, "measured_at": stamp}
        totals: dict[str, float] = {}
        for values in sections.values():
            for key in ("faults_injected", "operations", "rows_lost", "bad_inputs"):
                totals[key] = totals.get(key, 0) + values.get(key, 0)
        document = {
            "about": "written by tests/reliability (pytest -m reliability); quoted by "
            "docs/reliability.md",
            "python": platform.python_version(),
            "totals": totals,
            "sections": dict(sorted(sections.items())),
        }
        path.write_text(json.dumps(document, indent=2) + "\n")


@pytest.fixture(scope="session")
def figures(pg_admin_config: DatabaseConfig) -> Iterator[Figures]:
    """The session's figures; written to tests/reliability/figures.json at the end."""
    found = Figures()
    with psycopg.connect(**pg_admin_config.connect_kwargs()) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    found.server_version = f"PostgreSQL {row[0] if row else '?'}"
    yield found
    # Only a deliberate refresh rewrites the quoted file, and only from the default run
    # (the embedded server): a test run must not leave the checkout dirty.
    refresh = os.environ.get("RELIABILITY_FIGURES") == "1"
    if refresh and found.sections and not os.environ.get("TEST_DATABASE_URL"):
        found.write(FIGURES_FILE)


@pytest.fixture(scope="session")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """An embedded server of the reliability suite's own, which its tests may stop,
    restart and reconfigure (a test that stops it starts it again)."""
    # A fixed port, so the server comes back where the services under test expect it.
    folder = tmp_path_factory.mktemp("reliability-pg") / "data"
    server = EmbeddedServer(folder, port=free_port(), settings=FAST_SETTINGS)
    server.init(["--no-sync"])  # a throwaway cluster: skipping fsync halves initdb's time
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def private_template(private_server: EmbeddedServer) -> str:
    """A migrated database on the private server, copied for each test."""
    name = create_database(private_server.url(), prefix="crsql_reltmpl")
    Migrator(private_server.config(name)).apply()
    return name


@pytest.fixture
def private_db(private_server: EmbeddedServer, private_template: str) -> Iterator[DatabaseConfig]:
    """A fresh migrated database on the private server."""
    private_server.start()  # a no-op, unless an earlier test failed while it was stopped
    name = create_database(private_server.url(), template=private_template)
    try:
        yield private_server.config(name).replace(pool_min=2, pool_max=8, acquire_timeout_ms=5000)
    finally:
        drop_database(private_server.url(), name)


def admin_connection(config: DatabaseConfig) -> psycopg.Connection[Any]:
    """An autocommit connection as the config's (super)user, outside any pool."""
    return psycopg.connect(**config.connect_kwargs(), autocommit=True)


@pytest.fixture
def make_app_login(db_config: DatabaseConfig) -> Iterator[Callable[[], DatabaseConfig]]:
    """`make_app_login()`: a config for a new LOGIN role in `coderunner_app` (unique name,
    random registered password) on this test's database; the roles are dropped after."""
    made: list[str] = []

    def make() -> DatabaseConfig:
        name = f"crsql_app_{uuid.uuid4().hex[:10]}"
        password = register_secret(f"pw-{secrets.token_hex(12)}")
        with admin_connection(db_config) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE coderunner_app").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
        made.append(name)
        return db_config.replace(user=name, password=password)

    try:
        yield make
    finally:
        with admin_connection(db_config) as conn:
            for name in made:
                _drop_role(conn, name)


def _drop_role(conn: psycopg.Connection[Any], name: str) -> None:
    # A pool may still be closing its connections: end them, then drop.
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name]
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
            return
        except psycopg.errors.DependentObjectsStillReferenced:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `condition` until true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)
