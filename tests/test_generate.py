"""`coderunner-sql generate`: an application's own folder of queries and migrations becomes a
typed module; the module runs on a real server, mypy checks calls against it, and `--check`
catches SQL that no longer gives the committed code."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import attrs
import psycopg
import pytest
from click.testing import CliRunner

from coderunner_sql import AsyncDatabaseService, DatabaseService, Transaction, query_methods
from coderunner_sql.check import run_check
from coderunner_sql.cli import main
from coderunner_sql.codegen import GenerateReport, generate
from coderunner_sql.config import DatabaseConfig
from coderunner_sql.errors import ConfigError, NotFoundError, ValidationError
from coderunner_sql.migrations import Migrator

MIGRATION = """\
-- A ticket tracker: authors and their tickets.
CREATE TYPE ticket_state AS ENUM ('open', 'closed');
CREATE TABLE authors (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    bio text
);
CREATE TABLE tickets (
    id bigserial PRIMARY KEY,
    author_id uuid REFERENCES authors (id),
    title text NOT NULL,
    state ticket_state NOT NULL DEFAULT 'open',
    price numeric(10, 2),
    tags text[] NOT NULL DEFAULT '{}',
    meta jsonb,
    opened_at timestamptz NOT NULL DEFAULT now()
);
"""

RECORDS = '''\
"""The application's records."""

from __future__ import annotations

import enum
from datetime import date
from decimal import Decimal
from uuid import UUID

import attrs


class TicketState(enum.StrEnum):
    """Where a ticket is."""

    OPEN = "open"
    CLOSED = "closed"


@attrs.frozen
class Author:
    """Someone who opens tickets."""

    id: UUID
    name: str
    bio: str | None


@attrs.frozen
class Priced:
    """A ticket's price and the day it was opened (types with no hook of the library's)."""

    id: int
    price: Decimal | None
    opened_on: date
'''

QUERIES = """\
-- Authors and tickets.

-- name: create_author(name, bio)<!
-- Add an author.
-- record: ticketapp.records:Author
-- nullable: bio
INSERT INTO authors (name, bio) VALUES (:name, :bio) RETURNING id, name, bio;

-- name: get_author(id)^
-- One author by id.
-- record: ticketapp.records:Author
SELECT id, name, bio FROM authors WHERE id = :id;

-- name: open_ticket(author_id, title, price, tags, meta)<!
-- Open a ticket.
-- nullable: price, meta
INSERT INTO tickets (author_id, title, price, tags, meta)
VALUES (:author_id, :title, :price, :tags, :meta)
RETURNING id, title, state, price, tags, meta, opened_at;

-- name: list_tickets_with_authors(state)
-- Tickets in a state, with their author's name when they have one.
SELECT t.id, t.title, a.name AS author_name
FROM tickets AS t
LEFT JOIN authors AS a ON a.id = t.author_id
WHERE t.state = :state
ORDER BY t.id;

-- name: count_tickets(state)$
-- How many tickets are in a state.
SELECT count(*) FROM tickets WHERE state = :state;

-- name: close_ticket(id)!
-- Close a ticket.
UPDATE tickets SET state = 'closed' WHERE id = :id;

-- name: retitle_tickets*!
-- Retitle many tickets at once.
UPDATE tickets SET title = :title WHERE id = :id;

-- name: ticket_prices(state)
-- Tickets in a state with their price and the day they were opened.
-- record: ticketapp.records:Priced
SELECT id, price, opened_at::date AS opened_on FROM tickets WHERE state = :state ORDER BY id;

-- name: next_ticket_id()$
-- A SELECT that writes: it advances the sequence.
SELECT nextval('tickets_id_seq');

-- name: lock_ticket(id)^
-- A SELECT that locks its row.
SELECT id, title FROM tickets WHERE id = :id FOR UPDATE;
"""

GOOD_USAGE = """\
from decimal import Decimal
from uuid import UUID

import psycopg

from coderunner_sql import AsyncDatabaseService, DatabaseService
from ticketapp import db
from ticketapp.records import Author, TicketState


def use(conn: psycopg.Connection[object], author_id: UUID) -> None:
    q = db.load()
    author: Author | None = q.get_author(conn, id=author_id)
    created: Author = q.create_author(conn, name="Ada", bio=None)
    ticket = q.open_ticket(
        conn, author_id=created.id, title="t", price=Decimal("1.5"), tags=["x"], meta={"a": [1]}
    )
    title: str = ticket.title
    rows = q.list_tickets_with_authors(conn, state=TicketState.OPEN)
    names: list[str | None] = [row.author_name for row in rows]
    count: int | None = q.count_tickets(conn, state=TicketState.CLOSED)
    changed: int = q.close_ticket(conn, id=ticket.id)
    q.retitle_tickets(conn, [{"id": ticket.id, "title": "u"}])
    print(author, title, names, count, changed)


async def use_async(conn: psycopg.AsyncConnection[object]) -> None:
    q = db.load_async()
    count: int | None = await q.count_tickets(conn, state=TicketState.OPEN)
    print(count)


def on_the_service(service: DatabaseService, author_id: UUID) -> None:
    q = db.load()
    author: Author | None = service.run(q.get_author, id=author_id)
    count: int | None = service.run(q.count_tickets, state=TicketState.OPEN)
    with service.transaction() as tx:
        created: Author = tx.run(q.create_author, name="Ada", bio=None)
    service.run(q.retitle_tickets, [{"id": 1, "title": "u"}])
    print(author, count, created)


async def on_the_async_service(service: AsyncDatabaseService) -> None:
    q = db.load_async()
    count: int | None = await service.run(q.count_tickets, state=TicketState.OPEN)
    print(count)
"""

# Each line must be an error: a wrong parameter name, a wrong parameter type, a wrong use
# of a result (a nullable row used as a row, a nullable column as text, a row as a list).
BAD_USAGE = """\
from uuid import UUID

import psycopg

from coderunner_sql import DatabaseService
from ticketapp import db
from ticketapp.records import TicketState


def use(conn: psycopg.Connection[object], author_id: UUID) -> None:
    q = db.load()
    q.get_author(conn, author_id=author_id)  # BAD: name
    q.count_tickets(conn, state="open")  # BAD: type
    q.get_author(conn, id=str(author_id))  # BAD: type
    print(q.get_author(conn, id=author_id).name)  # BAD: result
    rows = q.list_tickets_with_authors(conn, state=TicketState.OPEN)
    name: str = rows[0].author_name  # BAD: result
    q.count_tickets(conn, state=TicketState.OPEN).upper()  # BAD: result


def on_the_service(service: DatabaseService, author_id: UUID) -> None:
    q = db.load()
    service.run(q.get_author, author_id=author_id)  # BAD: name
    service.run(q.count_tickets, state="open")  # BAD: type
    service.run(q.get_author, id=author_id).name  # BAD: result
    service.run(db.load_async().count_tickets, state=TicketState.OPEN).bit_length()  # BAD: async
"""


class App:
    """An application folder: its package, migrations and queries, as a user has them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.package = root / "ticketapp"
        self.migrations = root / "migrations"
        self.queries = root / "queries"
        self.module = self.package / "db.py"
        for folder in (self.package, self.migrations, self.queries):
            folder.mkdir(parents=True)
        (self.package / "__init__.py").write_text('"""A ticket tracker."""\n')
        (root / "pyproject.toml").write_text('[project]\nname = "ticketapp"\nversion = "1"\n')
        (self.package / "records.py").write_text(RECORDS)
        (self.migrations / "20260101000000_schema.sql").write_text(MIGRATION)
        (self.queries / "tickets.sql").write_text(QUERIES)

    @property
    def sql(self) -> Path:
        return self.queries / "tickets.sql"

    def edit(self, old: str, new: str) -> None:
        text = self.sql.read_text()
        assert old in text
        self.sql.write_text(text.replace(old, new, 1))

    def generate(self, server: DatabaseConfig, *, check: bool = False) -> GenerateReport:
        return generate(
            server, queries=self.queries, migrations=self.migrations, out=self.module, check=check
        )

    def cli(self, server: DatabaseConfig, *args: str) -> Any:
        return CliRunner().invoke(
            main,
            [
                "generate",
                "--database",
                server.url(),
                "--queries",
                str(self.queries),
                "--migrations",
                str(self.migrations),
                "--out",
                str(self.module),
                *args,
            ],
        )


def _importable(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `root`'s `ticketapp` the one `import ticketapp` finds (until the patch ends)."""
    monkeypatch.syspath_prepend(str(root))
    for name in [n for n in sys.modules if n == "ticketapp" or n.startswith("ticketapp.")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> App:
    """A fresh application folder, importable, the working directory."""
    monkeypatch.chdir(tmp_path)
    _importable(tmp_path, monkeypatch)
    return App(tmp_path)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, pg_admin_config: DatabaseConfig) -> App:
    """One application generated once (several tests read its module)."""
    made = App(tmp_path_factory.mktemp("app"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        _importable(made.root, monkeypatch)
        monkeypatch.chdir(made.root)
        report = made.generate(pg_admin_config)
    assert report.ok, "\n".join(map(str, report.problems))
    return made


@pytest.fixture
def app_db(generated: App, empty_db_config: DatabaseConfig) -> DatabaseConfig:
    """A database with the application's migrations applied."""
    Migrator(empty_db_config, generated.migrations).apply()
    return empty_db_config


def _import(app: App, monkeypatch: pytest.MonkeyPatch) -> Any:
    _importable(app.root, monkeypatch)
    return importlib.import_module("ticketapp.db")


def test_generated_module_runs_every_kind_of_query(
    generated: App, app_db: DatabaseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _import(generated, monkeypatch)
    records = importlib.import_module("ticketapp.records")
    q = db.load()
    with psycopg.connect(app_db.url(), autocommit=True) as conn:
        ada = q.create_author(conn, name="Ada", bio=None)
        assert type(ada) is records.Author
        assert (ada.name, ada.bio) == ("Ada", None)
        assert q.get_author(conn, id=ada.id) == ada
        ticket = q.open_ticket(
            conn, author_id=ada.id, title="a", price=Decimal("2.50"), tags=["x"], meta={"k": [1]}
        )
        assert type(ticket).__name__ == "OpenTicketRow"
        assert (ticket.title, ticket.price, ticket.tags, ticket.meta) == (
            "a",
            Decimal("2.50"),
            ["x"],
            {"k": [1]},
        )
        assert ticket.state is records.TicketState.OPEN
        orphan = q.open_ticket(conn, author_id=None, title="b", price=None, tags=[], meta=None)
        rows = q.list_tickets_with_authors(conn, state=records.TicketState.OPEN)
        assert [(r.id, r.title, r.author_name) for r in rows] == [
            (ticket.id, "a", "Ada"),
            (orphan.id, "b", None),
        ]
        assert q.count_tickets(conn, state=records.TicketState.OPEN) == 2
        assert q.close_ticket(conn, id=ticket.id) == 1
        assert q.close_ticket(conn, id=-1) == 0
        changed = q.retitle_tickets(
            conn, [{"id": ticket.id, "title": "c"}, {"id": -1, "title": "d"}]
        )
        assert changed == 1
        assert q.count_tickets(conn, state=records.TicketState.CLOSED) == 1

    async def run_async() -> tuple[Any, Any, int | None]:
        aq = db.load_async()
        async with await psycopg.AsyncConnection.connect(app_db.url(), autocommit=True) as conn:
            got = await aq.get_author(conn, id=ada.id)
            listed = await aq.list_tickets_with_authors(conn, state=records.TicketState.CLOSED)
            return got, listed, await aq.count_tickets(conn, state=records.TicketState.OPEN)

    got, listed, count = asyncio.run(run_async())
    assert got == ada
    assert [(r.title, r.author_name) for r in listed] == [("c", "Ada")]
    assert count == 1


def test_generated_module_is_deterministic_and_names_its_sources(
    generated: App, pg_admin_config: DatabaseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _importable(generated.root, monkeypatch)
    text = generated.module.read_text()
    assert text.startswith(
        "# Generated by `coderunner-sql generate` from:\n#   ../queries/tickets.sql\n"
    )
    report = generated.generate(pg_admin_config)
    assert report.ok
    assert not report.written
    assert generated.module.read_text() == text
    assert generated.generate(pg_admin_config, check=True).ok


def test_generated_module_passes_ruff_and_mypy_strict_which_checks_calls(generated: App) -> None:
    (generated.root / "good.py").write_text(GOOD_USAGE)
    (generated.root / "bad.py").write_text(BAD_USAGE)
    ruff = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--select",
            "E,F,W,I,UP,B",
            str(generated.module),
        ],
        capture_output=True,
        text=True,
        cwd=generated.root,
        check=False,
    )
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            "/dev/null",
            "ticketapp/db.py",
            "good.py",
            "bad.py",
        ],
        capture_output=True,
        text=True,
        cwd=generated.root,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if not e.startswith("bad.py:")], done.stdout
    bad_lines = [n for n, line in enumerate(BAD_USAGE.splitlines(), 1) if "# BAD" in line]
    flagged = {int(e.split(":")[1]) for e in errors}
    assert flagged == set(bad_lines), done.stdout
    assert any('Unexpected keyword argument "author_id"' in e for e in errors), done.stdout
    assert any('Argument "state" to "count_tickets"' in e for e in errors), done.stdout


def test_check_fails_after_a_type_or_suffix_change_and_passes_after_regenerating(
    app: App, pg_admin_config: DatabaseConfig
) -> None:
    assert app.generate(pg_admin_config).written
    assert app.cli(pg_admin_config, "--check").exit_code == 0

    app.edit("SELECT count(*) FROM tickets", "SELECT count(*)::text FROM tickets")
    app.edit("-- name: get_author(id)^", "-- name: get_author(id)")
    before = app.module.read_text()
    result = app.cli(pg_admin_config, "--check")
    assert result.exit_code == 1
    assert "count_tickets" in result.output
    assert "get_author" in result.output
    assert "create_author" not in result.output
    assert app.module.read_text() == before  # --check writes nothing

    assert app.cli(pg_admin_config).exit_code == 0
    assert "def count_tickets" in app.module.read_text()
    assert "-> str | None" in app.module.read_text()
    assert app.cli(pg_admin_config, "--check").exit_code == 0


def test_a_query_the_server_rejects_is_reported_at_its_file_and_line(
    app: App, pg_admin_config: DatabaseConfig
) -> None:
    app.edit("WHERE t.state = :state", "WHERE t.status = :state")
    line = next(
        n for n, text in enumerate(app.sql.read_text().splitlines(), 1) if "t.status" in text
    )
    result = app.cli(pg_admin_config)
    assert result.exit_code == 1
    assert (
        f"queries/tickets.sql:{line}: list_tickets_with_authors: the server rejects it: "
        "column t.status does not exist [sql-error]"
    ) in result.output
    assert not app.module.exists()


def test_a_record_that_does_not_fit_the_columns_is_reported(
    app: App, pg_admin_config: DatabaseConfig
) -> None:
    # An outer join makes name nullable, and Author.name is not Optional.
    app.edit(
        "SELECT id, name, bio FROM authors WHERE id = :id;",
        "SELECT t.author_id AS id, a.name, a.bio FROM tickets AS t\n"
        "LEFT JOIN authors AS a ON a.id = t.author_id WHERE t.id = :id;",
    )
    report = app.generate(pg_admin_config)
    messages = [str(p) for p in report.problems]
    assert any(
        "get_author: result column name can be NULL (authors.name is on the NULL side of an "
        "outer join) but Author.name is not Optional" in m
        for m in messages
    ), messages
    assert not report.written
    assert not app.module.exists()


def test_a_record_that_cannot_be_imported_is_reported_on_its_line(
    app: App, pg_admin_config: DatabaseConfig
) -> None:
    app.edit(
        "-- record: ticketapp.records:Author\nSELECT", "-- record: ticketapp.records:Writer\nSELECT"
    )
    line = next(n for n, text in enumerate(app.sql.read_text().splitlines(), 1) if "Writer" in text)
    report = app.generate(pg_admin_config)
    assert [str(p) for p in report.problems] == [
        f"queries/tickets.sql:{line}: get_author: record ticketapp.records:Writer: "
        "ticketapp.records has no Writer [record]"
    ]


def test_a_module_older_than_its_sql_refuses_to_load(
    app: App, pg_admin_config: DatabaseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert app.generate(pg_admin_config).ok
    app.edit("-- name: count_tickets(state)$", "-- name: count_tickets(state)^")
    db = _import(app, monkeypatch)
    with pytest.raises(ConfigError, match=r"count_tickets ends in `\^`.*generate"):
        db.load()


def test_plans_mark_only_plain_selects_as_reads(
    generated: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    plans = {plan.name: plan for plan in _import(generated, monkeypatch).PLANS}
    reads = {name for name, plan in plans.items() if plan.read}
    # nextval() writes (the sequence moves); FOR UPDATE takes locks; the rest change rows.
    assert reads == {"get_author", "list_tickets_with_authors", "count_tickets", "ticket_prices"}


def test_the_service_runs_an_applications_queries(
    generated: App, app_db: DatabaseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _import(generated, monkeypatch)
    records = importlib.import_module("ticketapp.records")
    q = db.load()
    with DatabaseService(app_db) as service:
        ada = service.run(q.create_author, name="Ada", bio="b")
        assert type(ada) is records.Author
        assert service.run(q.get_author, id=ada.id) == ada
        ticket = service.run(
            q.open_ticket,
            author_id=ada.id,
            title="t",
            price=Decimal("9.99"),
            tags=[],
            meta={"a": 1},
        )
        assert service.run(q.count_tickets, state=records.TicketState.OPEN) == 1
        # A record of the app's with types the library has no hook of its own for
        # (regression: numeric into Decimal raised cattrs' StructureHandlerNotFoundError).
        priced = service.run(q.ticket_prices, state=records.TicketState.OPEN)
        assert priced == [records.Priced(ticket.id, Decimal("9.99"), priced[0].opened_on)]
        assert type(priced[0].opened_on) is date
        assert service.run(q.retitle_tickets, [{"id": ticket.id, "title": "u"}]) == 1
        # The service's error tree: a foreign key names what is missing, a unique value
        # what exists; nothing of a failed call is written.
        with pytest.raises(NotFoundError):
            service.run(q.open_ticket, author_id=uuid4(), title="x", price=None, tags=[], meta=None)
        with pytest.raises(ValidationError, match="not a query method"):
            service.run(lambda conn: None)  # type: ignore[arg-type, misc]

        # In a transaction: rolled back with it.
        def undone(tx: Transaction) -> None:
            tx.run(q.create_author, name="Bea", bio=None)
            assert tx.run(q.close_ticket, id=ticket.id) == 1
            raise RuntimeError("undo")

        with pytest.raises(RuntimeError):
            service.execute_in_transaction(undone)
        assert service.run(q.count_tickets, state=records.TicketState.CLOSED) == 0
        with service.transaction() as tx:
            assert tx.run(q.close_ticket, id=ticket.id) == 1
        assert service.run(q.count_tickets, state=records.TicketState.CLOSED) == 1
        rows = service.run(q.list_tickets_with_authors, state=records.TicketState.CLOSED)
        assert [(r.title, r.author_name) for r in rows] == [("u", "Ada")]

    async def run_async() -> tuple[Any, int | None]:
        aq = db.load_async()
        async with AsyncDatabaseService(app_db) as service:
            got = await service.run(aq.get_author, id=ada.id)
            async with service.transaction() as tx:
                await tx.run(aq.create_author, name="Cy", bio=None)
            return got, await service.run(aq.count_tickets, state=records.TicketState.CLOSED)

    got, closed = asyncio.run(run_async())
    assert (got, closed) == (ada, 1)


def test_a_run_query_is_timed_and_logged_like_the_services_own(
    generated: App,
    app_db: DatabaseConfig,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = _import(generated, monkeypatch)
    q = db.load()
    config = attrs.evolve(app_db, slow_query_ms=0.001)
    with DatabaseService(config) as service, caplog.at_level(logging.WARNING):
        service.run(q.count_tickets, state="open")  # type: ignore[arg-type]
    slow = [r for r in caplog.records if getattr(r, "query_name", None) == "count_tickets"]
    assert slow
    assert slow[0].outcome == "ok"  # type: ignore[attr-defined]


def test_for_user_runs_the_packages_own_generated_queries_in_the_users_scope(
    sync_db: DatabaseService,
) -> None:
    q = query_methods.load()
    users = [sync_db.create_user(email=f"run{i}@example.com", password_hash="h") for i in range(3)]
    sync_db.create_project(user_id=users[0].id, name="p")
    assert sync_db.run(q.count_users_in_scope) == 3
    scoped = sync_db.for_user(users[0].id)
    assert scoped.run(q.count_users_in_scope) == 1
    assert scoped.run(q.get_user_by_id, id=users[1].id) is None
    assert scoped.run(q.get_user_by_id, id=users[0].id) == users[0]


def test_the_command_finds_the_apps_enums_from_its_root_without_pythonpath(
    app: App, pg_admin_config: DatabaseConfig
) -> None:
    # The console script's sys.path lacks the working directory: records and their enums
    # are found there all the same (regression: enum parameters came out as `str`).
    script = Path(sys.executable).with_name("coderunner-sql")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [
            str(script),
            "generate",
            "--database",
            pg_admin_config.url(),
            "--queries",
            "queries",
            "--migrations",
            "migrations",
            "--out",
            "ticketapp/db.py",
        ],
        capture_output=True,
        text=True,
        cwd=app.root,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = app.module.read_text()
    assert "from ticketapp.records import Author, Priced, TicketState" in text
    assert "state: TicketState" in text


def test_check_runs_on_an_applications_folder_and_finds_its_unused_queries(
    app: App, pg_admin_config: DatabaseConfig
) -> None:
    # Regression: `check --queries <app>` looked for the package's catalog.sql in the app's
    # folder, and would have read the package's code for uses of the app's queries.
    assert app.generate(pg_admin_config).ok
    (app.package / "service.py").write_text(
        '"""Uses some of the queries."""\n\n'
        "from ticketapp import db\n\n"
        "q = db.load()\n"
        "USED = (q.create_author, q.get_author, q.open_ticket, q.count_tickets)\n"
        'NAMED = ("close_ticket", "retitle_tickets", "list_tickets_with_authors")\n'
    )
    report = run_check(
        pg_admin_config, queries=app.queries, migrations=app.migrations, module=app.module
    )
    unused = sorted(p.subject for p in report.problems if p.kind == "unused-query")
    assert unused == ["lock_ticket", "next_ticket_id", "ticket_prices"]
    # The app's migration has no rollback file: linted as new, which is not this test's.
    assert [p for p in report.problems if p.kind not in ("unused-query", "missing-rollback")] == []
    assert report.module is not None
