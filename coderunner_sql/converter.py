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
converter.register_structure_hook(UUID, lambda v, _: v if isinstance(v, UUID) else UUID(str(v)))
converter.register_structure_hook(
    datetime, lambda v, _: v if isinstance(v, datetime) else datetime.fromisoformat(v)
)
converter.register_unstructure_hook(UUID, str)
converter.register_unstructure_hook(datetime, lambda v: v.isoformat())


def _nest(names: Sequence[str]) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """A function turning a row (values in `names` order) into a possibly nested dict."""
    if not any("__" in name for name in names):
        keys = tuple(names)
        return lambda row: dict(zip(keys, row, strict=True))
    paths = [tuple(name.split("__")) for name in names]

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
