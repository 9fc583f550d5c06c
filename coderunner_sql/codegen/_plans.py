"""What running a generated query takes that does no I/O: its plan, the watch around each
statement, the row factory building its record, and its parameters and result."""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Protocol

import attrs
import psycopg
from psycopg.types.json import Json, Jsonb

from coderunner_sql.converter import row_maker
from coderunner_sql.errors import QueryError, scrub, translate

__all__ = ["PLAIN", "Plan", "Rows", "Watch", "converter", "one", "row_factory"]

Opener = Callable[[Any], Any]


@attrs.frozen
class Plan:
    """One query as the generated module knows it: its name, suffix, record, the parameters
    sent as JSON (`jsonb` / `json`), and whether it only reads (`read`: safe to send again)."""

    name: str
    suffix: str
    record: type[Any] | None = None
    plain: bool = False  # the record is a generated row class: columns in field order
    jsonb: tuple[str, ...] = ()
    json: tuple[str, ...] = ()
    read: bool = False


class Counted(Protocol):
    """What a watch hands the statement it watches: the runner fills in the row count."""

    rows: int | None


class Watch(Protocol):
    """What happens around each statement (timing, logs, telemetry, error translation) and
    how stored values are opened before a record holds them."""

    prepare: bool | None

    def __call__(
        self, query_name: str, sql: str | None = None, call: Any = None
    ) -> AbstractContextManager[Counted]:
        """A context around one statement; it raises this library's errors, never psycopg's."""
        ...

    def openers(self, names: Sequence[str]) -> Mapping[int, Opener]:
        """Column index -> what turns that column's stored value into the record's."""
        ...


class _Plain:
    """The watch of a module's own `load()`: psycopg's errors become this library's."""

    prepare: bool | None = None

    @staticmethod
    def __call__(
        query_name: str, sql: str | None = None, call: Any = None
    ) -> AbstractContextManager[Counted]:
        return _Translating(query_name)

    @staticmethod
    def openers(names: Sequence[str]) -> Mapping[int, Opener]:
        return {}


class _Translating:
    __slots__ = ("name", "rows")

    def __init__(self, name: str) -> None:
        self.name = name
        self.rows: int | None = None

    def __enter__(self) -> _Translating:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, psycopg.Error):
            raise translate(exc, operation=f"query {self.name}") from None
        if isinstance(exc, UnicodeEncodeError | RecursionError):
            scrub(exc)  # it holds the parameter


PLAIN: Watch = _Plain()
"""The watch a generated module's `load()` runs its queries under."""


def _enum_step(enum_type: type[enum.Enum]) -> Opener:
    return lambda value: value if value is None else enum_type(value)


def _plain_maker(record: type[Any]) -> Callable[[Sequence[Any]], Any]:
    """Rows of a generated row class: columns in field order, enums built from their value."""
    # The generator writes each enum field as `Name` or `Name | None`, Name imported into the
    # module: look the names up there rather than evaluate every annotation.
    scope = vars(sys.modules[record.__module__])
    steps: list[Opener | None] = []
    for field in attrs.fields(record):
        text = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
        found = [scope.get(part.strip()) for part in str(text).split("|")]
        enums = [m for m in found if isinstance(m, type) and issubclass(m, enum.Enum)]
        steps.append(_enum_step(enums[0]) if enums else None)
    if not any(steps):
        return lambda row: record(*row)
    return lambda row: record(*(v if s is None else s(v) for s, v in zip(steps, row, strict=True)))


class Rows:
    """A psycopg row factory building `record`, its column names decoded once per shape."""

    def __init__(self, record: type[Any], plain: bool, watch: Watch) -> None:
        self.record = record
        self.plain = plain
        self.watch = watch
        self.makers: dict[int, Callable[[Sequence[Any]], Any]] = {}

    def __call__(self, cursor: Any) -> Callable[[Sequence[Any]], Any]:
        # A query's SQL is fixed, so are its columns: keyed by their count, which is cheap
        # to read (cursor.description builds an object per column).
        result = cursor.pgresult
        width = 0 if result is None else result.nfields
        maker = self.makers.get(width)
        if maker is None:
            if result is None or not width:
                return tuple
            names = [(result.fname(i) or b"").decode() for i in range(width)]
            # Stored values are opened for named records only: a generated row class holds
            # the row as stored (key rotation reads the envelopes themselves).
            maker = (
                _plain_maker(self.record)
                if self.plain
                else row_maker(self.record, names, self.watch.openers(names))
            )
            self.makers[width] = maker
        return maker


def row_factory(plan: Plan, watch: Watch) -> Rows | None:
    """The row factory building `plan`'s record (None: the query names no record)."""
    return Rows(plan.record, plan.plain, watch) if plan.record is not None else None


def converter(plan: Plan) -> Callable[[Mapping[str, Any]], Mapping[str, Any]]:
    """What turns a call's keyword arguments into the parameters sent (enums to their
    value, JSON parameters wrapped)."""
    jsonb, json = frozenset(plan.jsonb), frozenset(plan.json)
    if not jsonb and not json:
        # The common case, on every call: a dict built in one comprehension.
        return lambda given: {
            key: value.value if isinstance(value, enum.Enum) else value
            for key, value in given.items()
        }

    def convert(given: Mapping[str, Any]) -> Mapping[str, Any]:
        out: dict[str, Any] = {}
        for key, value in given.items():
            if isinstance(value, enum.Enum):
                value = value.value
            elif value is not None and key in jsonb and not isinstance(value, Jsonb):
                value = Jsonb(value)
            elif value is not None and key in json and not isinstance(value, Json):
                value = Json(value)
            out[key] = value
        return out

    return convert


def one(plan: Plan, row: Any) -> Any:
    """The result of a query returning one row (`^`, `<!`) or one value (`$`)."""
    if plan.suffix == "$":
        return None if row is None else row[0]
    if plan.suffix == "<!" and row is None:
        raise QueryError(f"query {plan.name} (`<!`) returned no row")
    return row
