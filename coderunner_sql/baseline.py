"""`migrate baseline`: is a database's schema the one a prefix of the migrations builds?

A database made before this library, or restored from a schema dump, has the tables but no
migration history. Before `Migrator.baseline` records the migrations up to an id as applied
(without running them), this module builds what they make in a scratch database, reads
both catalogs as (kind, name, definition) rows (`get_schema_objects` in
`queries/internal/migrations.sql`), and names the first row that differs.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.connection import connect
from coderunner_sql.migrations import Migrator, _bookkeeping
from coderunner_sql.resources import internal_queries_dir

__all__ = ["first_difference", "reference_difference", "schema_objects"]


def schema_objects(conn: Any) -> dict[tuple[str, str], str]:
    """(kind, name) -> definition of every object outside the system schemas and yoyo's
    and this library's bookkeeping tables."""
    bookkeeping = _bookkeeping()
    rows = bookkeeping.get_schema_objects(conn)
    return {(kind, name): definition or "" for kind, name, definition in rows}


def first_difference(
    actual: dict[tuple[str, str], str], expected: dict[tuple[str, str], str]
) -> str | None:
    """The first (kind, name) whose object differs between the two, in words; None if none."""
    for key in sorted(actual.keys() | expected.keys()):
        kind, name = key
        if key not in actual:
            return f"{kind} {name} is missing (the migrations make: {_short(expected[key])})"
        if key not in expected:
            return f"{kind} {name} is here but the migrations do not make it"
        if actual[key] != expected[key]:
            return (
                f"{kind} {name} differs: here {_short(actual[key])}, "
                f"the migrations make {_short(expected[key])}"
            )
    return None


def _short(definition: str, limit: int = 160) -> str:
    flat = " ".join(definition.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@contextmanager
def _scratch(
    config: DatabaseConfig,
    scratch: Literal["server", "embedded"],
    data_dir: str | Path | None,
) -> Iterator[DatabaseConfig]:
    # The check's machinery: a database made for the run and dropped after, on the
    # target's server (needs CREATEDB) or on the embedded one.
    from coderunner_sql.check import _server

    catalog = _server.CatalogSQL(internal_queries_dir())
    admin: AbstractContextManager[DatabaseConfig] = (
        _server.embedded_server(data_dir) if scratch == "embedded" else nullcontext(config)
    )
    with admin as server, _server.scratch_database(server, catalog) as made:
        yield made


def reference_difference(
    conn: Any,
    config: DatabaseConfig,
    directory: Path,
    ids: list[str],
    repeatables: list[Path],
    *,
    scratch: Literal["server", "embedded"] = "server",
    data_dir: str | Path | None = None,
) -> str | None:
    """Build migrations `ids` of `directory` (then the repeatable ones) in a scratch database
    and compare its schema with the one `conn` is connected to; the first difference."""
    from coderunner_sql.check import _server

    actual = schema_objects(conn)
    with _scratch(config, scratch, data_dir) as made, _server.temporary_folder() as folder:
        _server.copy_migrations(directory, ids, folder)
        for path in repeatables:
            shutil.copy2(path, folder / path.name)
        Migrator(made, folder).apply()
        with connect(made, autocommit=True) as reference:
            expected = schema_objects(reference)
    return first_difference(actual, expected)
