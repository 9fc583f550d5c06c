"""PostgreSQL types as Python annotations in generated code (text plus what to import)."""

from __future__ import annotations

import enum
import importlib
import re
from collections.abc import Iterable

import attrs

from coderunner_sql.check._records import PgType

# pg_type.typname -> (annotation, module to import it from, or "" for a builtin).
_SCALARS: dict[str, tuple[str, str]] = {
    "uuid": ("UUID", "uuid"),
    "timestamptz": ("datetime", "datetime"),
    "timestamp": ("datetime", "datetime"),
    "date": ("date", "datetime"),
    "time": ("time", "datetime"),
    "timetz": ("time", "datetime"),
    "interval": ("timedelta", "datetime"),
    "numeric": ("Decimal", "decimal"),
    "text": ("str", ""),
    "varchar": ("str", ""),
    "bpchar": ("str", ""),
    "name": ("str", ""),
    "citext": ("str", ""),
    "char": ("str", ""),
    "int2": ("int", ""),
    "int4": ("int", ""),
    "int8": ("int", ""),
    "oid": ("int", ""),
    "float4": ("float", ""),
    "float8": ("float", ""),
    "bool": ("bool", ""),
    "bytea": ("bytes", ""),
    "json": ("runtime.JsonValue", ""),
    "jsonb": ("runtime.JsonValue", ""),
}


@attrs.frozen
class PyType:
    """An annotation as generated code writes it, and the names it imports."""

    text: str
    imports: frozenset[tuple[str, str]] = frozenset()  # (module, name)

    def optional(self, nullable: bool) -> PyType:
        """`T | None` when `nullable` (and T is not Any)."""
        if not nullable or self.text == "Any":
            return self
        return PyType(f"{self.text} | None", self.imports)


ANY = PyType("Any", frozenset({("typing", "Any")}))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Enums:
    """The Python enums generated code may name, found in the modules records come from."""

    def __init__(self, modules: Iterable[str]) -> None:
        found: dict[tuple[str, str], type[enum.Enum]] = {}
        for module_name in sorted(set(modules)):
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            for attr, value in vars(module).items():
                if (
                    isinstance(value, type)
                    and issubclass(value, enum.Enum)
                    and value.__module__ == module_name
                ):
                    found[(module_name, attr)] = value
        self._found = found

    def match(self, pg: PgType) -> PyType | None:
        """The enum whose values are exactly `pg`'s labels (one named like it first)."""
        labels = set(pg.labels)
        matches = [key for key, cls in self._found.items() if {str(m.value) for m in cls} == labels]
        if not matches:
            return None
        matches.sort(key=lambda key: (_snake(key[1]) != pg.name, key))
        module, name = matches[0]
        return PyType(name, frozenset({(module, name)}))


def annotation(pg: PgType | None, enums: Enums, *, param: bool) -> PyType:
    """The annotation for a value of type `pg`: a parameter (`Sequence[…]` for arrays) or a
    result column (`list[…]`)."""
    if pg is None:
        return ANY
    if pg.kind == "d" and pg.base is not None:
        return annotation(pg.base, enums, param=param)
    if pg.kind == "e":
        return enums.match(pg) or PyType("str")
    if pg.element is not None:
        inner = annotation(pg.element, enums, param=param).optional(True)
        if param:
            return PyType(
                f"Sequence[{inner.text}]", inner.imports | {("collections.abc", "Sequence")}
            )
        return PyType(f"list[{inner.text}]", inner.imports)
    known = _SCALARS.get(pg.name)
    if known is None:
        return ANY
    text, module = known
    if text.startswith("runtime."):
        return PyType(text)
    return PyType(text, frozenset({(module, text)}) if module else frozenset())
