"""`coderunner-sql check` catches each kind of breakage before deploy, naming the query.

Each test copies `queries/` and `migrations/` to a folder of its own, makes ONE edit a DBA
or a developer could make, and runs the check against the test server (its scratch
database is made there and dropped after). The clean tree passes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from coderunner_sql import DatabaseConfig, DeploymentStatus
from coderunner_sql.check import CheckReport, Problem, package_uses, run_check
from coderunner_sql.check._lint import new_files
from coderunner_sql.check._records import Field, PgType, type_problem
from coderunner_sql.check._server import SCRATCH_PREFIX
from coderunner_sql.cli import main
from coderunner_sql.codegen import generate
from coderunner_sql.embedded import free_port
from coderunner_sql.errors import ConfigError, QueryError
from coderunner_sql.resources import migrations_dir, queries_dir

NEXT_MIGRATION = "29991231000000_test_edit"


class Checkout:
    """A private copy of `queries/` and `migrations/` to break on purpose."""

    def __init__(self, root: Path) -> None:
        self.queries = root / "queries"
        self.migrations = root / "migrations"
        shutil.copytree(queries_dir(), self.queries)
        shutil.copytree(migrations_dir(), self.migrations)

    def edit(self, name: str, old: str, new: str) -> None:
        """Replace `old` (which must be there) by `new` in `queries/<name>`."""
        path = self.queries / name
        text = path.read_text()
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new, 1))

    def migration(self, sql: str, rollback: str = "SELECT 1;\n") -> None:
        """Add a new migration (and its rollback) after every existing one."""
        (self.migrations / f"{NEXT_MIGRATION}.sql").write_text(sql)
        (self.migrations / f"{NEXT_MIGRATION}.rollback.sql").write_text(rollback)

    def remove_query(self, name: str, query: str) -> None:
        """Delete query `query` (its `-- name:` block) from `queries/<name>`."""
        path = self.queries / name
        text = path.read_text()
        start = text.index(f"-- name: {query}(")
        following = text.find("-- name:", start + 1)
        path.write_text(text[:start] + (text[following:] if following >= 0 else ""))


@pytest.fixture
def checkout(tmp_path: Path) -> Checkout:
    """Copies of the queries and migrations folders, for one edit."""
    return Checkout(tmp_path)


@pytest.fixture(scope="session")
def clean_report(pg_admin_config: DatabaseConfig) -> CheckReport:
    """The check of the tree as it is (run once: several tests read it)."""
    return run_check(pg_admin_config)


def check(config: DatabaseConfig, checkout: Checkout) -> CheckReport:
    """Run the check on the copies, with the scratch database on the test server."""
    return run_check(config, queries=checkout.queries, migrations=checkout.migrations)


def new_problems(report: CheckReport, clean: CheckReport) -> list[Problem]:
    """Problems the edit caused (the tree's own, if any, are another test's business)."""
    before = {(p.subject, p.kind, p.message) for p in clean.problems}
    return [p for p in report.problems if (p.subject, p.kind, p.message) not in before]


def find(problems: list[Problem], subject: str, kind: str, *fragments: str) -> Problem:
    """The one problem about `subject` of `kind` whose message holds every fragment."""
    found = [
        p
        for p in problems
        if p.subject == subject and p.kind == kind and all(f in p.message for f in fragments)
    ]
    assert found, f"no {kind} problem for {subject} with {fragments} in:\n" + "\n".join(
        map(str, problems)
    )
    return found[0]


def line_of(path: Path, text: str) -> int:
    """The 1-based line of the first line of `path` holding `text`."""
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# -- the clean tree --------------------------------------------------------------------------


def test_clean_tree_passes(clean_report: CheckReport) -> None:
    assert clean_report.problems == (), "\n".join(map(str, clean_report.problems))
    assert clean_report.ok
    assert clean_report.queries >= 40
    assert clean_report.uses >= clean_report.queries
    assert clean_report.summary().startswith("check passed — ")
    # The package's own generated module is compared with its SQL (generate --check).
    assert clean_report.module == "coderunner_sql/query_methods.py"
    assert "generated module coderunner_sql/query_methods.py checked" in clean_report.summary()


def test_check_leaves_no_scratch_database_and_reads_the_given_one_only(
    db_config: DatabaseConfig, checkout: Checkout
) -> None:
    def snapshot() -> tuple[list[str], list[tuple[str, ...]]]:
        with psycopg.connect(db_config.conninfo()) as conn:
            databases = [
                r[0]
                for r in conn.execute(
                    "SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                    [SCRATCH_PREFIX],
                )
            ]
            applied = conn.execute(
                "SELECT migration_id, applied_at_utc::text FROM _yoyo_migration ORDER BY 1"
            ).fetchall()
        return databases, applied

    before = snapshot()
    # A migrated database, and copies outside git: no migration is new, none is linted.
    report = check(db_config, checkout)
    assert report.linted == ()
    assert snapshot() == before
    assert before[0] == []


# -- each breakage, named --------------------------------------------------------------------


def test_renamed_column(
    pg_admin_config: DatabaseConfig, checkout: Checkout, clean_report: CheckReport
) -> None:
    checkout.migration("ALTER TABLE users RENAME COLUMN email TO email_address;\n")
    report = check(pg_admin_config, checkout)
    assert not report.ok
    problems = new_problems(report, clean_report)
    problem = find(problems, "get_user_by_email", "sql-error", 'column "email" does not exist')
    users = checkout.queries / "users.sql"
    assert problem.file == str(users)
    # The line the server points at: the first `email` of the query's SQL.
    start = line_of(users, "-- name: get_user_by_email")
    assert start < problem.line <= start + 5
    find(problems, "create_user", "sql-error", "email")


def test_dropped_column(
    pg_admin_config: DatabaseConfig, checkout: Checkout, clean_report: CheckReport
) -> None:
    checkout.migration("ALTER TABLE projects DROP COLUMN description;\n")
    problems = new_problems(check(pg_admin_config, checkout), clean_report)
    find(problems, "create_project", "sql-error", "description")
    find(problems, "get_project_by_id", "sql-error", 'column "description" does not exist')


def test_new_not_null_column_without_a_default(
    pg_admin_config: DatabaseConfig, checkout: Checkout, clean_report: CheckReport
) -> None:
    checkout.migration("ALTER TABLE users ADD COLUMN nickname text NOT NULL;\n")
    problems = new_problems(check(pg_admin_config, checkout), clean_report)
    problem = find(problems, "create_user", "insert-missing-column", "nickname", "NOT NULL")
    assert problem.file == str(checkout.queries / "users.sql")


def test_new_column_a_query_returns_but_no_record_field_holds(
    pg_admin_config: DatabaseConfig, checkout: Checkout, clean_report: CheckReport
) -> None:
    checkout.migration("ALTER TABLE users ADD COLUMN nickname text NOT NULL DEFAULT '';\n")
    checkout.edit(
        "users.sql",
        "SELECT id, email, password_hash, plan_type, created_at, updated_at\nFROM users\n"
        "WHERE id = :id;",
        "SELECT id, email, password_hash, plan_type, created_at, updated_at, nickname\n"
        "FROM users\nWHERE id = :id;",
    )
    problems = new_problems(check(pg_admin_config, checkout), clean_report)
    find(problems, "get_user_by_id", "column-no-field", "nickname", "User")


def test_renamed_parameter_in_the_sql_only(
    pg_admin_config: DatabaseConfig, checkout: Checkout, clean_report: CheckReport
) -> None:
    checkout.edit("users.sql", "coderunner_fold(:email)", "coderunner_fold(:mail)")
    problems = new_problems(check(pg_admin_config, checkout), clean_report)
    find(problems, "get_user_by_email", "query-file", "undeclared parameter", "mail")


def test_changed_type(
    pg_admin_config: DatabaseConfig, checkout: Checkout, clean_report: CheckReport
) -> None:
    checkout.migration(
        "ALTER TABLE deployments DROP CONSTRAINT deployments_runtime_type_shape;\n"
        "ALTER TABLE deployments ALTER COLUMN runtime_type TYPE integer\n"
        "    USING length(runtime_type);\n"
    )
    problems = new_problems(check(pg_admin_config, checkout), clean_report)
    find(
        problems,
        "get_deployment_by_id",
        "column-type",
        "result column runtime_type is integer, but Deployment.runtime_type is str",
    )


def test_column_made_nullable(
    pg_admin_config: DatabaseConfig, checkout: Checkout, clean_report: CheckReport
) -> None:
    checkout.migration("ALTER TABLE projects ALTER COLUMN name DROP NOT NULL;\n")
    problems = new_problems(check(pg_admin_config, checkout), clean_report)
    find(problems, "get_project_by_id", "column-nullable", "projects.name", "Project.name")


def test_enum_label_the_python_enum_lacks(
    pg_admin_config: DatabaseConfig, checkout: Checkout, clean_report: CheckReport
) -> None:
    checkout.migration("ALTER TYPE deployment_status ADD VALUE 'ARCHIVED';\n")
    problems = new_problems(check(pg_admin_config, checkout), clean_report)
    find(
        problems,
        "get_deployment_by_id",
        "column-type",
        "ARCHIVED only in deployment_status",
        "Deployment.status",
    )


def test_query_no_method_uses(
    pg_admin_config: DatabaseConfig, checkout: Checkout, clean_report: CheckReport
) -> None:
    users = checkout.queries / "users.sql"
    added = (
        "\n-- name: count_free_users()$\n-- How many users are on the free plan.\n"
        "SELECT count(*) FROM users WHERE plan_type = 'free';\n"
    )
    users.write_text(users.read_text() + added)
    problems = new_problems(check(pg_admin_config, checkout), clean_report)
    problem = find(problems, "count_free_users", "unused-query", "no code")
    assert problem.line == line_of(users, "-- name: count_free_users")


def test_a_module_generated_beside_the_queries_is_checked_and_names_a_removed_query(
    pg_admin_config: DatabaseConfig, checkout: Checkout, clean_report: CheckReport
) -> None:
    # No module beside the copies: an application that does not generate, nothing to check.
    assert check(pg_admin_config, checkout).module is None
    module = checkout.queries.parent / "queries.py"
    made = generate(
        pg_admin_config, queries=checkout.queries, migrations=checkout.migrations, out=module
    )
    assert made.ok, "\n".join(map(str, made.problems))
    report = check(pg_admin_config, checkout)
    assert report.module == str(module)
    assert new_problems(report, clean_report) == []
    # The module still holds a method whose query is gone: calls to it would pass mypy.
    line = line_of(module, "def get_user_by_email(")
    checkout.remove_query("users.sql", "get_user_by_email")
    problems = new_problems(check(pg_admin_config, checkout), clean_report)
    problem = find(problems, "get_user_by_email", "generated-stale", "coderunner-sql generate")
    assert (problem.file, problem.line) == (str(module), line)


def test_a_module_named_that_does_not_exist_is_a_problem(
    pg_admin_config: DatabaseConfig, checkout: Checkout
) -> None:
    module = checkout.queries.parent / "app" / "db.py"
    report = run_check(
        pg_admin_config,
        queries=checkout.queries,
        migrations=checkout.migrations,
        module=module,
    )
    (problem,) = [p for p in report.problems if p.kind == "generated-stale"]
    assert problem.file == str(module)
    assert "does not exist" in problem.message
    assert f"coderunner-sql generate --out {module}" in problem.message


# -- the migration lint ----------------------------------------------------------------------


def test_lint_flags_unsafe_migrations_not_yet_applied_where_they_will_run(
    db_config: DatabaseConfig, checkout: Checkout
) -> None:
    # db_config has every migration of the tree applied: only the test's one is new.
    checkout.migration(
        "-- Migration: unsafe on live tables\n"
        "ALTER TABLE users ADD COLUMN nickname text NOT NULL;\n"
        "CREATE INDEX users_nickname_idx ON users (nickname);\n"
        "ALTER TABLE projects ALTER COLUMN description TYPE varchar(2000);\n"
        "ALTER TABLE deployments DROP COLUMN db_sandbox_id;\n"
        "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);\n"
        "CREATE INDEX notes_body_idx ON notes (body);\n"
    )
    report = check(db_config, checkout)
    assert report.linted == (NEXT_MIGRATION,)
    lint = [p for p in report.problems if p.subject == NEXT_MIGRATION]
    path = checkout.migrations / f"{NEXT_MIGRATION}.sql"
    at = {p.kind: p for p in lint}
    assert at["adding-required-field"].line == line_of(path, "ADD COLUMN nickname")
    assert at["require-concurrent-index-creation"].line == line_of(path, "users_nickname_idx")
    assert at["changing-column-type"].line == line_of(path, "TYPE varchar")
    dropped = at["drop-used-column"]
    assert dropped.line == line_of(path, "DROP COLUMN db_sandbox_id")
    assert "get_deployment_by_id" in dropped.message
    # A table this deploy creates holds no rows: its index is fine.
    assert not any(p.line == line_of(path, "notes_body_idx") for p in lint), lint
    assert all(p.file == str(path) for p in lint)


def test_a_pending_migration_that_drops_a_used_column_fails_check(
    db_config: DatabaseConfig, checkout: Checkout
) -> None:
    # The deployed database lacks only the new migration: the queries are prepared against
    # the schema as it will be after it (not as it is), so the server's refusal is reported
    # along with the lint, and the deployed database is left as it was.
    checkout.migration("ALTER TABLE projects DROP COLUMN description;\n")
    report = check(db_config, checkout)
    assert not report.ok
    assert report.linted == (NEXT_MIGRATION,)
    problems = list(report.problems)
    find(problems, "get_project_by_id", "sql-error", 'column "description" does not exist')
    find(problems, NEXT_MIGRATION, "drop-used-column", "projects.description", "get_project_by_id")
    with psycopg.connect(db_config.conninfo()) as conn:
        assert conn.execute(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_name = 'projects' AND column_name = 'description'"
        ).fetchone() == (1,)
    assert run_cli("--database", db_config.url(), checkout=checkout).returncode == 1


def test_repeatable_migrations_are_applied_before_the_queries_are_prepared(
    pg_admin_config: DatabaseConfig, checkout: Checkout, clean_report: CheckReport
) -> None:
    # A view made by a post-apply file, that drops a column a query uses, is in place too.
    (checkout.migrations / "post-apply-10-views.sql").write_text(
        "DROP VIEW IF EXISTS project_names;\n"
        "ALTER TABLE projects DROP COLUMN IF EXISTS description;\n"
        "CREATE OR REPLACE VIEW project_names AS SELECT id, name FROM projects;\n"
    )
    problems = new_problems(check(pg_admin_config, checkout), clean_report)
    find(problems, "get_project_by_id", "sql-error", 'column "description" does not exist')


def test_lint_flags_a_rename_of_a_used_column(
    db_config: DatabaseConfig, checkout: Checkout
) -> None:
    checkout.migration("ALTER TABLE users RENAME COLUMN email TO email_address;\n")
    report = check(db_config, checkout)
    problem = find(list(report.problems), NEXT_MIGRATION, "rename-used-column", "users.email")
    assert "get_user_by_email" in problem.message


# -- the command -----------------------------------------------------------------------------


def run_cli(*args: str, checkout: Checkout | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DB_", "PG"))}
    env = {k: v for k, v in env.items() if not k.startswith("CODERUNNER_SQL_")}
    if checkout is not None:
        env["CODERUNNER_SQL_QUERIES"] = str(checkout.queries)
        env["CODERUNNER_SQL_MIGRATIONS"] = str(checkout.migrations)
    result = subprocess.run(
        [sys.executable, "-m", "coderunner_sql", "check", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_command_exits_0_with_a_summary_on_the_clean_tree(pg_admin_url: str) -> None:
    result = run_cli("--database", pg_admin_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("check passed — ")
    assert len(result.stdout.splitlines()) == 1


def test_command_exits_1_naming_the_query(pg_admin_url: str, checkout: Checkout) -> None:
    checkout.migration("ALTER TABLE projects DROP COLUMN description;\n")
    result = run_cli("--database", pg_admin_url, checkout=checkout)
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if "get_project_by_id" in line)
    assert re.match(
        r"^\S*projects\.sql:\d+: get_project_by_id: the server rejects it: .*description", line
    ), line
    assert result.stdout.splitlines()[-1].startswith("check failed: ")


def test_command_json_for_tools(pg_admin_url: str, checkout: Checkout) -> None:
    users = checkout.queries / "users.sql"
    users.write_text(users.read_text() + "\n-- name: count_nothing()$\nSELECT 0;\n")
    folders = ["--queries", str(checkout.queries), "--migrations", str(checkout.migrations)]
    result = CliRunner().invoke(main, ["check", "--database", pg_admin_url, "--json", *folders])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert data["summary"].startswith("check failed: ")
    problem = next(p for p in data["problems"] if p["kind"] == "unused-query")
    assert problem["subject"] == "count_nothing"
    assert set(problem) == {"file", "line", "subject", "kind", "message"}
    assert set(data) == {
        "ok",
        "summary",
        "problems",
        "queries",
        "uses",
        "migrations",
        "linted",
        "module",
        "scratch",
        "seconds",
    }
    assert data["module"] is None  # no module beside the copies: none checked
    assert data["uses"] >= data["queries"] - 1


def test_command_reports_an_unreachable_server_in_one_line() -> None:
    bad_server_url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    result = CliRunner().invoke(main, ["check", "--database", bad_server_url])
    assert result.exit_code == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "cannot reach PostgreSQL" in errors[0]


def test_a_role_that_cannot_create_the_scratch_database_is_told_what_to_do(
    pg_admin_config: DatabaseConfig,
) -> None:
    role = f"crsql_check_nocreatedb_{os.getpid()}"
    with psycopg.connect(pg_admin_config.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        with pytest.raises(
            QueryError, match=r"cannot create a scratch database .*--scratch embedded"
        ):
            run_check(pg_admin_config.replace(user=role))
    finally:
        with psycopg.connect(pg_admin_config.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# -- which migrations are new ----------------------------------------------------------------


def git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
    )


def test_new_migration_files_are_those_git_calls_new(checkout: Checkout) -> None:
    folder = checkout.migrations
    assert new_files(folder, None) == set()  # outside a git checkout: none
    git(folder.parent, "init", "-q")
    git(folder.parent, "add", "migrations")
    git(folder.parent, "commit", "-q", "-m", "base")
    assert new_files(folder, None) == set()
    untracked = folder / "29990101000000_untracked.sql"
    untracked.write_text("SELECT 1;\n")
    staged = folder / "29990101000001_staged.sql"
    staged.write_text("SELECT 1;\n")
    git(folder.parent, "add", str(staged))
    assert new_files(folder, None) == {untracked.resolve(), staged.resolve()}
    git(folder.parent, "commit", "-q", "-m", "more")
    assert new_files(folder, None) == {untracked.resolve()}
    assert new_files(folder, "HEAD~1") == {untracked.resolve(), staged.resolve()}
    with pytest.raises(ConfigError, match="no-such-ref"):
        new_files(folder, "no-such-ref")


# -- the pieces, without a server ------------------------------------------------------------


def test_uses_are_attributes_and_strings_naming_a_query_outside_the_generated_module(
    tmp_path: Path,
) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "service.py").write_text(
        "def f(q, conn):\n    q.get_user(conn)\n    return q.list_users_cursor(conn)\n"
    )
    (package / "sub" / "reads.py").write_text('NAME = "count_users"\nOTHER = "count"\n')
    # The generated module names every query: no use of one.
    (package / "query_methods.py").write_text("def unused_query(conn):\n    q.unused_query\n")
    names = ["get_user", "list_users", "count_users", "unused_query"]
    found = {(name, path.name, line) for name, path, line in package_uses(package, names)}
    assert found == {
        ("get_user", "service.py", 2),
        ("list_users", "service.py", 3),
        ("count_users", "reads.py", 1),
    }


@pytest.mark.parametrize(
    ("pg", "annotation", "fits"),
    [
        (("uuid", "b"), UUID, True),
        (("timestamptz", "b"), datetime, True),
        (("jsonb", "b"), dict[str, Any], True),
        (("int8", "b"), int, True),
        (("int4", "b"), float, True),
        (("text", "b"), str, True),
        (("text", "b"), int, False),
        (("int4", "b"), str, False),
        (("bool", "b"), int, False),
        (("int4", "b"), bool, False),
        (("deployment_status", "e"), DeploymentStatus, True),
        (("deployment_status", "e"), str, False),
        (("jsonb", "b"), str, False),
    ],
)
def test_which_column_types_fit_which_fields(
    pg: tuple[str, str], annotation: Any, fits: bool
) -> None:
    name, kind = pg
    labels = tuple(s.value for s in DeploymentStatus) if kind == "e" else ()
    column = PgType(0, name, name, kind, labels=labels)
    field = Field(("x",), "Record", (annotation,), optional=False, required=True)
    assert (type_problem(column, field) is None) is fits
