"""The one cattrs converter: rows to records, records to JSON-ready dicts.

A query's result columns name record fields. A column called `project__name` fills the
field `name` of the nested record in field `project`, so a join fills `DeploymentDetails`
without any Python knowing its column list.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import attrs
import cattrs

__all__ = ["converter", "row_maker", "to_dict"]

T = TypeVar("T")

converter = cattrs.Converter(detailed_validation=False)
"""Structures rows into records and unstructures records into JSON-ready values."""

# psycopg already returns these types; the hooks only parse when handed text (JSON input).
# Rows are built on every call, so the common case (already the right type) is checked first.
converter.register_structure_hook(UUID, lambda v, _: v if type(v) is UUID else UUID(str(v)))
converter.register_structure_hook(
    datetime, lambda v, _: v if isinstance(v, datetime) else datetime.fromisoformat(v)
)
converter.register_structure_hook(
    str | None, lambda v, _: v if v is None or type(v) is str else str(v)
)
converter.register_structure_hook(
    dict[str, Any] | None, lambda v, _: v if v is None or type(v) is dict else dict(v)
)
converter.register_unstructure_hook(UUID, str)
converter.register_unstructure_hook(datetime, lambda v: v.isoformat())


def _enum_hook(enum_type: type[enum.Enum]) -> Callable[[Any, Any], enum.Enum]:
    members = enum_type._value2member_map_

    def structure(value: Any, _: Any) -> enum.Enum:
        member = members.get(value)
        return member if member is not None else enum_type(value)

    return structure


converter.register_structure_hook_factory(
    lambda t: isinstance(t, type) and issubclass(t, enum.Enum), _enum_hook
)


def _nest(names: Sequence[str]) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """A function turning a row (values in `names` order) into a possibly nested dict."""
    paths = [tuple(name.split("__")) for name in names]
    if all(len(path) == 1 for path in paths):
        keys = tuple(names)
        return lambda row: dict(zip(keys, row, strict=True))
    if all(len(path) <= 2 for path in paths):
        # One level of nesting (every join this library makes): precompute, per nested
        # record, its field names and the row positions that fill them.
        flat = [(path[0], i) for i, path in enumerate(paths) if len(path) == 1]
        groups: dict[str, tuple[list[str], list[int]]] = {}
        for i, path in enumerate(paths):
            if len(path) == 2:
                keys_, places = groups.setdefault(path[0], ([], []))
                keys_.append(path[1])
                places.append(i)
        plan = [(prefix, tuple(k), tuple(p)) for prefix, (k, p) in groups.items()]

        def nest_one(row: Sequence[Any]) -> dict[str, Any]:
            out = {key: row[i] for key, i in flat}
            for prefix, keys_, places in plan:
                out[prefix] = dict(zip(keys_, [row[i] for i in places], strict=True))
            return out

        return nest_one

    def nest(row: Sequence[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path, value in zip(paths, row, strict=True):
            target = out
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = value
        return out

    return nest


def row_maker(record: type[T], names: Sequence[str]) -> Callable[[Sequence[Any]], T]:
    """A function building `record` from a row whose columns are `names`."""
    nest = _nest(names)
    structure = converter.get_structure_hook(record)
    return lambda row: structure(nest(row), record)


def _plain(value: Any, secrets: bool) -> Any:
    if attrs.has(type(value)):
        return {
            field.name: _plain(getattr(value, field.name), secrets)
            for field in attrs.fields(type(value))
            if secrets or not field.metadata.get("secret")
        }
    if isinstance(value, dict):
        return {_plain(k, secrets): _plain(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, secrets) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return converter.unstructure(value)


def to_dict(record: Any, *, secrets: bool = False) -> Any:
    """A JSON-ready dict of `record`; secret fields are left out unless `secrets=True`."""
    return _plain(record, secrets)
