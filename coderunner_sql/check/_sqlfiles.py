"""Reading `queries/` one query at a time, as aiosql reads it, keeping each one's file and line.

aiosql stops at the first bad query of a folder; the check reads each query on its own so
one mistake does not hide the others.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import attrs
from aiosql.adapters.pyformat import PyFormatAdapter
from aiosql.query_loader import QueryLoader
from aiosql.types import SQLOperationType
from aiosql.utils import SQLParseException

# aiosql splits a file at every `-- name:` (its query_loader._QUERY_DEF).
_NAME_DEF = re.compile(r"--\s*name\s*:\s*")
_SPEC_NAME = re.compile(r"[\w-]+")
_SPEC_PARAMS = re.compile(r"\([^)]*\)")
# psycopg's placeholders in the SQL aiosql produces: %(name)s, and %% for a literal %.
_PLACEHOLDER = re.compile(r"%%|%\((\w+)\)s|%")


@attrs.frozen
class QuerySpec:
    """One named query of `queries/`: where it is, its SQL, and what aiosql made of it."""

    name: str
    file: Path
    line: int
    operation: SQLOperationType | None
    sql: str  # aiosql's psycopg form, with %(name)s placeholders
    body_lines: tuple[int, ...]  # the file line of each line of `sql`
    error: str | None = None  # why aiosql refuses it, if it does

    @property
    def is_script(self) -> bool:
        """True for `#` queries (scripts: no parameters, maybe several statements)."""
        return self.operation is SQLOperationType.SCRIPT

    def positional(self) -> tuple[str, list[str], str | None]:
        """The SQL with $1, $2… for the server, the parameter names in that order, and a
        complaint about a stray `%` (psycopg would read it as a placeholder)."""
        names: list[str] = []
        stray: str | None = None

        def replace(match: re.Match[str]) -> str:
            nonlocal stray
            text = match.group(0)
            if text == "%%":
                return "%"
            name = match.group(1)
            if name is None:
                stray = "a lone % in the SQL: psycopg reads it as a placeholder (write %%)"
                return "%"
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        return _PLACEHOLDER.sub(replace, self.sql), names, stray

    def line_at(self, text: str, offset: int) -> int:
        """The file line of a 0-based character offset into `text` (`sql` or its positional
        form: both keep its lines)."""
        index = text.count("\n", 0, max(offset, 0))
        if not self.body_lines:
            return self.line
        return self.body_lines[min(index, len(self.body_lines) - 1)]


def _body_lines(lines: list[str], name_line: int, end_line: int) -> tuple[int, ...]:
    """File lines of the SQL aiosql keeps: it drops comment lines, then leading blanks."""
    kept = [
        number + 1
        for number in range(name_line, min(end_line, len(lines)))
        if not lines[number].lstrip().startswith("--")
    ]
    while kept and not lines[kept[0] - 1].strip():
        kept.pop(0)
    return tuple(kept)


def _load_one(text: str, *, strict: bool = True) -> tuple[str, SQLOperationType, str]:
    """Name, operation and psycopg-form SQL of one query, read as `aiosql.from_path` does."""
    adapter = PyFormatAdapter()  # type: ignore[no-untyped-call]  # aiosql leaves it untyped
    loader = QueryLoader(adapter, None, attribute="__", mandatory_parameters=strict)
    datum = loader.load_query_data_from_sql(text, [])[0]
    return datum.query_name, datum.operation_type, datum.sql


def read_file(path: Path, namespace: str = "") -> Iterator[QuerySpec]:
    """Every named query in one `.sql` file, in file order."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    starts = list(_NAME_DEF.finditer(text))
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(text)
        chunk = "-- name: " + text[match.end() : end]
        line = text.count("\n", 0, match.start()) + 1
        spec_match = _SPEC_NAME.match(text, match.end())
        spec_name = spec_match.group(0).replace("-", "_") if spec_match else "?"
        body = _body_lines(lines, line, text.count("\n", 0, end) + 1)
        try:
            name, operation, sql = _load_one(chunk)
        except SQLParseException as exc:
            error = str(exc)
            # Read it once more without the declared parameters, to check the rest.
            first, _, rest = chunk.partition("\n")
            loose = _SPEC_PARAMS.sub("", first, count=1) + "\n" + rest
            try:
                _name, operation, sql = _load_one(loose, strict=False)
            except Exception:  # aiosql raises several kinds; each means "unreadable"
                operation, sql = None, ""
            yield QuerySpec(namespace + spec_name, path, line, operation, sql, body, error)
            continue
        yield QuerySpec(namespace + name, path, line, operation, sql, body)


def read_queries(directory: Path, *, recursive: bool = True) -> list[QuerySpec]:
    """Every named query under `directory` (subfolders are aiosql namespaces: `sub.name`),
    or with `recursive=False` in its own files only."""
    specs: list[QuerySpec] = []
    for path in sorted(directory.rglob("*.sql") if recursive else directory.glob("*.sql")):
        parts = path.relative_to(directory).parent.parts
        namespace = "".join(f"{part}." for part in parts)
        specs.extend(read_file(path, namespace))
    return specs
