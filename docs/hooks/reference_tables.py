"""mkdocs hook: tables read from the code at build time, so the reference cannot drift.

In a page, a marker line becomes a table:

- `<!-- fields: coderunner_sql.User -->`: an attrs class's fields (name, type, default,
  secret), or an enum's members;
- `<!-- errors: coderunner_sql.errors -->`: the exception tree of a module, with each
  class's docstring;
- `<!-- queries: queries -->`: every named query in a folder, with the record it fills (its
  `-- record:` line, else the row class `coderunner-sql generate` makes for it) and the
  functions that call it.
"""

from __future__ import annotations

import ast
import enum
import html
import importlib
import re
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parents[2]
_MARKER = re.compile(r"^<!-- (fields|errors|queries): ([\w./]+) -->$", re.MULTILINE)
_NAME = re.compile(r"^-- name: (\w+)(?:\(([^)]*)\))?\s*(<!|\*!|[!$^#])?\s*$")
# aiosql's suffixes, as the generated query methods (coderunner_sql/codegen) run them.
SHAPES = {
    "": "rows (a list)",
    "^": "one row or None",
    "$": "one value or None",
    "!": "row count",
    "<!": "the returned row",
    "*!": "executemany (row count)",
    "#": "script",
}
# Suffixes whose rows are built into a record (named by `-- record:` or generated).
_ROWS = ("", "^", "<!")
# Generated files: the sync service repeats its async source (every caller listed twice),
# and the query module names every query as a method of its own.
_GENERATED = {"service.py", "query_methods.py"}


def _resolve(dotted: str) -> Any:
    module_name, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    # Markdown tables split on `|` even inside backticks; HTML code with an entity does not.
    return f"<code>{html.escape(text).replace('|', '&#124;')}</code>"


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, str):  # `from __future__ import annotations`
        return annotation
    return getattr(annotation, "__name__", repr(annotation))


def _default(field: attrs.Attribute[Any]) -> str:
    default = field.default
    if default is attrs.NOTHING:
        return "required"
    if isinstance(default, attrs.Factory):
        return f"`{default.factory()!r}`"
    if hasattr(default, "value") and hasattr(type(default), "__members__"):
        return f"`{type(default).__name__}.{default.name}`"
    return f"`{default!r}`"


def fields_table(dotted: str) -> str:
    """A markdown table of an attrs class's fields."""
    cls = _resolve(dotted)
    if isinstance(cls, type) and issubclass(cls, enum.Enum):
        rows = ["| member | value |", "| --- | --- |"]
        rows += [f"| `{m.name}` | `{m.value!r}` |" for m in cls]
        return "\n".join(rows)
    rows = ["| field | type | default | notes |", "| --- | --- | --- | --- |"]
    for field in attrs.fields(cls):
        notes = []
        if field.metadata.get("secret"):
            notes.append("secret: not in `repr`, left out by `to_dict` unless `secrets=True`")
        elif not field.repr:
            notes.append("not in `repr`")
        rows.append(
            f"| `{field.name}` | {_code(_type_name(field.type))} | {_default(field)} "
            f"| {'; '.join(notes)} |"
        )
    return "\n".join(rows)


def errors_tree(module_name: str) -> str:
    """A nested list of the exception classes defined in a module, root first."""
    module = importlib.import_module(module_name)
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == module_name
    ]
    roots = [c for c in classes if not any(b in classes for b in c.__bases__)]
    lines: list[str] = []

    def add(cls: type, depth: int) -> None:
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        lines.append(f"{'    ' * depth}- **`{cls.__name__}`** — {doc}")
        for sub in sorted((c for c in classes if cls in c.__bases__), key=lambda c: c.__name__):
            add(sub, depth + 1)

    for root in roots:
        add(root, 0)
    return "\n".join(lines)


def _callers() -> dict[str, list[str]]:
    """Attribute name -> the public functions (`Class.method`) of the package that use it."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "coderunner_sql").rglob("*.py")):
        if path.name in _GENERATED:
            continue
        tree = ast.parse(path.read_text())
        module = ".".join(path.relative_to(ROOT / "coderunner_sql").with_suffix("").parts)
        functions: list[tuple[str, ast.AST]] = []
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append((f"{module}.{node.name}", node))
            elif isinstance(node, ast.ClassDef):
                owner = node.name.removeprefix("Async").replace("DataAPI", "DatabaseService")
                functions += [
                    (f"{owner}.{fn.name}", fn)
                    for fn in node.body
                    if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
                ]
        for label, fn in functions:
            for sub in ast.walk(fn):
                if isinstance(sub, ast.Attribute) and label not in found.get(sub.attr, []):
                    found.setdefault(sub.attr, []).append(label)
    return found


def _record(
    name: str, suffix: str, record: tuple[str, str, int] | None, default_module: str
) -> str:
    """The class a query's rows fill: its `-- record:` line's, else the generated row class."""
    if record is not None:
        module, cls, _ = record
        return f"`{cls}`" if module == default_module else f"`{module}:{cls}`"
    if suffix in _ROWS:
        pascal = "".join(part[:1].upper() + part[1:] for part in name.split("_"))
        return f"`{pascal}Row` (generated)"
    return "—"


def queries_table(folder: str) -> str:
    """A markdown table of every named query in the folder's `.sql` files."""
    from coderunner_sql.check._sqlfiles import read_queries
    from coderunner_sql.codegen._model import DEFAULT_RECORDS, read_annotations

    notes = {spec.name: read_annotations(spec) for spec in read_queries(ROOT / folder)}
    callers = _callers()
    out: list[str] = []
    for path in sorted((ROOT / folder).rglob("*.sql")):
        relative = path.relative_to(ROOT / folder)
        namespace = "".join(f"{part}." for part in relative.parent.parts)
        out += [
            f"### `{folder}/{relative.as_posix()}`",
            "",
            "| query | parameters | returns | record | used by | what it does |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines = path.read_text().splitlines()
        for line in lines:
            match = _NAME.match(line)
            if match is None:
                continue
            name, params, suffix = match.group(1), match.group(2) or "", match.group(3) or ""
            note = notes[namespace + name]
            used = ", ".join(f"`{c}`" for c in callers.get(name, [])) or "—"
            # Subfolders are the package's own machinery, loaded by aiosql: rows as tuples.
            record = _record(name, suffix, note.record, DEFAULT_RECORDS) if not namespace else "—"
            out.append(
                f"| `{name}` | {_cell(params) or '—'} "
                f"| `{suffix or 'none'}`: {SHAPES[suffix]} "
                f"| {record} | {used} "
                f"| {_cell(' '.join(note.doc))} |"
            )
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace every marker line in a page with its table."""

    def expand(match: re.Match[str]) -> str:
        kind, target = match.groups()
        if kind == "fields":
            return fields_table(target)
        if kind == "errors":
            return errors_tree(target)
        return queries_table(target)

    return _MARKER.sub(expand, markdown)
