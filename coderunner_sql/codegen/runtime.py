"""What a module written by `coderunner-sql generate` uses at run time: the JSON value type,
one `Plan` per query, and `load` / `load_async`, which read the SQL through aiosql and
return an object whose methods run each query and build its rows into records.

The methods are plain functions over psycopg: a query's rows are materialised before it
returns (never a lazy generator holding the cursor), a driver error leaves as this
library's `DatabaseError`, and an enum parameter is sent as its value.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import attrs
import psycopg
from aiosql.types import SQLOperationType
from aiosql.utils import SQLLoadException, SQLParseException
from psycopg.types.json import Json, Jsonb

from coderunner_sql.converter import row_maker
from coderunner_sql.errors import ConfigError, QueryError, translate

__all__ = ["JsonValue", "Plan", "load", "load_async"]

JsonValue: TypeAlias = (
    Mapping[str, "JsonValue"] | Sequence["JsonValue"] | str | int | float | bool | None
)
"""A JSON value: what a json or jsonb column holds and a json or jsonb parameter takes."""

SUFFIXES: dict[SQLOperationType, str] = {
    SQLOperationType.SELECT: "",
    SQLOperationType.SELECT_ONE: "^",
    SQLOperationType.SELECT_VALUE: "$",
    SQLOperationType.INSERT_RETURNING: "<!",
    SQLOperationType.INSERT_UPDATE_DELETE: "!",
    SQLOperationType.INSERT_UPDATE_DELETE_MANY: "*!",
    SQLOperationType.SCRIPT: "#",
}
"""aiosql's operation -> the suffix of `-- name:` that states it."""


@attrs.frozen
class Plan:
    """One query as the generated module knows it: its name, suffix, record and the
    parameters sent as JSON (`jsonb` / `json`)."""

    name: str
    suffix: str
    record: type[Any] | None = None
    plain: bool = False  # the record is a generated row class: columns in field order
    jsonb: tuple[str, ...] = ()
    json: tuple[str, ...] = ()


def _enum_step(enum_type: type[enum.Enum]) -> Callable[[Any], Any]:
    return lambda value: value if value is None else enum_type(value)


def _plain_maker(record: type[Any]) -> Callable[[Sequence[Any]], Any]:
    """Rows of a generated row class: columns in field order, enums built from their value."""
    # The generator writes each enum field as `Name` or `Name | None`, Name imported into the
    # module: look the names up there rather than evaluate every annotation.
    scope = vars(sys.modules[record.__module__])
    steps: list[Callable[[Any], Any] | None] = []
    for field in attrs.fields(record):
        text = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
        found = [scope.get(part.strip()) for part in str(text).split("|")]
        enums = [m for m in found if isinstance(m, type) and issubclass(m, enum.Enum)]
        steps.append(_enum_step(enums[0]) if enums else None)
    if not any(steps):
        return lambda row: record(*row)
    return lambda row: record(*(v if s is None else s(v) for s, v in zip(steps, row, strict=True)))


class _Rows:
    """A psycopg row factory building `record` (one row maker per column list, kept)."""

    def __init__(self, record: type[Any], plain: bool) -> None:
        self.record = record
        self.plain = plain
        self.makers: dict[tuple[str, ...], Callable[[Sequence[Any]], Any]] = {}

    def __call__(self, cursor: Any) -> Callable[[Sequence[Any]], Any]:
        description = cursor.description
        if description is None:
            return tuple
        names = tuple(column.name for column in description)
        maker = self.makers.get(names)
        if maker is None:
            maker = _plain_maker(self.record) if self.plain else row_maker(self.record, names)
            self.makers[names] = maker
        return maker


def _params(plan: Plan, given: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in given.items():
        if isinstance(value, enum.Enum):
            value = value.value
        elif value is not None and key in plan.jsonb:
            value = Jsonb(value)
        elif value is not None and key in plan.json:
            value = Json(value)
        out[key] = value
    return out


def _checked(directory: str | os.PathLike[str], plans: Sequence[Plan]) -> dict[str, str]:
    """Each plan's SQL as aiosql loads it from `directory`, its suffix checked."""
    from aiosql.adapters.pyformat import PyFormatAdapter

    from coderunner_sql.loader import load_queries

    adapter = PyFormatAdapter()  # type: ignore[no-untyped-call]  # aiosql leaves it untyped
    try:
        loaded = load_queries(adapter, Path(directory))
    except (SQLLoadException, SQLParseException) as exc:
        raise ConfigError(f"cannot load the queries in {directory}: {exc}") from None
    found: dict[str, str] = {}
    for plan in plans:
        # Not getattr(): `check` reads that on a loaded query object as a use of every query
        # of this package, and this lookup serves whatever folder an application generated.
        fn = vars(loaded).get(plan.name)
        if fn is None:
            raise ConfigError(
                f"query {plan.name} is not in {directory}: run `coderunner-sql generate` again"
            )
        suffix = SUFFIXES.get(fn.operation, "?")
        if suffix != plan.suffix:
            raise ConfigError(
                f"query {plan.name} ends in `{suffix}` in {directory} but `{plan.suffix}` in the "
                "generated module: run `coderunner-sql generate` again"
            )
        found[plan.name] = fn.sql
    return found


class _Methods:
    """The object `load` returns: one attribute per query (typed by the generated Protocol)."""

    def __init__(self, names: Sequence[str]) -> None:
        self._names = tuple(names)

    def __repr__(self) -> str:
        return f"<typed queries: {', '.join(self._names)}>"


def _sync_method(plan: Plan, sql: str) -> Callable[..., Any]:
    rows = _Rows(plan.record, plan.plain) if plan.record is not None else None
    op = f"query {plan.name}"

    def run(conn: psycopg.Connection[Any], *many: Any, **params: Any) -> Any:
        try:
            if plan.suffix == "#":
                conn.execute(sql.encode())
                return None
            with conn.cursor(row_factory=rows) if rows is not None else conn.cursor() as cur:
                if plan.suffix == "*!":
                    cur.executemany(sql, [_params(plan, p) for p in many[0]])
                    return cur.rowcount
                cur.execute(sql, _params(plan, params))
                if plan.suffix == "!":
                    return cur.rowcount
                if plan.suffix == "":
                    return cur.fetchall()
                row = cur.fetchone()
        except psycopg.Error as exc:
            raise translate(exc, operation=op, write=plan.suffix not in ("", "^", "$")) from None
        return _one(plan, row)

    run.__name__ = plan.name
    return run


def _async_method(plan: Plan, sql: str) -> Callable[..., Any]:
    rows = _Rows(plan.record, plan.plain) if plan.record is not None else None
    op = f"query {plan.name}"

    async def run(conn: psycopg.AsyncConnection[Any], *many: Any, **params: Any) -> Any:
        try:
            if plan.suffix == "#":
                await conn.execute(sql.encode())
                return None
            cursor = conn.cursor(row_factory=rows) if rows is not None else conn.cursor()
            async with cursor as cur:
                if plan.suffix == "*!":
                    await cur.executemany(sql, [_params(plan, p) for p in many[0]])
                    return cur.rowcount
                await cur.execute(sql, _params(plan, params))
                if plan.suffix == "!":
                    return cur.rowcount
                if plan.suffix == "":
                    return await cur.fetchall()
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise translate(exc, operation=op, write=plan.suffix not in ("", "^", "$")) from None
        return _one(plan, row)

    run.__name__ = plan.name
    return run


def _one(plan: Plan, row: Any) -> Any:
    if plan.suffix == "$":
        return None if row is None else row[0]
    if plan.suffix == "<!" and row is None:
        raise QueryError(f"query {plan.name} (`<!`) returned no row")
    return row


def load(directory: str | os.PathLike[str], plans: Sequence[Plan]) -> Any:
    """An object whose attribute per plan runs that query on a psycopg `Connection`."""
    sql = _checked(directory, plans)
    methods = _Methods([p.name for p in plans])
    for plan in plans:
        setattr(methods, plan.name, _sync_method(plan, sql[plan.name]))
    return methods


def load_async(directory: str | os.PathLike[str], plans: Sequence[Plan]) -> Any:
    """`load` for psycopg's `AsyncConnection`: each attribute is a coroutine function."""
    sql = _checked(directory, plans)
    methods = _Methods([p.name for p in plans])
    for plan in plans:
        setattr(methods, plan.name, _async_method(plan, sql[plan.name]))
    return methods
