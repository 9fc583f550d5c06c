"""Schema migrations: yoyo's files and bookkeeping, plus content checksums and a safe lock.

yoyo decides *which* migrations exist and marks them applied in `_yoyo_migration`, so
`yoyo apply` and `coderunner-sql migrate` share one history. On top of that this module
records a SHA-256 of every applied file (an edited or deleted one is an integrity error),
serialises concurrent runs with a PostgreSQL advisory lock (it dies with its session, unlike
yoyo's lock row), and applies each migration *and* marks it in one transaction, so a failure
leaves the schema exactly as it was. The server watches the migration session, so a run
killed mid-statement does not leave its backend (and the lock) behind.

Repeatable migrations are yoyo's post-apply files (`post-apply*.sql`): plain `yoyo apply`
runs every one of them after any run that applies something; `Migrator.apply` runs each
only when its content changed since it last ran here (tracked by checksum). Deliberate
edits of applied files are re-recorded by `repair`, which keeps a history of every repair.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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
    translate,
)
from coderunner_sql.resources import internal_queries_dir, migrations_dir

if TYPE_CHECKING:
    from coderunner_sql.migration_plan import Plan

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "REPEATABLE_PREFIX",
    "MigrationState",
    "Migrator",
    "RepairChange",
    "RepairRecord",
    "RepeatableState",
    "RunReport",
    "StatusReport",
    "create_migration",
    "create_repeatable",
]

DEFAULT_LOCK_TIMEOUT = 60.0
# Any fixed bigint will do; this one spells "crsqlmig" so it is recognisable in pg_locks.
_LOCK_KEY = int.from_bytes(b"crsqlmig", "big") & 0x7FFF_FFFF_FFFF_FFFF

State = Literal["applied", "pending", "changed", "missing", "unrecorded"]
RepeatableStateName = Literal["applied", "pending", "changed"]
# yoyo's own convention: files whose names start so are run after every apply.
REPEATABLE_PREFIX = "post-apply"

# Server settings of the migration session, so that the server ends the backend of a run
# that died (kill -9, a lost host) instead of finishing its statement and keeping the
# advisory lock and the DDL locks: it checks the client's socket every second while a
# statement runs (PostgreSQL 14+), probes a silent peer with keepalives (given up after
# 10 s idle and 3 probes 5 s apart), and ends a transaction a hung client left idle.
# A setting in the URL's own `options` comes later in the string, so it wins.
_SESSION_SETTINGS = {
    "client_connection_check_interval": "1s",
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "idle_in_transaction_session_timeout": "60s",
}
# The one of them servers before PostgreSQL 14 refuse at connect.
_NEWER_SETTING = "client_connection_check_interval"


@attrs.frozen
class MigrationState:
    """One migration as `migrate status` shows it."""

    id: str
    applied_at: datetime | None
    state: State
    file: Path | None


@attrs.frozen
class RepeatableState:
    """One repeatable (post-apply) migration: `pending` never ran here, `changed` ran with
    other content; both run at the next `migrate`."""

    name: str
    applied_at: datetime | None
    state: RepeatableStateName
    file: Path


@attrs.frozen
class RepairChange:
    """A checksum `repair` re-records: the one applied, and the file's now."""

    id: str
    old_sha256: str
    new_sha256: str
    file: Path


@attrs.frozen
class RepairRecord:
    """One repair in the history: who (database role, and the operator's login), when."""

    id: str
    old_sha256: str
    new_sha256: str
    repaired_at: datetime
    repaired_by: str
    operator: str | None


@attrs.frozen
class StatusReport:
    """Everything `migrate status` shows: ordered migrations, repeatables, repairs."""

    migrations: tuple[MigrationState, ...]
    repeatables: tuple[RepeatableState, ...]
    repairs: tuple[RepairRecord, ...]


@attrs.frozen
class RunReport:
    """What a `migrate`, `verify`, `rollback`, `baseline` or `repair` run did."""

    applied: tuple[str, ...] = ()
    rolled_back: tuple[str, ...] = ()
    recorded_on_first_sight: tuple[str, ...] = ()
    repeatables: tuple[str, ...] = ()  # repeatable migrations run (new or changed)
    baselined: tuple[str, ...] = ()  # recorded as applied without running them
    repaired: tuple[RepairChange, ...] = ()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _bookkeeping() -> Any:
    return aiosql.from_path(internal_queries_dir() / "migrations.sql", "psycopg")


def _session_options(settings: dict[str, str], own: str | None) -> str:
    mine = " ".join(f"-c {name}={value}" for name, value in settings.items())
    return f"{mine} {own}" if own else mine


@functools.cache
def _backend_class() -> Any:
    from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend

    class AdvisoryLockedBackend(PostgresqlPsycopgBackend):  # type: ignore[misc]  # yoyo is untyped
        """yoyo's psycopg 3 backend without yoyo's lock row.

        The advisory lock already serialises our runs. yoyo's row would be taken again for
        its internal-schema upgrade, and its loop turns any error there (a missing table, a
        missing privilege) into a 10 s wait followed by the driver's raw error.
        """

        @contextmanager
        def lock(self, timeout: int = 10) -> Iterator[None]:
            yield

    return AdvisoryLockedBackend


class Migrator:
    """Applies, verifies and rolls back the migrations in one folder against one database."""

    def __init__(
        self,
        config: DatabaseConfig,
        directory: str | os.PathLike[str] | None = None,
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

    def repeatables(self) -> list[Any]:
        """yoyo's post-apply migrations of the folder, in name order."""
        return sorted(self.migrations().post_apply, key=lambda m: m.id)

    # -- connection and lock ------------------------------------------------------------

    def _connect(self) -> Any:
        from yoyo.connections import DatabaseURI

        kwargs = self.config.connect_kwargs()
        args = {
            key: str(value)
            for key, value in kwargs.items()
            if key not in ("host", "port", "dbname", "user", "password")
        }
        settings = dict(_SESSION_SETTINGS)
        while True:
            args["options"] = _session_options(settings, self.config.options.get("options"))
            uri = DatabaseURI(
                "postgresql+psycopg",
                self.config.user,
                self.config.password,
                # From connect_kwargs: a cluster's URL names every node ("h1,h2", "p1,p2").
                kwargs.get("host"),
                kwargs.get("port"),
                self.config.dbname,
                args,
            )
            try:
                return _backend_class()(uri, "_yoyo_migration")
            except psycopg.Error as exc:
                if _NEWER_SETTING in settings and _NEWER_SETTING in str(exc):
                    del settings[_NEWER_SETTING]  # an older server: keepalives still apply
                    continue
                raise connect_failure(exc, self.config) from None

    @contextmanager
    def _backend(self, operation: str) -> Iterator[Any]:
        backend = self._connect()
        role = backend.connection.info.user
        try:
            yield backend
        except psycopg.Error as exc:
            # The one boundary where the driver's errors (from yoyo's SQL or the bookkeeping
            # queries) become ours; the role is named, as a missing grant is the usual cause.
            raise translate(exc, operation=f"{operation} as role {role}") from None
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
        # CREATE … IF NOT EXISTS still needs CREATE on the schema: create only what is missing.
        conn = backend.connection
        if not self._sql.migration_checksums_table_exists(conn):
            self._sql.create_migration_checksums_table(conn)
        if not self._sql.migration_repairs_table_exists(conn):
            self._sql.create_migration_repairs_table(conn)
        if not self._sql.repeatables_table_exists(conn):
            self._sql.create_repeatables_table(conn)

    def _applied(self, backend: Any) -> list[tuple[Any, ...]]:
        """(id, applied at, recorded checksum) of every applied migration, creating nothing
        but the checksum table of a database so far migrated by plain yoyo only."""
        from yoyo import internalmigrations

        conn = backend.connection
        if not self._sql.migration_checksums_table_exists(conn):
            # yoyo's tables are listed only to a role with some privilege on them: none in
            # sight (and none of ours) means nothing this role could use was ever applied.
            if internalmigrations.get_current_version(backend) == 0:
                return []
            self._sql.create_migration_checksums_table(conn)
        return list(self._sql.get_applied_migrations(conn))

    # -- integrity ----------------------------------------------------------------------

    def _check(self, backend: Any, *, record: bool) -> tuple[list[MigrationState], list[str]]:
        """States of every migration; records first-sight checksums when `record`."""
        on_disk = {m.id: m for m in self.migrations()}
        applied = self._applied(backend)
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
        # Only reads: yoyo's internal-schema upgrade (and its lock) is left to the runs that
        # change the schema, so a role that may only read gets its answer at once.
        with self._backend("reading the migration state") as backend:
            states, _ = self._check(backend, record=False)
            return states

    def _repeatable_states(self, backend: Any) -> list[RepeatableState]:
        conn = backend.connection
        recorded: dict[str, tuple[str, datetime]] = {}
        if self._sql.repeatables_table_exists(conn):
            recorded = {name: (sha, at) for name, sha, at in self._sql.get_repeatables(conn)}
        found: list[RepeatableState] = []
        for migration in self.repeatables():
            path = Path(migration.path)
            sha, applied_at = recorded.get(migration.id, (None, None))
            state: RepeatableStateName = (
                "pending" if sha is None else "applied" if sha == _sha256(path) else "changed"
            )
            found.append(RepeatableState(migration.id, applied_at, state, path))
        return found

    def _repairs(self, backend: Any) -> list[RepairRecord]:
        conn = backend.connection
        if not self._sql.migration_repairs_table_exists(conn):
            return []
        return [RepairRecord(*row) for row in self._sql.get_migration_repairs(conn)]

    def full_status(self) -> StatusReport:
        """Ordered migrations, repeatable ones and the repair history; changes nothing."""
        with self._backend("reading the migration state") as backend:
            states, _ = self._check(backend, record=False)
            return StatusReport(
                tuple(states),
                tuple(self._repeatable_states(backend)),
                tuple(self._repairs(backend)),
            )

    def verify(self) -> RunReport:
        """Raise `MigrationIntegrityError` if an applied migration's file changed or vanished."""
        with self._backend("migrate verify") as backend, self._locked(backend):
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
        with self._backend("migrate") as backend, self._locked(backend):
            self._prepare(backend)
            states, first_sight = self._check(backend, record=True)
            self._raise_on_drift(states)
            migrations = backend.to_apply(self.migrations())
            applied: list[str] = []
            for migration in migrations:
                path = Path(migration.path)
                self._run_file(
                    backend,
                    migration.id,
                    path,
                    path,
                    functools.partial(self._mark, backend, migration, path),
                )
                backend.log_migration(migration, "apply")
                applied.append(migration.id)
                if progress is not None:
                    progress(migration.id)
            repeated = self._apply_repeatables(backend, progress)
            self._sql.grant_bookkeeping_reads(backend.connection)
            return RunReport(
                applied=tuple(applied),
                recorded_on_first_sight=tuple(first_sight),
                repeatables=tuple(repeated),
            )

    def _apply_repeatables(
        self, backend: Any, progress: Callable[[str], None] | None = None
    ) -> list[str]:
        """Run every repeatable migration that is new here or changed, in name order, each
        with its checksum in a transaction of its own."""
        ran: list[str] = []
        by_name = {m.id: m for m in self.repeatables()}
        for state in self._repeatable_states(backend):
            if state.state == "applied":
                continue
            self._run_file(
                backend,
                state.name,
                state.file,
                state.file,
                functools.partial(self._record_repeatable, backend, state.file),
            )
            backend.log_migration(by_name[state.name], "apply")
            ran.append(state.name)
            if progress is not None:
                progress(state.name)
        return ran

    def _record_repeatable(self, backend: Any, path: Path) -> None:
        self._sql.record_repeatable(
            backend.connection, name=path.name.removesuffix(".sql"), sha256=_sha256(path)
        )

    # -- dry run, baseline, repair ------------------------------------------------------

    def plan(self, *, lint: bool = True) -> Plan:
        """What `apply` would do, applying nothing: pending and changed-repeatable
        migrations in order, with their SQL and (`lint`) what `check` says of them."""
        from coderunner_sql.migration_plan import make_plan

        return make_plan(self, self.full_status(), lint=lint)

    def baseline(
        self,
        to: str,
        *,
        scratch: Literal["server", "embedded"] = "server",
        data_dir: str | Path | None = None,
    ) -> RunReport:
        """Record the migrations up to `to` (and the repeatable ones) as applied without
        running them, after checking the schema is what they build; see `baseline`."""
        from coderunner_sql.baseline import reference_difference

        ordered = list(self.migrations())
        ids = [m.id for m in ordered]
        if to not in ids:
            raise ConfigError(f"--to {to}: no migration of that id in {self.directory}")
        targets = ordered[: ids.index(to) + 1]
        wanted = {m.id for m in targets}
        with self._backend("migrate baseline") as backend, self._locked(backend):
            applied = [row[0] for row in self._applied(backend)]
            beyond = [mid for mid in applied if mid not in wanted]
            if beyond:
                raise MigrationError(
                    f"baseline --to {to}: {beyond[0]} is already applied here, and it "
                    f"comes after {to} (or is not in {self.directory})",
                    migration=beyond[0],
                )
            todo = [m for m in targets if m.id not in applied]
            if not todo:
                return RunReport()
            difference = reference_difference(
                backend.connection,
                self.config,
                self.directory,
                [m.id for m in targets],
                [Path(m.path) for m in self.repeatables()],
                scratch=scratch,
                data_dir=data_dir,
            )
            if difference is not None:
                raise MigrationError(
                    f"baseline refused: this schema is not what the migrations up to {to} "
                    f"build; first difference: {difference}",
                    migration=to,
                )
            self._prepare(backend)
            with backend.transaction():
                for migration in todo:
                    backend.mark_one(migration, log=False)
                    backend.log_migration(migration, "mark")
                    self._sql.record_migration_checksum(
                        backend.connection,
                        migration_id=migration.id,
                        sha256=_sha256(Path(migration.path)),
                        recorded_by="baseline",
                    )
                for repeatable in self.repeatables():
                    self._record_repeatable(backend, Path(repeatable.path))
            return RunReport(baselined=tuple(m.id for m in todo))

    def _repair_changes(self, backend: Any, ids: tuple[str, ...]) -> list[RepairChange]:
        recorded = {row[0]: row[2] for row in self._applied(backend)}
        states, _ = self._check(backend, record=False)
        by_id = {s.id: s for s in states}
        for migration_id in ids:
            state = by_id.get(migration_id)
            if state is None or state.state != "changed":
                what = "is not applied" if state is None else f"is {state.state}"
                raise ConfigError(f"{migration_id} cannot be repaired: it {what}, not changed")
        missing = [s for s in states if s.state == "missing" and (not ids or s.id in ids)]
        if missing:
            self._raise_on_drift(missing)  # a deleted file is restored, never repaired
        return [
            RepairChange(s.id, recorded[s.id], _sha256(s.file), s.file)
            for s in states
            if s.state == "changed" and s.file is not None and (not ids or s.id in ids)
        ]

    def repair_plan(self, ids: tuple[str, ...] = ()) -> list[RepairChange]:
        """The checksums `repair(ids)` would re-record (every edited applied file, or those
        of `ids`); changes nothing."""
        with self._backend("migrate repair") as backend:
            return self._repair_changes(backend, ids)

    def repair(
        self,
        ids: tuple[str, ...] = (),
        *,
        expected: list[RepairChange] | None = None,
        operator: str | None = None,
    ) -> RunReport:
        """Re-record the checksum of edited applied migrations (all, or `ids`), keeping each
        repair in the history. With `expected` (what `repair_plan` showed), refuse if the
        files changed again meanwhile."""
        with self._backend("migrate repair") as backend, self._locked(backend):
            self._prepare(backend)
            changes = self._repair_changes(backend, ids)
            if expected is not None and changes != expected:
                raise MigrationError(
                    "migrate repair: the files changed after the repair was shown; run it again"
                )
            who = operator if operator is not None else _login()
            with backend.transaction():
                for change in changes:
                    self._sql.record_migration_checksum(
                        backend.connection,
                        migration_id=change.id,
                        sha256=change.new_sha256,
                        recorded_by="repair",
                    )
                    self._sql.record_migration_repair(
                        backend.connection,
                        migration_id=change.id,
                        old_sha256=change.old_sha256,
                        new_sha256=change.new_sha256,
                        operator=who,
                    )
            return RunReport(repaired=tuple(changes))

    def _run_file(
        self,
        backend: Any,
        migration_id: str,
        path: Path,
        forward: Path,
        bookkeeping: Callable[[], None],
    ) -> None:
        """Run one file's statements and then `bookkeeping`: together in one transaction, or,
        under `-- transactional: false`, in autocommit and then in a transaction of its own."""
        directives, statements = self._statements(path)
        # yoyo reads the directive of the forward file for both directions; a rollback file
        # may also carry it itself.
        forward_directives = directives if path == forward else self._statements(forward)[0]
        transactional = all(
            found.get("transactional", "true").lower() != "false"
            for found in (directives, forward_directives)
        )
        if transactional:
            with backend.transaction():
                self._run_statements(backend, migration_id, path, statements)
                bookkeeping()
        else:
            with backend.disable_transactions():
                self._run_statements(backend, migration_id, path, statements)
            with backend.transaction():
                bookkeeping()

    def _unmark(self, backend: Any, migration: Any) -> None:
        backend.unmark_one(migration, log=False)
        self._sql.forget_migration_checksum(backend.connection, migration_id=migration.id)

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
        with self._backend("migrate rollback") as backend, self._locked(backend):
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
                self._run_file(
                    backend,
                    migration.id,
                    rollback_path,
                    path,
                    functools.partial(self._unmark, backend, migration),
                )
                backend.log_migration(migration, "rollback")
                done.append(migration.id)
                if progress is not None:
                    progress(migration.id)
            return RunReport(rolled_back=tuple(done))


def _login() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment nor the password file
        return None


_SLUG = re.compile(r"[^a-z0-9]+")


def create_migration(
    name: str,
    directory: str | os.PathLike[str] | None = None,
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


def create_repeatable(
    name: str, directory: str | Path | None = None, *, description: str | None = None
) -> Path:
    """Write `post-apply-<name>.sql`, a repeatable migration (run again whenever it changes)."""
    slug = _SLUG.sub("-", name.lower()).strip("-")
    if not slug:
        raise ConfigError(f"a migration name needs letters or digits, got {name!r}")
    path = migrations_dir(directory) / f"{REPEATABLE_PREFIX}-{slug}.sql"
    if path.exists():
        raise ConfigError(f"{path.name} already exists")
    path.write_text(
        f"-- Repeatable migration: {name}\n"
        f"-- Description: {description or 'Add your migration description here'}\n"
        "-- Runs after the ordered migrations: `coderunner-sql migrate` runs it whenever its\n"
        "-- content changed, plain `yoyo apply` after every run that applies something. Keep\n"
        "-- every statement safe to run again (CREATE OR REPLACE, DROP ... IF EXISTS).\n\n"
    )
    return path
