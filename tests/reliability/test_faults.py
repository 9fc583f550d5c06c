"""Faults: backends killed and the server restarted under load, with nothing lost.

The promise: every write call either returns (and its rows are there), or raises
`DatabaseUnavailableError` — with `outcome_unknown=False` only when nothing was written,
and `True` when the write may have committed. Afterwards the tables hold exactly the rows
of the calls that returned, plus some of those reported unknown; a transaction's rows are
all there or none. No caller hangs, and the service recovers by itself within seconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from coderunner_sql import (
    AsyncDatabaseService,
    DatabaseConfig,
    DatabaseService,
    DatabaseUnavailableError,
)
from coderunner_sql.embedded import EmbeddedServer
from tests.reliability.conftest import Figures, admin_connection, wait_for

WORKERS = 8


def fault_config(config: DatabaseConfig) -> DatabaseConfig:
    """Pool settings for the fault tests: as many connections as workers, short waits."""
    return config.replace(
        pool_min=WORKERS, pool_max=WORKERS, acquire_timeout_ms=3000, connection_timeout_ms=1000
    )


@attrs.define
class Outcomes:
    """What the workers' calls did, by the email of the user each call tried to create."""

    returned: set[str] = attrs.Factory(set)
    unknown: set[str] = attrs.Factory(set)
    not_applied: set[str] = attrs.Factory(set)
    unexpected: list[str] = attrs.Factory(list)
    successes: list[float] = attrs.Factory(list)
    slowest: float = 0.0
    lock: threading.Lock = attrs.Factory(threading.Lock)

    def record(self, email: str, started: float, error: BaseException | None) -> None:
        finished = time.monotonic()
        with self.lock:
            self.slowest = max(self.slowest, finished - started)
            if error is None:
                self.returned.add(email)
                self.successes.append(finished)
            elif isinstance(error, DatabaseUnavailableError):
                (self.unknown if error.outcome_unknown else self.not_applied).add(email)
            else:
                self.unexpected.append(f"{type(error).__name__}: {error}")

    @property
    def calls(self) -> int:
        return len(self.returned) + len(self.unknown) + len(self.not_applied) + len(self.unexpected)

    def recovery_after(self, fault_at: float) -> float | None:
        """Seconds from a fault to the first call that returned after it."""
        later = [t for t in self.successes if t > fault_at]
        return min(later) - fault_at if later else None


def new_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}@example.com"


def in_transaction(email: str) -> bool:
    # Half the calls write a user and a project in one transaction: both rows, or neither.
    return int(email.split("-")[1][:2], 16) % 2 == 0


def check_nothing_lost(config: DatabaseConfig, prefix: str, out: Outcomes) -> dict[str, int]:
    """Compare the tables with what the calls reported; returns the counts for the figures."""
    with admin_connection(config) as conn:
        users = {
            email
            for (email,) in conn.execute(
                "SELECT email FROM users WHERE email LIKE %s", [f"{prefix}-%"]
            )
        }
        projects = {
            name
            for (name,) in conn.execute(
                "SELECT p.name FROM projects AS p JOIN users AS u ON u.id = p.user_id"
                " WHERE u.email LIKE %s",
                [f"{prefix}-%"],
            )
        }
    lost = out.returned - users
    phantom = users - out.returned - out.unknown
    reported_not_applied = users & out.not_applied
    half_written = {
        email for email in users if in_transaction(email) and email.split("@")[0] not in projects
    }
    assert not out.unexpected, out.unexpected[:5]
    assert not lost, f"{len(lost)} calls returned but their rows are missing"
    assert not phantom, f"{len(phantom)} rows exist for calls that were never reported"
    assert not reported_not_applied, f"{len(reported_not_applied)} 'not applied' writes applied"
    assert not half_written, f"{len(half_written)} transactions were half written"
    return {
        "operations": out.calls,
        "returned": len(out.returned),
        "outcome_unknown": len(out.unknown),
        "unknown_but_applied": len(users & out.unknown),
        "not_applied": len(out.not_applied),
        "rows_lost": len(lost) + len(phantom) + len(reported_not_applied) + len(half_written),
    }


# -- the workloads, sync (threads) and async (tasks) ---------------------------------------


def write_sync(service: DatabaseService, email: str) -> None:
    if not in_transaction(email):
        service.create_user(email=email, password_hash="argon2$h")
        return
    with service.transaction() as tx:
        user = tx.create_user(email=email, password_hash="argon2$h")
        tx.create_project(user_id=user.id, name=email.split("@")[0])


async def write_async(service: AsyncDatabaseService, email: str) -> None:
    if not in_transaction(email):
        await service.create_user(email=email, password_hash="argon2$h")
        return
    async with service.transaction() as tx:
        user = await tx.create_user(email=email, password_hash="argon2$h")
        await tx.create_project(user_id=user.id, name=email.split("@")[0])


def run_sync_load(
    config: DatabaseConfig, prefix: str, inject: Callable[[DatabaseService], None]
) -> Outcomes:
    """`WORKERS` threads writing until `inject` (the faults) has run and a moment after."""
    out = Outcomes()
    stop = threading.Event()
    with DatabaseService(config) as service:

        def work() -> None:
            while not stop.is_set():
                email = new_email(prefix)
                started = time.monotonic()
                try:
                    write_sync(service, email)
                except Exception as exc:
                    out.record(email, started, exc)
                    time.sleep(0.02)  # the server is away: do not spin
                else:
                    out.record(email, started, None)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(WORKERS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.3)
            inject(service)
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=20)
        hung = [t for t in threads if t.is_alive()]
        assert not hung, f"{len(hung)} workers hung"
        assert service.health_check().healthy
        # In use counts connections the pool is still opening: wait for those to land.
        wait_for(lambda: service.get_pool_info().connected_clients == 0, what="an idle pool")
    return out


def run_async_load(
    config: DatabaseConfig, prefix: str, inject: Callable[[AsyncDatabaseService], Any]
) -> Outcomes:
    """`WORKERS` tasks writing until `inject` (a coroutine function) has run."""
    out = Outcomes()

    async def main() -> None:
        stop = asyncio.Event()
        async with AsyncDatabaseService(config) as service:

            async def work() -> None:
                while not stop.is_set():
                    email = new_email(prefix)
                    started = time.monotonic()
                    try:
                        await write_async(service, email)
                    except Exception as exc:
                        out.record(email, started, exc)
                        await asyncio.sleep(0.02)
                    else:
                        out.record(email, started, None)

            tasks = [asyncio.create_task(work()) for _ in range(WORKERS)]
            try:
                await asyncio.sleep(0.3)
                await inject(service)
                await asyncio.sleep(0.5)
            finally:
                stop.set()
                done, pending = await asyncio.wait(tasks, timeout=20)
            assert not pending, f"{len(pending)} workers hung"
            for task in done:
                task.result()
            assert (await service.health_check()).healthy
            deadline = time.monotonic() + 10
            while service.get_pool_info().connected_clients and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # connections the pool is still opening
            assert service.get_pool_info().connected_clients == 0

    asyncio.run(main())
    return out


# -- faults ------------------------------------------------------------------------------


def terminate_all(config: DatabaseConfig) -> int:
    """pg_terminate_backend() on every other session of the config's database."""
    with admin_connection(config) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


KILL_ROUNDS = 3


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_every_backend_terminated_under_load_loses_nothing(
    private_db: DatabaseConfig, figures: Figures, flavour: str
) -> None:
    config = fault_config(private_db)
    prefix = f"kill{flavour}"
    faults: list[float] = []
    killed = 0

    def kill_rounds() -> None:
        nonlocal killed
        for _ in range(KILL_ROUNDS):
            faults.append(time.monotonic())
            killed += terminate_all(config)
            time.sleep(0.4)

    if flavour == "sync":
        out = run_sync_load(config, prefix, lambda service: kill_rounds())
    else:

        async def inject(service: AsyncDatabaseService) -> None:
            await asyncio.to_thread(kill_rounds)

        out = run_async_load(config, prefix, inject)
    counts = check_nothing_lost(config, prefix, out)
    recoveries = [out.recovery_after(fault) for fault in faults]
    assert all(r is not None and r < 5 for r in recoveries), recoveries
    assert killed >= KILL_ROUNDS
    figures.add("faults", faults_injected=KILL_ROUNDS, backends_terminated=killed, **counts)
    figures.peak(
        "faults",
        max_recovery_s=max(r for r in recoveries if r is not None),
        max_call_s=out.slowest,
    )


OUTAGE_S = 1.5


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_server_restart_under_load_loses_nothing(
    private_server: EmbeddedServer, private_db: DatabaseConfig, figures: Figures, flavour: str
) -> None:
    config = fault_config(private_db)
    prefix = f"restart{flavour}"
    seen: dict[str, float] = {}

    def outage(health: Callable[[], Any]) -> None:
        seen["down_at"] = time.monotonic()
        private_server.stop()
        try:
            started = time.monotonic()
            report = health()
            seen["health_s"] = time.monotonic() - started
            assert not report.healthy
            assert "127.0.0.1" in (report.details.error or "")
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - seen["down_at"])))
        finally:
            private_server.start()
        seen["up_at"] = time.monotonic()
        wait_for(lambda: health().healthy, timeout=15, what="health_check() to recover")
        seen["healthy_after_s"] = time.monotonic() - seen["up_at"]

    if flavour == "sync":
        out = run_sync_load(config, prefix, lambda service: outage(service.health_check))
    else:

        async def inject(service: AsyncDatabaseService) -> None:
            loop = asyncio.get_running_loop()

            def health() -> Any:
                return asyncio.run_coroutine_threadsafe(service.health_check(), loop).result()

            await asyncio.to_thread(outage, health)

        out = run_async_load(config, prefix, inject)
    counts = check_nothing_lost(config, prefix, out)
    # During the outage health_check answered promptly; afterwards calls succeed again.
    assert seen["health_s"] < 3, seen
    recovery = out.recovery_after(seen["up_at"])
    assert recovery is not None
    assert recovery < 10
    assert out.not_applied, "calls during the outage should fail as not applied"
    figures.add("faults", faults_injected=1, server_restarts=1, **counts)
    figures.peak(
        "faults",
        max_recovery_s=recovery,
        health_check_during_outage_s=seen["health_s"],
        max_call_s=out.slowest,
    )


# -- single calls: what is retried, what is not -----------------------------------------


def blocked_backend(config: DatabaseConfig) -> Callable[[], int | None]:
    """A function giving the pid of the service's backend waiting on a lock, if any."""

    def pid() -> int | None:
        with admin_connection(config) as conn:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND application_name = %s",
                [config.application_name],
            ).fetchone()
        return int(row[0]) if row else None

    return pid


def test_a_read_that_loses_its_connection_mid_query_is_retried_once(
    private_db: DatabaseConfig, figures: Figures
) -> None:
    with DatabaseService(private_db.replace(pool_min=1, pool_max=2)) as service:
        user = service.create_user(email=new_email("read"), password_hash="h")
        holder = admin_connection(private_db)
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        result: list[Any] = []
        reader = threading.Thread(target=lambda: result.append(service.get_user_by_id(user.id)))
        reader.start()
        waiting = blocked_backend(private_db)
        wait_for(lambda: waiting() is not None, what="the read to block")
        first = waiting()
        with admin_connection(private_db) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", [first])
        # The retry blocks on the same lock, on a new backend: then the lock is released.
        wait_for(lambda: waiting() not in (None, first), what="the retry to block")
        holder.execute("COMMIT")
        reader.join(10)
        holder.close()
    assert result == [user]
    figures.add("faults", faults_injected=1, backends_terminated=1, operations=1)
    figures.add("faults", reads_retried=1)


def test_a_write_that_loses_its_connection_mid_query_is_not_retried(
    private_db: DatabaseConfig, figures: Figures
) -> None:
    with DatabaseService(private_db.replace(pool_min=1, pool_max=2)) as service:
        user = service.create_user(email=new_email("write"), password_hash="h")
        holder = admin_connection(private_db)
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        errors: list[BaseException] = []

        def write() -> None:
            try:
                service.update_user(user.id, password_hash="changed")
            except Exception as exc:
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        waiting = blocked_backend(private_db)
        wait_for(lambda: waiting() is not None, what="the write to block")
        pid = waiting()
        with admin_connection(private_db) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])
        writer.join(10)
        # Not sent again: no second backend ever waited on the lock.
        assert waiting() is None
        holder.execute("COMMIT")
        holder.close()
        [error] = errors
        assert isinstance(error, DatabaseUnavailableError)
        assert error.outcome_unknown
        assert "may or may not have been applied" in str(error)
        assert service.get_user_by_id(user.id).password_hash == "h"
    figures.add("faults", faults_injected=1, backends_terminated=1, operations=1)


def test_connections_killed_while_idle_fail_no_write(
    private_db: DatabaseConfig, figures: Figures
) -> None:
    """A pooled connection the server closed while it sat idle is replaced before use: the
    write goes out on a live connection and succeeds, rather than failing 'unknown'."""
    config = private_db.replace(pool_min=4, pool_max=4)
    with DatabaseService(config) as service:
        wait_for(lambda: service.get_pool_info().idle_count == 4, what="a full pool")
        rounds, writes = 3, 0
        for _ in range(rounds):
            wait_for(lambda: service.get_pool_info().idle_count == 4, what="a full pool")
            assert terminate_all(config) == 4
            time.sleep(0.05)  # the server's goodbye reaches the sockets
            for _ in range(8):
                service.create_user(email=new_email("idle"), password_hash="h")
                writes += 1
    figures.add(
        "faults",
        faults_injected=rounds,
        backends_terminated=4 * rounds,
        operations=writes,
        returned=writes,
    )


def test_health_check_is_prompt_and_calls_fail_fast_while_the_server_is_down(
    private_server: EmbeddedServer, private_db: DatabaseConfig, open_service: Any, figures: Figures
) -> None:
    # An acquire timeout of a minute must not make callers wait a minute for a dead server:
    # they wait one connect timeout for the pool to reach it, then fail.
    service = open_service(
        private_db.replace(
            pool_min=2, pool_max=2, acquire_timeout_ms=60_000, connection_timeout_ms=500
        )
    )
    private_server.stop()
    try:
        for _ in range(2):
            started = time.monotonic()
            assert not service.health_check().healthy
            assert time.monotonic() - started < 1.5
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError) as caught:
            service.create_user(email=new_email("down"), password_hash="h")
        assert time.monotonic() - started < 1.5
        assert not caught.value.outcome_unknown  # nothing was sent
        assert "cannot reach PostgreSQL at 127.0.0.1" in str(caught.value)
        with pytest.raises(DatabaseUnavailableError):
            service.get_users()
    finally:
        private_server.start()
    wait_for(lambda: service.health_check().healthy, timeout=15, what="recovery")
    service.get_users()
    figures.add("faults", faults_injected=1, server_restarts=1)
