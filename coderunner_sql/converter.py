"""The one cattrs converter: rows to records, records to JSON-ready dicts.

A query's result columns name record fields. A column called `project__name` fills the
field `name` of the nested record in field `project`, so a join fills `DeploymentDetails`
without any Python knowing its column list.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Callable, Mapping, Sequence
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


# Inline forms of the structure hooks above, for `_direct`: the same test and the same
# conversion, written into the generated function instead of called per value.
_INLINE: dict[Any, str] = {
    UUID: "{v} if type({v}) is UUID else UUID(str({v}))",
    datetime: "{v} if type({v}) is datetime or isinstance({v}, datetime) else iso({v})",
    str: "{v} if type({v}) is str else str({v})",
    str | None: "{v} if {v} is None or type({v}) is str else str({v})",
    int: "{v} if type({v}) is int else int({v})",
    bool: "{v} if type({v}) is bool else bool({v})",
    dict[str, Any] | None: "{v} if {v} is None or type({v}) is dict else dict({v})",
}


def _enum_keyed(annotation: Any) -> tuple[type[enum.Enum] | None, Any]:
    """(K, V) of a `dict[K, V]` annotation whose keys are enum members, else (None, None)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is dict and len(args) == 2:
        key = args[0]
        if isinstance(key, type) and issubclass(key, enum.Enum):
            return key, args[1]
    return None, None


def _direct(
    record: type[Any], names: Sequence[str], openers: Mapping[int, Callable[[Any], Any]]
) -> Callable[[Sequence[Any]], Any] | None:
    """A generated function building `record` straight from a row tuple, or None when a
    field's type has no inline form (the caller then goes through cattrs).

    Rows are built on every call, for every row of a page: building them through a dict
    and one hook call per value (`_nest` + cattrs) costs several times more. The generated
    code applies the same conversions as the registered hooks (`_INLINE`, enums by value)
    and calls `openers[i]` on column i first, as the caller asked.
    """
    where = {name: i for i, name in enumerate(names)}
    if len(where) != len(names):
        return None
    scope: dict[str, Any] = {"UUID": UUID, "datetime": datetime, "iso": datetime.fromisoformat}
    lines: list[str] = []

    def build(cls: type[Any], prefix: str) -> str | None:
        if not attrs.has(cls):
            return None
        fields = attrs.fields(attrs.resolve_types(cls))
        args: list[str] = []
        for f in fields:
            column = prefix + f.name
            if column in where:
                i = where.pop(column)
                v = f"v{i}"
                source = f"row[{i}]"
                if i in openers:
                    scope[f"open{i}"] = openers[i]
                    source = f"open{i}({source})"
                lines.append(f"    {v} = {source}")
                key_enum, value_type = _enum_keyed(f.type)
                if isinstance(f.type, type) and issubclass(f.type, enum.Enum):
                    scope[f"enum{i}"] = f.type
                    scope[f"members{i}"] = f.type._value2member_map_
                    args.append(f"members{i}.get({v}) or enum{i}({v})")
                elif f.type in _INLINE:
                    args.append(_INLINE[f.type].format(v=v))
                elif key_enum is not None and value_type in _INLINE:
                    # A count per enum member (SystemStats.deployments_by_status).
                    scope[f"enum{i}"] = key_enum
                    scope[f"members{i}"] = key_enum._value2member_map_
                    value = _INLINE[value_type].format(v="x")
                    args.append(
                        f"{{members{i}.get(k) or enum{i}(k): {value} for k, x in {v}.items()}}"
                    )
                else:
                    return None
            else:
                nested = build(f.type, f"{column}__") if isinstance(f.type, type) else None
                if nested is None:
                    return None
                args.append(nested)
        scope[cls.__name__] = cls
        return f"{cls.__name__}({', '.join(args)})"

    call = build(record, "")
    if call is None or where:
        return None  # a type without an inline form, or a column no field takes
    source = "def make(row):\n" + "\n".join(lines) + f"\n    return {call}\n"
    exec(compile(source, f"<row maker {record.__name__}>", "exec"), scope)  # noqa: S102
    made: Callable[[Sequence[Any]], Any] = scope["make"]
    return made


def row_maker(
    record: type[T],
    names: Sequence[str],
    openers: Mapping[int, Callable[[Any], Any]] | None = None,
) -> Callable[[Sequence[Any]], T]:
    """A function building `record` from a row whose columns are `names`; `openers[i]`,
    when given, turns column i's value into the one the record holds."""
    direct = _direct(record, names, openers or {})
    if direct is not None:
        return direct
    nest = _nest(names)
    structure = converter.get_structure_hook(record)
    if not openers:
        return lambda row: structure(nest(row), record)
    steps = dict(openers)

    def make(row: Sequence[Any]) -> T:
        values = list(row)
        for i, step in steps.items():
            values[i] = step(values[i])
        built: T = structure(nest(values), record)
        return built

    return make


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
