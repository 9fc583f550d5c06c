"""`coderunner-sql check`: catch a query the schema or the code no longer fits, before deploy.

aiosql loads SQL as text, so a renamed column or a dropped one breaks a method only when it
runs. This check builds the schema in a scratch database (never one that holds data), then
for every query in `queries/`: the server prepares it (parsing and planning, never running
it) and reports its parameter types and result columns; the catalog says which result
columns can be NULL. Those are compared with the code that calls the query (read from the
package's source) and the attrs record its rows fill (`coderunner_sql.loader.RESULT_TYPES`).
Migrations not yet applied where they will run are linted for operations unsafe on a live
table.
"""

from __future__ import annotations

import inspect
import re
import sys
import time
from collections.abc import Iterable
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
from coderunner_sql.check._usage import CallSite, find_call_sites
from coderunner_sql.config import DatabaseConfig
from coderunner_sql.connection import connect
from coderunner_sql.errors import MigrationError, translate
from coderunner_sql.resources import migrations_dir, queries_dir

__all__ = ["CheckReport", "Problem", "lint_migrations", "run_check"]

_PACKAGE = "coderunner_sql"


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
    untraced: tuple[str, ...]  # queries whose bound parameters the code hides from the check
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
        ]
        if self.untraced:
            parts.append(f"parameters not traceable in code: {', '.join(self.untraced)}")
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
            "untraced": list(self.untraced),
            "scratch": self.scratch,
            "seconds": round(self.seconds, 3),
        }


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@attrs.define
class _Run:
    queries_dir: Path
    migrations_dir: Path
    specs: list[QuerySpec]
    sites: list[CallSite]
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

    def site_query(self, site: CallSite, names: set[str]) -> str:
        if site.query not in names and site.query.endswith("_cursor"):
            base = site.query.removesuffix("_cursor")
            if base in names:
                return base
        return site.query

    def static(self) -> dict[str, list[CallSite]]:
        """Duplicate names, unused queries, uses of missing queries, records of no query."""
        from coderunner_sql.loader import RESULT_TYPES

        names: set[str] = set()
        for spec in self.specs:
            if spec.name in names:
                self.add(spec, [Found("query-file", "a query of this name is defined twice")])
            names.add(spec.name)
        by_query: dict[str, list[CallSite]] = {}
        for site in self.sites:
            if site.pattern:  # a name built at run time: a use of each query it can be
                for name in names:
                    if re.fullmatch(site.query, name):
                        by_query.setdefault(name, []).append(site)
                continue
            name = self.site_query(site, names)
            by_query.setdefault(name, []).append(site)
            if name not in names:
                self.add_at(
                    site.file,
                    site.line,
                    name,
                    "missing-query",
                    f"{site.caller} uses query {name}, which no file in "
                    f"{_shown(self.queries_dir)}/ defines",
                )
        for spec in self.specs:
            if spec.name not in by_query:
                self.add(spec, [Found("unused-query", "no code in the package uses this query")])
        loader = Path(inspect.getfile(sys.modules["coderunner_sql.loader"]))
        lines = loader.read_text(encoding="utf-8").splitlines() if loader.exists() else []
        for name in sorted(set(RESULT_TYPES) - names):
            line = next((i for i, text in enumerate(lines, 1) if f'"{name}"' in text), 1)
            self.add_at(
                loader,
                line,
                name,
                "missing-query",
                f"RESULT_TYPES gives query {name} a record, but no file in "
                f"{_shown(self.queries_dir)}/ defines it",
            )
        return by_query

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

    def queries(
        self, conn: Any, catalog_sql: _server.CatalogSQL, by_query: dict[str, list[CallSite]]
    ) -> None:
        """Prepare every query and compare what the server says with code and records."""
        from coderunner_sql.loader import RESULT_TYPES

        catalog = Catalog.read(conn, catalog_sql)
        prepared: list[tuple[QuerySpec, str, Described, _sqlast.Statement | None]] = []
        for spec in self.specs:
            if spec.error is not None:
                self.add(spec, [Found("query-file", spec.error)])
            if not spec.sql:
                continue
            text, names, stray = spec.positional()
            if stray is not None:
                self.add(spec, [Found("placeholder", stray)])
            self.add(spec, _compare.parameters(spec, names, by_query.get(spec.name, []), _shown))
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
            record = RESULT_TYPES.get(spec.name)
            self.add(spec, _compare.result(spec, record, described, catalog, pg_types, single))
            self.add(spec, _compare.inserts(single, catalog))

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


def run_check(
    database: DatabaseConfig | None = None,
    *,
    scratch: Literal["server", "embedded"] | None = None,
    queries: str | Path | None = None,
    migrations: str | Path | None = None,
    data_dir: str | Path | None = None,
    since: str | None = None,
) -> CheckReport:
    """Check every query in `queries/` against the schema `migrations/` builds, the code
    that runs it and the record it fills; lint the migrations that are new.

    `database` is only read: its `_yoyo_migration` says which migrations are new (linted).
    The scratch database is created on `database`'s server (`scratch="server"`, the default
    when `database` is given; needs CREATEDB) or on the embedded server (the default
    otherwise, started in `data_dir` if needed), migrated from empty, and dropped after.
    Migration files git calls new (untracked, added, or added since revision `since`) are
    linted too.
    """
    started = time.perf_counter()
    qdir, mdir = queries_dir(queries), migrations_dir(migrations)
    catalog_sql = _server.CatalogSQL(qdir)
    # The given database first: an unreachable one fails before the slower work.
    deployed = None if database is None else set(_server.applied_migrations(database, catalog_sql))
    new_paths = _lint.new_files(mdir, since)
    package_dir = Path(inspect.getfile(sys.modules[_PACKAGE])).parent
    run = _Run(qdir, mdir, read_queries(qdir), find_call_sites(package_dir, _PACKAGE))
    by_query = run.static()
    embedded = scratch == "embedded" or database is None
    admin: AbstractContextManager[DatabaseConfig] = (
        _server.embedded_server(data_dir) if embedded or database is None else nullcontext(database)
    )
    with admin as server, _server.scratch_database(server, catalog_sql) as config:
        from coderunner_sql.migrations import Migrator

        order = [(m.id, Path(m.path)) for m in Migrator(config, mdir).migrations()]
        linted = [
            _lint.MigrationFile(mid, path)
            for mid, path in order
            if path.resolve() in new_paths or (deployed is not None and mid not in deployed)
        ]
        # What exists before the first new migration is what a deploy finds in place.
        first_new = next((i for i, (mid, _p) in enumerate(order) if mid in _ids(linted)), 0)
        existing, applied = run.migrate(config, catalog_sql, order[:first_new] if linted else [])
        if applied is not None:
            with connect(config, autocommit=True) as conn:
                run.queries(conn, catalog_sql, by_query)
                version = conn.info.server_version
            if linted:
                run.lint(linted, existing, f"{version // 10000}.{version % 10000}")
    untraced = sorted(
        name for name, sites in by_query.items() if any(s.params is None for s in sites)
    )
    return CheckReport(
        problems=tuple(sorted(run.problems, key=lambda p: (p.file, p.line, p.kind, p.message))),
        queries=len(run.specs),
        uses=len(run.sites),
        migrations=applied or 0,
        linted=tuple(m.id for m in linted),
        untraced=tuple(untraced),
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
    catalog_sql = _server.CatalogSQL(qdir)
    run = _Run(qdir, migrations_dir(migrations_folder), read_queries(qdir), [])
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
