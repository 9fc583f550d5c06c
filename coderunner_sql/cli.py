"""`coderunner-sql`: thin commands over the library. Each parses options, makes one library
call, and prints; an expected failure is one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NoReturn

import attrs
import click
import psycopg
from rich.console import Console
from rich.text import Text

from coderunner_sql.converter import to_dict
from coderunner_sql.errors import ConfigError, DatabaseError, translate
from coderunner_sql.migrations import (
    DEFAULT_LOCK_TIMEOUT,
    Migrator,
    create_migration,
    create_repeatable,
)
from coderunner_sql.tables import recorded_lines, run_lines, stats_table, status_tables
from coderunner_sql.target import Target, choose_target

__all__ = ["main"]


def _console(*, stderr: bool = False) -> Console:
    # Without markup: what they print (paths, ids, URLs, server and library messages) is the
    # user's text, and rich would read `[check]` or `db[/]` in it as styling. Off a terminal
    # (a pipe, a file, a deploy log) tables take the width their cells need: at a terminal's
    # default 80 columns rich would cut long migration ids with "…".
    width = None if Console(stderr=stderr).is_terminal else 10_000
    return Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False, width=width)


out = _console()
err = _console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one error line and exit."""
    err.print(Text.assemble(("error:", "bold red"), " ", message))
    raise SystemExit(code)


class _Group(click.Group):
    """A group whose commands turn library errors into one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            fail(str(exc), code=2)
        except DatabaseError as exc:
            fail(str(exc))
        except psycopg.Error as exc:
            # A driver error no library call translated (yoyo's own statements raise them):
            # still one line, and translate keeps only the primary message, never row data.
            command = " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand)))
            fail(str(translate(exc, operation=command)))


@attrs.define
class _State:
    database_url: str | None
    data_dir: Path | None
    allow_embedded: bool = False
    target: Target | None = None
    migrations_dir: Path | None = None

    def resolve(self, ctx: click.Context, *, app_data: bool) -> Target:
        if self.target is None:
            self.target = choose_target(
                self.database_url,
                data_dir=self.data_dir,
                say=err.print,
                app_data=app_data,
                allow_embedded=self.allow_embedded,
            )
            ctx.call_on_close(self.target.close)
            err.print(self.target.describe())
        return self.target


def _target(ctx: click.Context, *, app_data: bool = True) -> Target:
    """The server to use; `app_data=False` for commands that never touch the application's
    data (the demo), which may fall back to the embedded server without opting in."""
    return ctx.find_object(_State).resolve(ctx, app_data=app_data)  # type: ignore[union-attr]


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database",
    "database_url",
    metavar="URL",
    help="postgresql:// URL of the server to use (default: DATABASE_URL, DB_*, else embedded).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    # From the environment here too, so `embedded start|stop|status` use the same folder.
    envvar="CODERUNNER_SQL_DATA_DIR",
    help="Data folder of the embedded server (default: CODERUNNER_SQL_DATA_DIR, "
    "else .coderunner/pgdata).",
)
@click.option(
    "--embedded",
    "allow_embedded",
    is_flag=True,
    help="With no server configured, let migrate, db and secrets use the embedded server even "
    "under CI, off a terminal, or with a DB_* variable set (also: CODERUNNER_SQL_EMBEDDED=1).",
)
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@click.version_option(package_name="coderunner-sql")
@click.pass_context
def main(
    ctx: click.Context,
    database_url: str | None,
    data_dir: Path | None,
    allow_embedded: bool,
    verbose: int,
) -> None:
    """CodeRunner's PostgreSQL data layer: migrations, health, stats and demos."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    ctx.obj = _State(database_url, data_dir, allow_embedded)


# -- migrate -----------------------------------------------------------------------------

_migrations_option = click.option(
    "--migrations",
    "migrations_dir",
    type=click.Path(path_type=Path),
    help="Migrations folder (default: CODERUNNER_SQL_MIGRATIONS, else the bundled one).",
)


def _say(lines: list[str]) -> None:
    for line in lines:
        out.print(line)


def apply_migrations(ctx: click.Context, migrations_dir: Path | None, lock_timeout: float) -> None:
    """Apply pending migrations, one line each (shared by `migrate` and `db init`)."""
    migrator = Migrator(_target(ctx).config, migrations_dir, lock_timeout=lock_timeout)
    _say(run_lines(migrator.apply(progress=lambda mid: out.print(f"applied {mid}"))))


# `migrate --dry-run` / `migrate plan`: the exit status a pipeline gates on.
PENDING_EXIT = 3


def show_plan(ctx: click.Context, migrations_dir: Path | None, as_json: bool, lint: bool) -> None:
    """Print what `migrate` would run; exit 0 when nothing, 3 when something."""
    plan = Migrator(_target(ctx).config, migrations_dir).plan(lint=lint)
    if as_json:
        _json(plan.to_dict())
    elif not plan.pending:
        out.print("nothing to apply: the schema is up to date")
    else:
        for number, step in enumerate(plan.steps, 1):
            what = (
                "migration" if step.kind == "versioned" else f"repeatable migration, {step.reason}"
            )
            where = "in a transaction" if step.transactional else "NOT in a transaction"
            out.print(f"-- [{number}/{len(plan.steps)}] {step.id} ({what}; {where})")
            for finding in step.findings:
                out.print(f"-- lint: {finding}")
            out.print(step.sql.rstrip())
            out.print("")
        if plan.lint_skipped:
            out.print(f"-- lint not run: {plan.lint_skipped}")
        out.print(f"-- {len(plan.steps)} migration(s) would run; nothing was applied")
    if plan.pending:
        raise SystemExit(PENDING_EXIT)


@main.group(cls=_Group, invoke_without_command=True)
@_migrations_option
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_LOCK_TIMEOUT,
    show_default=True,
    help="Seconds to wait for another migration run to finish.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Apply nothing: print what would run (as `migrate plan`); exit 3 if anything would.",
)
@click.option("--json", "as_json", is_flag=True, help="With --dry-run, print JSON.")
@click.pass_context
def migrate(
    ctx: click.Context,
    migrations_dir: Path | None,
    lock_timeout: float,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Apply pending migrations, then changed repeatable ones (or run a subcommand)."""
    ctx.obj.migrations_dir = migrations_dir
    if ctx.invoked_subcommand is not None:
        if dry_run or as_json:
            fail("--dry-run and --json go with `migrate` alone; try `migrate plan`", code=2)
        return
    if dry_run:
        show_plan(ctx, migrations_dir, as_json, lint=True)
    elif as_json:
        fail("--json goes with --dry-run", code=2)
    else:
        apply_migrations(ctx, migrations_dir, lock_timeout)


def _migrations_dir(ctx: click.Context, given: Path | None) -> Path | None:
    return given if given is not None else ctx.find_object(_State).migrations_dir  # type: ignore[union-attr]


@migrate.command("status")
@_migrations_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def migrate_status(ctx: click.Context, migrations_dir: Path | None, as_json: bool) -> None:
    """Show every migration: applied at, and whether its file still matches."""
    status = Migrator(_target(ctx).config, _migrations_dir(ctx, migrations_dir)).full_status()
    repairs: dict[str, list[dict[str, Any]]] = {}
    for r in status.repairs:
        repairs.setdefault(r.id, []).append(
            {
                "repaired_at": r.repaired_at.isoformat(),
                "repaired_by": r.repaired_by,
                "operator": r.operator,
                "old_sha256": r.old_sha256,
                "new_sha256": r.new_sha256,
            }
        )
    if as_json:
        rows = [(s.id, "versioned", s.applied_at, s.state) for s in status.migrations] + [
            (r.name, "repeatable", r.applied_at, r.state) for r in status.repeatables
        ]
        _json(
            [
                {
                    "id": mid,
                    "kind": kind,
                    "applied_at": when.isoformat() if when else None,
                    "state": state,
                    "repairs": repairs.get(mid, []),
                }
                for mid, kind, when, state in rows
            ]
        )
        return
    migrations, history = status_tables(status)
    out.print(migrations)
    if history is not None:
        out.print("repairs:")
        out.print(history)


@migrate.command("create")
@click.argument("name")
@click.option("--description", help="Text for the file's Description header.")
@click.option(
    "--repeatable",
    is_flag=True,
    help="Write post-apply-NAME.sql, run again whenever its content changes (views, grants).",
)
@_migrations_option
@click.pass_context
def migrate_create(
    ctx: click.Context,
    name: str,
    description: str | None,
    repeatable: bool,
    migrations_dir: Path | None,
) -> None:
    """Write a new, empty migration and its rollback file (or a repeatable migration)."""
    if repeatable:
        path = create_repeatable(
            name, _migrations_dir(ctx, migrations_dir), description=description
        )
        out.print(f"created {path}")
        return
    forward, backward = create_migration(
        name, _migrations_dir(ctx, migrations_dir), description=description
    )
    out.print(f"created {forward}")
    out.print(f"created {backward}")


@migrate.command("verify")
@_migrations_option
@click.pass_context
def migrate_verify(ctx: click.Context, migrations_dir: Path | None) -> None:
    """Fail if an applied migration's file was edited or removed."""
    report = Migrator(_target(ctx).config, _migrations_dir(ctx, migrations_dir)).verify()
    _say(recorded_lines(report))
    out.print("every applied migration matches its file")


@migrate.command("plan")
@_migrations_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--no-lint", is_flag=True, help="Leave out the lint of `check` (faster).")
@click.pass_context
def migrate_plan(
    ctx: click.Context, migrations_dir: Path | None, as_json: bool, no_lint: bool
) -> None:
    """Print the migrations `migrate` would run, their SQL and lint; apply nothing.

    Exit 0 when nothing is pending, 3 when something is, 1 when `migrate` would refuse
    (an applied file was edited or removed).
    """
    show_plan(ctx, _migrations_dir(ctx, migrations_dir), as_json, lint=not no_lint)


@migrate.command("baseline")
@click.option("--to", "to", required=True, metavar="ID", help="The last migration to record.")
@click.option(
    "--scratch",
    type=click.Choice(["server", "embedded"]),
    default="server",
    show_default=True,
    help="Where to build the reference schema: the database's server (needs CREATEDB) "
    "or the embedded server.",
)
@_migrations_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def migrate_baseline(
    ctx: click.Context,
    to: str,
    scratch: Literal["server", "embedded"],
    migrations_dir: Path | None,
    as_json: bool,
) -> None:
    """Adopt a database whose schema is what the migrations up to ID build: record them
    as applied without running them. Refused, naming the first difference, otherwise."""
    migrator = Migrator(_target(ctx).config, _migrations_dir(ctx, migrations_dir))
    report = migrator.baseline(to, scratch=scratch, data_dir=ctx.obj.data_dir)
    if as_json:
        _json({"baselined": list(report.baselined)})
        return
    for migration_id in report.baselined:
        out.print(f"recorded {migration_id} as applied (not run)")
    if not report.baselined:
        out.print(f"nothing to record: every migration up to {to} is already applied")


@migrate.command("repair")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before re-recording.")
@_migrations_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (needs --yes).")
@click.pass_context
def migrate_repair(
    ctx: click.Context,
    ids: tuple[str, ...],
    yes: bool,
    migrations_dir: Path | None,
    as_json: bool,
) -> None:
    """Re-record the checksum of applied migrations edited on purpose (all, or the IDs).

    Shows each change and asks first; every repair is kept in a history that `migrate
    status` shows.
    """
    if as_json and not yes:
        fail("--json needs --yes (it cannot ask)", code=2)
    migrator = Migrator(_target(ctx).config, _migrations_dir(ctx, migrations_dir))
    changes = migrator.repair_plan(ids)
    if not changes:
        if as_json:
            _json({"repaired": []})
        else:
            out.print("nothing to repair: every applied migration matches its file")
        return
    if not as_json:
        for change in changes:
            out.print(
                f"{change.id}: recorded sha256 {change.old_sha256[:12]}… -> "
                f"{change.new_sha256[:12]}… ({change.file})"
            )
    if not yes:
        click.confirm(f"Re-record {len(changes)} checksum(s)?", abort=True, err=True)
    report = migrator.repair(ids, expected=changes)
    if as_json:
        _json({"repaired": [{**attrs.asdict(c), "file": str(c.file)} for c in report.repaired]})
        return
    out.print(f"repaired {len(report.repaired)} checksum(s); `migrate status` lists them")


@migrate.command("rollback")
@click.option(
    "--count", type=click.IntRange(min=1), default=1, show_default=True, help="How many to undo."
)
@_migrations_option
@click.pass_context
def migrate_rollback(ctx: click.Context, count: int, migrations_dir: Path | None) -> None:
    """Roll back the most recently applied migrations."""
    migrator = Migrator(_target(ctx).config, _migrations_dir(ctx, migrations_dir))
    report = migrator.rollback(count, progress=lambda mid: out.print(f"rolled back {mid}"))
    if not report.rolled_back:
        out.print("nothing to roll back")


# -- db ----------------------------------------------------------------------------------


@main.group(cls=_Group)
def db() -> None:
    """Database set-up, health and statistics."""


@db.command("init")
@_migrations_option
@click.pass_context
def db_init(ctx: click.Context, migrations_dir: Path | None) -> None:
    """Initialise the database (the same as `migrate`)."""
    apply_migrations(ctx, migrations_dir, DEFAULT_LOCK_TIMEOUT)


@db.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def db_health(ctx: click.Context, as_json: bool) -> None:
    """Check the server and the schema; exit 0 when healthy, 1 when not."""
    from coderunner_sql.health import database_health

    health = database_health(_target(ctx).config)
    if as_json:
        _json({"healthy": health.healthy, **to_dict(health)})
    else:
        details = health.report.details
        out.print(f"status: {'healthy' if health.healthy else 'unhealthy'}")
        if details.version:
            out.print(f"server: {details.version}")
            out.print(f"response time: {details.response_time_ms} ms")
        if details.error:
            out.print(f"error: {details.error}")
        schema = health.schema
        if schema is not None:
            if schema.error:
                out.print(f"schema: {schema.error}")
            else:
                out.print(
                    f"schema: {schema.applied} applied, {len(schema.pending)} pending, "
                    f"{len(schema.drifted)} changed since applied"
                )
    if not health.healthy:
        raise SystemExit(1)


@db.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def db_stats(ctx: click.Context, as_json: bool) -> None:
    """Print counts of users, projects and deployments by status."""
    from coderunner_sql.service import DatabaseService

    with DatabaseService(_target(ctx).config.replace(pool_min=1, pool_max=1)) as service:
        stats = service.get_system_stats()
    if as_json:
        _json(to_dict(stats))
        return
    out.print(stats_table(stats))


# -- demo --------------------------------------------------------------------------------


@main.command("demo")
@click.argument("kind", type=click.Choice(["demo", "error", "migrations"]), default="demo")
@click.pass_context
def demo(ctx: click.Context, kind: str) -> None:
    """Run the original DatabaseService demo (or its error or migration examples)."""
    from coderunner_sql import demo as demos

    runners: dict[str, Callable[..., None]] = {
        "demo": demos.run_demo,
        "error": demos.run_error_demo,
        "migrations": demos.run_migrations_demo,
    }
    # The demo styles its own text with rich markup; only it gets a console that reads it.
    runners[kind](_target(ctx, app_data=False).config, Console(highlight=False, soft_wrap=True))


# -- check -------------------------------------------------------------------------------


@main.command("check")
@click.option(
    "--database",
    "check_url",
    metavar="URL",
    help="A deployed database, only read: migrations it lacks are linted, and the scratch "
    "database is made on its server. DATABASE_URL and DB_* are not used.",
)
@click.option(
    "--scratch",
    type=click.Choice(["server", "embedded"]),
    help="Where to make the scratch database (default: --database's server if given, "
    "else the embedded server).",
)
@click.option("--since", metavar="REF", help="Also lint migrations git added since REF.")
@click.option(
    "--queries",
    "queries_dir",
    type=click.Path(path_type=Path),
    help="Queries folder (default: CODERUNNER_SQL_QUERIES, else the bundled one).",
)
@_migrations_option
@click.option(
    "--module",
    "module_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The generated module to check as `generate --check` does (default: the package's "
    "coderunner_sql/query_methods.py for its own queries, else queries.py beside the queries "
    "folder; skipped when that default does not exist).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def check(
    ctx: click.Context,
    check_url: str | None,
    scratch: Literal["server", "embedded"] | None,
    since: str | None,
    queries_dir: Path | None,
    migrations_dir: Path | None,
    module_path: Path | None,
    as_json: bool,
) -> None:
    """Check the queries against the schema and their records, and the generated module.

    Migrates a scratch database from empty (created for the run and dropped after; never a
    database that holds data), prepares every query of queries/ there, and compares its
    result columns, types and NULLs with the record its `-- record:` line names. A query no
    code in the package names is reported unused. Migrations not applied to --database, and
    migration files git calls new (untracked, added, or added since --since), are linted for
    operations unsafe on a live table. Last, the generated module is compared with what the
    SQL gives, as `generate --check` does (calls are mypy's to check against it). One line per
    problem; exit 1 on any, 0 with a summary when all hold.
    """
    from coderunner_sql.check import run_check
    from coderunner_sql.config import DatabaseConfig

    url = check_url or ctx.obj.database_url
    report = run_check(
        DatabaseConfig.from_url(url) if url else None,
        scratch=scratch,
        queries=queries_dir,
        migrations=migrations_dir,
        data_dir=ctx.obj.data_dir,
        since=since,
        module=module_path,
    )
    if as_json:
        _json(report.to_dict())
    else:
        for problem in report.problems:
            out.print(str(problem))
        out.print(report.summary())
    if not report.ok:
        raise SystemExit(1)


# -- generate ----------------------------------------------------------------------------


@main.command("generate")
@click.option(
    "--queries",
    "queries_dir",
    type=click.Path(path_type=Path),
    help="Queries folder (default: CODERUNNER_SQL_QUERIES, else the bundled one).",
)
@_migrations_option
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The module to write (default: queries.py beside the queries folder).",
)
@click.option(
    "--check", "check_only", is_flag=True, help="Write nothing; exit 1 if the module is stale."
)
@click.option(
    "--database",
    "server_url",
    metavar="URL",
    help="Make the scratch database on this server (needs CREATEDB) instead of the "
    "embedded one. DATABASE_URL and DB_* are not used.",
)
@click.pass_context
def generate_command(
    ctx: click.Context,
    queries_dir: Path | None,
    migrations_dir: Path | None,
    out_path: Path | None,
    check_only: bool,
    server_url: str | None,
) -> None:
    """Write typed query methods (one Python module) from the SQL files and the server.

    Migrates a scratch database from empty, has the server prepare every query, and writes
    a module with a Queries and an AsyncQueries Protocol (one method per query, parameters
    typed from the server), the row classes of queries with no `-- record:` line, and
    load() / load_async(). A query the server rejects, or whose record does not fit its
    columns, is one line naming file:line; nothing is written then. With --check nothing is
    written: exit 1 naming each query whose SQL no longer gives the module's code.
    """
    from coderunner_sql.codegen import generate
    from coderunner_sql.config import DatabaseConfig

    report = generate(
        DatabaseConfig.from_url(server_url) if server_url else None,
        queries=queries_dir,
        migrations=migrations_dir,
        out=out_path,
        check=check_only,
        data_dir=ctx.obj.data_dir,
    )
    for problem in report.problems:
        out.print(str(problem))
    out.print(report.summary())
    if not report.ok:
        raise SystemExit(1)


# -- secrets -----------------------------------------------------------------------------


@main.group("secrets", cls=_Group)
def secrets_group() -> None:
    """Encryption at rest of db_connection_info (key ring: CODERUNNER_SQL_ENCRYPTION_KEY)."""


@secrets_group.command("rotate")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1000),
    default=500,
    show_default=True,
    help="Rows re-encrypted per transaction.",
)
@click.pass_context
def secrets_rotate(ctx: click.Context, batch_size: int) -> None:
    """Re-encrypt every stored db_connection_info (plaintext too) under the newest key."""
    from coderunner_sql.service import DatabaseService

    with DatabaseService(_target(ctx).config.replace(pool_min=1, pool_max=1)) as service:
        report = service.rotate_encryption_key(batch_size=batch_size)
    out.print(
        f"re-encrypted {report.rewritten} deployment(s) under key {report.kid} "
        f"in {report.batches} batch(es)"
    )


@secrets_group.command("new-key")
@click.argument("kid")
def secrets_new_key(kid: str) -> None:
    """Print a new random key as KID:BASE64, to append to CODERUNNER_SQL_ENCRYPTION_KEY."""
    from coderunner_sql.encryption import KeyRing, generate_key

    entry = f"{kid}:{generate_key()}"
    KeyRing.parse(entry)  # a malformed key id fails here, with the ring's own message
    click.echo(entry)


# -- embedded ----------------------------------------------------------------------------


@main.group(cls=_Group)
def embedded() -> None:
    """Manage the embedded PostgreSQL server (used when no server is configured)."""


def _embedded_server(ctx: click.Context) -> Any:
    from coderunner_sql.embedded import DEFAULT_DATA_DIR, EmbeddedServer

    return EmbeddedServer(ctx.obj.data_dir or DEFAULT_DATA_DIR)


@embedded.command("start")
@click.pass_context
def embedded_start(ctx: click.Context) -> None:
    """Start the embedded server and leave it running (later commands reuse it)."""
    server = _embedded_server(ctx).start()
    out.print(f"embedded PostgreSQL running: {server.url()}")


@embedded.command("stop")
@click.pass_context
def embedded_stop(ctx: click.Context) -> None:
    """Stop the embedded server."""
    server = _embedded_server(ctx)
    server.stop()
    out.print("embedded PostgreSQL stopped")


@embedded.command("status")
@click.pass_context
def embedded_status(ctx: click.Context) -> None:
    """Say whether the embedded server runs, and where."""
    server = _embedded_server(ctx)
    if server.is_running():
        out.print(f"running: {server.url()} (data: {server.data_dir})")
    else:
        out.print(f"not running (data: {server.data_dir})")
        raise SystemExit(1)
