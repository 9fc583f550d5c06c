"""`coderunner-sql` against real PostgreSQL. Most runs call the click group in-process
(`CliRunner`: the same parsing, exit codes and output streams, without starting Python again);
a few run the real entry points (`python -m coderunner_sql`, the console script, a terminal)
in a subprocess, as a user or a deploy script runs them.

Every run checks that no password given on the command line reaches stdout or stderr, and that
nothing prints a traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pty
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import click
import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from coderunner_sql import DatabaseConfig, DatabaseService, DeploymentStatus
from coderunner_sql.cli import main
from coderunner_sql.embedded import EmbeddedServer, free_port
from coderunner_sql.migrations import Migrator
from coderunner_sql.resources import migrations_dir
from tests.plugins.postgres import FAST_SETTINGS

PASSWORD = "s3cr3t-pw"
# The demo stores a bcrypt-shaped password hash; no part of it may be printed.
HASH_PREFIX = "$2b$10$"


def migration_ids() -> list[str]:
    """The bundled migrations, in the order they apply."""
    return [m.id for m in Migrator(DatabaseConfig()).migrations()]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any database settings, so only the test's count."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "DB_", "CODERUNNER_SQL_", "PG"))
    }
    env.update(extra)
    return env


def url_of(config: DatabaseConfig) -> str:
    """The config as a --database URL, with a password in it (trust auth ignores it)."""
    return (config if config.password else config.replace(password=PASSWORD)).url()


@dataclass(frozen=True)
class Run:
    """What one CLI run gave, in-process or not."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """Run the CLI in this process, in `env` alone (as a subprocess would see it) and `cwd`;
    fail if a password from a URL argument shows, or an exception escapes."""
    wanted = env if env is not None else clean_env()
    # CliRunner applies overrides to os.environ for the run: None removes a variable.
    overrides: dict[str, str | None] = {k: None for k in os.environ if k not in wanted}
    overrides.update(wanted)
    # main() calls logging.basicConfig on the run's stderr, which CliRunner closes after.
    handlers, level = logging.root.handlers[:], logging.root.level
    try:
        with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
            # catch_exceptions=False: an escaping exception fails the test with its traceback.
            result = CliRunner().invoke(
                main, list(args), env=overrides, prog_name="coderunner-sql", catch_exceptions=False
            )
    finally:
        logging.root.handlers[:], logging.root.level = handlers, level
    run = Run(result.exit_code, result.stdout, result.stderr)
    _check_output(args, run)
    return run


def cli_process(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    program: list[str] | None = None,
) -> Run:
    """Run the CLI as a user does, in a subprocess of its own (the real entry point, logging
    to the real stderr); the same checks as `cli`."""
    argv = program or [sys.executable, "-m", "coderunner_sql"]
    result = subprocess.run(
        [*argv, *args],
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        cwd=cwd,
        timeout=120,
        # As in a pipeline: no terminal, whatever terminal runs the tests.
        stdin=subprocess.DEVNULL,
    )
    run = Run(result.returncode, result.stdout, result.stderr)
    _check_output(args, run)
    return run


def _check_output(args: tuple[str, ...], result: Run) -> None:
    secrets = {PASSWORD}
    for arg in args:
        if arg.startswith("postgres"):
            try:
                password = urlsplit(arg).password
            except ValueError:  # a malformed URL; the tests' ones all use PASSWORD
                password = None
            if password:
                secrets.add(password)
    for secret in secrets:
        assert secret not in result.stdout, f"password in stdout of {args}"
        assert secret not in result.stderr, f"password in stderr of {args}"
    assert "Traceback" not in result.stderr, result.stderr


def on_terminal(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run the CLI with stdin and stderr on a pseudo-terminal, as a person at a shell does:
    (exit status, stdout, what the terminal showed)."""
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "coderunner_sql", *args],
            stdin=terminal,
            stderr=terminal,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
            timeout=120,
        )
    finally:
        os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the terminal side is closed and drained
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    screen = shown.decode(errors="replace")
    assert "Traceback" not in screen, screen
    return result.returncode, result.stdout, screen


def one_error_line(result: Run, *fragments: str) -> str:
    """The run failed with exactly one `error:` line, holding every fragment."""
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def states(config: DatabaseConfig) -> dict[str, str]:
    """Migration id -> state, read through the library (the CLI's effect, checked cheaply)."""
    return {s.id: s.state for s in Migrator(config).status()}


# -- migrate ---------------------------------------------------------------------------------


def test_migrate_applies_each_migration_once(empty_db_config: DatabaseConfig) -> None:
    url = url_of(empty_db_config)
    ids = migration_ids()
    first = cli_process("--database", url, "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        *(f"applied {mid}" for mid in ids),
        f"{len(ids)} migration(s) applied",
    ]
    # Which server is in use goes to stderr, masked.
    assert f"using {empty_db_config.replace(password=PASSWORD).describe()}" in first.stderr
    assert ":***@" in first.stderr
    assert states(empty_db_config) == dict.fromkeys(ids, "applied")

    second = cli("--database", url, "migrate")
    assert second.returncode == 0
    assert second.stdout.strip() == "schema is up to date"


def test_migrate_status_table_and_json(db_config: DatabaseConfig) -> None:
    url = url_of(db_config)
    ids = migration_ids()
    table = cli("--database", url, "migrate", "status")
    assert table.returncode == 0
    assert "checksum state" in table.stdout
    for mid in ids:
        line = next(line for line in table.stdout.splitlines() if mid in line)
        assert "applied" in line
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line)

    result = cli("--database", url, "migrate", "status", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["id"] for row in rows] == ids
    assert {row["state"] for row in rows} == {"applied"}
    for row in rows:  # ISO 8601, like every other timestamp the CLI prints as JSON
        assert datetime.fromisoformat(row["applied_at"]).tzinfo is not None
        assert "T" in row["applied_at"]


def test_migrate_create_names_files_by_utc_time(migrations_copy: Path) -> None:
    real = sorted(migrations_dir().iterdir())
    before_files = set(migrations_copy.iterdir())
    before = datetime.now(UTC).replace(microsecond=0)
    result = cli(
        "migrate", "create", "add user preferences table", "--migrations", str(migrations_copy)
    )
    after = datetime.now(UTC)
    assert result.returncode == 0, result.stderr
    assert "using" not in result.stderr  # writing files needs no server

    new = sorted(set(migrations_copy.iterdir()) - before_files)
    assert len(new) == 2
    forward = next(p for p in new if not p.name.endswith(".rollback.sql"))
    match = re.fullmatch(r"(\d{14})_add_user_preferences_table\.sql", forward.name)
    assert match, forward.name
    stamp = datetime.strptime(match[1], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    assert before <= stamp <= after
    assert forward.with_name(f"{match[1]}_add_user_preferences_table.rollback.sql") in new

    header = forward.read_text().splitlines()
    assert header[0] == "-- Migration: add user preferences table"
    assert re.fullmatch(r"-- Created: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", header[1])
    assert header[2].startswith("-- Description: ")
    assert f"created {forward}" in result.stdout
    assert sorted(migrations_dir().iterdir()) == real  # the bundled folder is untouched


def test_migrate_verify_passes_then_names_an_edited_file(
    db_config: DatabaseConfig, migrations_copy: Path
) -> None:
    url = url_of(db_config)
    ok = cli("--database", url, "migrate", "verify", "--migrations", str(migrations_copy))
    assert ok.returncode == 0, ok.stderr
    assert "every applied migration matches its file" in ok.stdout

    edited = migrations_copy / f"{migration_ids()[0]}.sql"
    edited.write_text(edited.read_text() + "\n-- a harmless-looking edit\n")
    bad = cli("--database", url, "migrate", "--migrations", str(migrations_copy), "verify")
    assert bad.returncode == 1
    one_error_line(bad, edited.name, "edited after it was applied")


def test_migrate_rollback_count_1(db_config: DatabaseConfig) -> None:
    url = url_of(db_config)
    ids = migration_ids()
    result = cli("--database", url, "migrate", "rollback", "--count", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"rolled back {ids[-1]}"]
    after = states(db_config)
    assert after[ids[-1]] == "pending"
    assert [after[mid] for mid in ids[:-1]] == ["applied"] * (len(ids) - 1)


# -- db --------------------------------------------------------------------------------------


def test_db_init_migrates_and_health_follows(empty_db_config: DatabaseConfig) -> None:
    url = url_of(empty_db_config)
    ids = migration_ids()
    unready = cli("--database", url, "db", "health")
    assert unready.returncode == 1
    assert "status: unhealthy" in unready.stdout
    assert f"{len(ids)} pending" in unready.stdout

    init = cli("--database", url, "db", "init")
    assert init.returncode == 0, init.stderr
    assert [f"applied {mid}" for mid in ids] == init.stdout.splitlines()[: len(ids)]

    assert set(states(empty_db_config).values()) == {"applied"}


def test_db_health_text_and_json(db_config: DatabaseConfig) -> None:
    url = url_of(db_config)
    text = cli("--database", url, "db", "health")
    assert text.returncode == 0, text.stdout
    lines = text.stdout.splitlines()
    assert lines[0] == "status: healthy"
    assert lines[1].startswith("server: PostgreSQL ")
    assert re.fullmatch(r"response time: [\d.]+ ms", lines[2])
    assert lines[3] == f"schema: {len(migration_ids())} applied, 0 pending, 0 changed since applied"

    result = cli("--database", url, "db", "health", "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["healthy"] is True
    assert data["report"]["status"] == "healthy"
    details = data["report"]["details"]
    assert details["version"].startswith("PostgreSQL ")
    assert isinstance(details["response_time_ms"], int | float)
    assert details["response_time_ms"] > 0
    assert details["error"] is None
    assert datetime.fromisoformat(details["timestamp"])
    assert data["schema"] == {
        "applied": len(migration_ids()),
        "pending": [],
        "drifted": [],
        "error": None,
    }


def test_db_health_exits_1_naming_host_and_port_when_unreachable() -> None:
    port = free_port()
    result = cli(
        "--database", f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres", "db", "health"
    )
    assert result.returncode == 1
    where = [line for line in result.stdout.splitlines() if f"127.0.0.1:{port}" in line]
    assert where == [f"error: cannot reach PostgreSQL at 127.0.0.1:{port} (connection refused)"]


def test_db_stats_json_and_table(db_config: DatabaseConfig) -> None:
    with DatabaseService(db_config) as db:
        user = db.create_user(email=f"stats-{uuid.uuid4().hex[:8]}@example.com", password_hash="h")
        project = db.create_project(user_id=user.id, name="stats")
        made = db.create_deployments([{"project_id": project.id, "runtime_type": "python"}] * 3)
        db.update_deployment_status(made[0].id, DeploymentStatus.RUNNING)
    url = url_of(db_config)
    data = json.loads(cli("--database", url, "db", "stats", "--json").stdout)
    assert data == {
        "total_users": 1,
        "total_projects": 1,
        "total_deployments": 3,
        "running_deployments": 1,
        "deployments_by_status": {"PENDING": 2, "RUNNING": 1, "STOPPED": 0, "FAILED": 0},
    }
    table = cli("--database", url, "db", "stats")
    assert table.returncode == 0
    assert re.search(r"deployments\s+│\s+3", table.stdout)


# -- demos -----------------------------------------------------------------------------------


def test_demo_migrates_an_empty_database_and_runs_again(empty_db_config: DatabaseConfig) -> None:
    url = url_of(empty_db_config)
    first = cli_process("--database", url, "demo")
    assert first.returncode == 0, first.stderr
    for section in (
        "1. Schema",
        "2. Users",
        "3. Projects",
        "4. Deployments",
        "5. Listings with totals",
        "6. Transactions",
        "7. System statistics",
        "8. Health and pool",
        "9. The same API, async",
        "demo finished",
    ):
        assert section in first.stdout
    assert f"applied {migration_ids()[0]}" in first.stdout
    for shown in (
        "get_deployment_with_details",
        "create_deployments: 3 created",
        "gone, with its project",
        "health_check: healthy",
        "get_pool_info: total",
        "await get_system_stats",
    ):
        assert shown in first.stdout
    # Secrets stored by the demo never show.
    assert HASH_PREFIX not in first.stdout
    assert "never-printed" not in first.stdout
    assert "db_connection_info:" not in first.stdout

    # Unique names per run: the same database can be demoed again.
    second = cli("--database", url, "demo")
    assert second.returncode == 0, second.stderr
    assert "schema is up to date" in second.stdout


def test_demo_error_explains_every_error_kind(db_config: DatabaseConfig) -> None:
    result = cli("--database", url_of(db_config), "demo", "error")
    assert result.returncode == 0, result.stderr
    for kind in (
        "AlreadyExistsError",
        "NotFoundError",
        "ValidationError",
        "ConflictError",
        "DatabaseUnavailableError",
        "PoolExhaustedError",
        "SchemaNotReadyError",
    ):
        assert f"{kind} — " in result.stdout
    assert result.stdout.count("  raised: ") == result.stdout.count("  means:  ") == 11
    assert "nothing was raised" not in result.stdout
    assert "instead" not in result.stdout
    # It tidies up after itself.
    with DatabaseService(db_config) as db:
        assert db.get_system_stats().total_users == 0


def test_demo_migrations_leaves_the_real_folder_alone(db_config: DatabaseConfig) -> None:
    real = sorted(migrations_dir().iterdir())
    result = cli("--database", url_of(db_config), "demo", "migrations")
    assert result.returncode == 0, result.stderr
    for shown in (
        "Migrations: status",
        "verify: every applied migration matches its file",
        "_add_user_preferences_table.sql",
        "_add_user_preferences_table.rollback.sql",
        "-- Migration: add user preferences table",
        "raised MigrationIntegrityError",
    ):
        assert shown in result.stdout
    assert sorted(migrations_dir().iterdir()) == real


# -- one-line failures -----------------------------------------------------------------------


def test_unreachable_server_is_one_line_naming_host_and_port() -> None:
    port = free_port()
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
    for command in (["migrate", "status"], ["demo"]):
        result = cli("--database", url, *command)
        assert result.returncode == 1
        one_error_line(result, f"cannot reach PostgreSQL at 127.0.0.1:{port}")


def test_missing_database_is_one_line(pg_admin_config: DatabaseConfig) -> None:
    config = pg_admin_config.replace(dbname=f"crsql_missing_{uuid.uuid4().hex[:8]}")
    result = cli("--database", url_of(config), "migrate")
    assert result.returncode == 1
    one_error_line(result, f"database {config.dbname!r} does not exist", f":{config.port}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"postgresql://postgres:{PASSWORD}@127.0.0.1:99999/x", "not a valid URL"),
        (f"mysql://postgres:{PASSWORD}@127.0.0.1/x", "must start with postgresql://"),
        (f"postgresql://postgres:{PASSWORD}@127.0.0.1/x?sslmode=maybe", "sslmode"),
    ],
)
def test_malformed_url_is_one_line(url: str, message: str) -> None:
    result = cli("--database", url, "migrate")
    assert result.returncode == 2
    one_error_line(result, message)


def test_unknown_migrations_folder_is_one_line(db_config: DatabaseConfig, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    for command in (["migrate", "--migrations", str(missing)], ["migrate", "status"]):
        env = clean_env(CODERUNNER_SQL_MIGRATIONS=str(missing))
        result = cli("--database", url_of(db_config), *command, env=env)
        assert result.returncode == 2
        one_error_line(result, f"migrations folder not found: {missing}")


def test_error_text_with_square_brackets_is_printed_as_it_is(
    db_config: DatabaseConfig, tmp_path: Path
) -> None:
    # rich once read these as markup: `[/]` raised MarkupError, `[check]` vanished.
    env = clean_env(DATABASE_URL="mysql://user@host/db[/]")
    bad_url = cli("migrate", env=env)
    assert bad_url.returncode == 2
    one_error_line(bad_url, "got mysql://user@host/db[/]")

    missing = tmp_path / "pip install 'coderunner-sql[check]'"
    folder = cli("--database", url_of(db_config), "migrate", "--migrations", str(missing))
    assert folder.returncode == 2
    one_error_line(folder, f"migrations folder not found: {missing}")

    # Printed on stdout too: the health report quotes the server's answer.
    url = url_of(db_config.replace(dbname="no_such[/]db"))
    health = cli("--database", url, "db", "health")
    assert health.returncode == 1
    assert "database 'no_such[/]db' does not exist" in health.stdout


def test_ssl_password_in_the_url_is_never_printed(db_config: DatabaseConfig) -> None:
    # cli() fails on PASSWORD anywhere in the output; the server ignores it without TLS.
    url = url_of(db_config.replace(sslmode="disable", options={"sslpassword": PASSWORD}))
    result = cli("--database", url, "db", "health")
    assert result.returncode == 0, result.stdout
    assert "sslpassword=***" in result.stderr  # the "using …" line
    bad = cli("--database", url.replace("disable", "sometimes"), "migrate")
    assert bad.returncode == 2
    one_error_line(bad, "'sometimes'")


def test_a_server_refusal_is_reported_in_its_own_words(db_config: DatabaseConfig) -> None:
    url = url_of(db_config.replace(options={"options": "-c statement_timeout=abc"}))
    result = cli("--database", url, "migrate")
    assert result.returncode == 1
    one_error_line(
        result,
        f"PostgreSQL at {db_config.host}:{db_config.port} refused the connection: "
        'invalid value for parameter "statement_timeout": "abc"',
    )


@pytest.fixture
def scram_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A private server that checks passwords (scram-sha-256) for everyone but `postgres`,
    with a role `app_user` (password PASSWORD) owning a database `app`."""
    server = EmbeddedServer(
        tmp_path / "pg", settings={**FAST_SETTINGS, "password_encryption": "scram-sha-256"}
    )
    server.init(["--no-sync"])
    (server.data_dir / "pg_hba.conf").write_text(
        "host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE app_user LOGIN PASSWORD {}").format(sql.Literal(PASSWORD))
            )
            conn.execute("CREATE DATABASE app OWNER app_user")
        yield server
    finally:
        server.destroy()


def test_wrong_password_is_one_line_and_never_echoed(scram_server: EmbeddedServer) -> None:
    where = f"127.0.0.1:{scram_server.port}"
    wrong = f"postgresql://app_user:wr0ng-{PASSWORD}@{where}/app"
    # Debug logging on: the password must not leak through any logger either (a subprocess:
    # in this one, pytest's own handlers would take the log records).
    result = cli_process("-vv", "--database", wrong, "migrate")
    assert result.returncode == 1
    one_error_line(result, f"authentication failed for user 'app_user' at {where}")
    health = cli("--database", wrong, "db", "health")
    assert health.returncode == 1
    assert f"authentication failed for user 'app_user' at {where}" in health.stdout

    right = f"postgresql://app_user:{PASSWORD}@{where}/app"
    status = cli_process("-vv", "--database", right, "migrate", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert [row["id"] for row in json.loads(status.stdout)] == migration_ids()

    # Right password, but a database where app_user may not create tables: whatever the
    # driver says, it is one line.
    denied = cli("--database", f"postgresql://app_user:{PASSWORD}@{where}/postgres", "migrate")
    assert denied.returncode == 1
    one_error_line(denied, "migrate")


# -- the embedded default --------------------------------------------------------------------

APP_DATA_COMMANDS = [
    ["migrate"],
    ["migrate", "verify"],
    ["migrate", "status"],
    ["migrate", "rollback"],
    ["db", "init"],
    ["db", "health"],
    ["db", "stats"],
    ["secrets", "rotate"],
]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"DATABASE_URL": ""}, "DATABASE_URL is empty"),
        ({"DATABASE_URL": "  ", "DB_HOST": ""}, "DATABASE_URL, DB_HOST are empty"),
        ({"DB_PORT": "5432", "DB_PASSWORD": PASSWORD}, "DB_PASSWORD, DB_PORT are set"),
        ({"DB_POOL_MAX": "5"}, "DB_POOL_MAX is set"),
        ({}, "and not on a terminal"),
        ({"CI": "true"}, "and CI is set"),
    ],
    ids=["empty-url", "blank-url-and-host", "port-and-password", "pool-only", "no-tty", "ci"],
)
def test_a_missing_server_setting_never_falls_back_to_embedded(
    settings: dict[str, str], named: str, tmp_path: Path
) -> None:
    data = tmp_path / "pgdata"
    env = clean_env(CODERUNNER_SQL_DATA_DIR=str(data), **settings)
    if "CI" not in settings:
        env.pop("CI", None)
    for command in APP_DATA_COMMANDS:
        result = cli(*command, env=env, cwd=tmp_path)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        one_error_line(
            result, "no database to use", named, "--embedded", "CODERUNNER_SQL_EMBEDDED=1"
        )
        assert "using" not in result.stderr
    assert not data.exists()  # no server was initialised, let alone migrated


def test_an_empty_database_option_never_falls_back_to_embedded(tmp_path: Path) -> None:
    # `--database "$DATABASE_URL"` in a deploy script whose secret is missing.
    env = clean_env(CODERUNNER_SQL_DATA_DIR=str(tmp_path / "pgdata"))
    result = cli("--database", "", "migrate", env=env, cwd=tmp_path)
    assert result.returncode == 2
    one_error_line(result, "--database is empty")
    assert not (tmp_path / "pgdata").exists()


def test_the_opt_in_must_be_a_boolean(tmp_path: Path) -> None:
    env = clean_env(CODERUNNER_SQL_EMBEDDED="maybe")
    result = cli("db", "health", env=env, cwd=tmp_path)
    assert result.returncode == 2
    one_error_line(result, "CODERUNNER_SQL_EMBEDDED must be true or false, got 'maybe'")


@pytest.mark.slow
def test_without_a_server_configured_the_cli_runs_an_embedded_one(tmp_path: Path) -> None:
    data = tmp_path / "pgdata"
    work = tmp_path / "work"
    work.mkdir()
    env = clean_env(CODERUNNER_SQL_DATA_DIR=str(data))
    env.pop("CI", None)  # the terminal case below is a person's shell, not CI
    opted_in = {**env, "CODERUNNER_SQL_EMBEDDED": "1"}
    server = EmbeddedServer(data)
    # The CLI's own first-run initdb syncs every file (8 s on a busy disk); an unsynced one
    # made here is the same cluster, ready sooner.
    server.init(["--no-sync"])
    try:
        # Off a terminal, the application's commands need the opt-in: the flag...
        first = cli("--embedded", "migrate", env=env, cwd=work)
        assert first.returncode == 0, first.stderr
        assert "using embedded PostgreSQL at 127.0.0.1:" in first.stderr
        assert f"(data: {data})" in first.stderr
        assert f"applied {migration_ids()[0]}" in first.stdout
        assert not server.is_running()  # the CLI stops a server it started

        # ... or the variable.
        health = cli("db", "health", env=opted_in, cwd=work)
        assert health.returncode == 0, health.stdout
        assert "initialising" not in health.stderr
        assert "using embedded PostgreSQL" in health.stderr
        assert not server.is_running()

        # The demo never touches the application's data: no opt-in needed.
        demo = cli("demo", "migrations", env=env, cwd=work)
        assert demo.returncode == 0, demo.stderr
        assert "using embedded PostgreSQL" in demo.stderr

        # A server left running by `embedded start` is reused and left running.
        started = cli("embedded", "start", env=env, cwd=work)
        assert started.returncode == 0, started.stderr
        assert server.is_running()
        assert cli("db", "health", env=opted_in, cwd=work).returncode == 0
        assert server.is_running()
        # At a terminal, with nothing set, a person gets the embedded server as before.
        status, out, screen = on_terminal("db", "health", env=env, cwd=work)
        assert status == 0, (out, screen)
        assert "using embedded PostgreSQL" in screen
        assert out.startswith("status: healthy")
        # Not even a running embedded server stands in for a missing setting.
        refused = cli("db", "health", env={**env, "DATABASE_URL": ""}, cwd=work)
        one_error_line(refused, "DATABASE_URL is empty")
        assert cli("embedded", "stop", env=env, cwd=work).returncode == 0
        assert not server.is_running()
        assert not (work / ".coderunner").exists()  # CODERUNNER_SQL_DATA_DIR was honoured
    finally:
        server.destroy()


# -- entry points and help -------------------------------------------------------------------


def test_console_script_runs(db_config: DatabaseConfig) -> None:
    script = Path(sys.executable).parent / "coderunner-sql"
    assert script.exists(), f"no console script at {script}: pip install -e ."
    usage = cli_process("--help", program=[str(script)])
    assert usage.returncode == 0, usage.stderr
    assert usage.stdout.startswith("Usage: coderunner-sql")
    version = cli("--version")
    assert version.returncode == 0
    assert re.search(r"\d+\.\d+", version.stdout)
    health = cli("--database", url_of(db_config), "db", "health", "--json")
    assert health.returncode == 0, health.stdout
    assert json.loads(health.stdout)["healthy"] is True


def _commands(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))


def test_every_command_and_option_has_help() -> None:
    top = cli("--help")
    assert top.returncode == 0
    assert top.stdout.startswith("Usage: coderunner-sql")
    seen = []
    for path, command in _commands(main):
        seen.append(" ".join(path))
        assert (command.help or "").strip(), f"{path} has no help text"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{path} option {param.opts} has no help text"
        result = CliRunner().invoke(main, [*path, "--help"], prog_name="coderunner-sql")
        assert result.exit_code == 0, (path, result.output)
        assert result.output.startswith(f"Usage: coderunner-sql {' '.join(path)}".rstrip())
    assert {"migrate", "migrate status", "db health", "demo", "embedded start"} <= set(seen)
