"""Every way out of a transaction hands back a clean connection (or none), and what callers
were told was saved stays saved: a COMMIT the server refuses, threads racing `rollback()`,
streams left open at the end, pages counted under concurrent writers, waiters that gave up.

Each test runs against `DatabaseService` and `AsyncDatabaseService` (through `SyncProxy`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from coderunner_sql import (
    AlreadyExistsError,
    ConflictError,
    DatabaseConfig,
    DatabaseError,
    PoolExhaustedError,
)
from tests.helpers import count, make_project, make_user, unique_email
from tests.reliability.conftest import Figures


def _later_writes_all_land(db: Any, prefix: str, figures: Figures | None = None) -> None:
    # The pool's only connection served the failed COMMIT: if it came back outside
    # autocommit, these would "succeed" and then be rolled back with nobody told.
    ids = [db.create_user(email=unique_email(prefix), password_hash="h").id for _ in range(10)]
    assert all(db.get_user_by_id(uid) is not None for uid in ids)
    assert db.query("SELECT count(*) AS n FROM users WHERE email LIKE %s", [f"{prefix}%"]) == [
        {"n": 10}
    ]
    if figures is not None:
        figures.add("transactions", failed_exits=1, later_writes_checked=10)


def test_a_commit_refused_for_write_skew_does_not_cost_later_writes(
    open_service: Any, db_config: DatabaseConfig, figures: Figures
) -> None:
    db = open_service(db_config.replace(pool_min=2, pool_max=2))
    first, second = db.begin_transaction(), db.begin_transaction()
    for tx in (first, second):
        tx.query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        tx.query("SELECT count(*) FROM users WHERE email LIKE 'skew%'")
    first.create_user(email=unique_email("skew-a"), password_hash="h")
    second.create_user(email=unique_email("skew-b"), password_hash="h")
    first.commit()
    with pytest.raises(ConflictError):
        second.commit()
    assert not second.active
    assert db.get_pool_info().connected_clients == 0
    _later_writes_all_land(db, "after-skew", figures)


def test_a_deferred_constraint_failing_at_commit_does_not_cost_later_writes(
    open_service: Any, db_config: DatabaseConfig, figures: Figures
) -> None:
    db = open_service(db_config.replace(pool_min=1, pool_max=1))

    def fails_at_commit() -> None:
        with db.transaction() as tx:
            tx.query(
                "CREATE TEMP TABLE deferred_check (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)"
                " ON COMMIT DROP"
            )
            tx.query("INSERT INTO deferred_check VALUES (1), (1)")
            tx.create_user(email=unique_email("lost"), password_hash="h")

    with pytest.raises(AlreadyExistsError):
        fails_at_commit()
    assert count(db, "users") == 0
    _later_writes_all_land(db, "after-deferred", figures)


def test_a_rollback_that_fails_does_not_cost_later_writes(
    open_service: Any, db_config: DatabaseConfig, figures: Figures
) -> None:
    db = open_service(db_config.replace(pool_min=1, pool_max=1))
    tx = db.begin_transaction()
    tx.create_user(email=unique_email("gone"), password_hash="h")
    (pid,) = tx.query("SELECT pg_backend_pid() AS pid")[0].values()
    with psycopg.connect(db_config.conninfo(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(DatabaseError):
        tx.rollback()
    assert not tx.active
    _later_writes_all_land(db, "after-lost", figures)


def test_threads_racing_a_rollback_never_write_outside_the_transaction(
    open_service: Any, db_config: DatabaseConfig, figures: Figures
) -> None:
    db = open_service(db_config.replace(pool_min=2, pool_max=2))
    for _round in range(5):
        tx = db.begin_transaction()
        started = threading.Barrier(5)
        refused: list[BaseException] = []

        def writer(
            tx: Any = tx,
            started: threading.Barrier = started,
            refused: list[BaseException] = refused,
        ) -> None:
            started.wait()
            try:
                while True:
                    tx.create_user(email=unique_email("raced"), password_hash="h")
            except DatabaseError as error:
                refused.append(error)
            except BaseException as error:  # a raw driver error is the defect itself
                refused.append(error)
                raise

        threads = [threading.Thread(target=writer) for _ in range(4)]
        for thread in threads:
            thread.start()
        started.wait()
        time.sleep(0.02)
        tx.rollback()
        for thread in threads:
            thread.join(timeout=30)
        assert len(refused) == 4
        assert all(isinstance(exc, DatabaseError) for exc in refused), refused
        assert all("already finished" in str(exc) for exc in refused), refused
        figures.add("transactions", racing_writers_refused=len(refused))
    # Nothing written by a racing thread survived its rollback, and the pool is clean.
    assert db.query("SELECT count(*) AS n FROM users WHERE email LIKE 'raced%'") == [{"n": 0}]
    _later_writes_all_land(db, "after-race", figures)


def test_a_stream_abandoned_in_a_transaction_keeps_every_write(db: Any) -> None:
    project = make_project(db)
    db.create_deployments([{"project_id": project.id, "runtime_type": "go"}] * 3)
    with db.transaction() as tx:
        for deployment in tx.iter_deployments_by_status("PENDING", batch_size=1):
            # Written while the stream is open, then the loop is left early.
            tx.update_deployment(deployment.id, public_url="https://kept.example.com")
            break
        user = tx.create_user(email=unique_email("after-stream"), password_hash="h")
    assert db.get_user_by_id(user.id) == user
    urls = [d.public_url for d in db.get_deployments_by_project_id(project.id).items]
    assert urls.count("https://kept.example.com") == 1
    assert db.get_pool_info().connected_clients == 0


def test_two_streams_open_at_once_in_one_transaction(db: Any) -> None:
    project = make_project(db)
    db.create_deployments([{"project_id": project.id, "runtime_type": "go"}] * 4)
    with db.transaction() as tx:
        outer = tx.iter_deployments_by_status("PENDING", batch_size=1)
        inner = tx.iter_deployments_by_status("PENDING", batch_size=2)
        pairs = list(zip(outer, inner, strict=True))
    assert len(pairs) == 4
    assert db.get_pool_info().connected_clients == 0


def test_a_page_total_describes_the_rows_listed_under_concurrent_writers(db: Any) -> None:
    writer_db = db
    user = make_user(db)
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            project = writer_db.create_project(user_id=user.id, name=f"p{n}")
            if n % 2:
                writer_db.delete_project(project.id)
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    pages = mismatched = 0
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            page = db.get_projects_by_user_id(user.id, limit=1000)
            pages += 1
            if page.total != len(page.items):
                mismatched += 1
    finally:
        stop.set()
        writer.join(timeout=30)
    assert pages > 10
    assert mismatched == 0, f"{mismatched} of {pages} pages"


def test_nobody_is_counted_waiting_after_giving_up(
    open_service: Any, db_config: DatabaseConfig
) -> None:
    db = open_service(db_config.replace(pool_min=1, pool_max=1, acquire_timeout_ms=200))
    user = make_user(db)
    tx = db.begin_transaction()  # holds the only connection
    try:
        for _ in range(3):
            with pytest.raises(PoolExhaustedError):
                db.get_user_by_id(user.id)
        assert db.get_pool_info().waiting_count == 0
    finally:
        tx.rollback()
    assert db.get_user_by_id(user.id) == user
    assert db.get_pool_info().waiting_count == 0
