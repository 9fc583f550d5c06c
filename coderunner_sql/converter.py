"""The one cattrs converter: rows to records, records to JSON-ready dicts, JSON of any depth.

A query's result columns name record fields. A column called `project__name` fills the
field `name` of the nested record in field `project`, so a join fills `DeploymentDetails`
without any Python knowing its column list.

JSON values are read and written without Python's recursion limit (`load_json`,
`dump_json`, `to_dict`): the library refuses to *write* objects nested more than
`validation.MAX_JSON_DEPTH` levels, but another client may have stored one 3,000 deep, and
one such row must not break every read or listing that meets it.
"""

from __future__ import annotations

import enum
import json
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import attrs
import cattrs
from psycopg import pq
from psycopg.types.json import set_json_loads

__all__ = ["converter", "dump_json", "load_json", "row_maker", "to_dict", "use_deep_json"]

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


def _is_value_class(annotation: Any) -> bool:
    # A plain class psycopg may return as it is (Decimal, date, timedelta, IPv4Address…),
    # not a record (cattrs builds those field by field), an enum, or a generic alias.
    return (
        isinstance(annotation, type)
        and not attrs.has(annotation)
        and not issubclass(annotation, enum.Enum)
    )


def _value_hook(value_type: type[Any]) -> Callable[[Any, Any], Any]:
    return lambda v, _: v if isinstance(v, value_type) else value_type(v)


# Any other class a column's value may already be (psycopg loads numeric as Decimal, date
# as date…): kept as it is, else built from the value. An application's record may hold
# any of them; without this cattrs refuses every type it has no hook for.
converter.register_structure_hook_factory(_is_value_class, _value_hook)


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


def _optional_value_class(annotation: Any) -> tuple[type[Any], bool] | None:
    """(T, optional) for an annotation `T` or `T | None` of a plain value class, else None."""
    if _is_value_class(annotation):
        return annotation, False
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if (
        len(args) == 1
        and type(None) in typing.get_args(annotation)
        and _is_value_class(args[0])
        and args[0] not in (str, int, bool, dict)
    ):
        return args[0], True
    return None


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
                elif (plain := _optional_value_class(f.type)) is not None:
                    # Decimal, date… (`T` or `T | None`): kept when already a T.
                    cls_, optional = plain
                    scope[f"type{i}"] = cls_
                    none = f"{v} is None or " if optional else ""
                    args.append(f"{v} if {none}isinstance({v}, type{i}) else type{i}({v})")
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


def _leaf(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else converter.unstructure(value)


def _branches(value: Any) -> bool:
    return isinstance(value, dict | list | tuple) or attrs.has(type(value))


def _plain(value: Any, secrets: bool) -> Any:
    # Without recursion: a record's db_connection_info may be nested thousands deep.
    if not _branches(value):
        return _leaf(value)
    top: list[Any] = [None]
    todo: list[tuple[Any, Any, Any]] = [(value, top, 0)]
    while todo:
        item, parent, key = todo.pop()
        out: Any
        if isinstance(item, dict):
            pairs: Any = ((_leaf(k), v) for k, v in item.items())
            out = {}
        elif isinstance(item, list | tuple):
            pairs = enumerate(item)
            out = [None] * len(item)
        else:
            pairs = (
                (f.name, getattr(item, f.name))
                for f in attrs.fields(type(item))
                if secrets or not f.metadata.get("secret")
            )
            out = {}
        for k, v in pairs:
            if _branches(v):
                out[k] = None  # placed now, so keys keep their order
                todo.append((v, out, k))
            else:
                out[k] = _leaf(v)
        parent[key] = out
    return top[0]


def to_dict(record: Any, *, secrets: bool = False) -> Any:
    """A JSON-ready dict of `record`; secret fields are left out unless `secrets=True`."""
    return _plain(record, secrets)


# -- JSON of any depth --------------------------------------------------------------------

_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_CONSTANTS = {"true": True, "false": False, "null": None}
_JSONB_OID = 3802
# The C string scanner json.loads itself uses (escapes, surrogate pairs); typeshed omits it.
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


def _key(text: str, pos: int) -> tuple[str, int]:
    # An object's key and its colon; `pos` is at the opening quote.
    if text[pos] != '"':
        raise ValueError(f"expected a key at {pos}")
    key, pos = _scanstring(text, pos + 1)
    pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
    if text[pos] != ":":
        raise ValueError(f"expected ':' at {pos}")
    return key, _SPACE.match(text, pos + 1).end()  # type: ignore[union-attr]


def _parse_iteratively(text: str) -> Any:
    """`json.loads(text)` with a list of open containers instead of the call stack."""
    space = _SPACE.match
    open_: list[tuple[dict[str, Any] | list[Any], str]] = []
    pos = space(text, 0).end()  # type: ignore[union-attr]
    try:
        while True:
            char = text[pos]
            value: Any
            if char in "{[":
                pos = space(text, pos + 1).end()  # type: ignore[union-attr]
                if text[pos] == ("}" if char == "{" else "]"):
                    value, pos = ({} if char == "{" else []), pos + 1
                else:
                    if char == "{":
                        key, pos = _key(text, pos)
                        open_.append(({}, key))
                    else:
                        open_.append(([], ""))
                    continue
            elif char == '"':
                value, pos = _scanstring(text, pos + 1)
            elif (number := _NUMBER.match(text, pos)) is not None and number.end() > pos:
                whole = number.group()
                value = float(whole) if number.group(1) or number.group(2) else int(whole)
                pos = number.end()
            else:
                word = next((w for w in _CONSTANTS if text.startswith(w, pos)), None)
                if word is None:
                    raise ValueError(f"unexpected {char!r} at {pos}")
                value, pos = _CONSTANTS[word], pos + len(word)
            # A value is complete: put it in its container, closing every container it ends.
            while True:
                pos = space(text, pos).end()  # type: ignore[union-attr]
                if not open_:
                    if pos != len(text):
                        raise ValueError(f"extra data at {pos}")
                    return value
                container, key = open_[-1]
                if isinstance(container, dict):
                    container[key] = value
                else:
                    container.append(value)
                if text[pos] == ",":
                    pos = space(text, pos + 1).end()  # type: ignore[union-attr]
                    if isinstance(container, dict):
                        key, pos = _key(text, pos)
                        open_[-1] = (container, key)
                    break
                if text[pos] != ("}" if isinstance(container, dict) else "]"):
                    raise ValueError(f"expected ',' or a closing bracket at {pos}")
                open_.pop()
                value, pos = container, pos + 1
    except IndexError:
        raise ValueError("JSON text ends too early") from None


def load_json(data: str | bytes | bytearray | memoryview) -> Any:
    """`json.loads`, for values nested deeper than the call stack allows too."""
    try:
        return json.loads(data if isinstance(data, str | bytes | bytearray) else bytes(data))
    except RecursionError:
        pass  # outside the handler, so the error's frames are not kept alive meanwhile
    text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    return _parse_iteratively(text)


class _Text(str):
    """A piece of JSON text already written (on `dump_json`'s list of things to write)."""

    __slots__ = ()


def dump_json(value: Any) -> str:
    """Compact `json.dumps` (UTF-8 text, no NaN), for values of any depth too."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except RecursionError:
        pass
    return _dump_iteratively(value)


def _dump_iteratively(value: Any) -> str:
    """`dump_json(value)` with a list of things to write instead of the call stack."""
    parts: list[str] = []
    todo: list[Any] = [value]
    while todo:
        item = todo.pop()
        tokens: list[Any]
        if isinstance(item, _Text):
            parts.append(item)
            continue
        if isinstance(item, dict):
            tokens = [_Text("{")]
            for index, (k, v) in enumerate(item.items()):
                head = json.dumps(str(k), ensure_ascii=False) + ":"
                tokens += [_Text("," + head if index else head), v]
            tokens.append(_Text("}"))
        elif isinstance(item, list | tuple):
            tokens = [_Text("[")]
            for index, v in enumerate(item):
                tokens += [_Text(","), v] if index else [v]
            tokens.append(_Text("]"))
        else:
            parts.append(json.dumps(item, ensure_ascii=False, allow_nan=False))
            continue
        todo.extend(reversed(tokens))
    return "".join(parts)


def use_deep_json(conn: Any) -> None:
    """Make `conn` load json and jsonb through `load_json` (checked cheaply on every call)."""
    loader = conn.adapters.get_loader(_JSONB_OID, pq.Format.TEXT)
    if getattr(loader, "_loads", None) is not load_json:
        set_json_loads(load_json, conn)
