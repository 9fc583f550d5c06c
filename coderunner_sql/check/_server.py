"""The server side of the check: a scratch database, what the server says about each query
(prepared, never run), and the catalog facts the comparison needs.

All SQL here comes from `queries/catalog.sql`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiosql
import attrs
import psycopg
from psycopg import pq

from coderunner_sql.check._records import PgType
from coderunner_sql.config import DatabaseConfig
from coderunner_sql.connection import connect
from coderunner_sql.errors import ConfigError, QueryError, translate

SCRATCH_PREFIX = "crsql_check_"


class CatalogSQL:
    """The check's own queries (`queries/internal/catalog.sql`)."""

    def __init__(self, queries: Path) -> None:
        path = queries / "catalog.sql"
        if not path.exists():
            raise ConfigError(f"{path} is missing: `coderunner-sql check` reads its SQL from it")
        self._sql = aiosql.from_path(path, "psycopg")

    def scratch_statements(self, conn: psycopg.Connection[Any], name: str) -> tuple[str, str]:
        """CREATE DATABASE and DROP DATABASE statements for `name`, quoted by the server."""
        create, drop = self._sql.get_scratch_database_statements(conn, name=name)
        return str(create), str(drop)

    def columns(self, conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
        """`get_table_columns` rows."""
        return list(self._sql.get_table_columns(conn))

    def types(self, conn: psycopg.Connection[Any], oids: list[int]) -> list[tuple[Any, ...]]:
        """`get_types` rows for `oids`."""
        return list(self._sql.get_types(conn, oids=oids))

    def volatile_functions(self, conn: psycopg.Connection[Any], names: set[str]) -> frozenset[str]:
        """Which of the function `names` have a volatile overload (one that may write)."""
        rows = self._sql.get_volatile_functions(conn, names=sorted(names))
        return frozenset(str(row[0]) for row in rows)

    def applied(self, conn: psycopg.Connection[Any]) -> list[str]:
        """Ids of the migrations yoyo marked applied (none when yoyo never ran here)."""
        if not self._sql.has_migration_table(conn):
            return []
        return [str(row[0]) for row in self._sql.get_applied_migration_ids(conn)]


# -- the scratch database ---------------------------------------------------------------------


@contextlib.contextmanager
def embedded_server(data_dir: str | os.PathLike[str] | None) -> Iterator[DatabaseConfig]:
    """The embedded server's admin database (started if needed, stopped after if so)."""
    from coderunner_sql.embedded import DEFAULT_DATA_DIR, EmbeddedServer
    from coderunner_sql.target import DATA_DIR_ENV

    folder = Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
    server = EmbeddedServer(folder).start()
    try:
        yield server.config("postgres")
    finally:
        if server.started_here:
            server.stop()


@contextlib.contextmanager
def scratch_database(admin: DatabaseConfig, catalog: CatalogSQL) -> Iterator[DatabaseConfig]:
    """A new empty database on `admin`'s server, dropped (even when in use) afterwards."""
    name = f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"
    with connect(admin, autocommit=True) as conn:
        create, drop = catalog.scratch_statements(conn, name)
        try:
            conn.execute(create.encode())
        except psycopg.Error as exc:
            where = f"{admin.host or 'localhost'}:{admin.port or 5432}"
            raise QueryError(
                f"check: cannot create a scratch database on {where} "
                f"({exc.diag.message_primary or type(exc).__name__}); "
                "use a role with CREATEDB, or --scratch embedded"
            ) from None
    try:
        yield admin.replace(dbname=name)
    finally:
        with connect(admin, autocommit=True) as conn:
            conn.execute(drop.encode())


def applied_migrations(reference: DatabaseConfig, catalog: CatalogSQL) -> list[str]:
    """Ids of the migrations applied to `reference`, read in a read-only transaction."""
    with connect(reference) as conn:
        conn.read_only = True
        try:
            return catalog.applied(conn)
        except psycopg.Error as exc:
            raise translate(exc, operation="check: read applied migrations") from None
        finally:
            conn.rollback()


def copy_migrations(source: Path, ids: list[str], target: Path) -> None:
    """Copy the files of the migrations `ids` (with rollbacks) from `source` to `target`."""
    for migration_id in ids:
        for suffix in (".sql", ".rollback.sql", ".py", "_rollback.py"):
            path = source / f"{migration_id}{suffix}"
            if path.exists():
                shutil.copy2(path, target / path.name)


@contextlib.contextmanager
def temporary_folder() -> Iterator[Path]:
    """A private temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="crsql_check_") as folder:
        yield Path(folder)


# -- what the server says -------------------------------------------------------------------


@attrs.frozen
class ResultColumn:
    """One column of a prepared statement's result."""

    name: str
    type_oid: int
    table_oid: int  # 0 unless the column is a plain reference to a table column
    column_number: int


@attrs.frozen
class Described:
    """A statement the server prepared: its parameter types and result columns."""

    param_types: tuple[int, ...]
    columns: tuple[ResultColumn, ...]


@attrs.frozen
class Rejected:
    """A statement the server refused to prepare."""

    message: str
    position: int | None  # 0-based character offset, when the server gave one


def describe(conn: psycopg.Connection[Any], sql: str) -> Described | Rejected:
    """Prepare `sql` as the unnamed statement (libpq PQprepare) and describe it."""
    pgconn = conn.pgconn
    result = pgconn.prepare(b"", sql.encode())
    if result.status != pq.ExecStatus.COMMAND_OK:
        primary = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY)
        position = result.error_field(pq.DiagnosticField.STATEMENT_POSITION)
        message = (primary or result.error_message or b"rejected").decode(errors="replace")
        return Rejected(message.strip(), int(position) - 1 if position else None)
    info = pgconn.describe_prepared(b"")
    return Described(
        tuple(info.param_type(i) for i in range(info.nparams)),
        tuple(
            ResultColumn(
                (info.fname(i) or b"?").decode(),
                info.ftype(i),
                info.ftable(i),
                info.ftablecol(i),
            )
            for i in range(info.nfields)
        ),
    )


@attrs.frozen
class Column:
    """A table column as the catalog has it."""

    table_oid: int
    schema: str
    table: str
    table_kind: str  # r table, p partitioned, v view, m materialised view, f foreign
    number: int
    name: str
    not_null: bool
    has_default: bool

    @property
    def label(self) -> str:
        """`users.email`."""
        return f"{self.table}.{self.name}"


@attrs.frozen
class Catalog:
    """Every user table's columns at one moment."""

    columns: tuple[Column, ...]

    @classmethod
    def read(cls, conn: psycopg.Connection[Any], catalog: CatalogSQL) -> Catalog:
        """The columns of every table outside the system schemas, now."""
        return cls(tuple(Column(*row) for row in catalog.columns(conn)))

    def at(self, table_oid: int, number: int) -> Column | None:
        """The column a result column comes from (by table OID and column number)."""
        for column in self.columns:
            if column.table_oid == table_oid and column.number == number:
                return column
        return None

    def tables(self) -> dict[str, frozenset[str]]:
        """Table name -> its column names."""
        found: dict[str, set[str]] = {}
        for column in self.columns:
            found.setdefault(column.table, set()).add(column.name)
        return {name: frozenset(names) for name, names in found.items()}

    def of(self, table: str) -> list[Column]:
        """The columns of one table (by name), in order."""
        return [c for c in self.columns if c.table == table]


def types(
    conn: psycopg.Connection[Any], catalog: CatalogSQL, oids: set[int]
) -> Mapping[int, PgType]:
    """Each type in `oids`, with the element types of arrays and base types of domains."""
    rows: dict[int, tuple[Any, ...]] = {}
    pending = set(oids)
    while pending:
        for row in catalog.types(conn, sorted(pending)):
            rows[row[0]] = row
        pending = {
            inner
            for oid in pending & rows.keys()
            for inner in rows[oid][5:7]
            if inner and inner not in rows
        }
    built: dict[int, PgType] = {}

    def build(oid: int | None) -> PgType | None:
        if not oid or oid not in rows:
            return None
        if oid not in built:
            _oid, _schema, name, display, kind, element, base, labels = rows[oid]
            built[oid] = PgType(
                oid,
                name,
                display,
                kind,
                element=build(element),
                base=build(base),
                labels=tuple(labels or ()),
            )
        return built[oid]

    for oid in rows:
        build(oid)
    return built
