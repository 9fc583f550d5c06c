"""`migrate --dry-run` / `migrate plan`: what the next `migrate` would run, running nothing.

The pending migrations in the order `migrate` applies them, then the repeatable ones it
would run again, each with its SQL, whether it runs in a transaction, and the findings the
migration lint of `coderunner-sql check` reports for it where it is about to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from coderunner_sql.errors import ConfigError

if TYPE_CHECKING:
    from coderunner_sql.migrations import Migrator, StatusReport

__all__ = ["Plan", "PlannedMigration", "make_plan"]


@attrs.frozen
class PlannedMigration:
    """One migration the next `migrate` would run."""

    id: str
    kind: Literal["versioned", "repeatable"]
    reason: str  # pending; or, for a repeatable: new, changed
    file: Path
    sql: str
    transactional: bool
    findings: tuple[str, ...] = ()  # the check's lint, one line each

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**attrs.asdict(self), "file": str(self.file), "findings": list(self.findings)}


@attrs.frozen
class Plan:
    """Every migration the next `migrate` would run, in order."""

    steps: tuple[PlannedMigration, ...]
    lint_skipped: str | None = None  # why the lint did not run, when it did not

    @property
    def pending(self) -> bool:
        """True when `migrate` has something to run."""
        return bool(self.steps)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the `--json` output)."""
        return {
            "pending": self.pending,
            "steps": [step.to_dict() for step in self.steps],
            "lint_skipped": self.lint_skipped,
        }


def _transactional(path: Path) -> bool:
    from yoyo.migrations import read_sql_migration

    directives, _comment, _statements = read_sql_migration(str(path))
    return str(directives.get("transactional", "true")).lower() != "false"


def make_plan(migrator: Migrator, status: StatusReport, *, lint: bool = True) -> Plan:
    """The plan of `migrator`'s next `apply`, given its current `status`."""
    migrator._raise_on_drift(list(status.migrations))  # `migrate` would refuse to run
    steps: list[PlannedMigration] = []
    for state in status.migrations:
        if state.state == "pending" and state.file is not None:
            steps.append(_step(state.id, "versioned", "pending", state.file))
    for repeatable in status.repeatables:
        if repeatable.state != "applied":
            reason = "new" if repeatable.state == "pending" else "changed"
            steps.append(_step(repeatable.name, "repeatable", reason, repeatable.file))
    versioned = [(s.id, s.file) for s in steps if s.kind == "versioned"]
    if not lint or not versioned:
        return Plan(tuple(steps), None if lint else "not asked for")
    try:
        from coderunner_sql.check import lint_migrations
    except ConfigError as exc:  # the [check] extra (pglast, squawk) is not installed
        return Plan(tuple(steps), str(exc))
    found: dict[str, list[str]] = {}
    for problem in lint_migrations(
        migrator.config, versioned, migrations_folder=migrator.directory
    ):
        line = f"line {problem.line}: {problem.message} [{problem.kind}]"
        found.setdefault(problem.subject, []).append(line)
    return Plan(tuple(attrs.evolve(s, findings=tuple(found.get(s.id, ()))) for s in steps))


def _step(
    migration_id: str, kind: Literal["versioned", "repeatable"], reason: str, path: Path
) -> PlannedMigration:
    return PlannedMigration(
        migration_id,
        kind,
        reason,
        path,
        path.read_text(encoding="utf-8"),
        _transactional(path),
    )
