"""docs/applications.md's worked example runs: its files are written out, the module is
generated from them, the calls run on a real database, mypy --strict accepts the
application and rejects each marked line of its mistakes, and its pytest tests pass under
the plugin.

A fenced block with `title="path"` (no space in the title) is a file of the example; a
title with a space (`… (excerpt)`) is a part of a generated file, checked line by line.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

from coderunner_sql import AsyncDatabaseService, DatabaseService, ValidationError
from coderunner_sql.codegen import generate
from coderunner_sql.config import DatabaseConfig
from coderunner_sql.migrations import Migrator
from coderunner_sql.testing.databases import combined_migrations

PAGE = Path(__file__).resolve().parent.parent / "docs" / "applications.md"
BLOCK = re.compile(r'^```\w+ title="(?P<title>[^"]+)"\n(?P<body>.*?)^```$', re.S | re.M)
PACKAGE = "ticketapp"
MODULE = "ticketapp/queries.py"


@attrs.frozen
class Example:
    """The page's example, written out and generated in `root`."""

    root: Path
    files: dict[str, str]
    excerpts: dict[str, str]

    def module(self, name: str) -> ModuleType:
        """`ticketapp.<name>`, imported from `root`."""
        return importlib.import_module(f"{PACKAGE}.{name}")


def page_blocks() -> tuple[dict[str, str], dict[str, str]]:
    """The page's files (path -> text) and its excerpts (title -> text)."""
    files: dict[str, str] = {}
    excerpts: dict[str, str] = {}
    for found in BLOCK.finditer(PAGE.read_text()):
        title, body = found["title"], found["body"]
        target = excerpts if " " in title else files
        assert title not in target, f"applications.md: two blocks titled {title}"
        target[title] = body
    return files, excerpts


def _forget_package() -> None:
    # tests/test_generate.py builds a `ticketapp` too: each must import its own.
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def example(
    tmp_path_factory: pytest.TempPathFactory, pg_admin_config: DatabaseConfig
) -> Iterator[Example]:
    """The example's folder with its module generated, importable while the tests run."""
    root = tmp_path_factory.mktemp("docs-app")
    files, excerpts = page_blocks()
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    with pytest.MonkeyPatch.context() as patch:
        _forget_package()
        patch.syspath_prepend(str(root))
        patch.chdir(root)  # as the page runs `generate`: from the application's root
        report = generate(
            pg_admin_config,
            queries=root / "queries",
            migrations=root / "migrations",
            out=root / MODULE,
        )
        assert report.ok, "\n".join(map(str, report.problems))
        yield Example(root, files, excerpts)
        _forget_package()


@pytest.fixture
def app_config(example: Example, empty_db_config: DatabaseConfig, tmp_path: Path) -> DatabaseConfig:
    """A database with the package's migrations and then the application's, as deployed."""
    Migrator(empty_db_config, combined_migrations([example.root / "migrations"], tmp_path)).apply()
    return empty_db_config


def test_the_page_holds_the_whole_application() -> None:
    files, excerpts = page_blocks()
    assert {
        "pyproject.toml",
        "migrations/20260301090000_tickets.sql",
        "migrations/20260301090000_tickets.rollback.sql",
        "queries/tickets.sql",
        "ticketapp/__init__.py",
        "ticketapp/records.py",
        "ticketapp/tickets.py",
        "ticketapp/tickets_async.py",
        "mistakes.py",
        "tests/test_tickets.py",
    } == set(files)
    assert MODULE not in files  # generated, never written by hand
    assert set(excerpts) == {f"{MODULE} (excerpt)"}
    sql = files["queries/tickets.sql"]
    assert "-- record: ticketapp.records:Ticket" in sql
    assert "-- nullable: assignee" in sql


def test_the_excerpt_is_what_generate_writes(example: Example) -> None:
    written = set((example.root / MODULE).read_text().splitlines())
    excerpt = example.excerpts[f"{MODULE} (excerpt)"]
    # A line with "…" is the page's own elision.
    missing = [
        line
        for line in excerpt.splitlines()
        if line.strip() and "…" not in line
        if line not in written
    ]
    assert not missing, f"lines of the excerpt the generator does not write: {missing}"


def test_the_committed_module_passes_generate_check(
    example: Example, pg_admin_config: DatabaseConfig
) -> None:
    report = generate(
        pg_admin_config,
        queries=example.root / "queries",
        migrations=example.root / "migrations",
        out=example.root / MODULE,
        check=True,
    )
    assert report.ok, report.summary()
    assert not report.written


def test_the_sync_calls_run_on_the_service(example: Example, app_config: DatabaseConfig) -> None:
    tickets = example.module("tickets")
    records = example.module("records")
    with DatabaseService(app_config) as db:
        build = tickets.report(db, "The build hangs", assignee="ada")
        logs = tickets.report(db, "Logs are empty")
        slow = tickets.report(db, "Deploy is slow", assignee="ada")
        assert type(build) is records.Ticket
        assert (build.title, build.state, build.assignee) == (
            "The build hangs",
            records.TicketState.OPEN,
            "ada",
        )
        assert logs.assignee is None
        assert build.opened_at.tzinfo is not None
        assert tickets.find(db, build.id) == build
        assert tickets.find(db, -1) is None
        assert tickets.open_count(db) == 3
        assert tickets.workload(db) == {"ada": 2, None: 1}
        assert type(db.run(tickets.q.workload, state=records.TicketState.OPEN)[0]).__name__ == (
            "WorkloadRow"
        )

        # One ticket that is not open: the transaction closes none of them.
        with pytest.raises(LookupError, match="ticket -1 is not open"):
            tickets.close_all(db, [build.id, logs.id, -1])
        assert tickets.open_count(db) == 3
        tickets.close_all(db, [build.id, logs.id])
        assert tickets.open_count(db) == 1
        assert tickets.workload(db) == {"ada": 1}
        assert tickets.find(db, build.id).state is records.TicketState.CLOSED

        # The service's error tree: the table's CHECK is a ValidationError.
        with pytest.raises(ValidationError, match="open_ticket"):
            tickets.report(db, "")
        # Only generated methods run.
        with pytest.raises(ValidationError, match="not a query method"):
            db.run(lambda conn: 1)
        del slow


def test_the_async_calls_run_on_the_async_service(
    example: Example, app_config: DatabaseConfig
) -> None:
    tickets = example.module("tickets_async")
    records = example.module("records")

    async def main() -> tuple[Any, int, int, int]:
        async with AsyncDatabaseService(app_config) as db:
            first = await tickets.report(db, "Logs are empty", assignee="grace")
            second = await tickets.report(db, "Deploy is slow")
            before = await tickets.open_count(db)
            with pytest.raises(LookupError):
                await tickets.close_all(db, [first.id, second.id, -1])
            kept = await tickets.open_count(db)
            await tickets.close_all(db, [first.id, second.id])
            return first, before, kept, await tickets.open_count(db)

    first, before, kept, after = asyncio.run(main())
    assert type(first) is records.Ticket
    assert (first.title, first.assignee, first.state) == (
        "Logs are empty",
        "grace",
        records.TicketState.OPEN,
    )
    assert (before, kept, after) == (2, 2, 0)


def test_mypy_strict_accepts_the_application_and_rejects_each_mistake(example: Example) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            os.devnull,
            PACKAGE,
            "mistakes.py",
            "tests/test_tickets.py",
        ],
        capture_output=True,
        text=True,
        cwd=example.root,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if not e.startswith("mistakes.py:")], done.stdout
    marked = [
        number
        for number, line in enumerate(example.files["mistakes.py"].splitlines(), 1)
        if "# error:" in line
    ]
    assert len(marked) == 6
    assert {int(e.split(":")[1]) for e in errors} == set(marked), done.stdout
    assert any('Unexpected keyword argument "ticket_id"' in e for e in errors), done.stdout
    assert any('Missing named argument "assignee"' in e for e in errors), done.stdout


def test_the_pages_tests_pass_under_the_plugin(
    example: Example, pg_admin_config: DatabaseConfig, tmp_path: Path
) -> None:
    # The plugin makes its template on this session's server, with the page's pyproject.toml
    # naming the application's migrations. A temporary folder of its own: with pytest's shared
    # default, the inner run's clean-up removed this session's (the embedded server's data).
    env = {**os.environ, "TEST_DATABASE_URL": pg_admin_config.url(), "PYTHONPATH": "."}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "basetemp"),
            "tests/test_tickets.py",
        ],
        capture_output=True,
        text=True,
        cwd=example.root,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 passed" in done.stdout, done.stdout
