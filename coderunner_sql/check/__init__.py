"""`coderunner-sql check`: catch a query the schema or the code no longer fits, before deploy.

aiosql loads SQL as text, so a renamed column or a dropped one breaks a method only when it
runs. This check builds the schema in a scratch database (never one that holds data), then
for every query in `queries/`: the server prepares it (parsing and planning, never running
it) and reports its result columns; the catalog says which of them can be NULL. Those are
compared with the attrs record its rows fill (named by its `-- record:` line). A query no
code in the package names is reported unused. Migrations not yet applied where they will
run are linted for operations unsafe on a live table. Last, the generated module is checked
as `generate --check` does: the calls themselves are mypy's to check, against that module.
"""

from __future__ import annotations

import ast
import inspect
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

import attrs
import psycopg

from coderunner_sql.errors import ConfigError

try:
    import pglast  # noqa: F401  # PostgreSQL's parser: an optional dependency
except ImportError:  # pragma: no cover - the [check] extra is part of [dev]
    raise ConfigError(
        "coderunner-sql check needs pglast and squawk: pip install 'coderunner-sql[check]'"
    ) from None

from coderunner_sql.check import _compare, _lint, _server, _sqlast
from coderunner_sql.check._compare import Found
from coderunner_sql.check._server import Catalog, Described, Rejected
from coderunner_sql.check._sqlfiles import QuerySpec, read_queries
from coderunner_sql.config import DatabaseConfig
from coderunner_sql.connection import connect
from coderunner_sql.errors import MigrationError, translate
from coderunner_sql.resources import (
    internal_queries_dir,
    migrations_dir,
    own_queries_dir,
    queries_dir,
)

__all__ = ["CheckReport", "Problem", "lint_migrations", "run_check"]

_PACKAGE = "coderunner_sql"
# The package's own generated module: written by `generate`, so no use of a query.
OWN_MODULE = "query_methods.py"


@attrs.frozen
class Problem:
    """One thing the check found wrong: where, which query (or migration), and what differs."""

    file: str
    line: int
    subject: str  # the query's name, or the migration's id
    kind: str  # a stable name for tools: column-type, param-not-bound, unused-query…
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.subject}: {self.message} [{self.kind}]"


@attrs.frozen
class CheckReport:
    """What `run_check` looked at and every problem it found (none: all holds)."""

    problems: tuple[Problem, ...]
    queries: int
    uses: int  # places in the package that use a query
    migrations: int  # applied to the scratch database
    linted: tuple[str, ...]  # ids of the migrations linted as new
    module: str | None  # the generated module checked as `generate --check` does, if any
    scratch: str  # where the scratch database lived
    seconds: float

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def summary(self) -> str:
        """One line: the verdict and what was checked."""
        head = "check passed" if self.ok else f"check failed: {len(self.problems)} problem(s)"
        parts = [
            f"{self.queries} queries",
            f"{self.uses} uses in code",
            f"{self.migrations} migration(s) applied to a scratch database on {self.scratch}",
            f"{len(self.linted)} new migration(s) linted",
            f"generated module {self.module} checked"
            if self.module is not None
            else "no generated module checked",
        ]
        return f"{head} — {'; '.join(parts)} ({self.seconds:.1f} s)"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the `--json` output)."""
        return {
            "ok": self.ok,
            "summary": self.summary(),
            "problems": [attrs.asdict(p) for p in self.problems],
            "queries": self.queries,
            "uses": self.uses,
            "migrations": self.migrations,
            "linted": list(self.linted),
            "module": self.module,
            "scratch": self.scratch,
            "seconds": round(self.seconds, 3),
        }


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def package_uses(
    package_dir: Path, names: Iterable[str], module: Path | None = None
) -> Iterator[tuple[str, Path, int]]:
    """(query, file, line) of each `.name` (or `.name_cursor`) attribute and each string
    equal to a query's name in the package's source, its generated `module` (default: this
    package's own) left out."""
    # A query in a subfolder (`internal.get_types`) is called by its own name, on an object
    # loaded from that folder's file.
    wanted: dict[str, list[str]] = {}
    for name in names:
        wanted.setdefault(name.rsplit(".", 1)[-1], []).append(name)
    wanted_cursor = {f"{short}_cursor": full for short, full in wanted.items()}
    skip = (module or package_dir / OWN_MODULE).resolve()
    for path in sorted(package_dir.rglob("*.py")):
        if path.resolve() == skip:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError):
            continue  # not this check's to report: the import would fail first
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                found: object = node.attr
            elif isinstance(node, ast.Constant):
                found = node.value
            else:
                continue
            if not isinstance(found, str):
                continue
            for name in wanted.get(found) or wanted_cursor.get(found) or ():
                yield name, path, node.lineno


@attrs.define
class _Run:
    queries_dir: Path
    migrations_dir: Path
    specs: list[QuerySpec]
    problems: list[Problem] = attrs.field(factory=list)
    parsed: dict[str, list[_sqlast.Statement]] = attrs.field(factory=dict)

    def add(self, spec: QuerySpec, found: Iterable[Found]) -> None:
        for item in found:
            self.problems.append(
                Problem(
                    _shown(item.file or spec.file),
                    item.line or spec.line,
                    spec.name,
                    item.kind,
                    item.message,
                )
            )

    def add_at(self, file: Path, line: int, subject: str, kind: str, message: str) -> None:
        self.problems.append(Problem(_shown(file), line, subject, kind, message))

    # -- without a server ---------------------------------------------------------------

    def static(
        self, package_dir: Path | None, app_dir: Path | None = None, module: Path | None = None
    ) -> int:
        """Duplicate names and (with `package_dir`, and `app_dir` calling the queries through
        its generated `module`) unused queries; how many uses were seen."""
        seen: dict[str, QuerySpec] = {}
        for spec in self.specs:
            first = seen.setdefault(spec.name, spec)
            if first is not spec:
                # The same words as `generate`, so one report does not say it twice.
                where = f"{_shown(first.file)}:{first.line}"
                self.add(
                    spec,
                    [Found("query-file", f"a query of this name is also defined at {where}")],
                )
        if package_dir is None:
            return 0
        used: dict[str, int] = {}
        found = list(package_uses(package_dir, seen))
        if app_dir is not None:
            found += package_uses(app_dir, seen, module)
        for name, _path, _line in found:
            used[name] = used.get(name, 0) + 1
        for spec in self.specs:
            if spec.name not in used and seen[spec.name] is spec:
                self.add(spec, [Found("unused-query", "no code in the package uses this query")])
        return sum(used.values())

    # -- on the scratch database --------------------------------------------------------

    def migrate(
        self, config: DatabaseConfig, catalog_sql: _server.CatalogSQL, before: list[Any]
    ) -> tuple[dict[str, frozenset[str]], int | None]:
        """Apply `before` (the migrations a deploy finds in place), note the tables then,
        and apply the rest; returns those tables and how many migrations were applied
        (None when one failed: the problem says which)."""
        from coderunner_sql.migrations import Migrator

        existing: dict[str, frozenset[str]] = {}
        try:
            if before:
                with _server.temporary_folder() as folder:
                    _server.copy_migrations(self.migrations_dir, [m for m, _p in before], folder)
                    Migrator(config, folder).apply()
            with connect(config, autocommit=True) as conn:
                existing = Catalog.read(conn, catalog_sql).tables()
            return existing, len(before) + len(
                Migrator(config, self.migrations_dir).apply().applied
            )
        except MigrationError as exc:
            self.migration_failed(exc)
            return existing, None

    def parse(self, spec: QuerySpec) -> list[_sqlast.Statement]:
        """The query's statements by PostgreSQL's parser (none if it cannot parse them: the
        server's verdict is reported instead)."""
        if spec.name not in self.parsed:
            try:
                self.parsed[spec.name] = _sqlast.statements(spec.positional()[0])
            except _sqlast.ParseError:
                self.parsed[spec.name] = []
        return self.parsed[spec.name]

    def uses(self, tables: dict[str, frozenset[str]]) -> dict[tuple[str, str], set[str]]:
        """(table, column) -> queries using it; (table, "") -> queries naming the table."""
        uses: dict[tuple[str, str], set[str]] = {}
        for spec in self.specs:
            for statement in self.parse(spec) if spec.sql else []:
                for pair in _sqlast.column_uses(statement, tables):
                    uses.setdefault(pair, set()).add(spec.name)
                for table in _sqlast.tables_used(statement):
                    uses.setdefault((table, ""), set()).add(spec.name)
        return uses

    def lint(
        self,
        migrations: list[_lint.MigrationFile],
        existing: dict[str, frozenset[str]],
        pg_version: str,
    ) -> None:
        """Lint `migrations`, which a deploy applies where the tables `existing` are."""
        uses = self.uses(existing)
        for migration, found in _lint.lint(migrations, existing, uses, pg_version):
            self.add_at(
                found.file or migration.path,
                found.line or 1,
                migration.id,
                found.kind,
                found.message,
            )

    def migration_failed(self, exc: MigrationError) -> None:
        migration = exc.migration or "?"
        path = self.migrations_dir / f"{migration}.sql"
        line = 1
        if exc.statement and path.exists():
            text = path.read_text(encoding="utf-8")
            at = text.find(exc.statement.strip()[:80])
            line = text.count("\n", 0, at) + 1 if at >= 0 else 1
        self.add_at(
            path, line, migration, "migration-failed", f"applying it fails: {exc}".rstrip(".")
        )

    def queries(self, conn: Any, catalog_sql: _server.CatalogSQL) -> None:
        """Prepare every query and compare what the server says with its record."""
        catalog = Catalog.read(conn, catalog_sql)
        prepared: list[tuple[QuerySpec, str, Described, _sqlast.Statement | None]] = []
        for spec in self.specs:
            if spec.error is not None:
                self.add(spec, [Found("query-file", spec.error)])
            if not spec.sql:
                continue
            text, _names, stray = spec.positional()
            if stray is not None:
                self.add(spec, [Found("placeholder", stray)])
            statements = self.parse(spec)
            if spec.is_script:
                self.script(spec, text, statements, conn)
                continue
            outcome = _server.describe(conn, text)
            self.add(spec, _compare.server_errors(spec, text, outcome))
            if isinstance(outcome, Described):
                single = statements[0] if len(statements) == 1 else None
                prepared.append((spec, text, outcome, single))
        oids = {c.type_oid for _s, _t, d, _n in prepared for c in d.columns}
        pg_types = _server.types(conn, catalog_sql, oids)
        for spec, _text, described, single in prepared:
            record = self.record(spec)
            self.add(spec, _compare.result(spec, record, described, catalog, pg_types, single))
            self.add(spec, _compare.inserts(single, catalog))

    def record(self, spec: QuerySpec) -> type[Any] | None:
        """The record its `-- record:` line names (None if none, or if it cannot be had:
        that is reported)."""
        # Here, not at the top: the generator imports this package.
        from coderunner_sql.codegen import _model

        notes = _model.read_annotations(spec)
        if notes.record is None:
            return None
        module, name, line = notes.record
        resolved = _model.resolve_record(module, name)
        if isinstance(resolved, str):
            self.add(spec, [Found("record", resolved, line)])
            return None
        return resolved

    def generated(self, server: DatabaseConfig, module: Path) -> None:
        """`generate --check` of `module`: each query whose code there is stale, and what
        stops the module from being generated that this check has not said already."""
        from coderunner_sql.codegen import generate

        run_generate = f"run `coderunner-sql generate --out {_shown(module)}`"
        if not module.is_file():
            self.add_at(
                module,
                1,
                module.stem,
                "generated-stale",
                f"generated module {_shown(module)} does not exist ({run_generate})",
            )
            return
        report = generate(
            server,
            queries=self.queries_dir,
            migrations=self.migrations_dir,
            out=module,
            check=True,
            scratch="server",
        )
        said = set(self.problems)
        self.problems += [p for p in report.problems if p not in said]
        lines = module.read_text(encoding="utf-8").splitlines()
        for name in report.stale:
            line = next((n for n, text in enumerate(lines, 1) if f"def {name}(" in text), 1)
            self.add_at(
                module,
                line,
                name,
                "generated-stale",
                f"its code in {_shown(module)} differs from what its SQL gives ({run_generate})",
            )

    def script(
        self, spec: QuerySpec, text: str, statements: list[_sqlast.Statement], conn: Any
    ) -> None:
        if not statements:
            outcome = _server.describe(conn, text)
            self.add(spec, _compare.server_errors(spec, text, outcome))
            return
        for statement in statements:
            piece = text[: statement.end]
            blank = "".join(c if c == "\n" else " " for c in text[: statement.start])
            # Blank out what precedes it, so the server's positions still fit `text`.
            outcome = _server.describe(conn, blank + piece[statement.start :])
            if isinstance(outcome, Rejected):
                self.add(spec, _compare.server_errors(spec, text, outcome))


def _is_own(queries: Path) -> bool:
    return queries.resolve() == own_queries_dir().resolve()


def default_module(queries: Path) -> Path:
    """The generated module `check` compares with `queries` by default: the package's own
    for its own folder, else `queries.py` beside the folder (where `generate` writes)."""
    if _is_own(queries):
        return Path(inspect.getfile(sys.modules[_PACKAGE])).parent / OWN_MODULE
    return queries.parent / "queries.py"


def run_check(
    database: DatabaseConfig | None = None,
    *,
    scratch: Literal["server", "embedded"] | None = None,
    queries: str | Path | None = None,
    migrations: str | Path | None = None,
    data_dir: str | Path | None = None,
    since: str | None = None,
    module: str | Path | None = None,
) -> CheckReport:
    """Check every query in `queries/` against the schema `migrations/` builds and the
    record it fills, find queries no code uses, lint the migrations that are new, and
    compare the generated `module` with what the SQL gives (as `generate --check` does).

    `database` is only read: its `_yoyo_migration` says which migrations are new (linted).
    The scratch database is created on `database`'s server (`scratch="server"`, the default
    when `database` is given; needs CREATEDB) or on the embedded server (the default
    otherwise, started in `data_dir` if needed), migrated from empty, and dropped after.
    Migration files git calls new (untracked, added, or added since revision `since`) are
    linted too. `module` defaults to `default_module(queries)`, skipped when that file does
    not exist (an application that does not generate); a `module` given must exist.
    """
    started = time.perf_counter()
    qdir, mdir = queries_dir(queries), migrations_dir(migrations)
    # The check's own catalog queries come with this package, whatever folder is checked.
    catalog_sql = _server.CatalogSQL(internal_queries_dir())
    # The given database first: an unreachable one fails before the slower work.
    deployed = None if database is None else set(_server.applied_migrations(database, catalog_sql))
    new_paths = _lint.new_files(mdir, since)
    package_dir = Path(inspect.getfile(sys.modules[_PACKAGE])).parent
    target = Path(module) if module is not None else default_module(qdir)
    checked = module is not None or target.is_file()
    run = _Run(qdir, mdir, read_queries(qdir))
    # Unused queries: no use in this package's code, nor (for an application's folder) in
    # the package its generated module sits in.
    app_dir = target.parent if checked and not _is_own(qdir) else None
    uses = run.static(package_dir, app_dir, target)
    embedded = scratch == "embedded" or database is None
    admin: AbstractContextManager[DatabaseConfig] = (
        _server.embedded_server(data_dir) if embedded or database is None else nullcontext(database)
    )
    with admin as server:
        with _server.scratch_database(server, catalog_sql) as config:
            from coderunner_sql.migrations import Migrator

            order = [(m.id, Path(m.path)) for m in Migrator(config, mdir).migrations()]
            linted = [
                _lint.MigrationFile(mid, path)
                for mid, path in order
                if path.resolve() in new_paths or (deployed is not None and mid not in deployed)
            ]
            # What exists before the first new migration is what a deploy finds in place.
            first_new = next((i for i, (mid, _p) in enumerate(order) if mid in _ids(linted)), 0)
            existing, applied = run.migrate(
                config, catalog_sql, order[:first_new] if linted else []
            )
            if applied is not None:
                with connect(config, autocommit=True) as conn:
                    run.queries(conn, catalog_sql)
                    version = conn.info.server_version
                if linted:
                    run.lint(linted, existing, f"{version // 10000}.{version % 10000}")
        if checked and applied is not None:
            # On the server already in use: its own scratch database, no second start.
            run.generated(server, target)
    return CheckReport(
        problems=tuple(sorted(run.problems, key=lambda p: (p.file, p.line, p.kind, p.message))),
        queries=len(run.specs),
        uses=uses,
        migrations=applied or 0,
        linted=tuple(m.id for m in linted),
        module=_shown(target) if checked and applied is not None else None,
        scratch="the embedded server" if embedded else _where(database),
        seconds=time.perf_counter() - started,
    )


def lint_migrations(
    database: DatabaseConfig,
    migrations: list[tuple[str, Path]],
    *,
    queries: str | Path | None = None,
    migrations_folder: str | Path | None = None,
) -> list[Problem]:
    """The lint `run_check` reports for `migrations` (id, file) about to be applied to
    `database`, whose tables (only read) are what they will find in place."""
    qdir = queries_dir(queries)
    catalog_sql = _server.CatalogSQL(internal_queries_dir())
    run = _Run(qdir, migrations_dir(migrations_folder), read_queries(qdir))
    with connect(database, autocommit=True) as conn:
        try:
            existing = Catalog.read(conn, catalog_sql).tables()
        except psycopg.Error as exc:
            raise translate(exc, operation="lint: read the tables in place") from None
        version = conn.info.server_version
    files = [_lint.MigrationFile(mid, path) for mid, path in migrations]
    run.lint(files, existing, f"{version // 10000}.{version % 10000}")
    return sorted(run.problems, key=lambda p: (p.file, p.line, p.kind, p.message))


def _ids(migrations: list[_lint.MigrationFile]) -> set[str]:
    return {m.id for m in migrations}


def _where(config: DatabaseConfig | None) -> str:
    if config is None:
        return "the embedded server"
    return f"{config.host or 'localhost'}:{config.port or 5432}"
