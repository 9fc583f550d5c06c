"""The original DatabaseService walkthrough, re-created for `coderunner-sql demo`.

Each demo is a plain function of a `DatabaseConfig` and a rich `Console`, so it can run from
the CLI, a notebook or a test. The demos migrate the database when it needs it, use unique
names per run (a database can be demoed again and again) and never print a secret: records
are shown through `to_dict`, which leaves out password hashes and connection info.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.converter import to_dict
from coderunner_sql.embedded import free_port
from coderunner_sql.errors import (
    AlreadyExistsError,
    ConflictError,
    DatabaseError,
    DatabaseUnavailableError,
    MigrationIntegrityError,
    NotFoundError,
    PoolExhaustedError,
    SchemaNotReadyError,
    ValidationError,
)
from coderunner_sql.migrations import Migrator, RunReport, create_migration
from coderunner_sql.records import (
    Deployment,
    DeploymentStatus,
    NewDeployment,
    PlanType,
    Project,
    User,
)
from coderunner_sql.service import DatabaseService, Transaction
from coderunner_sql.service_async import AsyncDatabaseService
from coderunner_sql.tables import run_lines, stamp, stats_table, status_tables, table

__all__ = ["run_demo", "run_error_demo", "run_migrations_demo"]

# A stand-in for a bcrypt hash: the demo stores it but never prints it.
_FAKE_HASH = "$2b$10$" + "N9qo8uLOickgx2ZMRZoMye" + "IjZAgcfl7p92ldGxad68LJZdL17lhWy"


def _run_id() -> str:
    """A short token unique to this run, so a database can be demoed repeatedly."""
    return uuid.uuid4().hex[:8]


def _short(value: object) -> str:
    """A UUID's first block: enough to tell the demo's rows apart on screen."""
    return str(value).split("-", 1)[0]


def _section(console: Console, title: str) -> None:
    console.print()
    console.rule(f"[bold]{title}")


def _record_panel(title: str, record: Any) -> Panel:
    """A record's fields (secrets left out by `to_dict`) as one panel, nested records indented."""
    lines: list[str] = []

    def walk(data: Mapping[str, Any], indent: str) -> None:
        for key, value in data.items():
            if isinstance(value, Mapping):
                lines.append(f"{indent}[bold]{key}[/]")
                walk(value, indent + "  ")
            else:
                lines.append(f"{indent}{key}: {value}")

    walk(to_dict(record), "")
    return Panel("\n".join(lines), title=title, title_align="left", expand=False)


def _ensure_schema(config: DatabaseConfig, console: Console) -> RunReport:
    """`coderunner-sql migrate`, with its output."""
    report = Migrator(config).apply(progress=lambda mid: console.print(f"applied {mid}"))
    for line in run_lines(report):
        console.print(line, markup=False)
    return report


# -- the full demo -------------------------------------------------------------------------


def run_demo(config: DatabaseConfig, console: Console) -> None:
    """Walk through the whole data API: users, projects, deployments, transactions, monitoring."""
    run = _run_id()
    _section(console, "1. Schema")
    _ensure_schema(config, console)

    with DatabaseService(config) as db:
        db.initialize()
        console.print(
            f"connected to {config.describe()}; initialize() found the schema ready", markup=False
        )
        user, project, deployments = _demo_crud(db, console, run)
        _demo_listings(db, console, user, project)
        _demo_transactions(db, console, run)
        _demo_monitoring(db, console)
    _section(console, "9. The same API, async")
    asyncio.run(_demo_async(config, console, user.email, project.id))
    console.print()
    console.print(
        f"[bold green]demo finished[/]: user {user.email} with project {project.name!r} and "
        f"{len(deployments)} deployments stay in the database (`coderunner-sql db stats`)."
    )


def _demo_crud(
    db: DatabaseService, console: Console, run: str
) -> tuple[User, Project, list[Deployment]]:
    _section(console, "2. Users")
    email = f"demo+{run}@coderunner.dev"
    user = db.create_user(email=email, password_hash=_FAKE_HASH, plan_type=PlanType.PERSONAL)
    console.print(f"create_user: {user.email} on the {user.plan_type.value} plan")
    user = db.update_user(user.id, plan_type=PlanType.TEAM)
    console.print(f"update_user: plan is now {user.plan_type.value}")
    found = db.get_user_by_email(email.upper())
    console.print(f"get_user_by_email({email.upper()!r}) finds the same user: {found == user}")
    console.print(_record_panel("User (to_dict leaves out password_hash)", user))

    _section(console, "3. Projects")
    project = db.create_project(
        user_id=user.id, name="My Web App", description="A cool web application"
    )
    console.print(f"create_project: {project.name!r} ({_short(project.id)})")
    project = db.update_project(project.id, description="Updated description")
    console.print(f"update_project: description is now {project.description!r}")
    with_user = db.get_project_with_user(project.id)
    if with_user is not None:
        console.print(
            f"get_project_with_user: {with_user.project.name!r} is owned by {with_user.user.email}"
        )

    _section(console, "4. Deployments")
    first = db.create_deployment(
        project_id=project.id,
        app_sandbox_id=f"sandbox_{run}",
        public_url=f"https://myapp-{run}.coderunner.dev",
        db_sandbox_id=f"db_{run}",
        db_connection_info={"host": "10.0.0.5", "user": "app", "password": "never-printed"},
        runtime_type="nodejs",
        status=DeploymentStatus.PENDING,
    )
    console.print(f"create_deployment: {_short(first.id)} ({first.runtime_type}, PENDING)")
    stored = (
        "encrypted (CODERUNNER_SQL_ENCRYPTION_KEY is set)"
        if db.config.encryption_key
        else "as plain jsonb (set CODERUNNER_SQL_ENCRYPTION_KEY to encrypt it)"
    )
    console.print(f"  its db_connection_info is stored {stored} and never printed")
    batch = db.create_deployments(
        NewDeployment(
            project_id=project.id,
            runtime_type=runtime,
            app_sandbox_id=f"sandbox_{run}_{n}",
            public_url=f"https://preview-{n}-{run}.coderunner.dev",
        )
        for n, runtime in enumerate(("python", "nodejs", "go"), 1)
    )
    console.print(f"create_deployments: {len(batch)} created in one statement (all or none)")

    transitions = [
        (first, DeploymentStatus.RUNNING, DeploymentStatus.PENDING),
        (batch[0], DeploymentStatus.RUNNING, DeploymentStatus.PENDING),
        (batch[1], DeploymentStatus.FAILED, DeploymentStatus.PENDING),
        (first, DeploymentStatus.STOPPED, DeploymentStatus.RUNNING),
        (first, DeploymentStatus.RUNNING, DeploymentStatus.STOPPED),
    ]
    rows = []
    for deployment, status, expected in transitions:
        changed = db.update_deployment_status(deployment.id, status, expected=expected)
        rows.append((_short(changed.id), expected.value, changed.status.value))
    console.print(
        table(
            ("deployment", "from", "to"),
            rows,
            "update_deployment_status(id, status, expected=…): applied only from `expected`",
        )
    )
    db.update_deployment(batch[2].id, public_url=None)
    console.print(f"update_deployment: cleared the public URL of {_short(batch[2].id)}")

    details = db.get_deployment_with_details(first.id)
    if details is not None:
        console.print(
            _record_panel("get_deployment_with_details (no db_connection_info, no hash)", details)
        )
    return user, project, [first, *batch]


def _demo_listings(db: DatabaseService, console: Console, user: User, project: Project) -> None:
    _section(console, "5. Listings with totals")
    users = db.get_users(limit=5)
    console.print(
        table(
            ("id", "email", "plan", "created"),
            ((_short(u.id), u.email, u.plan_type.value, stamp(u.created_at)) for u in users.items),
            f"get_users(limit=5) — {len(users.items)} of {users.total} "
            f"(limit {users.limit}, offset {users.offset})",
        )
    )
    projects = db.get_projects_by_user_id(user.id)
    console.print(
        table(
            ("id", "name", "description", "created"),
            (
                (_short(p.id), p.name, p.description or "-", stamp(p.created_at))
                for p in projects.items
            ),
            f"get_projects_by_user_id — {projects.total} project(s)",
        )
    )
    pages = [db.get_deployments_by_project_id(project.id, limit=2, offset=o) for o in (0, 2)]
    console.print(
        table(
            ("id", "status", "runtime", "sandbox", "public url"),
            (
                (
                    _short(d.id),
                    d.status.value,
                    d.runtime_type,
                    d.app_sandbox_id or "-",
                    d.public_url or "-",
                )
                for page in pages
                for d in page.items
            ),
            f"get_deployments_by_project_id, two pages of 2 — total {pages[0].total}",
        )
    )
    by_status = {s: db.get_deployments_by_status(s, limit=3) for s in DeploymentStatus}
    console.print(
        table(
            ("status", "total", "on the first page (limit 3)"),
            ((s.value, page.total, len(page.items)) for s, page in by_status.items()),
            "get_deployments_by_status",
        )
    )
    running = db.get_running_deployment_count_by_user(user.id)
    console.print(f"get_running_deployment_count_by_user: {running} running for {user.email}")
    rows = db.query(
        "select count(*) as n from users where plan_type = %(plan)s", {"plan": PlanType.TEAM.value}
    )
    console.print(f"query() with bound parameters: {rows[0]['n']} user(s) on the team plan")


def _demo_transactions(db: DatabaseService, console: Console, run: str) -> None:
    _section(console, "6. Transactions")

    def signup(tx: Transaction) -> tuple[User, Project]:
        new_user = tx.create_user(email=f"tx+{run}@coderunner.dev", password_hash=_FAKE_HASH)
        return new_user, tx.create_project(user_id=new_user.id, name="Created in a transaction")

    tx_user, tx_project = db.execute_in_transaction(signup)
    console.print(
        f"execute_in_transaction: {tx_user.email} and {tx_project.name!r} committed together"
    )

    tx = db.begin_transaction()
    try:
        manual = tx.create_user(email=f"manual+{run}@coderunner.dev", password_hash=_FAKE_HASH)
        tx.update_user(manual.id, plan_type=PlanType.PERSONAL)
        db.commit_transaction(tx)
    except BaseException:
        db.rollback_transaction(tx)
        raise
    console.print(f"begin_transaction … commit_transaction: {manual.email} committed")

    doomed_email = f"rolled-back+{run}@coderunner.dev"
    tx = db.begin_transaction()
    doomed = tx.create_user(email=doomed_email, password_hash=_FAKE_HASH)
    tx.create_project(user_id=doomed.id, name="Never saved")
    db.rollback_transaction(tx)
    left = db.get_user_by_email(doomed_email)
    console.print(
        f"begin_transaction … rollback_transaction: {doomed_email} after rollback: "
        f"{'still there (unexpected!)' if left else 'gone, with its project'}"
    )

    # Tidy the users this section made; deleting a user cascades to projects and deployments.
    db.delete_user(tx_user.id)
    db.delete_user(manual.id)
    console.print("delete_user: removed the two transaction users (their project went with them)")


def _demo_monitoring(db: DatabaseService, console: Console) -> None:
    _section(console, "7. System statistics")
    console.print(stats_table(db.get_system_stats(), "get_system_stats()"))

    _section(console, "8. Health and pool")
    health = db.health_check()
    details = health.details
    console.print(f"health_check: {health.status}")
    console.print(f"  version: {details.version}")
    console.print(f"  response time: {details.response_time_ms} ms")
    console.print(f"  timestamp: {details.timestamp.isoformat()}")
    pool = db.get_pool_info()
    console.print(
        f"get_pool_info: total {pool.total_count}, idle {pool.idle_count}, "
        f"waiting {pool.waiting_count}, in use {pool.connected_clients}"
    )


async def _demo_async(
    config: DatabaseConfig, console: Console, email: str, project_id: uuid.UUID
) -> None:
    async with AsyncDatabaseService(config) as adb:
        user, deployments, stats = await asyncio.gather(
            adb.get_user_by_email(email),
            adb.get_deployments_by_project_id(project_id),
            adb.get_system_stats(),
        )
        health = await adb.health_check()
    console.print("AsyncDatabaseService: three awaits run concurrently with asyncio.gather")
    console.print(f"  await get_user_by_email: {user.email if user else None}")
    console.print(f"  await get_deployments_by_project_id: {deployments.total} deployment(s)")
    console.print(f"  await get_system_stats: {stats.total_users} user(s) in total")
    console.print(f"  await health_check: {health.status}")


# -- errors -----------------------------------------------------------------------------


@contextmanager
def _expect(console: Console, kind: type[DatabaseError], case: str, meaning: str) -> Iterator[None]:
    """Run the block, which must raise `kind`; print what was raised and what it means."""
    console.print(f"\n[bold]{kind.__name__}[/] — {case}")
    try:
        yield
    except kind as exc:
        console.print(f"  raised: {exc}", markup=False)
        console.print(f"  means:  {meaning}", markup=False)
    except DatabaseError as exc:
        console.print(f"  [red]raised {type(exc).__name__} instead:[/] {escape(str(exc))}")
    else:
        console.print("  [red]nothing was raised[/]")


def run_error_demo(config: DatabaseConfig, console: Console) -> None:
    """Trigger each error kind on purpose and say what it means and how to handle it."""
    run = _run_id()
    _section(console, "Error handling: every failure is a typed DatabaseError")
    _ensure_schema(config, console)
    email = f"errors+{run}@coderunner.dev"
    with DatabaseService(config) as db:
        user = db.create_user(email=email, password_hash=_FAKE_HASH)
        try:
            _demo_data_errors(db, console, user)
        finally:
            db.delete_user(user.id)
    _demo_connection_errors(config, console)
    _demo_schema_errors(config, console)
    console.print(
        "\nEvery class above subclasses coderunner_sql.DatabaseError: "
        "`except DatabaseError` catches them all."
    )


_BAD_ARGUMENT = "the caller sent a bad argument; report it as a 400 — retrying will not help."


def _demo_data_errors(db: DatabaseService, console: Console, user: User) -> None:
    missing = uuid.uuid4()
    project = db.create_project(user_id=user.id, name="errors demo")
    deployment = db.create_deployment(project_id=project.id, runtime_type="python")
    # (the error, the case, what it means, the call that raises it)
    cases: list[tuple[type[DatabaseError], str, str, Callable[[], object]]] = [
        (
            AlreadyExistsError,
            "the same email again, in capitals",
            "a unique value is taken (emails ignore letter case); ask the user for another "
            "or fetch the existing row. Nothing was written.",
            lambda: db.create_user(email=user.email.upper(), password_hash=_FAKE_HASH),
        ),
        (
            NotFoundError,
            "update a user id that does not exist",
            "the row to change is not there (deleted, or a wrong id); treat it as a 404.",
            lambda: db.update_user(missing, plan_type=PlanType.TEAM),
        ),
        (
            NotFoundError,
            "a deployment for a project that does not exist",
            "a foreign key names a missing row; check the parent id before creating children.",
            lambda: db.create_deployment(project_id=missing, runtime_type="nodejs"),
        ),
        (
            ValidationError,
            "a malformed UUID",
            _BAD_ARGUMENT,
            lambda: db.get_user_by_id("not-a-uuid"),
        ),
        (
            ValidationError,
            "an unknown deployment status",
            _BAD_ARGUMENT,
            lambda: db.get_deployments_by_status("DELETED"),
        ),
        (
            ValidationError,
            "an email without an @",
            _BAD_ARGUMENT,
            lambda: db.create_user(email="not-an-email", password_hash=_FAKE_HASH),
        ),
        (ValidationError, "a page size of 0", _BAD_ARGUMENT, lambda: db.get_users(limit=0)),
        (
            ConflictError,
            "stop a deployment expected RUNNING while it is PENDING",
            "the row changed under you (or an expected state did not hold); re-read and decide "
            "again, or retry a serialization failure.",
            lambda: db.update_deployment_status(
                deployment.id, DeploymentStatus.STOPPED, expected=DeploymentStatus.RUNNING
            ),
        ),
    ]
    for kind, case, meaning, call in cases:
        with _expect(console, kind, case, meaning):
            call()


def _demo_connection_errors(config: DatabaseConfig, console: Console) -> None:
    closed = config.replace(
        host="127.0.0.1", port=free_port(), connection_timeout_ms=500, pool_min=0, pool_max=1
    )
    with _expect(
        console,
        DatabaseUnavailableError,
        f"connect to a port nothing listens on ({closed.host}:{closed.port})",
        "the server is down or unreachable; retry with backoff, check DATABASE_URL and the "
        "server. `outcome_unknown` tells whether a write may have committed.",
    ):
        DatabaseService(closed).connect()

    tiny = config.replace(pool_min=1, pool_max=1, acquire_timeout_ms=200)
    with DatabaseService(tiny) as db:
        holder = db.begin_transaction()
        try:
            with _expect(
                console,
                PoolExhaustedError,
                "a pool of 1 whose only connection a transaction holds (200 ms acquire timeout)",
                "every pooled connection stayed busy past DB_ACQUIRE_TIMEOUT; finish "
                "transactions promptly, raise DB_POOL_MAX, or shed load.",
            ):
                db.get_users(limit=1)
        finally:
            db.rollback_transaction(holder)


def _demo_schema_errors(config: DatabaseConfig, console: Console) -> None:
    with tempfile.TemporaryDirectory(prefix="coderunner-sql-demo-") as tmp:
        folder = Path(tmp) / "migrations"
        shutil.copytree(Migrator(config).directory, folder)
        create_migration("add user preferences table", folder)
        with _expect(
            console,
            SchemaNotReadyError,
            "initialize()'s check against a migrations folder with one migration not applied",
            "the database is behind the code; run `coderunner-sql migrate` before starting "
            "the app. `pending` lists the missing migrations.",
        ):
            Migrator(config, folder).ensure_ready()


# -- migrations -------------------------------------------------------------------------


def _print_status(console: Console, title: str, migrator: Migrator) -> None:
    """`coderunner-sql migrate status`, as the CLI prints it."""
    migrations, history = status_tables(migrator.full_status(), title)
    console.print(migrations)
    if history is not None:
        console.print("repairs:")
        console.print(history)


def run_migrations_demo(config: DatabaseConfig, console: Console) -> None:
    """Show `migrate`, `migrate status`, `migrate verify` and `migrate create` as a library does."""
    migrator = Migrator(config)
    _section(console, "Migrations: status")
    console.print(f"folder: {migrator.directory}")
    _print_status(console, "migrate status", migrator)

    _section(console, "Migrations: apply")
    if _ensure_schema(config, console).applied:
        _print_status(console, "migrate status, after", migrator)

    _section(console, "Migrations: verify")
    migrator.verify()
    console.print("verify: every applied migration matches its file (SHA-256 checksums)")

    _section(console, "Migrations: create (in a temporary copy of the folder)")
    with tempfile.TemporaryDirectory(prefix="coderunner-sql-demo-") as tmp:
        folder = Path(tmp) / "migrations"
        shutil.copytree(migrator.directory, folder)
        forward, backward = create_migration("add user preferences table", folder)
        console.print('migrate create "add user preferences table" writes:')
        console.print(f"  {forward.name}")
        console.print(f"  {backward.name}")
        console.print(
            Panel(
                forward.read_text().rstrip(), title=forward.name, title_align="left", expand=False
            )
        )
        copy = Migrator(config, folder)
        _print_status(console, "status with the new file: it is pending", copy)

        applied = [s.file for s in copy.status() if s.state == "applied" and s.file is not None]
        if applied:
            edited = applied[-1]
            edited.write_text(edited.read_text() + "\n-- an edit after the fact\n")
            try:
                copy.verify()
            except MigrationIntegrityError as exc:
                console.print("verify after editing an applied file in the copy:")
                console.print(f"  raised MigrationIntegrityError: {exc}", markup=False)
                console.print(
                    "  means: never edit an applied migration; write a new one instead.",
                    markup=False,
                )
    console.print(
        "\nOther commands: `coderunner-sql migrate rollback --count 1` runs the newest "
        "migration's .rollback.sql; `coderunner-sql db init` is the same as `migrate`."
    )
