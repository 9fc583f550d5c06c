"""`generate`: the schema in a scratch database, every query prepared there, one module out."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

import attrs

from coderunner_sql.check import Problem, _server
from coderunner_sql.check._compare import Found, server_errors
from coderunner_sql.check._server import Catalog, Described
from coderunner_sql.check._sqlfiles import QuerySpec, read_queries
from coderunner_sql.codegen import _model, _reads, _render
from coderunner_sql.codegen._types import Enums
from coderunner_sql.config import DatabaseConfig
from coderunner_sql.connection import connect
from coderunner_sql.errors import ConfigError, MigrationError
from coderunner_sql.resources import internal_queries_dir, migrations_dir, queries_dir


@attrs.frozen
class GenerateReport:
    """What `generate` did: the module, the queries in it, and what stopped it if anything."""

    out: Path
    queries: int
    problems: tuple[Problem, ...]  # queries it could not generate: nothing was written
    stale: tuple[str, ...]  # with check=True: queries whose committed code differs
    written: bool
    seconds: float

    @property
    def ok(self) -> bool:
        """True when every query was generated and (with check) the file is up to date."""
        return not self.problems and not self.stale

    def summary(self) -> str:
        """One line: the verdict."""
        if self.problems:
            return f"generate failed: {len(self.problems)} problem(s); {self.out} left as it was"
        if self.stale:
            return (
                f"{_shown(self.out)} is out of date for: {', '.join(self.stale)} "
                "(run `coderunner-sql generate`)"
            )
        verb = "wrote" if self.written else "up to date:"
        return f"{verb} {_shown(self.out)} ({self.queries} queries, {self.seconds:.1f} s)"


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _problem(spec: QuerySpec, found: Found) -> Problem:
    return Problem(
        _shown(found.file or spec.file),
        found.line or spec.line,
        spec.name,
        found.kind,
        found.message,
    )


def _ruff(text: str, out: Path) -> str:
    """`text` with imports sorted and formatted as ruff does in `out`'s project."""
    ruff = shutil.which("ruff")
    command = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    # From the project that holds `out` (its ruff settings and first-party packages), so the
    # text does not depend on where the generator runs.
    cwd = next(
        (
            folder
            for folder in out.resolve().parents
            if any((folder / name).is_file() for name in ("pyproject.toml", "ruff.toml"))
        ),
        Path.cwd(),
    )
    for args in (
        ["check", "--fix", "--exit-zero", "--quiet", "--select", "I", "--stdin-filename", str(out)],
        ["format", "--quiet", "--stdin-filename", str(out)],
    ):
        try:
            done = subprocess.run(
                [*command, *args, "-"],
                input=text,
                capture_output=True,
                text=True,
                cwd=cwd,
                check=False,
            )
        except OSError:
            done = None
        if done is None or done.returncode != 0:
            reason = done.stderr.strip().splitlines()[-1:] if done is not None else []
            raise ConfigError(
                "generate needs ruff to format the module: pip install ruff"
                + (f" ({reason[0]})" if reason else "")
            )
        text = done.stdout
    return text


def _pieces(text: str, classes: Mapping[str, str]) -> dict[str, str]:
    """Query name -> its code in `text`: methods, row and params classes, plan."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return {}
    found: dict[str, list[str]] = {}

    def add(name: str, node: ast.AST) -> None:
        found.setdefault(name, []).append(ast.get_source_segment(text, node) or "")

    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in ("Queries", "AsyncQueries"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    add(item.name, item)
        elif isinstance(node, ast.ClassDef) and node.name in classes:
            add(classes[node.name], node)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
            for call in node.value.elts:
                if (
                    isinstance(call, ast.Call)
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                    and isinstance(call.args[0].value, str)
                ):
                    add(call.args[0].value, call)
    return {name: "\n".join(parts) for name, parts in found.items()}


def _posix_relative(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def generate(
    database: DatabaseConfig | None = None,
    *,
    queries: str | Path | None = None,
    migrations: str | Path | None = None,
    out: str | Path | None = None,
    check: bool = False,
    scratch: Literal["server", "embedded"] | None = None,
    data_dir: str | Path | None = None,
) -> GenerateReport:
    """Write one module of typed methods for every query in `queries` (default:
    `CODERUNNER_SQL_QUERIES`, else the bundled folder), typed by what the server says of
    each query on the schema `migrations` builds in a scratch database.

    `out` defaults to `queries.py` beside the queries folder. With `check=True` nothing is
    written: the report names each query whose committed code differs from what its SQL gives.
    The scratch database is made on `database`'s server (needs CREATEDB) or, by default, on
    the embedded server (started in `data_dir` if needed), and dropped after.
    """
    started = time.perf_counter()
    qdir, mdir = queries_dir(queries), migrations_dir(migrations)
    target = Path(out) if out is not None else qdir.parent / "queries.py"
    # The check's own catalog queries come with this package, whatever folder is generated.
    catalog_sql = _server.CatalogSQL(internal_queries_dir())
    # The folder's own files: a subfolder (an aiosql namespace) is generated on its own.
    specs = read_queries(qdir, recursive=False)
    problems: list[Problem] = []
    seen: dict[str, QuerySpec] = {}
    for spec in specs:
        if spec.name in seen:
            first = seen[spec.name]
            problems.append(
                _problem(
                    spec,
                    Found(
                        "query-file",
                        "a query of this name is also defined at "
                        f"{_shown(first.file)}:{first.line}",
                    ),
                )
            )
        seen[spec.name] = spec
        if spec.error is not None:
            problems.append(_problem(spec, Found("query-file", spec.error)))
    notes = {spec.name: _model.read_annotations(spec) for spec in specs}
    record_modules = {_model.DEFAULT_RECORDS} | {
        n.record[0] for n in notes.values() if n.record is not None
    }
    methods: list[_model.Method] = []
    admin: AbstractContextManager[DatabaseConfig] = (
        _server.embedded_server(data_dir)
        if scratch == "embedded" or database is None
        else nullcontext(database)
    )
    with admin as server, _server.scratch_database(server, catalog_sql) as config:
        from coderunner_sql.migrations import Migrator

        try:
            Migrator(config, mdir).apply()
        except MigrationError as exc:
            raise MigrationError(f"generate: applying {_shown(mdir)} fails: {exc}") from None
        with connect(config, autocommit=True) as conn:
            methods = _describe_all(conn, catalog_sql, specs, notes, record_modules, problems)
    sources = sorted({_posix_relative(spec.file, target.parent) for spec in specs})
    stale: list[str] = []
    written = False
    if not problems:
        text = _render.render(methods, sources, _posix_relative(qdir, target.parent))
        text = _ruff(text, target)
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if check:
            if current != text:
                classes = {
                    f"{m.pascal}{suffix}": m.name for m in methods for suffix in ("Row", "Params")
                }
                old, new = _pieces(current or "", classes), _pieces(text, classes)
                stale = sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
                if not stale:
                    stale = ["(the module's header or imports)"]
        elif current != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            written = True
    return GenerateReport(
        out=target,
        queries=len(specs),
        problems=tuple(sorted(problems, key=lambda p: (p.file, p.line, p.kind, p.message))),
        stale=tuple(stale),
        written=written,
        seconds=time.perf_counter() - started,
    )


def _describe_all(
    conn: Any,
    catalog_sql: _server.CatalogSQL,
    specs: list[QuerySpec],
    notes: Mapping[str, _model.Annotations],
    record_modules: set[str],
    problems: list[Problem],
) -> list[_model.Method]:
    catalog = Catalog.read(conn, catalog_sql)
    described: dict[str, Described | None] = {}
    for spec in specs:
        if spec.error is not None or not spec.sql:
            continue
        if spec.is_script:
            described[spec.name] = None  # scripts (DDL, several statements) are run, not typed
            continue
        text, _names, stray = spec.positional()
        if stray is not None:
            problems.append(_problem(spec, Found("placeholder", stray)))
            continue
        outcome = _server.describe(conn, text)
        if isinstance(outcome, Described):
            described[spec.name] = outcome
        else:
            problems += [_problem(spec, f) for f in server_errors(spec, text, outcome)]
    oids = {
        oid
        for d in described.values()
        if d is not None
        for oid in (*d.param_types, *(c.type_oid for c in d.columns))
    }
    pg_types = _server.types(conn, catalog_sql, oids)
    with _model.cwd_importable():  # the records' modules, enums included, are the app's
        enums = Enums(record_modules)
    called = _reads.called_functions(
        s.node for spec in specs if spec.name in described for s in _model.parsed(spec)
    )
    volatile = catalog_sql.volatile_functions(conn, called)
    methods: list[_model.Method] = []
    for spec in specs:
        if spec.name not in described:
            continue
        built = _model.build(
            spec, notes[spec.name], described[spec.name], catalog, pg_types, enums, volatile
        )
        if isinstance(built, _model.Method):
            methods.append(built)
        else:
            problems += [_problem(spec, f) for f in built]
    return methods
