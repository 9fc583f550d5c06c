"""Schema migrations: yoyo's files and bookkeeping, plus content checksums and a safe lock.

yoyo decides *which* migrations exist and marks them applied in `_yoyo_migration`, so
`yoyo apply` and `coderunner-sql migrate` share one history. On top of that this module
records a SHA-256 of every applied file (an edited or deleted one is an integrity error),
serialises concurrent runs with a PostgreSQL advisory lock (it dies with its session, unlike
yoyo's lock row), and applies each migration *and* marks it in one transaction, so a failure
leaves the schema exactly as it was.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import aiosql
import attrs
import psycopg

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.connection import connect_failure
from coderunner_sql.errors import (
    ConfigError,
    MigrationError,
    MigrationIntegrityError,
    MigrationLockError,
    SchemaNotReadyError,
)
from coderunner_sql.resources import migrations_dir, queries_dir

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "MigrationState",
    "Migrator",
    "RunReport",
    "create_migration",
]

DEFAULT_LOCK_TIMEOUT = 60.0
# Any fixed bigint will do; this one spells "crsqlmig" so it is recognisable in pg_locks.
_LOCK_KEY = int.from_bytes(b"crsqlmig", "big") & 0x7FFF_FFFF_FFFF_FFFF

State = Literal["applied", "pending", "changed", "missing", "unrecorded"]


@attrs.frozen
class MigrationState:
    """One migration as `migrate status` shows it."""

    id: str
    applied_at: datetime | None
    state: State
    file: Path | None


@attrs.frozen
class RunReport:
    """What a `migrate`, `verify` or `rollback` run did."""

    applied: tuple[str, ...] = ()
    rolled_back: tuple[str, ...] = ()
    recorded_on_first_sight: tuple[str, ...] = ()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _bookkeeping() -> Any:
    return aiosql.from_path(queries_dir() / "migrations.sql", "psycopg")


class Migrator:
    """Applies, verifies and rolls back the migrations in one folder against one database."""

    def __init__(
        self,
        config: DatabaseConfig,
        directory: str | Path | None = None,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        self.config = config
        self.directory = migrations_dir(directory)
        self.lock_timeout = lock_timeout
        self._sql = _bookkeeping()

    # -- reading the folder -------------------------------------------------------------

    def migrations(self) -> Any:
        """yoyo's `MigrationList` for the folder, in application order."""
        from yoyo import read_migrations

        try:
            return read_migrations(str(self.directory))
        except Exception as exc:  # yoyo raises bare exceptions for unreadable folders
            raise MigrationError(f"cannot read migrations in {self.directory}: {exc}") from None

    def _file(self, migration_id: str) -> Path:
        return self.directory / f"{migration_id}.sql"

    # -- connection and lock ------------------------------------------------------------

    @contextmanager
    def _backend(self) -> Iterator[Any]:
        from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
        from yoyo.connections import DatabaseURI

        args = {
            key: str(value)
            for key, value in self.config.connect_kwargs().items()
            if key not in ("host", "port", "dbname", "user", "password")
        }
        uri = DatabaseURI(
            "postgresql+psycopg",
            self.config.user,
            self.config.password,
            self.config.host,
            self.config.port,
            self.config.dbname,
            args,
        )
        try:
            backend = PostgresqlPsycopgBackend(uri, "_yoyo_migration")
            backend.init_database()
        except psycopg.Error as exc:
            raise connect_failure(exc, self.config) from None
        try:
            yield backend
        finally:
            backend.connection.close()

    @contextmanager
    def _locked(self, backend: Any) -> Iterator[None]:
        conn = backend.connection
        deadline = time.monotonic() + self.lock_timeout
        while not self._sql.try_migration_lock(conn, lock_key=_LOCK_KEY):
            if time.monotonic() >= deadline:
                raise MigrationLockError(
                    f"another migration run held the lock for over {self.lock_timeout:g}s"
                )
            time.sleep(0.1)
        try:
            yield
        finally:
            if not conn.closed:
                self._sql.release_migration_lock(conn, lock_key=_LOCK_KEY)

    def _prepare(self, backend: Any) -> None:
        backend.ensure_internal_schema_updated()
        # CREATE … IF NOT EXISTS still needs CREATE on the schema, which the application
        # role (status() via initialize()) does not have: create only what is missing.
        if not self._sql.migration_checksums_table_exists(backend.connection):
            self._sql.create_migration_checksums_table(backend.connection)

    # -- integrity ----------------------------------------------------------------------

    def _check(self, backend: Any, *, record: bool) -> tuple[list[MigrationState], list[str]]:
        """States of every migration; records first-sight checksums when `record`."""
        on_disk = {m.id: m for m in self.migrations()}
        applied = list(self._sql.get_applied_migrations(backend.connection))
        states: list[MigrationState] = []
        first_sight: list[str] = []
        seen: set[str] = set()
        for migration_id, applied_at, recorded in applied:
            seen.add(migration_id)
            path = self._file(migration_id)
            applied_utc = applied_at.replace(tzinfo=UTC) if applied_at else None
            if migration_id not in on_disk or not path.exists():
                states.append(MigrationState(migration_id, applied_utc, "missing", None))
            elif recorded is None:
                first_sight.append(migration_id)
                state: State = "applied" if record else "unrecorded"
                states.append(MigrationState(migration_id, applied_utc, state, path))
            elif recorded != _sha256(path):
                states.append(MigrationState(migration_id, applied_utc, "changed", path))
            else:
                states.append(MigrationState(migration_id, applied_utc, "applied", path))
        if record and first_sight:
            with backend.transaction():
                for migration_id in first_sight:
                    self._sql.record_migration_checksum(
                        backend.connection,
                        migration_id=migration_id,
                        sha256=_sha256(self._file(migration_id)),
                        recorded_by="first-sight",
                    )
        for migration_id, migration in on_disk.items():
            if migration_id not in seen:
                states.append(MigrationState(migration_id, None, "pending", Path(migration.path)))
        return states, first_sight

    def _raise_on_drift(self, states: list[MigrationState]) -> None:
        bad = [s for s in states if s.state in ("changed", "missing")]
        if bad:
            names = tuple(str(s.file) if s.file else f"{self.directory / s.id}.sql" for s in bad)
            details = "; ".join(
                f"{name} was {'edited' if s.state == 'changed' else 'removed'} after it was applied"
                for name, s in zip(names, bad, strict=True)
            )
            raise MigrationIntegrityError(f"migration integrity: {details}", files=names)

    def status(self) -> list[MigrationState]:
        """Every migration on disk or applied, with its state; changes nothing."""
        with self._backend() as backend:
            self._prepare(backend)
            states, _ = self._check(backend, record=False)
            return states

    def verify(self) -> RunReport:
        """Raise `MigrationIntegrityError` if an applied migration's file changed or vanished."""
        with self._backend() as backend, self._locked(backend):
            self._prepare(backend)
            states, first_sight = self._check(backend, record=True)
            self._raise_on_drift(states)
            return RunReport(recorded_on_first_sight=tuple(first_sight))

    def ensure_ready(self) -> None:
        """Raise `SchemaNotReadyError` (pending migrations) or `MigrationIntegrityError`."""
        states = self.status()
        self._raise_on_drift(states)
        pending = tuple(s.id for s in states if s.state == "pending")
        if pending:
            raise SchemaNotReadyError(
                f"{len(pending)} migration(s) not applied: {', '.join(pending)} "
                "(run `coderunner-sql migrate`)",
                pending=pending,
            )

    def pending(self) -> list[str]:
        """Ids of the migrations not applied yet, in order."""
        return [s.id for s in self.status() if s.state == "pending"]

    # -- applying and rolling back ------------------------------------------------------

    def _run_statements(
        self, backend: Any, migration_id: str, path: Path, statements: list[str]
    ) -> None:
        cursor = backend.connection.cursor()
        for number, statement in enumerate(statements, 1):
            try:
                cursor.execute(statement)
            except psycopg.Error as exc:
                primary = exc.diag.message_primary or type(exc).__name__
                first_line = " ".join(statement.split())[:200]
                raise MigrationError(
                    f"{path.name}: statement {number} failed: {primary} — in: {first_line}",
                    migration=migration_id,
                    statement=statement,
                ) from None

    def _statements(self, path: Path) -> tuple[dict[str, str], list[str]]:
        from yoyo.migrations import read_sql_migration

        directives, _comment, statements = read_sql_migration(str(path))
        return directives, [s for s in statements if s.strip()]

    def apply(self, progress: Callable[[str], None] | None = None) -> RunReport:
        """Apply every pending migration in order; each one and its bookkeeping commit together."""
        with self._backend() as backend, self._locked(backend):
            self._prepare(backend)
            states, first_sight = self._check(backend, record=True)
            self._raise_on_drift(states)
            migrations = backend.to_apply(self.migrations())
            applied: list[str] = []
            for migration in migrations:
                path = Path(migration.path)
                directives, statements = self._statements(path)
                transactional = directives.get("transactional", "true").lower() != "false"
                if transactional:
                    with backend.transaction():
                        self._run_statements(backend, migration.id, path, statements)
                        self._mark(backend, migration, path)
                else:
                    with backend.disable_transactions():
                        self._run_statements(backend, migration.id, path, statements)
                    with backend.transaction():
                        self._mark(backend, migration, path)
                backend.log_migration(migration, "apply")
                applied.append(migration.id)
                if progress is not None:
                    progress(migration.id)
            return RunReport(applied=tuple(applied), recorded_on_first_sight=tuple(first_sight))

    def _mark(self, backend: Any, migration: Any, path: Path) -> None:
        backend.mark_one(migration, log=False)
        self._sql.record_migration_checksum(
            backend.connection,
            migration_id=migration.id,
            sha256=_sha256(path),
            recorded_by="migrate",
        )

    def rollback(self, count: int = 1, progress: Callable[[str], None] | None = None) -> RunReport:
        """Roll back the `count` most recently applied migrations, newest first."""
        if count < 1:
            raise ConfigError(f"--count must be at least 1, got {count}")
        with self._backend() as backend, self._locked(backend):
            self._prepare(backend)
            states, _ = self._check(backend, record=True)
            self._raise_on_drift(states)
            targets = list(backend.to_rollback(self.migrations()))[:count]
            done: list[str] = []
            for migration in targets:
                path = Path(migration.path)
                rollback_path = path.with_name(f"{migration.id}.rollback.sql")
                if not rollback_path.exists():
                    raise MigrationError(
                        f"{path.name} has no {rollback_path.name}: cannot roll it back",
                        migration=migration.id,
                    )
                _directives, statements = self._statements(rollback_path)
                with backend.transaction():
                    self._run_statements(backend, migration.id, rollback_path, statements)
                    backend.unmark_one(migration, log=False)
                    self._sql.forget_migration_checksum(
                        backend.connection, migration_id=migration.id
                    )
                backend.log_migration(migration, "rollback")
                done.append(migration.id)
                if progress is not None:
                    progress(migration.id)
            return RunReport(rolled_back=tuple(done))


_SLUG = re.compile(r"[^a-z0-9]+")


def create_migration(
    name: str,
    directory: str | Path | None = None,
    *,
    description: str | None = None,
    now: datetime | None = None,
) -> tuple[Path, Path]:
    """Write `<UTC timestamp>_<name>.sql` and its `.rollback.sql`; returns both paths."""
    slug = _SLUG.sub("_", name.lower()).strip("_")
    if not slug:
        raise ConfigError(f"a migration name needs letters or digits, got {name!r}")
    folder = migrations_dir(directory)
    created = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    # A new migration must sort after every existing one, even one dated ahead of this
    # clock, or fresh and existing databases would apply them in different orders.
    stamps = [m.group(1) for f in folder.glob("*.sql") if (m := re.match(r"(\d{14})_", f.name))]
    if stamps:
        newest = datetime.strptime(max(stamps), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        created = max(created, newest + timedelta(seconds=1))
    stem = f"{created:%Y%m%d%H%M%S}_{slug}"
    forward, backward = folder / f"{stem}.sql", folder / f"{stem}.rollback.sql"
    if forward.exists() or backward.exists():
        raise ConfigError(f"{forward.name} already exists")
    header = (
        f"-- Migration: {name}\n"
        f"-- Created: {created.isoformat(timespec='seconds').replace('+00:00', 'Z')}\n"
        f"-- Description: {description or 'Add your migration description here'}\n"
    )
    forward.write_text(header + "\n")
    backward.write_text(
        f"-- Rollback: {name}\n-- Undo every statement of {forward.name}, in reverse.\n\n"
    )
    return forward, backward
