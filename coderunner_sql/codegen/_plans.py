"""What the generated modules' query runners share that does no I/O: a query's plan, the row
factory building its record, and its parameters and result as sent and returned."""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from psycopg.types.json import Json, Jsonb

from coderunner_sql.converter import row_maker
from coderunner_sql.errors import QueryError

__all__ = ["Plan", "Rows", "one", "params"]


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


class Rows:
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


def params(plan: Plan, given: Mapping[str, Any]) -> dict[str, Any]:
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


def one(plan: Plan, row: Any) -> Any:
    if plan.suffix == "$":
        return None if row is None else row[0]
    if plan.suffix == "<!" and row is None:
        raise QueryError(f"query {plan.name} (`<!`) returned no row")
    return row
