"""One query against the server's description of it and the record its rows fill."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from aiosql.types import SQLOperationType

from coderunner_sql.check import _sqlast
from coderunner_sql.check._records import Field, Nested, PgType, flatten, type_problem
from coderunner_sql.check._server import Catalog, Described, Rejected
from coderunner_sql.check._sqlfiles import QuerySpec

_NO_ROWS = (
    SQLOperationType.INSERT_UPDATE_DELETE,
    SQLOperationType.INSERT_UPDATE_DELETE_MANY,
    SQLOperationType.SCRIPT,
    SQLOperationType.SELECT_VALUE,
)
_KNOWN_NULLABILITY = ("r", "p", "f")  # tables; a view's columns say nothing about NULLs


@attrs.frozen
class Found:
    """A problem before it is given its place: kind, message, and the line if not the query's."""

    kind: str
    message: str
    line: int | None = None
    file: Path | None = None


def server_errors(spec: QuerySpec, text: str, outcome: Described | Rejected) -> list[Found]:
    """The server's refusal, on the line it points at."""
    if isinstance(outcome, Described):
        return []
    line = spec.line_at(text, outcome.position) if outcome.position is not None else None
    return [Found("sql-error", f"the server rejects it: {outcome.message}", line)]


def _nullable_reason(
    column_table: int,
    number: int,
    catalog: Catalog,
    outer: set[str],
) -> str | None:
    source = catalog.at(column_table, number)
    if source is None or source.table_kind not in _KNOWN_NULLABILITY:
        return None
    if not source.not_null:
        return f"{source.label} is nullable"
    if source.table in outer:
        return f"{source.label} is on the NULL side of an outer join"
    return None


def result(
    spec: QuerySpec,
    record: type[Any] | None,
    described: Described,
    catalog: Catalog,
    pg_types: Mapping[int, PgType],
    statement: _sqlast.Statement | None,
) -> list[Found]:
    """Result columns against the record they fill: names, types, NULLs, nothing left out."""
    found: list[Found] = []
    columns = described.columns
    if record is None:
        if spec.operation is SQLOperationType.SELECT_VALUE and len(columns) > 1:
            found.append(
                Found(
                    "value-columns",
                    f"returns {len(columns)} columns, but its `$` suffix keeps only the first",
                )
            )
        return found
    name = record.__name__
    if spec.operation in _NO_ROWS:
        return [
            Found("record-no-rows", f"its rows should fill {name}, but its suffix returns no rows")
        ]
    shape = list(flatten(record))
    leaves = {f.path: f for f in shape if isinstance(f, Field)}
    nests = {f.path: f for f in shape if isinstance(f, Nested)}
    outer = _sqlast.outer_nullable_tables(statement) if statement is not None else set()
    seen: set[tuple[str, ...]] = set()
    for column in columns:
        path = tuple(column.name.split("__"))
        if path in seen:
            found.append(Found("column-duplicate", f"returns column {column.name} twice"))
            continue
        seen.add(path)
        field = leaves.get(path)
        if field is None:
            found.append(
                Found("column-no-field", f"result column {column.name} fills no field of {name}")
            )
            continue
        pg = pg_types.get(column.type_oid)
        reason = type_problem(pg, field) if pg is not None else None
        if reason is not None:
            found.append(Found("column-type", f"result column {column.name} {reason}"))
        if column.table_oid and column.column_number > 0 and not field.optional:
            why = _nullable_reason(column.table_oid, column.column_number, catalog, outer)
            if why is not None:
                found.append(
                    Found(
                        "column-nullable",
                        f"result column {column.name} can be NULL ({why}) "
                        f"but {field.label} is not Optional",
                    )
                )
    for path, nest in nests.items():
        if nest.required and not any(p[: len(path)] == path for p in seen):
            found.append(
                Found(
                    "field-unfilled",
                    f"no result column fills {nest.owner}.{path[-1]} "
                    f"(columns named {'__'.join(path)}__*)",
                )
            )
    for path, field in leaves.items():
        parent = path[:-1]
        if parent and not any(p[: len(parent)] == parent for p in seen):
            continue  # the nested record as a whole is reported above
        if field.required and path not in seen:
            found.append(Found("field-unfilled", f"no result column fills {field.label}"))
    return found


def inserts(statement: _sqlast.Statement | None, catalog: Catalog) -> list[Found]:
    """An INSERT names every NOT NULL column that has no default."""
    target = _sqlast.insert_columns(statement.node) if statement is not None else None
    if target is None:
        return []
    table, listed = target
    return [
        Found(
            "insert-missing-column",
            f"INSERT INTO {table} leaves out {column.name}, which is NOT NULL with no default "
            "(every insert would fail)",
        )
        for column in catalog.of(table)
        if column.not_null and not column.has_default and column.name not in listed
    ]
