"""Throwaway databases for tests: a server to make them on, a migrated template sealed once,
and a copy of it per test, each dropped when done.

Nothing here needs pytest: the plugin (`coderunner_sql.testing`) and benchmarks build on it.
All SQL comes from `queries/internal/testing.sql`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiosql
import psycopg

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.connection import connect
from coderunner_sql.errors import ConfigError, translate
from coderunner_sql.migrations import Migrator
from coderunner_sql.resources import internal_queries_dir, migrations_dir

__all__ = [
    "COPY_PREFIX",
    "FAST_SETTINGS",
    "SERVER_ENV",
    "TEMPLATE_PREFIX",
    "ScratchServer",
    "combined_migrations",
    "scratch_server",
]

SERVER_ENV = "TEST_DATABASE_URL"
COPY_PREFIX = "crsql_t"
TEMPLATE_PREFIX = "crsql_tmpl"
# Settings for throwaway test clusters: durability is not what tests measure.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
_MIGRATION_SUFFIXES = (".sql", ".py")
T = TypeVar("T")


class ScratchServer:
    """A server tests may make databases on (`admin` points at a database there), which
    creates, seals and drops uniquely named databases and, on `close()`, drops every one of
    them still there."""

    def __init__(self, admin: DatabaseConfig) -> None:
        self.admin = admin
        self._sql = aiosql.from_path(internal_queries_dir() / "testing.sql", "psycopg")
        # One admin session for every statement saves a connect per test; the lock keeps
        # a test's threads from interleaving on it.
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._made: dict[str, bool] = {}  # name -> sealed as a template

    # -- the admin session --------------------------------------------------------------

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """`work` on the admin session; once more on a new one if the session was ended
        under it (a test may terminate every backend of the server)."""
        for attempt in (1, 2):
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = connect(self.admin, autocommit=True)
            conn = self._conn
            try:
                return work(conn)
            except psycopg.OperationalError:
                if attempt == 2 or not conn.broken:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _statements(
        self, conn: psycopg.Connection[Any], name: str, template: str | None = None
    ) -> tuple[str, ...]:
        row = self._sql.get_test_database_statements(conn, name=name, template=template)
        return tuple(str(statement) for statement in row)

    # -- databases ----------------------------------------------------------------------

    def config(self, name: str, **overrides: Any) -> DatabaseConfig:
        """A config for database `name` on this server (the admin's role and settings)."""
        return self.admin.replace(dbname=name, **overrides)

    def create(self, *, template: str | None = None, prefix: str = COPY_PREFIX) -> str:
        """A new database named `<prefix>_<random>` (a copy of `template` if given)."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"

        def work(conn: psycopg.Connection[Any]) -> None:
            create, _seal, _unseal, _drop = self._statements(conn, name, template)
            conn.execute(create.encode())

        with self._lock:
            try:
                self._run(work)
            except psycopg.Error as exc:
                raise translate(exc, operation=f"creating test database {name}") from None
            self._made[name] = False
        return name

    def seal(self, name: str) -> None:
        """Make `name` a template nobody may connect to, and end the sessions still on it,
        so that copying it never fails with "being accessed by other users"."""

        def work(conn: psycopg.Connection[Any]) -> None:
            _create, seal, _unseal, _drop = self._statements(conn, name)
            conn.execute(seal.encode())
            self._made[name] = True
            self._sql.disconnect_test_database(conn, name=name)

        with self._lock:
            try:
                self._run(work)
            except psycopg.Error as exc:
                raise translate(exc, operation=f"sealing template {name}") from None

    def drop(self, name: str) -> None:
        """Drop database `name` (a template too), ending whoever still uses it."""

        def work(conn: psycopg.Connection[Any]) -> None:
            _create, _seal, unseal, drop = self._statements(conn, name)
            if self._made.get(name) and self._sql.test_database_exists(conn, name=name):
                conn.execute(unseal.encode())  # a template cannot be dropped
            conn.execute(drop.encode())

        with self._lock:
            try:
                self._run(work)
            except psycopg.Error as exc:
                raise translate(exc, operation=f"dropping test database {name}") from None
            self._made.pop(name, None)

    def make_template(
        self, migrations: str | os.PathLike[str] | None = None, *, prefix: str = TEMPLATE_PREFIX
    ) -> str:
        """A new database with every migration in `migrations` (default: the package's)
        applied, then sealed: the template that `create(template=…)` copies."""
        name = self.create(prefix=prefix)
        try:
            Migrator(self.config(name), migrations).apply()
            self.seal(name)
        except BaseException:
            self.drop(name)
            raise
        return name

    def made(self) -> list[str]:
        """Names of the databases made here and not dropped yet."""
        with self._lock:
            return list(self._made)

    def close(self, *, drop: bool = True) -> None:
        """Drop every database made here that is still there (copies before templates),
        unless `drop` is false, and close the admin session."""
        failures: list[BaseException] = []
        try:
            if drop:
                for name in sorted(self.made(), key=lambda made: self._made.get(made, False)):
                    try:
                        self.drop(name)
                    except Exception as exc:  # drop the others anyway; report the first
                        failures.append(exc)
            if failures:
                raise failures[0]
        finally:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

    def __enter__(self) -> ScratchServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ScratchServer({self.admin.url(with_password=False)!r})"


@contextlib.contextmanager
def scratch_server(
    data_dir: str | os.PathLike[str], *, url: str | None = None
) -> Iterator[ScratchServer]:
    """`url` (default: `TEST_DATABASE_URL`) when set, else an embedded server in `data_dir`
    started now and deleted on exit; every database made on it is dropped on exit."""
    url = url if url is not None else os.environ.get(SERVER_ENV) or None
    if url:
        with ScratchServer(DatabaseConfig.from_url(url)) as server:
            yield server
        return
    from coderunner_sql.embedded import EmbeddedServer

    embedded = EmbeddedServer(data_dir, settings=FAST_SETTINGS)
    embedded.start()
    try:
        with ScratchServer(embedded.config("postgres")) as server:
            yield server
    finally:
        embedded.destroy()


def combined_migrations(
    folders: Sequence[str | os.PathLike[str]], target: str | os.PathLike[str]
) -> Path:
    """The package's migrations plus those in `folders`, as one folder, so that one history
    records them all: the package's own folder when `folders` is empty, else `target`,
    filled with links. A file name found twice with different content is a `ConfigError`."""
    own = migrations_dir()
    if not folders:
        return own
    combined = Path(target)
    combined.mkdir(parents=True, exist_ok=True)
    seen: dict[str, Path] = {}
    for folder in (own, *(Path(f).expanduser().resolve() for f in folders)):
        if not folder.is_dir():
            raise ConfigError(f"migrations folder not found: {folder}")
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix not in _MIGRATION_SUFFIXES:
                continue
            if path.name.startswith(("_", ".")):
                continue
            first = seen.setdefault(path.name, path)
            if first is path:
                (combined / path.name).symlink_to(path)
            elif first.read_bytes() != path.read_bytes():
                raise ConfigError(
                    f"two different migrations named {path.name}: in {first.parent} and {folder}"
                )
    return combined
