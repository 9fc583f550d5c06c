"""What a module written by `coderunner-sql generate` uses at run time: the JSON value type,
one `Plan` per query, and `load` / `load_async`, which read the SQL through aiosql and
return an object whose methods run each query and build its rows into records.

The methods are plain functions over psycopg: a query's rows are materialised before it
returns (never a lazy generator holding the cursor), a driver error leaves as this
library's `DatabaseError`, and an enum parameter is sent as its value. A service runs the
same methods under its own watch (timing, telemetry, encrypted values): `db.run(q.name, …)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from aiosql.types import SQLOperationType
from aiosql.utils import SQLLoadException, SQLParseException

from coderunner_sql.codegen import _run, _run_async
from coderunner_sql.codegen._plans import PLAIN, Plan, Watch
from coderunner_sql.errors import ConfigError

__all__ = ["JsonValue", "Plan", "folder", "load", "load_async", "source"]

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


def _bind(
    directory: str | os.PathLike[str],
    plans: Sequence[Plan],
    build: Callable[[Plan, str, Watch], Callable[..., Any]],
    watch: Watch,
) -> Any:
    sql = _checked(directory, plans)
    methods = _Methods([p.name for p in plans])
    for plan in plans:
        setattr(methods, plan.name, build(plan, sql[plan.name], watch))
    return methods


def load(directory: str | os.PathLike[str], plans: Sequence[Plan], watch: Watch = PLAIN) -> Any:
    """An object whose attribute per plan runs that query on a psycopg `Connection`."""
    return _bind(directory, plans, _run.method, watch)


def load_async(
    directory: str | os.PathLike[str], plans: Sequence[Plan], watch: Watch = PLAIN
) -> Any:
    """`load` for psycopg's `AsyncConnection`: each attribute is a coroutine function."""
    return _bind(directory, plans, _run_async.method, watch)


def source(method: object) -> tuple[Plan, str] | None:
    """The plan and SQL of a generated query method (None for anything else)."""
    found = getattr(method, _run_async.SOURCE, None)
    return found if isinstance(found, tuple) else None


def folder(module_file: str, relative: str) -> Path:
    """The queries folder of a generated module: `relative` to the module's folder, else a
    folder of the same name inside it (where a wheel carries a copy of the SQL)."""
    here = Path(module_file).resolve().parent
    beside = here / relative
    if beside.is_dir():
        return beside
    inside = here / Path(relative).name
    return inside if inside.is_dir() else beside
