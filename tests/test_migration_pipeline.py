"""Migrations in deploy pipelines: baseline, repair, repeatable migrations and the dry run,
each on a fresh database and on one migrated by plain `yoyo apply`, against real PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from yoyo import read_migrations

from coderunner_sql import DatabaseConfig
from coderunner_sql.embedded import find_bin_dir
from coderunner_sql.errors import ConfigError, MigrationError, MigrationIntegrityError
from coderunner_sql.migrations import Migrator, create_repeatable
from tests.helpers import assert_library_error
from tests.test_cli import clean_env, cli, url_of
from tests.test_migrations import (
    ALL,
    INITIAL,
    MORE,
    REPO,
    add_migration,
    applied_ids,
    checksums,
    run_sql,
    schema_dump,
    sha256,
    states,
    yoyo_cli,
)

VIEW = "post-apply-10-views"
VIEW_SQL = (
    "CREATE OR REPLACE VIEW project_names AS SELECT id, name FROM projects;\n"
    "SELECT nextval('post_apply_runs');\n"
)
# An ordered migration the repeatable one needs: the counter of its runs.
COUNTER = "29990101000000_post_apply_counter"


def _pg_env(config: DatabaseConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if config.password is not None:
        env["PGPASSWORD"] = config.password
    return env


def restore_schema_dump(source: DatabaseConfig, target: DatabaseConfig) -> None:
    """`pg_dump --schema-only` of `source` (its bookkeeping left out) applied to `target`
    with psql, as an operator restores a database this library never migrated."""
    dump = subprocess.run(
        [
            str(find_bin_dir() / "pg_dump"),
            "--schema-only",
            "--no-owner",
            "--exclude-table=_yoyo*",
            "--exclude-table=yoyo_lock",
            "--exclude-table=_coderunner_*",
            f"--dbname={source.replace(password=None).conninfo()}",
        ],
        capture_output=True,
        text=True,
        env=_pg_env(source),
        timeout=60,
        check=False,
    )
    assert dump.returncode == 0, dump.stderr
    assert "CREATE TABLE public.users" in dump.stdout
    restore = subprocess.run(
        [
            str(find_bin_dir() / "psql"),
            "--quiet",
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            f"--dbname={target.replace(password=None).conninfo()}",
        ],
        # A newer pg_dump than the server (the embedded wheel's against the shared
        # PostgreSQL 15) sets transaction_timeout, which servers before 17 do not know.
        input="\n".join(
            line
            for line in dump.stdout.splitlines()
            if not line.startswith("SET transaction_timeout")
        ),
        capture_output=True,
        text=True,
        env=_pg_env(target),
        timeout=60,
        check=False,
    )
    assert restore.returncode == 0, restore.stderr


def has_history(config: DatabaseConfig) -> bool:
    return bool(run_sql(config, "SELECT to_regclass('_yoyo_migration') IS NOT NULL")[0][0])


def runs(config: DatabaseConfig) -> int:
    """How often the repeatable migration ran here (its counter's last value)."""
    return int(run_sql(config, "SELECT last_value FROM post_apply_runs")[0][0])


def with_repeatable(folder: Path, body: str = VIEW_SQL) -> Path:
    """A migrations copy with the counter migration and the repeatable view file."""
    add_migration(
        folder, COUNTER, "CREATE SEQUENCE post_apply_runs;", "DROP SEQUENCE post_apply_runs;"
    )
    path = folder / f"{VIEW}.sql"
    path.write_text(f"-- Repeatable: views over the tables\n{body}")
    return path


@pytest.fixture
def yoyo_migrated(empty_db_config: DatabaseConfig, migrations_copy: Path) -> DatabaseConfig:
    """A database migrated by plain `yoyo apply` (the copy's yoyo.ini and folder)."""
    shutil.copy(REPO / "yoyo.ini", migrations_copy.parent / "yoyo.ini")
    yoyo_cli(empty_db_config, migrations_copy.parent, "apply")
    assert applied_ids(empty_db_config) == list(ALL)
    return empty_db_config


@pytest.fixture
def other_db(
    pg_admin_url: str, pg_admin_config: DatabaseConfig
) -> Iterator[Callable[[], DatabaseConfig]]:
    """Make more empty databases, dropped after the test."""
    from tests.plugins.postgres import create_database, drop_database

    made: list[str] = []

    def make() -> DatabaseConfig:
        made.append(create_database(pg_admin_url))
        return pg_admin_config.replace(dbname=made[-1])

    yield make
    for name in made:
        drop_database(pg_admin_url, name)


# -- baseline ---------------------------------------------------------------------------------


def test_a_restored_schema_dump_is_baselined_then_migrates_forward(
    db_config: DatabaseConfig, empty_db_config: DatabaseConfig, migrations_copy: Path
) -> None:
    restore_schema_dump(db_config, empty_db_config)
    assert not has_history(empty_db_config)
    migrator = Migrator(empty_db_config, migrations_copy)
    assert set(states(migrator).values()) == {"pending"}

    report = migrator.baseline(ALL[-1])
    assert report.baselined == ALL
    assert applied_ids(empty_db_config) == list(ALL)
    assert checksums(empty_db_config) == {
        mid: (sha256(migrations_copy / f"{mid}.sql"), "baseline") for mid in ALL
    }
    assert set(states(migrator).values()) == {"applied"}
    migrator.verify()
    assert schema_dump(empty_db_config) == schema_dump(db_config)
    # Nothing more to record the second time.
    assert migrator.baseline(ALL[-1]).baselined == ()

    add_migration(migrations_copy, MORE, "ALTER TABLE users ADD COLUMN nickname text;")
    assert migrator.apply().applied == (MORE,)
    assert run_sql(empty_db_config, "SELECT nickname FROM users") == []
    migrator.ensure_ready()


def test_baseline_refuses_a_schema_the_migrations_do_not_build_naming_the_difference(
    db_config: DatabaseConfig, empty_db_config: DatabaseConfig, migrations_copy: Path
) -> None:
    restore_schema_dump(db_config, empty_db_config)
    run_sql(empty_db_config, "DROP INDEX deployments_status_created_idx")
    migrator = Migrator(empty_db_config, migrations_copy)
    with pytest.raises(MigrationError) as info:
        migrator.baseline(ALL[-1])
    assert_library_error(info)
    message = str(info.value)
    assert "baseline refused" in message
    assert "index public.deployments.deployments_status_created_idx is missing" in message
    assert not has_history(empty_db_config)  # a refusal records nothing, not even tables
    # Up to the first migration only: the later ones' objects are in the way.
    with pytest.raises(MigrationError, match=r"baseline refused.*first difference: ") as early:
        migrator.baseline(INITIAL)
    assert INITIAL in str(early.value)
    assert not has_history(empty_db_config)


def test_baseline_of_an_empty_database_is_refused(
    empty_db_config: DatabaseConfig, migrations_copy: Path
) -> None:
    with pytest.raises(MigrationError, match=r"first difference: .* is missing"):
        Migrator(empty_db_config, migrations_copy).baseline(INITIAL)
    with pytest.raises(ConfigError, match="no migration of that id"):
        Migrator(empty_db_config, migrations_copy).baseline("20000101000000_nothing")


def test_baseline_on_a_database_yoyo_migrated(
    yoyo_migrated: DatabaseConfig, migrations_copy: Path
) -> None:
    migrator = Migrator(yoyo_migrated, migrations_copy)
    assert migrator.baseline(ALL[-1]).baselined == ()
    with pytest.raises(MigrationError, match=f"{ALL[-1]} is already applied here"):
        migrator.baseline(ALL[-2])
    assert applied_ids(yoyo_migrated) == list(ALL)


def test_baseline_command(
    db_config: DatabaseConfig, empty_db_config: DatabaseConfig, migrations_copy: Path
) -> None:
    restore_schema_dump(db_config, empty_db_config)
    url = url_of(empty_db_config)
    folder = str(migrations_copy)
    result = cli(
        "--database", url, "migrate", "baseline", "--to", ALL[-1], "--migrations", folder, "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"baselined": list(ALL)}
    status = cli("--database", url, "migrate", "status", "--json", "--migrations", folder)
    assert {row["state"] for row in json.loads(status.stdout)} == {"applied"}


# -- repair -----------------------------------------------------------------------------------


def edit_comment(folder: Path, migration_id: str = INITIAL) -> Path:
    path = folder / f"{migration_id}.sql"
    path.write_text(path.read_text() + "\n-- Reviewed: the index names follow the new rules.\n")
    return path


def test_an_edited_applied_file_is_repaired_and_verify_passes_with_the_repair_listed(
    db_config: DatabaseConfig, migrations_copy: Path
) -> None:
    migrator = Migrator(db_config, migrations_copy)
    old = sha256(migrations_copy / f"{INITIAL}.sql")
    path = edit_comment(migrations_copy)
    with pytest.raises(MigrationIntegrityError):
        migrator.verify()

    changes = migrator.repair_plan()
    assert [(c.id, c.old_sha256, c.new_sha256, c.file) for c in changes] == [
        (INITIAL, old, sha256(path), path)
    ]
    assert migrator.full_status().repairs == ()  # the plan changed nothing
    report = migrator.repair(expected=changes, operator="release-bot")
    assert report.repaired == tuple(changes)
    migrator.verify()
    assert checksums(db_config)[INITIAL] == (sha256(path), "repair")

    (repair,) = migrator.full_status().repairs
    role = run_sql(db_config, "SELECT session_user")[0][0]
    assert (repair.id, repair.old_sha256, repair.new_sha256) == (INITIAL, old, sha256(path))
    assert (repair.repaired_by, repair.operator) == (role, "release-bot")
    assert repair.repaired_at.tzinfo is not None
    assert migrator.repair_plan() == []


def test_repair_refuses_what_it_cannot_repair(
    db_config: DatabaseConfig, migrations_copy: Path
) -> None:
    migrator = Migrator(db_config, migrations_copy)
    with pytest.raises(ConfigError, match=f"{INITIAL} cannot be repaired: it is applied"):
        migrator.repair_plan((INITIAL,))
    path = edit_comment(migrations_copy)
    shown = migrator.repair_plan()
    path.write_text(path.read_text() + "-- and edited again\n")
    with pytest.raises(MigrationError, match="changed after the repair was shown"):
        migrator.repair(expected=shown)
    assert migrator.full_status().repairs == ()
    (migrations_copy / f"{ALL[-1]}.sql").unlink()  # a deleted file is restored, not repaired
    with pytest.raises(MigrationIntegrityError, match="removed"):
        migrator.repair()


def test_repair_on_a_database_yoyo_migrated(
    yoyo_migrated: DatabaseConfig, migrations_copy: Path
) -> None:
    migrator = Migrator(yoyo_migrated, migrations_copy)
    migrator.verify()  # records the checksums yoyo does not keep
    edit_comment(migrations_copy)
    assert [c.id for c in migrator.repair().repaired] == [INITIAL]
    migrator.verify()
    assert [r.id for r in migrator.full_status().repairs] == [INITIAL]


def run_cli_with_input(text: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "coderunner_sql", *args],
        input=text,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_repair_command_asks_and_status_lists_the_repair(
    db_config: DatabaseConfig, migrations_copy: Path
) -> None:
    url, folder = url_of(db_config), str(migrations_copy)
    args = ("--database", url, "migrate", "--migrations", folder)
    nothing = cli(*args, "repair")
    assert nothing.returncode == 0, nothing.stderr
    assert "nothing to repair" in nothing.stdout

    edit_comment(migrations_copy)
    declined = run_cli_with_input("n\n", *args, "repair")
    assert declined.returncode == 1
    assert f"{INITIAL}: recorded sha256" in declined.stdout
    assert "Re-record 1 checksum(s)?" in declined.stderr
    assert cli(*args, "verify").returncode == 1

    accepted = run_cli_with_input("y\n", *args, "repair")
    assert accepted.returncode == 0, accepted.stderr
    assert "repaired 1 checksum(s)" in accepted.stdout
    assert cli(*args, "verify").returncode == 0

    table = cli(*args, "status")
    assert "repaired 1x" in table.stdout
    assert "repairs:" in table.stdout
    rows = {row["id"]: row for row in json.loads(cli(*args, "status", "--json").stdout)}
    (entry,) = rows[INITIAL]["repairs"]
    assert entry["new_sha256"] == sha256(migrations_copy / f"{INITIAL}.sql")
    assert rows[ALL[-1]]["repairs"] == []
    assert cli(*args, "repair", "--json").returncode == 2  # it cannot ask


# -- repeatable migrations --------------------------------------------------------------------


def test_a_changed_repeatable_view_is_reapplied_once_and_only_once(
    empty_db_config: DatabaseConfig, migrations_copy: Path
) -> None:
    path = with_repeatable(migrations_copy)
    migrator = Migrator(empty_db_config, migrations_copy)
    assert [r.state for r in migrator.full_status().repeatables] == ["pending"]
    first = migrator.apply()
    assert first.applied == (*ALL, COUNTER)
    assert first.repeatables == (VIEW,)
    assert runs(empty_db_config) == 1
    assert migrator.apply().repeatables == ()
    assert runs(empty_db_config) == 1

    path.write_text(path.read_text().replace("id, name", "id, name, user_id"))
    (repeatable,) = migrator.full_status().repeatables
    assert (repeatable.name, repeatable.state) == (VIEW, "changed")
    assert [s.id for s in migrator.plan(lint=False).steps] == [VIEW]
    assert migrator.apply().repeatables == (VIEW,)
    assert runs(empty_db_config) == 2
    assert run_sql(empty_db_config, "SELECT id, name, user_id FROM project_names") == []
    for _ in range(2):
        assert migrator.apply() == migrator.apply().__class__()
    assert runs(empty_db_config) == 2
    assert [r.state for r in migrator.full_status().repeatables] == ["applied"]


def test_a_failing_repeatable_changes_nothing_and_runs_again_next_time(
    empty_db_config: DatabaseConfig, migrations_copy: Path
) -> None:
    path = with_repeatable(migrations_copy)
    migrator = Migrator(empty_db_config, migrations_copy)
    migrator.apply()
    good = path.read_text()
    path.write_text(good.replace("FROM projects", "FROM no_such_table"))
    with pytest.raises(MigrationError, match="no_such_table"):
        migrator.apply()
    assert runs(empty_db_config) == 1
    assert [r.state for r in migrator.full_status().repeatables] == ["changed"]
    path.write_text(good + "-- fixed\n")
    assert migrator.apply().repeatables == (VIEW,)
    assert runs(empty_db_config) == 2


def test_plain_yoyo_and_migrate_give_the_same_schema_with_repeatables(
    empty_db_config: DatabaseConfig,
    other_db: Callable[[], DatabaseConfig],
    migrations_copy: Path,
) -> None:
    with_repeatable(migrations_copy)
    shutil.copy(REPO / "yoyo.ini", migrations_copy.parent / "yoyo.ini")
    yoyo_cli(empty_db_config, migrations_copy.parent, "apply")
    assert runs(empty_db_config) == 1  # yoyo ran the post-apply file, and left no mark
    by_migrate = other_db()
    Migrator(by_migrate, migrations_copy).apply()
    assert schema_dump(empty_db_config) == schema_dump(by_migrate)
    assert "project_names" in schema_dump(by_migrate)

    # On the database yoyo migrated, migrate runs it once (its checksum was never kept).
    adopted = Migrator(empty_db_config, migrations_copy)
    assert [r.state for r in adopted.full_status().repeatables] == ["pending"]
    assert adopted.apply().repeatables == (VIEW,)
    assert adopted.apply().repeatables == ()
    assert runs(empty_db_config) == 2


def test_create_repeatable_makes_a_file_yoyo_runs_after_every_apply(
    migrations_copy: Path,
) -> None:
    path = create_repeatable("20 grants", migrations_copy, description="grants on views")
    assert path.name == "post-apply-20-grants.sql"
    assert "-- Description: grants on views" in path.read_text()
    assert [m.id for m in read_migrations(str(migrations_copy)).post_apply] == [path.stem]
    assert path.stem not in [m.id for m in read_migrations(str(migrations_copy))]
    with pytest.raises(ConfigError, match="already exists"):
        create_repeatable("20 grants", migrations_copy)
    result = cli(
        "migrate", "create", "--repeatable", "30 views", "--migrations", str(migrations_copy)
    )
    assert result.returncode == 0, result.stderr
    assert (migrations_copy / "post-apply-30-views.sql").exists()
    assert not list(migrations_copy.glob("post-apply-30-views.rollback.sql"))


def test_status_shows_repeatables(empty_db_config: DatabaseConfig, migrations_copy: Path) -> None:
    with_repeatable(migrations_copy)
    url, folder = url_of(empty_db_config), str(migrations_copy)
    assert cli("--database", url, "migrate", "--migrations", folder).returncode == 0
    rows = json.loads(
        cli("--database", url, "migrate", "status", "--json", "--migrations", folder).stdout
    )
    assert rows[-1]["id"] == VIEW
    assert (rows[-1]["kind"], rows[-1]["state"]) == ("repeatable", "applied")
    assert {row["kind"] for row in rows[:-1]} == {"versioned"}
    table = cli("--database", url, "migrate", "status", "--migrations", folder).stdout
    assert "repeatable, applied" in next(line for line in table.splitlines() if VIEW in line)


# -- the dry run ------------------------------------------------------------------------------


def test_dry_run_on_a_fresh_database_lists_everything_and_applies_nothing(
    empty_db_config: DatabaseConfig, migrations_copy: Path
) -> None:
    with_repeatable(migrations_copy)
    url, folder = url_of(empty_db_config), str(migrations_copy)
    dry = cli("--database", url, "migrate", "--migrations", folder, "--dry-run")
    assert dry.returncode == 3, dry.stderr
    for mid in (*ALL, COUNTER, VIEW):
        assert mid in dry.stdout
    assert "CREATE TABLE" in dry.stdout  # the SQL itself
    assert "nothing was applied" in dry.stdout
    assert not has_history(empty_db_config)

    plan = json.loads(
        cli("--database", url, "migrate", "plan", "--json", "--migrations", folder).stdout
    )
    assert plan["pending"] is True
    assert [s["id"] for s in plan["steps"]] == [*ALL, COUNTER, VIEW]
    assert [s["kind"] for s in plan["steps"]][-1] == "repeatable"
    outside = {s["id"] for s in plan["steps"] if not s["transactional"]}
    assert outside == {
        mid
        for mid in ALL
        if "-- transactional: false" in (migrations_copy / f"{mid}.sql").read_text()
    }
    assert not has_history(empty_db_config)

    assert cli("--database", url, "migrate", "--migrations", folder).returncode == 0
    done = cli("--database", url, "migrate", "--migrations", folder, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "nothing to apply" in done.stdout


def test_dry_run_on_a_database_yoyo_migrated_shows_lint_and_transactions(
    yoyo_migrated: DatabaseConfig, migrations_copy: Path
) -> None:
    url, folder = url_of(yoyo_migrated), str(migrations_copy)
    nothing = cli("--database", url, "migrate", "plan", "--migrations", folder)
    assert nothing.returncode == 0, nothing.stderr
    add_migration(migrations_copy, MORE, "ALTER TABLE projects DROP COLUMN description;")
    add_migration(
        migrations_copy,
        "29990102000000_index",
        "-- transactional: false\nCREATE INDEX CONCURRENTLY users_x_idx ON users (created_at);",
    )
    result = cli("--database", url, "migrate", "--dry-run", "--json", "--migrations", folder)
    assert result.returncode == 3, result.stderr
    steps = {s["id"]: s for s in json.loads(result.stdout)["steps"]}
    assert list(steps) == [MORE, "29990102000000_index"]
    assert steps[MORE]["transactional"] is True
    assert steps["29990102000000_index"]["transactional"] is False
    (finding,) = [f for f in steps[MORE]["findings"] if "drop-used-column" in f]
    assert "projects.description" in finding
    assert "get_project_by_id" in finding
    text = cli("--database", url, "migrate", "--dry-run", "--migrations", folder)
    assert "NOT in a transaction" in text.stdout
    assert "-- lint: line 3:" in text.stdout
    assert applied_ids(yoyo_migrated) == list(ALL)  # nothing applied
    # A drifted file makes migrate refuse: so does its dry run.
    assert cli("--database", url, "migrate", "verify", "--migrations", folder).returncode == 0
    edit_comment(migrations_copy)
    assert cli("--database", url, "migrate", "--dry-run", "--migrations", folder).returncode == 1


def test_dry_run_goes_with_migrate_alone(db_config: DatabaseConfig) -> None:
    result = cli("--database", url_of(db_config), "migrate", "--dry-run", "status")
    assert result.returncode == 2
    assert "migrate plan" in result.stderr
