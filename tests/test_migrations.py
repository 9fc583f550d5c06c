"""The Migrator against real PostgreSQL: apply, status, rollback, checksums, the lock, failures."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from yoyo import get_backend, read_migrations
from yoyo.migrations import read_sql_migration

from coderunner_sql import DatabaseConfig, DatabaseService
from coderunner_sql.embedded import find_bin_dir
from coderunner_sql.errors import (
    ConfigError,
    MigrationError,
    MigrationIntegrityError,
    MigrationLockError,
    PermissionDeniedError,
    SchemaNotReadyError,
)
from coderunner_sql.health import database_health
from coderunner_sql.migrations import _LOCK_KEY, Migrator, RunReport, create_migration
from coderunner_sql.resources import migrations_dir
from tests.helpers import assert_library_error
from tests.plugins.postgres import create_database, drop_database
from tests.plugins.secrets import register_secret

REPO = Path(__file__).resolve().parent.parent
# Every migration in the repo, oldest first: the tests hold for however many there are.
ALL = tuple(
    sorted(
        path.name.removesuffix(".sql")
        for path in migrations_dir().glob("*.sql")
        if not path.name.endswith(".rollback.sql")
    )
)
INITIAL = "20261125100000_initial_schema"
# Test migrations sort after any real one.
MORE = "29990101000000_more"
BROKEN = "29990102000000_broken"
NOTHING: dict[str, set[str]] = {"relations": set(), "types": set(), "functions": set()}
BOOKKEEPING = {
    "_yoyo_migration",
    "_yoyo_log",
    "_yoyo_version",
    "yoyo_lock",
    "_coderunner_migrations",
    "_coderunner_migration_repairs",
    "_coderunner_migration_repairs_repair_id_seq",
    "_coderunner_repeatables",
}

TABLES = {"users", "projects", "deployments"}
ENUMS = {
    "plan_type": ["free", "personal", "team"],
    "deployment_status": ["PENDING", "RUNNING", "STOPPED", "FAILED"],
}
INDEXES = {
    "users_pkey",
    "users_email_fold_key",
    "users_created_at_idx",
    "projects_pkey",
    "projects_user_name_fold_key",
    "projects_user_created_idx",
    "deployments_pkey",
    "deployments_project_created_idx",
    "deployments_status_created_idx",
}
TRIGGERS = {
    ("users", "users_set_updated_at"),
    ("projects", "projects_set_updated_at"),
    ("deployments", "deployments_set_updated_at"),
}


# -- helpers ------------------------------------------------------------------------------------


def run_sql(config: DatabaseConfig, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on its own autocommit connection; rows, or [] for a command."""
    with psycopg.connect(config.conninfo(), autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def user_objects(config: DatabaseConfig) -> dict[str, set[str]]:
    """What the migrations own in `public`: relations, types and functions, bookkeeping aside."""
    relations = {
        name
        for (name,) in run_sql(
            config,
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public'",
        )
    }
    relations -= BOOKKEEPING
    relations -= {f"{table}_pkey" for table in BOOKKEEPING}
    types = {
        name
        for (name,) in run_sql(
            config,
            "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'r', 'm')",
        )
    }
    functions = {
        name
        for (name,) in run_sql(
            config,
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public'",
        )
    }
    return {"relations": relations, "types": types, "functions": functions}


_ATTVER = re.compile(r"\b(pg_attver=)\d+")


def schema_dump(config: DatabaseConfig) -> str:
    """`pg_dump --schema-only` of the migrated schema, bookkeeping tables and comments left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if config.password is not None:
        env["PGPASSWORD"] = config.password
    result = subprocess.run(
        [
            str(find_bin_dir() / "pg_dump"),
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--exclude-table=_yoyo*",
            "--exclude-table=yoyo_lock",
            "--exclude-table=_coderunner_*",
            f"--dbname={config.replace(password=None).conninfo()}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Comments carry versions; \restrict carries a random key per run. Some servers (the
    # machine's shared PostgreSQL 15 among them) stamp every new column with an attribute
    # option `pg_attver=<number>` that differs per CREATE TABLE: no migration sets it, so
    # its value is masked while the option itself still has to match.
    lines = [
        _ATTVER.sub(r"\1<n>", line)
        for line in result.stdout.splitlines()
        if line.strip() and not line.startswith(("--", "\\restrict", "\\unrestrict"))
    ]
    return "\n".join(lines)


def yoyo_cli(config: DatabaseConfig, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `yoyo` command from this venv, run in `cwd` (where its yoyo.ini is)."""
    yoyo = Path(sys.executable).with_name("yoyo")
    url = config.url(scheme="postgresql+psycopg")
    result = subprocess.run(
        [str(yoyo), *args[:1], "--batch", "--database", url, *args[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def applied_ids(config: DatabaseConfig) -> list[str]:
    """What yoyo's own table says was applied (one row per migration applied)."""
    return [
        row[0]
        for row in run_sql(
            config, "SELECT migration_id FROM _yoyo_migration ORDER BY applied_at_utc"
        )
    ]


def advisory_locks(config: DatabaseConfig) -> int:
    """How many advisory locks are held or awaited in this database (pg_locks is server-wide)."""
    rows = run_sql(
        config,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    return int(rows[0][0])


def checksums(config: DatabaseConfig) -> dict[str, tuple[str, str]]:
    """migration id -> (sha256, recorded_by) from our checksum table."""
    rows = run_sql(config, "SELECT migration_id, sha256, recorded_by FROM _coderunner_migrations")
    return {row[0]: (row[1], row[2]) for row in rows}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_migration(folder: Path, migration_id: str, body: str, rollback: str = "") -> Path:
    """A new migration file (and its rollback) in a migrations copy."""
    path = folder / f"{migration_id}.sql"
    path.write_text(f"-- Migration: {migration_id}\n\n{body}\n")
    (folder / f"{migration_id}.rollback.sql").write_text(rollback + "\n")
    return path


def states(migrator: Migrator) -> dict[str, str]:
    return {state.id: state.state for state in migrator.status()}


@pytest.fixture
def other_empty_db_config(
    pg_admin_url: str, pg_admin_config: DatabaseConfig
) -> Iterator[DatabaseConfig]:
    """A second fresh database with no migrations applied."""
    name = create_database(pg_admin_url)
    try:
        yield pg_admin_config.replace(dbname=name)
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture
def migrator(empty_db_config: DatabaseConfig, migrations_copy: Path) -> Migrator:
    """A Migrator for a fresh database and a private copy of migrations/."""
    return Migrator(empty_db_config, migrations_copy, lock_timeout=10)


@pytest.fixture
def migrated(db_config: DatabaseConfig, migrations_copy: Path) -> Migrator:
    """A Migrator for a database already migrated by the Migrator (a template clone)."""
    return Migrator(db_config, migrations_copy, lock_timeout=10)


@pytest.fixture
def lock_holder(empty_db_config: DatabaseConfig) -> Iterator[psycopg.Connection[Any]]:
    """A session of our own holding the migration advisory lock on the test database."""
    conn = psycopg.connect(empty_db_config.conninfo(), autocommit=True)
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        yield conn
    finally:
        conn.close()


# -- apply, status, rollback --------------------------------------------------------------------


def test_the_repo_has_migrations() -> None:
    assert ALL[0] == INITIAL
    assert len(set(ALL)) == len(ALL)
    for migration_id in ALL:
        assert (migrations_dir() / f"{migration_id}.rollback.sql").exists()


def test_apply_creates_the_schema(migrator: Migrator, empty_db_config: DatabaseConfig) -> None:
    assert user_objects(empty_db_config) == NOTHING
    seen: list[str] = []
    report = migrator.apply(progress=seen.append)
    assert report.applied == ALL
    assert seen == list(ALL)
    assert report.recorded_on_first_sight == ()

    objects = user_objects(empty_db_config)
    assert objects["relations"] >= TABLES | INDEXES
    assert objects["types"] >= set(ENUMS)
    assert "set_updated_at" in objects["functions"]
    for enum, labels in ENUMS.items():
        rows = run_sql(
            empty_db_config,
            "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
            "WHERE t.typname = %s ORDER BY e.enumsortorder",
            (enum,),
        )
        assert [label for (label,) in rows] == labels
    triggers = run_sql(
        empty_db_config,
        "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal",
    )
    assert set(triggers) >= TRIGGERS

    assert applied_ids(empty_db_config) == list(ALL)
    assert checksums(empty_db_config) == {
        migration_id: (sha256(migrator.directory / f"{migration_id}.sql"), "migrate")
        for migration_id in ALL
    }
    # yoyo's log has the run, so `yoyo list` and friends see it too.
    log = run_sql(empty_db_config, "SELECT migration_id, operation FROM _yoyo_log")
    assert sorted(log) == [(migration_id, "apply") for migration_id in ALL]

    again = migrator.apply()
    assert again.applied == ()
    assert applied_ids(empty_db_config) == list(ALL)


def test_status_before_and_after(migrator: Migrator) -> None:
    before = migrator.status()
    assert [(s.id, s.state, s.applied_at) for s in before] == [(m, "pending", None) for m in ALL]
    assert before[0].file == migrator.directory / f"{INITIAL}.sql"
    assert migrator.pending() == list(ALL)

    started = datetime.now(UTC)
    migrator.apply()
    after = migrator.status()
    assert [(s.id, s.state) for s in after] == [(m, "applied") for m in ALL]
    for state in after:
        assert state.applied_at is not None
        assert state.applied_at.tzinfo is not None
        assert abs(state.applied_at - started) < timedelta(minutes=1)
    assert migrator.pending() == []


def test_status_changes_nothing(migrator: Migrator, empty_db_config: DatabaseConfig) -> None:
    migrator.status()
    migrator.status()
    assert user_objects(empty_db_config) == NOTHING
    # Not even the bookkeeping: reading the state is all status() does.
    for table in BOOKKEEPING:
        assert run_sql(empty_db_config, "SELECT to_regclass(%s)", (table,)) == [(None,)]


def test_rollback_removes_everything_and_reapply_restores_it(
    migrator: Migrator, empty_db_config: DatabaseConfig
) -> None:
    migrator.apply()
    migrated = schema_dump(empty_db_config)
    assert "CREATE TABLE public.deployments" in migrated

    seen: list[str] = []
    report = migrator.rollback(count=len(ALL), progress=seen.append)
    assert report.rolled_back == tuple(reversed(ALL))
    assert seen == list(reversed(ALL))
    # Every rollback file undoes its migration completely: only bookkeeping is left.
    assert user_objects(empty_db_config) == NOTHING
    assert applied_ids(empty_db_config) == []
    assert checksums(empty_db_config) == {}
    assert set(states(migrator).values()) == {"pending"}
    # Nothing left to roll back.
    assert migrator.rollback().rolled_back == ()

    assert migrator.apply().applied == ALL
    assert schema_dump(empty_db_config) == migrated
    assert set(states(migrator).values()) == {"applied"}


def test_rollback_newest_first_and_count(
    migrator: Migrator, migrations_copy: Path, empty_db_config: DatabaseConfig
) -> None:
    add_migration(
        migrations_copy,
        MORE,
        "ALTER TABLE users ADD COLUMN avatar_url text;",
        "ALTER TABLE users DROP COLUMN avatar_url;",
    )
    assert migrator.apply().applied == (*ALL, MORE)
    assert migrator.rollback().rolled_back == (MORE,)  # count defaults to 1
    columns = run_sql(
        empty_db_config,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'",
    )
    assert ("avatar_url",) not in columns
    assert ("email",) in columns
    assert states(migrator) == {**dict.fromkeys(ALL, "applied"), MORE: "pending"}

    migrator.apply()
    everything = migrator.rollback(count=len(ALL) + 5)
    assert everything.rolled_back == (MORE, *reversed(ALL))
    assert user_objects(empty_db_config) == NOTHING


@pytest.mark.parametrize("count", [0, -1])
def test_rollback_count_must_be_positive(migrator: Migrator, count: int) -> None:
    with pytest.raises(ConfigError, match=str(count)):
        migrator.rollback(count=count)


def test_rollback_without_rollback_file(
    migrated: Migrator, migrations_copy: Path, db_config: DatabaseConfig
) -> None:
    (migrations_copy / f"{ALL[-1]}.rollback.sql").unlink()
    with pytest.raises(MigrationError, match=f"{ALL[-1]}.rollback.sql") as info:
        migrated.rollback()
    assert_library_error(info)
    assert applied_ids(db_config) == list(ALL)


# -- creating migrations --------------------------------------------------------------------------


def test_create_migration_names_and_headers(migrations_copy: Path) -> None:
    forward, backward = create_migration(
        "Add user avatars!",
        migrations_copy,
        description="Avatars for users",
        now=datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert forward == migrations_copy / "20270102030405_add_user_avatars.sql"
    assert backward == migrations_copy / "20270102030405_add_user_avatars.rollback.sql"
    assert forward.read_text().splitlines()[:3] == [
        "-- Migration: Add user avatars!",
        "-- Created: 2027-01-02T03:04:05Z",
        "-- Description: Avatars for users",
    ]
    assert backward.read_text().startswith("-- Rollback: Add user avatars!\n")
    assert forward.name in backward.read_text()

    # Another time zone is written as UTC; no description gets the placeholder.
    plus_two = timezone(timedelta(hours=2))
    other, _ = create_migration("x", migrations_copy, now=datetime(2027, 1, 2, 6, tzinfo=plus_two))
    assert other.name == "20270102040000_x.sql"
    assert "-- Description: Add your migration description here" in other.read_text()


def test_create_migration_refuses_bad_names_and_duplicates(migrations_copy: Path) -> None:
    with pytest.raises(ConfigError, match="'!!!'"):
        create_migration("!!!", migrations_copy)
    when = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    forward, _ = create_migration("same", migrations_copy, now=when)
    forward.write_text("-- kept\n")
    # A second migration in the same second sorts after the first instead of replacing it.
    again, _ = create_migration("same", migrations_copy, now=when)
    assert again.name == "20270102030406_same.sql"
    assert forward.read_text() == "-- kept\n"


def test_create_migration_sorts_after_a_future_dated_one(migrations_copy: Path) -> None:
    (migrations_copy / "29990101000000_from_the_future.sql").write_text("SELECT 1;\n")
    forward, _ = create_migration("later", migrations_copy, now=datetime(2027, 1, 1, tzinfo=UTC))
    assert forward.name == "29990101000001_later.sql"
    applied_order = sorted(
        p.name for p in migrations_copy.glob("*.sql") if not p.name.endswith(".rollback.sql")
    )
    assert applied_order[-1] == forward.name


def test_created_migration_is_pending_then_applies(
    migrated: Migrator, migrations_copy: Path, db_config: DatabaseConfig
) -> None:
    forward, backward = create_migration(
        "add avatar", migrations_copy, now=datetime(2999, 1, 1, tzinfo=UTC)
    )
    with forward.open("a") as f:
        f.write("ALTER TABLE users ADD COLUMN avatar_url text;\n")
    with backward.open("a") as f:
        f.write("ALTER TABLE users DROP COLUMN avatar_url;\n")
    new_id = forward.name.removesuffix(".sql")
    assert migrated.pending() == [new_id]
    assert migrated.apply().applied == (new_id,)
    assert run_sql(db_config, "SELECT avatar_url FROM users") == []
    assert migrated.rollback().rolled_back == (new_id,)


def test_created_migration_header_is_not_a_yoyo_directive(migrations_copy: Path) -> None:
    forward, _ = create_migration("empty", migrations_copy, now=datetime(2999, 1, 1, tzinfo=UTC))
    directives, _comment, statements = read_sql_migration(str(forward))
    assert directives == {}
    assert [s for s in statements if s.strip()] == []
    ids = [m.id for m in Migrator(DatabaseConfig(), migrations_copy).migrations()]
    assert ids == [*ALL, forward.stem]


# -- checksums -------------------------------------------------------------------------------------


def test_edited_applied_migration_is_an_integrity_error(
    migrated: Migrator, migrations_copy: Path
) -> None:
    path = migrations_copy / f"{INITIAL}.sql"
    original = path.read_text()
    path.write_text(original.replace("char_length(name) BETWEEN 1 AND 100", "true"))
    assert states(migrated)[INITIAL] == "changed"
    for run in (migrated.verify, migrated.apply, migrated.rollback, migrated.ensure_ready):
        with pytest.raises(MigrationIntegrityError) as info:
            run()
        assert str(path) in str(info.value)
        assert "edited" in str(info.value)
        assert info.value.files == (str(path),)
        assert_library_error(info)
    # Restoring the file restores trust.
    path.write_text(original)
    assert migrated.verify().recorded_on_first_sight == ()
    assert states(migrated)[INITIAL] == "applied"


def test_a_comment_edit_is_drift_too(migrated: Migrator, migrations_copy: Path) -> None:
    path = migrations_copy / f"{ALL[-1]}.sql"
    path.write_text(path.read_text() + "\n-- a harmless-looking note\n")
    with pytest.raises(MigrationIntegrityError, match=ALL[-1]):
        migrated.verify()


def test_deleted_applied_migration_is_an_integrity_error(
    migrated: Migrator, migrations_copy: Path
) -> None:
    (migrations_copy / f"{INITIAL}.sql").unlink()
    (migrations_copy / f"{INITIAL}.rollback.sql").unlink()
    missing = [(s.id, s.file) for s in migrated.status() if s.state == "missing"]
    assert missing == [(INITIAL, None)]
    for run in (migrated.verify, migrated.apply, migrated.rollback, migrated.ensure_ready):
        with pytest.raises(MigrationIntegrityError) as info:
            run()
        assert f"{INITIAL}.sql" in str(info.value)
        assert "removed" in str(info.value)
        assert_library_error(info)


def test_yoyo_cli_apply_is_recorded_on_first_sight(
    empty_db_config: DatabaseConfig, migrations_copy: Path
) -> None:
    # The repo's yoyo.ini beside the copy: `sources = %(here)s/migrations` finds the copy.
    shutil.copy(REPO / "yoyo.ini", migrations_copy.parent / "yoyo.ini")
    yoyo_cli(empty_db_config, migrations_copy.parent, "apply")
    assert applied_ids(empty_db_config) == list(ALL)

    migrator = Migrator(empty_db_config, migrations_copy)
    assert set(states(migrator).values()) == {"unrecorded"}
    assert migrator.verify().recorded_on_first_sight == ALL
    assert checksums(empty_db_config) == {
        migration_id: (sha256(migrations_copy / f"{migration_id}.sql"), "first-sight")
        for migration_id in ALL
    }
    assert set(states(migrator).values()) == {"applied"}
    assert migrator.verify().recorded_on_first_sight == ()
    assert migrator.apply().applied == ()
    migrator.ensure_ready()

    # A file edited after first sight is caught like any other.
    path = migrations_copy / f"{INITIAL}.sql"
    path.write_text(path.read_text() + "\n")
    with pytest.raises(MigrationIntegrityError, match=INITIAL):
        migrator.verify()
    path.write_text(path.read_text()[:-1])

    # yoyo sees what the Migrator applies, too: one shared history.
    add_migration(migrations_copy, MORE, "CREATE TABLE more (id int);")
    assert migrator.apply().applied == (MORE,)
    backend = get_backend(empty_db_config.url(scheme="postgresql+psycopg"))
    try:
        assert list(backend.to_apply(read_migrations(str(migrations_copy)))) == []
        assert [m.id for m in backend.to_rollback(read_migrations(str(migrations_copy)))] == [
            MORE,
            *reversed(ALL),
        ]
    finally:
        backend.connection.close()


def test_yoyo_cli_and_migrator_make_the_same_schema(
    empty_db_config: DatabaseConfig, other_empty_db_config: DatabaseConfig
) -> None:
    yoyo_cli(empty_db_config, REPO, "apply")  # the repo's own yoyo.ini and migrations/
    Migrator(other_empty_db_config).apply()
    by_yoyo = schema_dump(empty_db_config)
    by_migrator = schema_dump(other_empty_db_config)
    assert "CREATE TABLE public.users" in by_yoyo
    assert "_yoyo" not in by_yoyo
    assert "_coderunner_migrations" not in by_migrator
    assert by_yoyo == by_migrator
    # And the Migrator adopts yoyo's run without applying anything again.
    report = Migrator(empty_db_config).apply()
    assert report == RunReport(applied=(), recorded_on_first_sight=ALL)


# -- the lock -------------------------------------------------------------------------------------


def test_concurrent_runs_apply_each_migration_once(
    empty_db_config: DatabaseConfig, migrations_copy: Path, lock_holder: psycopg.Connection[Any]
) -> None:
    add_migration(migrations_copy, MORE, "CREATE TABLE more (id int);")
    reports: list[RunReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(Migrator(empty_db_config, migrations_copy, lock_timeout=30).apply())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    # While we hold the lock every run waits, and none has touched the schema.
    time.sleep(0.5)
    assert all(thread.is_alive() for thread in threads)
    assert user_objects(empty_db_config) == NOTHING
    lock_holder.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(r.applied for r in reports) == [(), (), (*ALL, MORE)]
    assert applied_ids(empty_db_config) == [*ALL, MORE]
    log = run_sql(empty_db_config, "SELECT migration_id FROM _yoyo_log WHERE operation = 'apply'")
    assert sorted(log) == [(m,) for m in (*ALL, MORE)]
    assert set(checksums(empty_db_config)) == {*ALL, MORE}


@pytest.mark.slow
def test_concurrent_processes_apply_each_migration_once(empty_db_config: DatabaseConfig) -> None:
    script = (
        "import sys\n"
        "from coderunner_sql import DatabaseConfig\n"
        "from coderunner_sql.migrations import Migrator\n"
        "report = Migrator(DatabaseConfig.from_url(sys.argv[1]), lock_timeout=60).apply()\n"
        "print(','.join(report.applied))\n"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, empty_db_config.url()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert sorted(out.strip() for out, _ in outputs) == ["", ",".join(ALL)]
    assert applied_ids(empty_db_config) == list(ALL)


def test_lock_timeout(
    migrator: Migrator, empty_db_config: DatabaseConfig, lock_holder: psycopg.Connection[Any]
) -> None:
    quick = Migrator(empty_db_config, migrator.directory, lock_timeout=0.3)
    for run in (quick.apply, quick.verify, quick.rollback):
        started = time.monotonic()
        with pytest.raises(MigrationLockError, match=r"0\.3s") as info:
            run()
        # It gave up after the timeout, not after the 60 s default (slack for a busy machine).
        assert 0.3 <= time.monotonic() - started < 15
        assert_library_error(info)
    assert user_objects(empty_db_config) == NOTHING
    # status() takes no lock: it only reads.
    assert set(states(quick).values()) == {"pending"}


@pytest.mark.parametrize("how", ["closed", "terminated", "killed"])
def test_a_dead_session_leaves_no_lock(
    migrator: Migrator, empty_db_config: DatabaseConfig, how: str
) -> None:
    take_lock = f"SELECT pg_advisory_lock({_LOCK_KEY})"
    holder: Any
    if how == "killed":
        # A whole process dies mid-run (kill -9), as a crashed deploy job would.
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time, psycopg\n"
                "conn = psycopg.connect(sys.argv[1], autocommit=True)\n"
                f"conn.execute({take_lock!r})\n"
                "print('locked', flush=True)\n"
                "time.sleep(120)\n",
                empty_db_config.url(),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
    else:
        holder = psycopg.connect(empty_db_config.conninfo(), autocommit=True)
        holder.execute(take_lock)
    try:
        assert advisory_locks(empty_db_config) == 1
        with pytest.raises(MigrationLockError):
            Migrator(empty_db_config, migrator.directory, lock_timeout=0.2).apply()

        if how == "closed":
            holder.close()
        elif how == "terminated":
            pid = holder.info.backend_pid
            assert run_sql(empty_db_config, "SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
        else:
            holder.kill()
            holder.wait(10)
        # Were the lock still held, this would raise MigrationLockError after 5 s.
        report = Migrator(empty_db_config, migrator.directory, lock_timeout=5).apply()
        assert report.applied == ALL
    finally:
        if how == "killed":
            holder.kill()
            holder.wait(10)
            assert holder.stdout is not None
            holder.stdout.close()
        else:
            holder.close()


def test_lock_is_released_after_each_run(
    migrator: Migrator, empty_db_config: DatabaseConfig
) -> None:
    migrator.apply()
    migrator.verify()
    migrator.rollback()
    migrator.status()
    assert advisory_locks(empty_db_config) == 0
    with psycopg.connect(empty_db_config.conninfo(), autocommit=True) as conn:
        taken = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()
        assert taken == (True,)


# -- failures ------------------------------------------------------------------------------------


def test_failing_migration_leaves_the_schema_as_it_was(
    migrated: Migrator, migrations_copy: Path, db_config: DatabaseConfig
) -> None:
    run_sql(db_config, "INSERT INTO users (email, password_hash) VALUES ('a@b.co', 'h')")
    before = schema_dump(db_config)
    path = add_migration(
        migrations_copy,
        BROKEN,
        "CREATE TABLE half_done (id int);\n\n"
        "INSERT INTO no_such_table (id) VALUES (1);\n\n"
        "ALTER TABLE users ADD COLUMN never text;",
    )
    with pytest.raises(MigrationError) as info:
        migrated.apply()
    message = str(info.value)
    assert path.name in message
    assert "statement 2" in message
    assert "no_such_table" in message
    assert info.value.migration == BROKEN
    assert info.value.statement is not None
    assert "INSERT INTO no_such_table" in info.value.statement
    assert_library_error(info)

    assert "half_done" not in before
    assert schema_dump(db_config) == before
    assert applied_ids(db_config) == list(ALL)
    assert set(checksums(db_config)) == set(ALL)
    assert run_sql(db_config, "SELECT email FROM users") == [("a@b.co",)]
    assert states(migrated) == {**dict.fromkeys(ALL, "applied"), BROKEN: "pending"}
    # The failed run let go of the lock: a fixed file applies at once.
    path.write_text("CREATE TABLE half_done (id int);\n")
    quick = Migrator(db_config, migrations_copy, lock_timeout=0.5)
    assert quick.apply().applied == (BROKEN,)


def test_a_failing_later_migration_keeps_earlier_ones(
    migrator: Migrator, migrations_copy: Path, empty_db_config: DatabaseConfig
) -> None:
    add_migration(migrations_copy, BROKEN, "SELECT 1;\n\nSELECT 1/0;")
    expected = rf"{BROKEN}\.sql: statement 2 failed: division by zero"
    with pytest.raises(MigrationError, match=expected):
        migrator.apply()
    assert applied_ids(empty_db_config) == list(ALL)
    assert user_objects(empty_db_config)["relations"] >= TABLES
    assert migrator.pending() == [BROKEN]


def test_failing_rollback_changes_nothing(
    migrated: Migrator, migrations_copy: Path, db_config: DatabaseConfig
) -> None:
    # A transactional migration (the newest real one may not be): every statement of its
    # rollback runs, then the last one fails.
    add_migration(
        migrations_copy,
        MORE,
        "CREATE TABLE more (id int);\n\nALTER TABLE users ADD COLUMN more text;",
        "ALTER TABLE users DROP COLUMN more;\n\nDROP TABLE more;\n\nDROP TABLE no_such_table;",
    )
    assert migrated.apply().applied == (MORE,)
    before = schema_dump(db_config)
    rollback = migrations_copy / f"{MORE}.rollback.sql"
    with pytest.raises(MigrationError, match="no_such_table") as info:
        migrated.rollback()
    assert rollback.name in str(info.value)
    assert schema_dump(db_config) == before
    assert applied_ids(db_config) == [*ALL, MORE]
    assert set(states(migrated).values()) == {"applied"}


# -- readiness -----------------------------------------------------------------------------------


def test_ensure_ready_lists_pending_migrations(migrator: Migrator, migrations_copy: Path) -> None:
    with pytest.raises(SchemaNotReadyError) as info:
        migrator.ensure_ready()
    assert info.value.pending == ALL
    assert ", ".join(ALL) in str(info.value)
    assert_library_error(info)

    migrator.apply()
    migrator.ensure_ready()
    add_migration(migrations_copy, MORE, "SELECT 1;")
    add_migration(migrations_copy, BROKEN, "SELECT 1;")
    with pytest.raises(SchemaNotReadyError) as info:
        migrator.ensure_ready()
    assert info.value.pending == (MORE, BROKEN)
    assert f"{MORE}, {BROKEN}" in str(info.value)


def test_service_initialize_reports_an_unmigrated_database(
    empty_db_config: DatabaseConfig, db_config: DatabaseConfig
) -> None:
    with pytest.raises(SchemaNotReadyError) as info:
        DatabaseService(empty_db_config).initialize()
    assert info.value.pending == ALL
    DatabaseService(db_config).initialize()  # the migrated one is ready


# -- non-transactional migrations ------------------------------------------------------------------


CONCURRENT_INDEX = "CREATE INDEX CONCURRENTLY users_plan_type_idx ON users (plan_type);"


def test_non_transactional_migration_applies(
    migrated: Migrator, migrations_copy: Path, db_config: DatabaseConfig
) -> None:
    path = add_migration(migrations_copy, MORE, f"-- transactional: false\n\n{CONCURRENT_INDEX}")
    path.write_text(f"-- transactional: false\n\n{CONCURRENT_INDEX}\n")
    assert migrated.apply().applied == (MORE,)
    valid = run_sql(
        db_config,
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_plan_type_idx'::regclass",
    )
    assert valid == [(True,)]
    assert checksums(db_config)[MORE] == (sha256(path), "migrate")
    assert states(migrated)[MORE] == "applied"


def test_concurrent_index_needs_the_directive(
    migrated: Migrator, migrations_copy: Path, db_config: DatabaseConfig
) -> None:
    add_migration(migrations_copy, MORE, CONCURRENT_INDEX)
    with pytest.raises(MigrationError, match="cannot run inside a transaction block"):
        migrated.apply()
    assert applied_ids(db_config) == list(ALL)


# -- readiness answers at once, whatever the role ------------------------------------------------


@pytest.fixture
def make_login(pg_admin_config: DatabaseConfig) -> Iterator[Any]:
    """`make_login(config, *roles)`: `config` as a new LOGIN role (member of `roles`), which
    may not create objects in `public`; the roles are dropped after."""
    made: list[str] = []

    def make(config: DatabaseConfig, *member_of: str) -> DatabaseConfig:
        name = f"crsql_login_{uuid.uuid4().hex[:10]}"
        password = register_secret(f"pw-{uuid.uuid4().hex}")
        with psycopg.connect(config.conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
            made.append(name)
            for role in member_of:
                conn.execute(
                    sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(name))
                )
            # PostgreSQL 14 and older let everyone create in `public`; 15 and later do not.
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        return config.replace(user=name, password=password)

    try:
        yield make
    finally:
        with psycopg.connect(pg_admin_config.conninfo(), autocommit=True) as conn:
            for name in made:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (name,),
                )
                # Its grants live in per-test databases, dropped with them; none here.
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


# yoyo's lock-row loop used to wait 10 s before these answered; well under that, with room
# for a busy machine.
PROMPT = 5.0


def test_initialize_on_an_unmigrated_database_answers_at_once(
    empty_db_config: DatabaseConfig, make_login: Any
) -> None:
    app = make_login(empty_db_config)
    started = time.monotonic()
    with pytest.raises(SchemaNotReadyError) as info:
        DatabaseService(app).initialize()
    assert time.monotonic() - started < PROMPT
    assert info.value.pending == ALL
    assert_library_error(info)

    started = time.monotonic()
    health = database_health(app)
    assert time.monotonic() - started < PROMPT
    assert not health.healthy
    assert health.schema is not None
    assert health.schema.pending == ALL
    # Reading the state created nothing, not even yoyo's bookkeeping.
    assert run_sql(empty_db_config, "SELECT to_regclass('_yoyo_migration')") == [(None,)]


def test_initialize_without_privileges_answers_at_once(
    db_config: DatabaseConfig, make_login: Any
) -> None:
    stranger = make_login(db_config)  # may log in, not in coderunner_app
    started = time.monotonic()
    with pytest.raises(PermissionDeniedError) as info:
        DatabaseService(stranger).initialize()
    assert time.monotonic() - started < PROMPT
    assert stranger.user in str(info.value)
    assert_library_error(info)

    started = time.monotonic()
    health = database_health(stranger)
    assert time.monotonic() - started < PROMPT
    assert not health.healthy
    assert health.schema is not None
    assert health.schema.error is not None
    assert "permission denied" in health.schema.error


def test_initialize_as_the_application_role(db_config: DatabaseConfig, make_login: Any) -> None:
    exists = run_sql(db_config, "SELECT 1 FROM pg_roles WHERE rolname = 'coderunner_app'")
    if not exists:
        pytest.skip("the coderunner_app role does not exist on this server")
    app = make_login(db_config, "coderunner_app")
    started = time.monotonic()
    DatabaseService(app).initialize()
    assert database_health(app).healthy
    assert time.monotonic() - started < PROMPT


@pytest.mark.parametrize("run", ["apply", "verify", "rollback"])
def test_a_run_without_privileges_is_refused_at_once(
    db_config: DatabaseConfig, make_login: Any, run: str
) -> None:
    stranger = make_login(db_config)
    started = time.monotonic()
    with pytest.raises(PermissionDeniedError) as info:
        getattr(Migrator(stranger, lock_timeout=30), run)()
    assert time.monotonic() - started < PROMPT
    assert_library_error(info)


def test_non_transactional_migration_rolls_back_outside_a_transaction(
    migrated: Migrator, migrations_copy: Path, db_config: DatabaseConfig
) -> None:
    # What the linter recommends: build and drop the index without blocking writes.
    path = migrations_copy / f"{MORE}.sql"
    path.write_text(f"-- transactional: false\n-- Migration: {MORE}\n\n{CONCURRENT_INDEX}\n")
    (migrations_copy / f"{MORE}.rollback.sql").write_text(
        "DROP INDEX CONCURRENTLY IF EXISTS users_plan_type_idx;\n"
    )
    assert migrated.apply().applied == (MORE,)
    assert migrated.rollback().rolled_back == (MORE,)
    assert run_sql(db_config, "SELECT to_regclass('users_plan_type_idx')") == [(None,)]
    assert applied_ids(db_config) == list(ALL)
    assert set(checksums(db_config)) == set(ALL)
    assert states(migrated)[MORE] == "pending"
    log = run_sql(db_config, "SELECT operation FROM _yoyo_log WHERE migration_id = %s", (MORE,))
    assert sorted(log) == [("apply",), ("rollback",)]
    # And it applies again.
    assert migrated.apply().applied == (MORE,)


def test_a_rollback_file_may_carry_the_directive_itself(
    migrated: Migrator, migrations_copy: Path, db_config: DatabaseConfig
) -> None:
    add_migration(
        migrations_copy,
        MORE,
        "CREATE INDEX users_plan_type_idx ON users (plan_type);",
        "-- transactional: false\n\nDROP INDEX CONCURRENTLY users_plan_type_idx;",
    )
    assert migrated.apply().applied == (MORE,)
    assert migrated.rollback().rolled_back == (MORE,)
    assert run_sql(db_config, "SELECT to_regclass('users_plan_type_idx')") == [(None,)]
    assert states(migrated)[MORE] == "pending"


# -- the migration session ------------------------------------------------------------------------


def test_the_server_watches_the_migration_session(
    migrated: Migrator, migrations_copy: Path, db_config: DatabaseConfig
) -> None:
    # What a migration sees of its own session: the settings that let the server end the
    # backend of a killed run, with the URL's own options kept (and winning).
    add_migration(
        migrations_copy,
        MORE,
        "CREATE TABLE seen AS SELECT "
        "current_setting('client_connection_check_interval') AS check_interval, "
        "current_setting('tcp_keepalives_idle') AS keepalives_idle, "
        "inet_server_addr() IS NOT NULL AS over_tcp, "
        "current_setting('idle_in_transaction_session_timeout') AS idle_in_transaction, "
        "current_setting('statement_timeout') AS statement_timeout;",
    )
    own = db_config.replace(
        options={
            **db_config.options,
            "options": "-c statement_timeout=42s -c tcp_keepalives_idle=7",
        }
    )
    assert Migrator(own, migrations_copy).apply().applied == (MORE,)
    [(check_interval, keepalives_idle, over_tcp, idle_in_transaction, statement_timeout)] = run_sql(
        db_config, "SELECT * FROM seen"
    )
    assert check_interval == "1s"
    assert idle_in_transaction == "1min"
    assert statement_timeout == "42s"
    # Keepalives apply to TCP only (a Unix socket shows 0).
    assert keepalives_idle == ("7" if over_tcp else "0")
    # The application's own sessions keep the server's defaults.
    assert run_sql(db_config, "SHOW client_connection_check_interval") == [("0",)]


def test_full_status_as_the_application_role(db_config: DatabaseConfig, make_login: Any) -> None:
    # The repair history and the repeatables table are created by the bookkeeping, after the
    # migration that grants coderunner_app its reads: they need their own grant.
    exists = run_sql(db_config, "SELECT 1 FROM pg_roles WHERE rolname = 'coderunner_app'")
    if not exists:
        pytest.skip("the coderunner_app role does not exist on this server")
    app = make_login(db_config, "coderunner_app")
    report = Migrator(app).full_status()
    assert report.migrations
    assert all(state.state == "applied" for state in report.migrations)
    assert report.repairs == ()
