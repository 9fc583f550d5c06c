"""The pytest plugin for applications (`coderunner_sql.testing`), used as an application would.

An application folder is made in tmp_path — its own migration, a pytest.ini naming it, sync
and async tests using every fixture — and run by pytest in a subprocess with `-n 2`, on this
session's server. The application's tests record the names of the databases they saw; after
the run none of them may be left on the server, also when a test failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psycopg
import pytest

from coderunner_sql import ConfigError, DatabaseConfig
from coderunner_sql.resources import migrations_dir
from coderunner_sql.testing import ScratchServer
from coderunner_sql.testing.databases import combined_migrations

APP_MIGRATION = "20270101000000_app_notes"

CONFTEST = """
import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _record_names(coderunner_database_config, coderunner_template):
    # The outer test checks that none of these databases outlive the run.
    seen = Path(os.environ["APP_SEEN_DIR"])
    (seen / coderunner_database_config.dbname).touch()
    (seen / coderunner_template).touch()
"""

TEST_SYNC = """
import psycopg
import pytest

from coderunner_sql import DeploymentStatus
from coderunner_sql.migrations import Migrator


@pytest.mark.parametrize("round", range(4))
def test_each_database_is_migrated_and_empty(coderunner_database_url, round):
    with psycopg.connect(coderunner_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM app_notes").fetchone() == (0,)
        conn.execute(
            "INSERT INTO users (email, password_hash) VALUES ('a@example.test', 'x')"
        )


def test_the_app_migration_is_recorded(coderunner_database_config, coderunner_migrations_dir):
    applied = Migrator(coderunner_database_config, coderunner_migrations_dir).status()
    states = {state.id: state.state for state in applied}
    assert states["{app_migration}"] == "applied"
    assert set(states.values()) == {"applied"}


def test_the_template_is_sealed(coderunner_server, coderunner_template):
    with psycopg.connect(coderunner_server.admin.url()) as conn:
        row = conn.execute(
            "SELECT datistemplate, datallowconn FROM pg_database WHERE datname = %s",
            [coderunner_template],
        ).fetchone()
    assert row == (True, False)
    with pytest.raises(psycopg.OperationalError, match="not currently accepting"):
        psycopg.connect(coderunner_server.config(coderunner_template).url())


@pytest.mark.parametrize("round", range(3))
def test_factories_make_unique_records(
    coderunner_db, make_user, make_project, make_deployment, round
):
    user = make_user()
    project = make_project(user_id=user.id)
    deployment = make_deployment(project_id=project.id, status=DeploymentStatus.RUNNING)
    others = [make_deployment() for _ in range(3)]  # each with a user and project of its own
    assert coderunner_db.get_user_by_id(user.id) == user
    assert coderunner_db.get_deployment_by_id(deployment.id) == deployment
    assert len({d.project_id for d in others} | {project.id}) == 4
    assert coderunner_db.get_system_stats().total_users == 4


def test_app_tables_beside_the_library_ones(coderunner_db, coderunner_database_url, make_user):
    user = make_user(email="notes@example.test")
    with psycopg.connect(coderunner_database_url) as conn:
        conn.execute(
            "INSERT INTO app_notes (user_id, body) VALUES (%s, 'hello')", [user.id]
        )
    coderunner_db.delete_user(user.id)
    with psycopg.connect(coderunner_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM app_notes").fetchone() == (0,)
""".replace("{app_migration}", APP_MIGRATION)

TEST_ASYNC = """
import pytest


@pytest.mark.parametrize("round", range(4))
@pytest.mark.asyncio
async def test_async_service(coderunner_async_db, make_user, round):
    user = make_user()
    assert await coderunner_async_db.get_user_by_id(user.id) == user
    project = await coderunner_async_db.create_project(user_id=user.id, name="async app")
    page = await coderunner_async_db.get_projects_by_user_id(user.id)
    assert [p.id for p in page.items] == [project.id]
"""

TEST_FAILING = """
import psycopg


def test_fails_holding_a_connection(coderunner_database_url, make_user):
    make_user()
    conn = psycopg.connect(coderunner_database_url)  # left open on purpose
    conn.execute("BEGIN")
    conn.execute("LOCK TABLE users")
    assert False, "this test fails on purpose"


def test_passes(coderunner_db):
    assert coderunner_db.get_system_stats().total_users == 0
"""


TEST_EMBEDDED = """
import os
from pathlib import Path

import pytest


@pytest.mark.parametrize("round", range(2))
def test_on_the_embedded_server(coderunner_server, coderunner_db, make_user, round):
    make_user()
    assert coderunner_server.admin.host == "127.0.0.1"
    Path(os.environ["APP_SEEN_DIR"], f"port-{coderunner_server.admin.port}").touch()
"""


def make_app(root: Path, tests: dict[str, str]) -> Path:
    """An application folder: one migration of its own, a pytest.ini, `tests`."""
    app = root / "app"
    (app / "db").mkdir(parents=True)
    (app / "db" / f"{APP_MIGRATION}.sql").write_text(
        "CREATE TABLE app_notes (\n"
        "    id bigserial PRIMARY KEY,\n"
        "    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,\n"
        "    body text NOT NULL\n"
        ");\n"
    )
    (app / "db" / f"{APP_MIGRATION}.rollback.sql").write_text("DROP TABLE app_notes;\n")
    (app / "pytest.ini").write_text(
        "[pytest]\n"
        "coderunner_migrations = db\n"
        "asyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    (app / "conftest.py").write_text(CONFTEST)
    for name, body in tests.items():
        (app / name).write_text(textwrap.dedent(body))
    return app


def run_app(
    app: Path, server_url: str, *args: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """pytest in `app` against `server_url` (None: embedded servers); its result and the
    databases its tests used."""
    seen = app.parent / "seen"
    seen.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "CODERUNNER_SQL_", "TEST_DATABASE_URL"))
    }
    env["APP_SEEN_DIR"] = str(seen)
    if server_url is not None:
        env["TEST_DATABASE_URL"] = server_url
    result = subprocess.run(
        # A basetemp of its own: pytest prunes old numbered ones, this session's among them.
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(app.parent / "tmp"),
            *args,
        ],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    return result, {path.name for path in seen.iterdir()}


def existing(admin: DatabaseConfig, names: set[str]) -> list[str]:
    """Which of `names` are databases on `admin`'s server."""
    with psycopg.connect(**admin.connect_kwargs()) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", [sorted(names)]
        ).fetchall()
    return [name for (name,) in rows]


@pytest.mark.slow
def test_an_application_suite_passes_under_xdist_and_leaves_nothing(
    tmp_path: Path, coderunner_server: ScratchServer
) -> None:
    app = make_app(tmp_path, {"test_sync.py": TEST_SYNC, "test_async.py": TEST_ASYNC})
    result, seen = run_app(app, coderunner_server.admin.url(), "-n", "2")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "14 passed" in result.stdout
    templates = {name for name in seen if name.startswith("crsql_tmpl_")}
    assert {name.split("_")[2] for name in templates} == {"gw0", "gw1"}  # one per worker
    assert len(seen - templates) == 14  # a database of its own for every test
    assert existing(coderunner_server.admin, seen) == []


@pytest.mark.slow
def test_a_failing_test_leaves_nothing_behind(
    tmp_path: Path, coderunner_server: ScratchServer
) -> None:
    app = make_app(tmp_path, {"test_failing.py": TEST_FAILING})
    result, seen = run_app(app, coderunner_server.admin.url(), "-n", "2")
    assert result.returncode == 1, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 failed, 1 passed" in result.stdout
    assert len(seen) >= 3  # two test databases and at least one template
    assert existing(coderunner_server.admin, seen) == []


@pytest.mark.slow
def test_embedded_servers_one_per_worker_are_deleted_after_the_run(tmp_path: Path) -> None:
    app = make_app(tmp_path, {"test_embedded.py": TEST_EMBEDDED})
    result, seen = run_app(app, None, "-n", "2")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    ports = [int(name.removeprefix("port-")) for name in seen if name.startswith("port-")]
    assert len(ports) == 2  # one server per worker
    for port in ports:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host="127.0.0.1", port=port, user="postgres", connect_timeout=5)
    assert not list((tmp_path / "tmp").rglob("PG_VERSION"))  # their folders are gone


def test_migrations_of_the_package_and_the_app_make_one_folder(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / f"{APP_MIGRATION}.sql").write_text("SELECT 1;\n")
    (app / "README.txt").write_text("not a migration\n")
    package_files = sorted(p.name for p in migrations_dir().iterdir() if p.suffix == ".sql")
    shipped = migrations_dir() / package_files[0]
    (app / shipped.name).write_bytes(shipped.read_bytes())  # the same file twice is fine

    combined = combined_migrations([app], tmp_path / "combined")

    assert sorted(p.name for p in combined.iterdir()) == sorted(
        [*package_files, f"{APP_MIGRATION}.sql"]
    )
    assert combined_migrations([], tmp_path / "unused") == migrations_dir()


def test_a_migration_name_taken_with_other_content_is_refused(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    taken = next(p for p in sorted(migrations_dir().iterdir()) if p.suffix == ".sql")
    (app / taken.name).write_text("SELECT 'something else';\n")
    with pytest.raises(ConfigError, match=f"two different migrations named {taken.name}"):
        combined_migrations([app], tmp_path / "combined")
    with pytest.raises(ConfigError, match="migrations folder not found"):
        combined_migrations([tmp_path / "missing"], tmp_path / "combined2")


def test_close_drops_copies_and_sealed_templates(coderunner_server: ScratchServer) -> None:
    server = ScratchServer(coderunner_server.admin)
    template = server.make_template()
    copies = [server.create(template=template) for _ in range(2)]
    holder: Any = psycopg.connect(**server.config(copies[0]).connect_kwargs())
    try:
        assert sorted(server.made()) == sorted([template, *copies])
        server.close()
        assert existing(coderunner_server.admin, {template, *copies}) == []
        assert server.made() == []
    finally:
        holder.close()


def test_the_entry_point_and_addopts_load_one_plugin(pytestconfig: pytest.Config) -> None:
    import coderunner_sql.testing as plugin

    names = [name for name, p in pytestconfig.pluginmanager.list_name_plugin() if p is plugin]
    assert names == ["coderunner_sql.testing"]
    assert pytestconfig.getini("coderunner_migrations") == []
