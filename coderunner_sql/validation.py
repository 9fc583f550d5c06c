"""Checks on arguments before they reach the database (I/O-free, shared by sync and async).

Rules the schema enforces (email shape, name length, URL shape) are *not* repeated here:
the database is their one source of truth, and `errors.translate` names the field when a
constraint rejects a value. What is checked here is what the driver or server would report
unclearly: malformed ids, NUL bytes, lone surrogates (text that is not UTF-8), unknown enum
values, page bounds, non-JSON values and JSON nested deeper than `MAX_JSON_DEPTH`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from enum import Enum
from typing import Any, Literal, TypeVar, overload
from uuid import UUID

from coderunner_sql.errors import ValidationError

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_LIMIT",
    "as_enum",
    "as_json_object",
    "as_text",
    "as_uuid",
    "check_batch_size",
    "check_page",
]

# json.dumps writes a NUL as \u0000 (which jsonb refuses); an even run of backslashes before
# it is escaped backslashes, so `\\u0000` is the harmless text backslash-u-0-0-0-0.
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

MAX_LIMIT = 1000
MAX_JSON_DEPTH = 64
"""How deeply a JSON value written through the library may nest (objects and arrays)."""
MAX_OFFSET = 2**62
E = TypeVar("E", bound=Enum)


def as_uuid(value: object, field: str = "id") -> UUID:
    """`value` as a UUID (a UUID or its text form), else `ValidationError`."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise ValidationError(f"{field} must be a UUID, got {_show(value)}")


@overload
def as_text(value: object, field: str, *, nullable: Literal[False] = False) -> str: ...
@overload
def as_text(value: object, field: str, *, nullable: bool) -> str | None: ...
def as_text(value: object, field: str, *, nullable: bool = False) -> str | None:
    """`value` as text PostgreSQL can store (no NUL bytes), else `ValidationError`."""
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise ValidationError(f"{field} must not contain NUL bytes")
    if not value.isascii() and not _is_utf8(value):
        raise ValidationError(f"{field} must be valid Unicode text (it holds a lone surrogate)")
    return value


def _is_utf8(text: str) -> bool:
    # A lone surrogate (from surrogateescape, or a JSON "\ud800") has no UTF-8 form.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _too_deep(value: object) -> bool:
    # Depth first, so a container that holds itself is over the limit within 65 steps.
    todo: list[tuple[object, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        if isinstance(item, Mapping):
            todo.extend((v, depth + 1) for v in item.values() if isinstance(v, _CONTAINERS))
        elif isinstance(item, list | tuple):
            todo.extend((v, depth + 1) for v in item if isinstance(v, _CONTAINERS))
    return False


_CONTAINERS = (Mapping, list, tuple)


@functools.cache
def _members_by_value(enum_type: type[E]) -> dict[object, E]:
    # A dict lookup: calling the Enum class goes through EnumType.__call__, about 1 µs,
    # which is a fifth of validating one row of a bulk insert.
    return {member.value: member for member in enum_type}


def as_enum(value: object, enum_type: type[E], field: str) -> E:
    """A member of `enum_type` given the member or its value, else `ValidationError`."""
    if isinstance(value, enum_type):
        return value
    try:
        member: E = _members_by_value(enum_type)[value]
    except (KeyError, TypeError):
        allowed = ", ".join(str(m.value) for m in enum_type)
        raise ValidationError(f"{field} must be one of {allowed}; got {_show(value)}") from None
    return member


def as_json_object(value: object, field: str) -> dict[str, Any] | None:
    """A JSON-serialisable dict (or None) that jsonb accepts, else `ValidationError`."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError(f"{field} must be a JSON object (dict) or None")
    if _too_deep(value):
        raise ValidationError(f"{field} is nested more than {MAX_JSON_DEPTH} levels deep")
    problem = None
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        problem = type(exc).__name__
    # Raised outside the handler: the json error's frames hold the value.
    if problem is not None:
        raise ValidationError(f"{field} is not JSON-serialisable: {problem}")
    if _JSON_NUL.search(text):
        raise ValidationError(f"{field} must not contain NUL characters")
    if not text.isascii() and not _is_utf8(text):
        raise ValidationError(f"{field} must be valid Unicode text (it holds a lone surrogate)")
    return dict(value)


def check_page(limit: object, offset: object) -> tuple[int, int]:
    """(limit, offset) when 1 <= limit <= 1000 and offset >= 0, else `ValidationError`."""
    if not _is_int(limit) or not 1 <= limit <= MAX_LIMIT:  # type: ignore[operator]
        raise ValidationError(
            f"limit must be a whole number from 1 to {MAX_LIMIT}, got {_show(limit)}"
        )
    if not _is_int(offset) or not 0 <= offset <= MAX_OFFSET:  # type: ignore[operator]
        raise ValidationError(f"offset must be a whole number of at least 0, got {_show(offset)}")
    return int(limit), int(offset)  # type: ignore[call-overload]


def check_batch_size(value: object, field: str = "batch_size") -> int:
    """`value` when it is a whole number from 1 to 1000, else `ValidationError`."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LIMIT:
        raise ValidationError(
            f"{field} must be a whole number from 1 to {MAX_LIMIT}, got {_show(value)}"
        )
    return value


def _is_int(value: object) -> bool:
    # bool is an int subclass, and True is no page size.
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: object) -> str:
    # Arguments are shown shortened: they are user input, not secrets, but may be huge.
    text = repr(value)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return text if len(text) <= 60 else text[:57] + "..."
