"""Migration lint for deploy pipelines: unsafe operations in migrations not yet deployed.

squawk (a maintained PostgreSQL migration linter) judges locking and rewrites; this module
adds what squawk cannot know — which tables already exist where the migration will run,
and which columns the queries in `queries/` still use.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from coderunner_sql.check import _sqlast
from coderunner_sql.check._compare import Found
from coderunner_sql.errors import ConfigError

# The squawk rules that mean "unsafe on a table that already holds rows"; its style rules
# (prefer-robust-stmts, prefer-bigint-over-int, timeouts…) are left to taste.
SQUAWK_RULES = frozenset(
    {
        "adding-required-field",  # NOT NULL column without a default
        "require-concurrent-index-creation",  # index that blocks writes while it builds
        "changing-column-type",  # rewrite under ACCESS EXCLUSIVE; old readers break
        "adding-field-with-default",  # volatile default: a rewrite
        "adding-not-nullable-field",  # SET NOT NULL scans under ACCESS EXCLUSIVE
        "adding-serial-primary-key-field",
        "constraint-missing-not-valid",
        "adding-foreign-key-constraint",
        "disallowed-unique-constraint",
        "ban-concurrent-index-creation-in-transaction",
    }
)
_NOT_TRANSACTIONAL = re.compile(r"^--\s*transactional\s*:\s*false\b", re.IGNORECASE | re.MULTILINE)


@attrs.frozen
class MigrationFile:
    """A migration to lint."""

    id: str
    path: Path


def _squawk() -> str:
    beside = Path(sys.executable).parent / "squawk"
    found = str(beside) if beside.exists() else shutil.which("squawk")
    if found is None:
        raise ConfigError(
            "squawk is not installed: pip install 'coderunner-sql[check]' (squawk-cli)"
        )
    return found


def _git(directory: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=30
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def new_files(directory: Path, since: str | None) -> set[Path]:
    """Migration files git calls new: untracked or added, and (with `since`) added since
    that revision. Empty outside a git checkout."""
    top = _git(directory, "rev-parse", "--show-toplevel")
    if top is None:
        if since is not None:
            raise ConfigError(f"--since {since}: {directory} is not in a git checkout")
        return set()
    root = Path(top.strip())
    found: set[Path] = set()
    status = _git(directory, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", ".")
    entries = iter((status or "").split("\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":
            next(entries, None)  # a rename's second path is the old one
        if code == "??" or code[0] == "A":
            found.add((root / path).resolve())
    if since is not None:
        added = _git(directory, "diff", "--name-only", "-z", "--diff-filter=A", since, "--", ".")
        if added is None:
            raise ConfigError(f"--since {since}: git does not know that revision")
        found |= {(root / p).resolve() for p in added.split("\0") if p}
    return found


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, max(offset, 0)) + 1


def _statement_line(text: str, start: int) -> int:
    """The line where a statement's first word is (pglast's start includes leading comments)."""
    position = start
    while position < len(text):
        if text[position].isspace():
            position += 1
        elif text.startswith("--", position):
            newline = text.find("\n", position)
            position = len(text) if newline < 0 else newline + 1
        else:
            break
    return _line(text, position)


def _run_squawk(files: list[Path], pg_version: str, in_transaction: bool) -> list[dict[str, Any]]:
    if not files:
        return []
    argv = [_squawk(), "--reporter", "json", "--pg-version", pg_version]
    if in_transaction:
        argv.append("--assume-in-transaction")
    done = subprocess.run([*argv, *map(str, files)], capture_output=True, text=True, timeout=120)
    try:
        violations = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ConfigError(f"squawk failed (exit {done.returncode}): {tail[0]}") from None
    return [v for v in violations if isinstance(v, dict)]


def lint(
    migrations: Iterable[MigrationFile],
    existing: Mapping[str, frozenset[str]],
    uses: Mapping[tuple[str, str], set[str]],
    pg_version: str,
) -> list[tuple[MigrationFile, Found]]:
    """Problems in `migrations`, to be applied where the tables `existing` already are.

    `uses` maps (table, column) to the queries that use it, and (table, "") to the queries
    that name the table at all.
    """
    files = [m for m in migrations if m.path.suffix == ".sql"]
    by_path = {m.path.resolve(): m for m in files}
    texts = {m.path.resolve(): m.path.read_text(encoding="utf-8") for m in files}
    parsed: dict[Path, list[_sqlast.Statement]] = {}
    found: list[tuple[MigrationFile, Found]] = []
    for path, text in texts.items():
        try:
            parsed[path] = _sqlast.statements(text)
        except _sqlast.ParseError:
            parsed[path] = []  # applying it fails too, and says why
    transactional = [
        m.path for m in files if not _NOT_TRANSACTIONAL.search(texts[m.path.resolve()])
    ]
    other = [m.path for m in files if m.path not in transactional]
    violations = _run_squawk(transactional, pg_version, True) + _run_squawk(
        other, pg_version, False
    )
    for violation in violations:
        rule = str(violation.get("rule_name", ""))
        path = Path(str(violation.get("file", ""))).resolve()
        migration = by_path.get(path)
        if rule not in SQUAWK_RULES or migration is None:
            continue
        line = int(violation.get("line", 0)) + 1  # squawk counts lines from 0
        table = _table_at(texts[path], parsed[path], line)
        if table is not None and table not in existing:
            continue  # a table this deploy creates holds no rows yet
        help_text = violation.get("help")
        message = str(violation.get("message", rule)).rstrip(".")
        if help_text:
            message += f" — {str(help_text).rstrip('.')}"
        if table is not None:
            message = f"{table}: {message}"
        found.append((migration, Found(rule, message, line)))
    for migration in files:
        rollback = migration.path.with_name(f"{migration.id}.rollback.sql")
        if not rollback.exists():
            message = f"has no {rollback.name}: `coderunner-sql migrate rollback` cannot undo it"
            found.append((migration, Found("missing-rollback", message, 1)))
    for path, statements in parsed.items():
        for statement in statements:
            for change in _sqlast.schema_changes(statement.node):
                problem = _used_change(change, existing, uses)
                if problem is not None:
                    line = _statement_line(texts[path], statement.start)
                    found.append((by_path[path], attrs.evolve(problem, line=line)))
    return found


def _table_at(text: str, statements: list[_sqlast.Statement], line: int) -> str | None:
    starts = [s for s in statements if _line(text, s.start) <= line]
    return _sqlast.target_table(starts[-1].node) if starts else None


def _used_change(
    change: _sqlast.SchemaChange,
    existing: Mapping[str, frozenset[str]],
    uses: Mapping[tuple[str, str], set[str]],
) -> Found | None:
    if change.table not in existing:
        return None
    if change.column is None:
        queries = uses.get((change.table, ""), set())
        what, kind = f"table {change.table}", f"{change.action[:-1]}-used-table"
    else:
        queries = uses.get((change.table, change.column), set())
        what, kind = f"column {change.table}.{change.column}", f"{change.action[:-1]}-used-column"
    if not queries:
        return None
    names = ", ".join(sorted(queries))
    return Found(kind, f"{change.action} {what}, which queries still use: {names}")
