"""A deploy killed mid-migration (kill -9 of `coderunner-sql migrate`) does not block the next.

The killed run's backend is left mid-statement, holding the migration lock and the locks of
its DDL. The server must notice the dead client and end that backend, so the rerun, waiting
its `--lock-timeout`, proceeds long before the orphaned statement would have finished.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from coderunner_sql import DatabaseConfig
from tests.reliability.conftest import Figures, admin_connection, wait_for

SLOW = "29990101000000_slow"
SLEEP_S = 30
# The rerun waits for the lock this long; the orphan's statement would run SLEEP_S.
RERUN_LOCK_TIMEOUT_S = 20


def migrate(config: DatabaseConfig, folder: Path, lock_timeout: float) -> list[str]:
    """`python -m coderunner_sql migrate` against `config` with an explicit --database."""
    return [
        sys.executable,
        "-m",
        "coderunner_sql",
        "--database",
        config.url(),
        "migrate",
        "--migrations",
        str(folder),
        "--lock-timeout",
        str(lock_timeout),
    ]


def sessions(config: DatabaseConfig, like: str) -> list[int]:
    """Backends of this database whose current query contains `like` (not ours)."""
    with admin_connection(config) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query LIKE %s",
            (f"%{like}%",),
        ).fetchall()
    return [pid for (pid,) in rows]


def test_a_killed_migrate_lets_the_rerun_proceed(
    empty_db_config: DatabaseConfig, tmp_path: Path, figures: Figures
) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    forward = folder / f"{SLOW}.sql"
    marker = f"pg_sleep({SLEEP_S})"
    forward.write_text(f"-- Migration: {SLOW}\n\nCREATE TABLE slow (id int);\n\nSELECT {marker};\n")
    (folder / f"{SLOW}.rollback.sql").write_text("DROP TABLE slow;\n")

    killed_run = subprocess.Popen(
        migrate(empty_db_config, folder, 5),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: bool(sessions(empty_db_config, marker)), 30, "the long statement")
        started = time.monotonic()
        killed_run.send_signal(signal.SIGKILL)
        killed_run.wait(10)
    finally:
        killed_run.kill()
        killed_run.wait(10)

    # The file was never applied, so fixing it is allowed: the rerun's own statement is quick,
    # and the time measured is the wait for the orphan.
    forward.write_text(f"-- Migration: {SLOW}\n\nCREATE TABLE slow (id int);\n")
    rerun = subprocess.run(
        migrate(empty_db_config, folder, RERUN_LOCK_TIMEOUT_S),
        capture_output=True,
        text=True,
        timeout=SLEEP_S + RERUN_LOCK_TIMEOUT_S + 30,
        check=False,
    )
    proceeded_after = time.monotonic() - started
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.splitlines() == [f"applied {SLOW}", "1 migration(s) applied"]
    # Well before the orphan's sleep would have ended, and its lock died with it.
    assert proceeded_after < SLEEP_S / 2
    assert sessions(empty_db_config, marker) == []
    with admin_connection(empty_db_config) as conn:
        rows = conn.execute("SELECT count(*) FROM slow").fetchone()
        assert rows == (0,)
        applied = conn.execute("SELECT migration_id FROM _yoyo_migration").fetchall()
        assert applied == [(SLOW,)]

    figures.add("faults", faults_injected=1, migrate_runs_killed=1)
    figures.peak("faults", killed_migrate_rerun_s=proceeded_after)
