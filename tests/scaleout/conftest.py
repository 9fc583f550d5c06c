"""Private servers for the scale-out tests: a primary with streaming hot standbys, and PgBouncer.

Every server here is an `EmbeddedServer` in a temporary folder on a free loopback port,
never the shared test server: these tests stop, delay and restart them.

Their folders are made with `tempfile.mkdtemp`, not pytest's `tmp_path`: each pytest run
starting on the machine takes the world bits off `/tmp/pytest-of-<user>`, which would lock
the servers' unprivileged OS user out of folders below it mid-run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from coderunner_sql import DatabaseConfig
from coderunner_sql.embedded import EmbeddedServer, _make_traversable
from coderunner_sql.migrations import Migrator
from tests.plugins.pgbouncer import PgBouncer, find_pgbouncer
from tests.plugins.postgres import FAST_SETTINGS

APP_DB = "app"
APPLY_DELAY_MS = 1500


def make_standby(
    primary: EmbeddedServer, folder: Path, settings: dict[str, str] | None = None
) -> EmbeddedServer:
    """A streaming hot standby of `primary` in `folder` (`pg_basebackup -R`), started."""
    folder.mkdir(parents=True, exist_ok=True)
    standby = EmbeddedServer(folder / "data", settings={**FAST_SETTINGS, **(settings or {})})
    # pg_basebackup runs as the server's OS user, which must own the target and the log.
    data = standby.data_dir
    data.mkdir(mode=0o700)
    standby.log_file.touch()
    if standby._owner is not None:
        _make_traversable(data)
        for path in (folder, data, standby.log_file):
            os.chown(path, *standby._owner)
    primary.run(
        "pg_basebackup",
        "-h",
        primary.host,
        "-p",
        str(primary.port),
        "-U",
        "postgres",
        "-D",
        str(data),
        "-R",
        "-X",
        "stream",
        "-c",
        "fast",
        "--no-sync",
    )
    return standby.start()


def _tail(server: EmbeddedServer) -> str:
    log = server.log_file
    return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"


def _wal_target(primary: EmbeddedServer) -> tuple[str]:
    """The primary's WAL insert position, with a commit written after it: a position just
    past a page header is reached only once a later record is replayed."""
    with psycopg.connect(primary.url(), autocommit=True) as conn:
        target = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        conn.execute("SELECT pg_current_xact_id()")
    assert target is not None
    return (str(target[0]),)


def wait_replayed(primary: EmbeddedServer, standby: EmbeddedServer, timeout: float = 60) -> None:
    """Block until `standby` has replayed everything `primary` has written so far."""
    target = _wal_target(primary)
    deadline = time.monotonic() + timeout
    with psycopg.connect(standby.url(), autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target[0]]
            ).fetchone()
            if row is not None and row[0]:
                return
            assert time.monotonic() < deadline, f"the standby did not catch up\n{_tail(standby)}"
            time.sleep(0.02)


@pytest.fixture(scope="package")
def scratch() -> Iterator[Callable[[str], Path]]:
    """`scratch(name)`: a new folder for a server, all removed when the package's tests end."""
    root = Path(tempfile.mkdtemp(prefix="crsql-scaleout-"))
    root.chmod(0o711)

    def make(name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))

    try:
        yield make
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="package")
def primary(scratch: Callable[[str], Path]) -> Iterator[EmbeddedServer]:
    """A primary with the app database migrated (wal_level=replica is the default)."""
    # WAL kept for standbys that fall behind or are stopped by a test: without it a
    # checkpoint may recycle a segment a standby still needs, and it never catches up.
    server = EmbeddedServer(
        scratch("primary") / "data", settings={**FAST_SETTINGS, "wal_keep_size": "512MB"}
    )
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {APP_DB}")
        Migrator(server.config(APP_DB)).apply()
        yield server
    finally:
        server.destroy()


def wait_received(primary: EmbeddedServer, standby: EmbeddedServer, timeout: float = 30) -> None:
    """Block until `standby` has *received* (not necessarily replayed) all of `primary`'s WAL."""
    target = _wal_target(primary)
    deadline = time.monotonic() + timeout
    with psycopg.connect(standby.url(), autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", [target[0]]
            ).fetchone()
            if row is not None and row[0]:
                return
            assert time.monotonic() < deadline, (
                f"the standby did not receive the WAL\n{_tail(standby)}"
            )
            time.sleep(0.02)


@pytest.fixture(scope="package")
def standby(primary: EmbeddedServer, scratch: Callable[[str], Path]) -> Iterator[EmbeddedServer]:
    """A streaming hot standby of `primary`, shared by the tests that never stop it."""
    server = make_standby(primary, scratch("standby"))
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="package")
def delayed_standby(
    primary: EmbeddedServer, scratch: Callable[[str], Path]
) -> Iterator[EmbeddedServer]:
    """A standby that applies each transaction `APPLY_DELAY_MS` after the primary committed it."""
    server = make_standby(
        primary,
        scratch("delayed"),
        {"recovery_min_apply_delay": f"{APPLY_DELAY_MS}ms"},
    )
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def private_standby(
    primary: EmbeddedServer, scratch: Callable[[str], Path]
) -> Iterator[Callable[..., EmbeddedServer]]:
    """`private_standby(**settings)`: a standby of this test's own, destroyed afterwards."""
    made: list[EmbeddedServer] = []

    def make(**settings: str) -> EmbeddedServer:
        server = make_standby(primary, scratch("private"), settings)
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            server.destroy()


@pytest.fixture
def app_config(primary: EmbeddedServer) -> DatabaseConfig:
    """The app database on the primary, small pools, short timeouts, no replicas yet."""
    return primary.config(
        APP_DB, pool_min=1, pool_max=4, acquire_timeout_ms=10_000, connection_timeout_ms=1_000
    )


@pytest.fixture(autouse=True)
def _empty_app_db(request: pytest.FixtureRequest) -> None:
    """Tests on the primary start from empty tables."""
    if "primary" not in request.fixturenames:
        return
    server: EmbeddedServer = request.getfixturevalue("primary")
    with psycopg.connect(server.url(APP_DB), autocommit=True) as conn:
        conn.execute("TRUNCATE users, projects, deployments CASCADE")


def _pgbouncer_binary() -> str:
    binary = find_pgbouncer()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is not installed (.ci/run installs Debian's package)")
        pytest.skip("pgbouncer is not installed: apt-get install pgbouncer")
    return binary


@pytest.fixture
def bouncer_factory(scratch: Callable[[str], Path]) -> Iterator[Callable[..., PgBouncer]]:
    """`bouncer_factory(server_config, pool_size=…)`: a started PgBouncer of this test's own."""
    _pgbouncer_binary()
    started: list[PgBouncer] = []

    def make(server: DatabaseConfig, **options: int) -> PgBouncer:
        bouncer = PgBouncer(scratch("pgbouncer"), server, **options)
        started.append(bouncer.start())
        return bouncer

    try:
        yield make
    finally:
        for bouncer in started:
            bouncer.stop()
