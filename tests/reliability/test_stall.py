"""A stalled network: every call fails within its bound, health says so in time, the pool heals.

The path to the server goes through `StallingProxy`, which at `stall()` stops passing bytes
without closing anything. The server's own timeouts cannot help there (their errors never
arrive); the bound on every wait for the server (`coderunner_sql.deadline`) must.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from coderunner_sql import DatabaseConfig, DatabaseTimeoutError, DatabaseUnavailableError
from tests.helpers import make_project, make_user, unique_email
from tests.reliability.conftest import Figures, wait_for

# Generous: the bound is 2 s here (1 s statement timeout + 1 s connect timeout); before the
# fix every one of these calls was still blocked after 20 s.
CALL_LIMIT_S = 8.0


def _stalled_config(config: DatabaseConfig) -> DatabaseConfig:
    return config.replace(
        statement_timeout_ms=1000,
        connection_timeout_ms=1000,
        acquire_timeout_ms=2000,
        pool_min=2,
        pool_max=4,
    )


def _timed(call: Callable[[], Any]) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError) as caught:
        call()
    return caught.value, time.monotonic() - started


def test_every_call_fails_within_its_bound_and_the_pool_recovers(
    open_service: Any, db_config: DatabaseConfig, stalling_proxy: Any, figures: Figures
) -> None:
    proxy, config = stalling_proxy(_stalled_config(db_config))
    assert config.call_bound_s == pytest.approx(2.0)
    db = open_service(config)
    user = make_user(db)
    project = make_project(db, user)

    def in_transaction() -> None:
        with db.transaction() as tx:
            tx.create_project(user_id=user.id, name="never")

    calls: dict[str, Callable[[], Any]] = {
        "read": lambda: db.get_user_by_id(user.id),
        "write": lambda: db.create_user(email=unique_email(), password_hash="h"),
        "page": lambda: db.get_projects_by_user_id(user.id),
        "stream": lambda: list(db.iter_deployments_by_status("PENDING")),
        "transaction": in_transaction,
        "stats": db.get_system_stats,
    }
    proxy.stall()
    longest = 0.0
    for name, call in calls.items():
        error, elapsed = _timed(call)
        longest = max(longest, elapsed)
        assert elapsed < CALL_LIMIT_S, f"{name} took {elapsed:.1f} s"
        if name == "write" and isinstance(error, DatabaseTimeoutError):
            assert error.outcome_unknown  # sent, never confirmed

    started = time.monotonic()
    report = db.health_check()
    health_s = time.monotonic() - started
    assert report.status == "unhealthy"
    assert health_s < config.connection_timeout_ms / 1000 + 1.5

    proxy.heal()
    healed = time.monotonic()
    wait_for(lambda: db.health_check().status == "healthy", timeout=20, what="recovery")
    recovery_s = time.monotonic() - healed
    assert db.get_project_by_id(project.id) == project
    assert db.create_user(email=unique_email(), password_hash="h").id
    figures.add("stall", calls_bounded=len(calls) + 1)
    figures.peak(
        "stall",
        longest_call_s=round(longest, 2),
        health_check_s=round(health_s, 2),
        recovery_s=round(recovery_s, 2),
    )


def test_a_stall_mid_transaction_is_bounded_and_loses_nothing_acknowledged(
    open_service: Any, db_config: DatabaseConfig, stalling_proxy: Any
) -> None:
    proxy, config = stalling_proxy(_stalled_config(db_config))
    db = open_service(config)
    user = make_user(db)

    def stalled_mid_transaction() -> None:
        with db.transaction() as tx:
            tx.create_project(user_id=user.id, name="before the stall")
            proxy.stall()
            tx.create_project(user_id=user.id, name="during the stall")

    _error, elapsed = _timed(stalled_mid_transaction)
    assert elapsed < CALL_LIMIT_S
    proxy.heal()
    wait_for(lambda: db.health_check().status == "healthy", timeout=20, what="recovery")
    # Never committed, so nothing of it may be there; the acknowledged user is.
    assert db.get_projects_by_user_id(user.id).total == 0
    assert db.get_user_by_id(user.id) == user


def test_the_bound_follows_the_configuration() -> None:
    base = DatabaseConfig(host="h", connection_timeout_ms=3000)
    assert base.replace(statement_timeout_ms=5000).call_bound_s == pytest.approx(8.0)
    assert base.replace(call_timeout_ms=1500).call_bound_s == pytest.approx(1.5)
    assert base.replace(call_timeout_ms=0, statement_timeout_ms=5000).call_bound_s is None
