"""What each query becomes in the generated module, from its SQL file and what the server
says about it (parameter types, result columns, nullability)."""

from __future__ import annotations

import contextlib
import importlib
import keyword
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from coderunner_sql.check import _compare, _sqlast
from coderunner_sql.check._compare import Found
from coderunner_sql.check._records import PgType
from coderunner_sql.check._server import Catalog, Described
from coderunner_sql.check._sqlfiles import QuerySpec
from coderunner_sql.codegen import _reads
from coderunner_sql.codegen._types import Enums, PyType, annotation
from coderunner_sql.codegen.runtime import SUFFIXES

DEFAULT_RECORDS = "coderunner_sql.records"
_RECORD_LINE = re.compile(r"--\s*record\s*:\s*(\S+)\s*$")
_NULLABLE_LINE = re.compile(r"--\s*nullable\s*:\s*(.*)$")
_ROWS = ("", "^", "<!")
_KNOWN_NULLABILITY = ("r", "p", "f")
_RESERVED = frozenset({"self", "conn"})


@attrs.frozen
class Annotations:
    """What the comment under a query's `-- name:` line says besides its doc."""

    doc: tuple[str, ...]
    record: tuple[str, str, int] | None  # (module, class, line)
    nullable: tuple[str, ...]
    nullable_line: int


def read_annotations(spec: QuerySpec) -> Annotations:
    """The doc lines, `-- record:` and `-- nullable:` of the comment under `-- name:`."""
    lines = spec.file.read_text(encoding="utf-8").splitlines()
    doc: list[str] = []
    record: tuple[str, str, int] | None = None
    nullable: list[str] = []
    nullable_line = spec.line
    for number in range(spec.line, len(lines)):
        text = lines[number].strip()
        if not text.startswith("--"):
            break
        if (match := _RECORD_LINE.match(text)) is not None:
            module, _, name = match.group(1).rpartition(":")
            record = (module or DEFAULT_RECORDS, name, number + 1)
        elif (match := _NULLABLE_LINE.match(text)) is not None:
            nullable += [n.strip() for n in match.group(1).split(",") if n.strip()]
            nullable_line = number + 1
        elif not re.match(r"--\s*record_class\s*:", text):
            doc.append(text[2:].strip())
    return Annotations(tuple(doc), record, tuple(nullable), nullable_line)


@contextlib.contextmanager
def cwd_importable() -> Iterator[None]:
    """Within the block, modules under the working directory are importable."""
    # An application runs `generate` from its root, where `myapp.records` is importable by
    # `python -m`, but the console script's sys.path does not hold the working directory.
    added = "" not in sys.path and str(Path.cwd()) not in sys.path
    if added:
        sys.path.insert(0, str(Path.cwd()))
    try:
        yield
    finally:
        if added:
            sys.path.remove(str(Path.cwd()))


def resolve_record(module: str, name: str) -> type[Any] | str:
    """The attrs class `module:name`, or why it cannot be used."""
    with cwd_importable():
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError as exc:
            return f"record {module}:{name}: cannot import {module} ({exc})"
    if found is None:
        return f"record {module}:{name}: {module} has no {name}"
    if not (isinstance(found, type) and attrs.has(found)):
        return f"record {module}:{name} is not an attrs class"
    return found


@attrs.frozen
class Field:
    """A parameter of a method, or a field of a generated row class."""

    name: str
    type: PyType


@attrs.frozen
class Method:
    """One query as the generated module states it."""

    name: str
    suffix: str
    doc: tuple[str, ...]
    params: tuple[Field, ...]
    jsonb: tuple[str, ...]
    json: tuple[str, ...]
    record: tuple[str, str] | None  # a record named in the SQL (module, class)
    row: tuple[Field, ...] | None  # or the fields of the row class generated for it
    scalar: PyType | None  # of a `$` query
    read: bool = False  # a plain SELECT: safe to send again (see codegen._reads)

    @property
    def pascal(self) -> str:
        """`get_user_by_id` -> `GetUserById`."""
        return "".join(part[:1].upper() + part[1:] for part in self.name.split("_"))

    @property
    def record_name(self) -> str | None:
        """The class its rows are built into (named or generated), if any."""
        if self.record is not None:
            return self.record[1]
        return f"{self.pascal}Row" if self.row is not None else None


def _identifier_problem(name: str, what: str) -> str | None:
    if not name.isidentifier() or keyword.iskeyword(name):
        return f"{what} {name!r} is not a Python name (alias it with AS)"
    if name.startswith("_"):
        return f"{what} {name!r} starts with _, which attrs and Python treat as private"
    return None


def build(
    spec: QuerySpec,
    notes: Annotations,
    described: Described | None,
    catalog: Catalog,
    pg_types: Mapping[int, PgType],
    enums: Enums,
    volatile: frozenset[str] = frozenset(),
) -> Method | list[Found]:
    """The method for `spec`, or the problems that stop it from being generated."""
    suffix = SUFFIXES[spec.operation] if spec.operation is not None else "?"
    found: list[Found] = []
    if "." in spec.name:
        return [Found("generate", "queries in subfolders (aiosql namespaces) are not supported")]
    _text, names, _stray = spec.positional()
    params: list[Field] = []
    jsonb: list[str] = []
    json: list[str] = []
    for name in notes.nullable:
        if name not in names:
            found.append(
                Found(
                    "generate", f"-- nullable: names {name}, not a parameter", notes.nullable_line
                )
            )
    for index, name in enumerate(names):
        if (why := _identifier_problem(name, "parameter")) is not None or name in _RESERVED:
            found.append(Found("generate", why or f"parameter {name!r} is reserved (rename it)"))
            continue
        pg = pg_types.get(described.param_types[index]) if described is not None else None
        base = pg.base if pg is not None and pg.kind == "d" and pg.base is not None else pg
        if base is not None and base.name == "jsonb":
            jsonb.append(name)
        elif base is not None and base.name == "json":
            json.append(name)
        py = annotation(pg, enums, param=True).optional(name in notes.nullable)
        params.append(Field(name, py))
    record: tuple[str, str] | None = None
    row: tuple[Field, ...] | None = None
    scalar: PyType | None = None
    columns = described.columns if described is not None else ()
    if notes.record is not None:
        module, cls_name, line = notes.record
        resolved = resolve_record(module, cls_name)
        if isinstance(resolved, str):
            found.append(Found("record", resolved, line))
        elif described is not None:
            statements = parsed(spec)
            single = statements[0] if len(statements) == 1 else None
            found += _compare.result(spec, resolved, described, catalog, pg_types, single)
            record = (module, cls_name)
    elif suffix in _ROWS:
        if not columns:
            found.append(
                Found(
                    "generate",
                    f"its `{suffix or 'no'}` suffix returns rows, but it returns no columns",
                )
            )
        row_fields, problems = _row_fields(spec, described, catalog, pg_types, enums)
        found += problems
        row = row_fields
    elif suffix == "$":
        if not columns:
            found.append(
                Found("generate", "its `$` suffix returns a value, but it returns no columns")
            )
        else:
            scalar = annotation(pg_types.get(columns[0].type_oid), enums, param=False)
    if found:
        return found
    return Method(
        spec.name,
        suffix,
        notes.doc,
        tuple(params),
        tuple(jsonb),
        tuple(json),
        record,
        row,
        scalar,
        _reads.reads_only((s.node for s in parsed(spec)), volatile),
    )


def parsed(spec: QuerySpec) -> list[_sqlast.Statement]:
    """The query's statements by PostgreSQL's parser (none when it cannot parse them)."""
    try:
        return _sqlast.statements(spec.positional()[0])
    except _sqlast.ParseError:
        return []


def _row_fields(
    spec: QuerySpec,
    described: Described | None,
    catalog: Catalog,
    pg_types: Mapping[int, PgType],
    enums: Enums,
) -> tuple[tuple[Field, ...], list[Found]]:
    if described is None:
        return (), []
    statements = parsed(spec)
    outer = _sqlast.outer_nullable_tables(statements[0]) if len(statements) == 1 else set()
    fields: list[Field] = []
    found: list[Found] = []
    seen: set[str] = set()
    for column in described.columns:
        why = _identifier_problem(column.name, "result column")
        if why is not None:
            found.append(Found("generate", why))
            continue
        if column.name in seen:
            found.append(Found("generate", f"returns column {column.name} twice"))
            continue
        seen.add(column.name)
        source = (
            catalog.at(column.table_oid, column.column_number)
            if column.table_oid and column.column_number > 0
            else None
        )
        # Only a plain reference to a NOT NULL table column, outside the NULL side of an
        # outer join, is known never to be NULL; the server says nothing about expressions.
        known = (
            source is not None
            and source.table_kind in _KNOWN_NULLABILITY
            and source.not_null
            and source.table not in outer
        )
        py = annotation(pg_types.get(column.type_oid), enums, param=False)
        fields.append(Field(column.name, py.optional(not known)))
    return tuple(fields), found
