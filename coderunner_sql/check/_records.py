"""Records seen as the converter fills them, and which PostgreSQL types fit which fields.

A result column `project__name` fills field `name` of the record in field `project`
(`coderunner_sql.converter`), so a record is flattened to the column paths it accepts.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import attrs

# What psycopg returns for each built-in type (by pg_type.typname), as the converter takes it.
_PYTHON_TYPES: dict[str, tuple[type[Any], ...]] = {
    "uuid": (UUID,),
    "timestamptz": (datetime,),
    "timestamp": (datetime,),
    "date": (date,),
    "time": (time,),
    "timetz": (time,),
    "interval": (timedelta,),
    "text": (str,),
    "varchar": (str,),
    "bpchar": (str,),
    "name": (str,),
    "citext": (str,),
    "char": (str,),
    "int2": (int,),
    "int4": (int,),
    "int8": (int,),
    "oid": (int,),
    "numeric": (Decimal,),
    "float4": (float,),
    "float8": (float,),
    "bool": (bool,),
    "json": (dict, list),
    "jsonb": (dict, list),
    "bytea": (bytes,),
}


_NUMBERS = frozenset({"int2", "int4", "int8", "numeric", "float4", "float8"})


@attrs.frozen
class PgType:
    """A PostgreSQL type as the catalog describes it."""

    oid: int
    name: str  # pg_type.typname
    display: str  # format_type(): "timestamp with time zone", "deployment_status"
    kind: str  # pg_type.typtype: b base, e enum, d domain, c composite…
    element: PgType | None = None  # of an array
    base: PgType | None = None  # of a domain
    labels: tuple[str, ...] = ()  # of an enum, in order


@attrs.frozen
class Field:
    """A leaf field of a record (or of a record nested in it)."""

    path: tuple[str, ...]
    owner: str  # "Deployment"
    types: tuple[Any, ...]  # the annotation's members other than None
    optional: bool
    required: bool  # no default: some column must fill it

    @property
    def label(self) -> str:
        """`Deployment.status` — how problems name the field."""
        return f"{self.owner}.{self.path[-1]}"


@attrs.frozen
class Nested:
    """A field holding a record: the columns under its prefix fill it."""

    path: tuple[str, ...]
    owner: str
    record: type[Any]
    required: bool


def _members(annotation: Any) -> tuple[tuple[Any, ...], bool]:
    """The non-None members of an annotation, and whether None is one of them."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        members = typing.get_args(annotation)
        kept = tuple(m for m in members if m is not type(None))
        return kept, len(kept) != len(members)
    return (annotation,), annotation is None or annotation is type(None)


def flatten(record: type[Any]) -> Iterator[Field | Nested]:
    """Every field of `record`, nested records first as themselves, then their fields."""
    yield from _flatten(record, ())


def _flatten(record: type[Any], prefix: tuple[str, ...]) -> Iterator[Field | Nested]:
    hints = typing.get_type_hints(record)
    for field in attrs.fields(record):
        members, optional = _members(hints.get(field.name, Any))
        path = (*prefix, field.name)
        required = field.default is attrs.NOTHING
        inner = [m for m in members if isinstance(m, type) and attrs.has(m)]
        if inner:
            yield Nested(path, record.__name__, inner[0], required)
            yield from _flatten(inner[0], path)
        else:
            yield Field(path, record.__name__, members, optional, required)


def python_name(annotation: Any) -> str:
    """How a type reads in a message: `str`, `dict[str, Any]`, `DeploymentStatus`."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _fits(pg: PgType, annotation: Any) -> bool:
    if annotation is Any or annotation is object:
        return True
    origin = typing.get_origin(annotation) or annotation
    if not isinstance(origin, type):
        return True  # a Literal, a TypeVar…: no opinion
    if pg.kind == "d" and pg.base is not None:
        return _fits(pg.base, annotation)
    if pg.kind == "e":
        return issubclass(origin, enum.Enum) or origin is str
    if pg.element is not None:
        if not (issubclass(origin, Sequence) and not issubclass(origin, str | bytes)):
            return False
        args = typing.get_args(annotation)
        return not args or _fits(pg.element, args[0])
    wanted = _PYTHON_TYPES.get(pg.name)
    if wanted is None:
        return True  # a type this check has no rule for
    if origin is float and pg.name in _NUMBERS:
        return True  # the numeric tower: an int or a Decimal is fine where a float is
    for expected in wanted:
        # The exact type: subclassing says nothing of what psycopg returns (a datetime is a
        # date to Python, and bool an int), only an Enum is built from the value it subclasses.
        if origin is expected or (issubclass(origin, enum.Enum) and issubclass(origin, expected)):
            return True
        if expected in (dict, list) and origin in (Mapping, Sequence):
            return True
    return False


def type_problem(pg: PgType, field: Field) -> str | None:
    """Why a column of type `pg` cannot fill `field` ("is integer, but … is str"), or None."""
    if not any(_fits(pg, member) for member in field.types):
        shown = " | ".join(python_name(m) for m in field.types)
        return f"is {pg.display}, but {field.label} is {shown}"
    enum_type = pg.base if pg.kind == "d" and pg.base is not None else pg
    if enum_type.kind != "e":
        return None
    enums = [m for m in field.types if isinstance(m, type) and issubclass(m, enum.Enum)]
    if not enums:
        return f"is the enum {pg.display}, but {field.label} is not an Enum"
    values = {str(member.value) for member in enums[0]}
    labels = set(enum_type.labels)
    if values == labels:
        return None
    parts = []
    if labels - values:
        parts.append(f"{', '.join(sorted(labels - values))} only in {pg.display}")
    if values - labels:
        parts.append(f"{', '.join(sorted(values - labels))} only in {enums[0].__name__}")
    return f"is the enum {pg.display}, whose labels differ from {field.label}: " + "; ".join(parts)
