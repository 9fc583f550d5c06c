"""Load: an exhausted pool fails callers promptly, and heavy mixed use leaks nothing.

The promises: with every connection held, a caller gets `PoolExhaustedError` once the
acquire timeout passes (not a hang), and the pool serves again as soon as connections come
back; ten thousand mixed calls from 16 threads, or from 16 asyncio tasks, end with no
error, every connection idle, and exactly the rows the calls reported.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from coderunner_sql import (
    AsyncDatabaseService,
    DatabaseConfig,
    DatabaseService,
    DeploymentStatus,
    PlanType,
    PoolExhaustedError,
)
from tests.reliability.conftest import Figures, admin_connection, wait_for

# -- exhaustion --------------------------------------------------------------------------

CALLERS = 20
ACQUIRE_TIMEOUT_S = 0.3


def small_pool(config: DatabaseConfig) -> DatabaseConfig:
    return config.replace(pool_min=2, pool_max=2, acquire_timeout_ms=int(ACQUIRE_TIMEOUT_S * 1000))


def check_exhaustion(results: list[tuple[str, float]]) -> None:
    held = [r for r in results if r[0] == "held"]
    refused = [r for r in results if r[0] == "PoolExhaustedError"]
    assert len(held) == 2, Counter(kind for kind, _ in results)
    assert len(refused) == CALLERS - 2, Counter(kind for kind, _ in results)
    # Refused once the timeout passed, not long after (2 cores shared: generous slack).
    assert all(ACQUIRE_TIMEOUT_S * 0.9 <= waited < ACQUIRE_TIMEOUT_S + 2 for _, waited in refused)


def test_a_full_pool_refuses_promptly_and_recovers_sync(
    db_config: DatabaseConfig, figures: Figures
) -> None:
    results: list[tuple[str, float]] = []
    release = threading.Event()
    with DatabaseService(small_pool(db_config)) as service:
        wait_for(lambda: service.get_pool_info().idle_count == 2, what="a full pool")

        def caller() -> None:
            started = time.monotonic()
            try:
                with service.transaction() as tx:
                    tx.query("SELECT 1")
                    results.append(("held", time.monotonic() - started))
                    release.wait(10)
            except PoolExhaustedError as exc:
                kind = "PoolExhaustedError" if "no pooled connection" in str(exc) else "other"
                results.append((kind, time.monotonic() - started))
            except Exception as exc:
                results.append((type(exc).__name__, time.monotonic() - started))

        threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(results) == CALLERS, what="every caller to be answered")
        release.set()
        for thread in threads:
            thread.join(10)
        check_exhaustion(results)
        for _ in range(20):  # the pool works afterwards
            assert service.query("SELECT 1 AS one") == [{"one": 1}]
        wait_for(lambda: service.get_pool_info().connected_clients == 0, what="idle pool")
    figures.add("load", operations=CALLERS + 20, pool_exhausted_refusals=CALLERS - 2)


def test_a_full_pool_refuses_promptly_and_recovers_async(
    db_config: DatabaseConfig, figures: Figures
) -> None:
    async def main() -> list[tuple[str, float]]:
        results: list[tuple[str, float]] = []
        release = asyncio.Event()
        async with AsyncDatabaseService(small_pool(db_config)) as service:

            async def caller() -> None:
                started = time.monotonic()
                try:
                    async with service.transaction() as tx:
                        await tx.query("SELECT 1")
                        results.append(("held", time.monotonic() - started))
                        await asyncio.wait_for(release.wait(), 10)
                except PoolExhaustedError:
                    results.append(("PoolExhaustedError", time.monotonic() - started))
                except Exception as exc:
                    results.append((type(exc).__name__, time.monotonic() - started))

            tasks = [asyncio.create_task(caller()) for _ in range(CALLERS)]
            while len(results) < CALLERS:
                await asyncio.sleep(0.01)
            release.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
            for _ in range(20):
                assert await service.query("SELECT 1 AS one") == [{"one": 1}]
            while service.get_pool_info().connected_clients:
                await asyncio.sleep(0.01)
        return results

    check_exhaustion(asyncio.run(asyncio.wait_for(main(), 60)))
    figures.add("load", operations=CALLERS + 20, pool_exhausted_refusals=CALLERS - 2)


# -- mixed load --------------------------------------------------------------------------

OPERATIONS = 10_000
WORKERS = 16


class Worker:
    """One caller's own rows, and the next call it makes (a method name and arguments)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.users: list[Any] = []
        self.projects: list[Any] = []
        self.deployments: list[Any] = []
        self.created: Counter[str] = Counter()

    def next_call(self) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        if not self.users or rng.random() < 0.08:
            email = f"load-{uuid.uuid4().hex}@example.com"
            return "create_user", {"email": email, "password_hash": "argon2$h"}
        user = rng.choice(self.users)
        if not self.projects or rng.random() < 0.08:
            return "create_project", {"user_id": user, "name": f"p-{uuid.uuid4().hex[:12]}"}
        project = rng.choice(self.projects)
        if not self.deployments or rng.random() < 0.1:
            return "create_deployment", {"project_id": project, "runtime_type": "python"}
        deployment = rng.choice(self.deployments)
        return rng.choice(
            [
                ("get_user_by_id", {"id": user}),
                ("get_users", {"limit": 10}),
                ("update_user", {"id": user, "plan_type": rng.choice(list(PlanType))}),
                ("get_projects_by_user_id", {"user_id": user, "limit": 5}),
                ("get_project_with_user", {"id": project}),
                ("get_deployment_by_id", {"id": deployment}),
                ("get_deployment_with_details", {"id": deployment}),
                ("get_deployments_by_status", {"status": DeploymentStatus.RUNNING, "limit": 5}),
                (
                    "update_deployment_status",
                    {"id": deployment, "status": rng.choice(list(DeploymentStatus))},
                ),
                ("get_running_deployment_count_by_user", {"user_id": user}),
                ("get_system_stats", {}),
                (
                    "query",
                    {
                        "sql": "SELECT count(*) AS n FROM projects WHERE user_id = %s",
                        "params": [user],
                    },
                ),
                ("transaction", {"project_id": project}),
            ]
        )

    def done(self, name: str, result: Any) -> None:
        if name == "create_user":
            self.users.append(result.id)
            self.created["users"] += 1
        elif name == "create_project":
            self.projects.append(result.id)
            self.created["projects"] += 1
        elif name in ("create_deployment", "transaction"):
            self.deployments.append(result.id)
            self.created["deployments"] += 1


def check_no_leaks(config: DatabaseConfig, workers: list[Worker], pool: Callable[[], Any]) -> None:
    created: Counter[str] = Counter()
    for worker in workers:
        created.update(worker.created)
    with admin_connection(config) as conn:
        for table in ("users", "projects", "deployments"):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
            assert row is not None
            assert row[0] == created[table], table
        sessions = conn.execute(
            "SELECT state, count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s AND pid <> pg_backend_pid() GROUP BY state",
            [config.application_name],
        ).fetchall()
    # Every connection the pool holds is idle on the server too: none was lost mid-call.
    assert {state for state, _ in sessions} <= {"idle"}, sessions
    assert sum(n for _, n in sessions) <= config.pool_max
    wait_for(lambda: pool().connected_clients == 0, what="every connection back in the pool")


def load_config(config: DatabaseConfig) -> DatabaseConfig:
    return config.replace(pool_min=4, pool_max=8, acquire_timeout_ms=30_000)


def test_ten_thousand_mixed_calls_from_16_threads(
    db_config: DatabaseConfig, figures: Figures
) -> None:
    config = load_config(db_config)
    workers = [Worker(seed) for seed in range(WORKERS)]
    errors: list[str] = []
    budget = iter(range(OPERATIONS))
    guard = threading.Lock()
    started = time.monotonic()
    with DatabaseService(config) as service:

        def run(worker: Worker) -> None:
            while True:
                with guard:
                    if next(budget, None) is None:
                        return
                name, args = worker.next_call()
                try:
                    if name == "transaction":
                        with service.transaction() as tx:
                            tx.get_project_by_id(args["project_id"])
                            result = tx.create_deployment(
                                project_id=args["project_id"], runtime_type="node"
                            )
                    else:
                        result = getattr(service, name)(**args)
                except Exception as exc:
                    errors.append(f"{name}: {type(exc).__name__}: {exc}")
                    continue
                worker.done(name, result)

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        elapsed = time.monotonic() - started
        assert not errors, errors[:5]
        check_no_leaks(config, workers, service.get_pool_info)
    figures.add("load", operations=OPERATIONS, errors=len(errors), rows_lost=0)
    figures.peak("load", threads_ops_per_s=OPERATIONS / elapsed)


def test_ten_thousand_mixed_calls_from_16_async_tasks(
    db_config: DatabaseConfig, figures: Figures
) -> None:
    config = load_config(db_config)
    workers = [Worker(1000 + seed) for seed in range(WORKERS)]
    errors: list[str] = []

    async def main() -> float:
        budget = iter(range(OPERATIONS))
        started = time.monotonic()
        async with AsyncDatabaseService(config) as service:

            async def run(worker: Worker) -> None:
                while next(budget, None) is not None:
                    name, args = worker.next_call()
                    try:
                        if name == "transaction":
                            async with service.transaction() as tx:
                                await tx.get_project_by_id(args["project_id"])
                                result = await tx.create_deployment(
                                    project_id=args["project_id"], runtime_type="node"
                                )
                        else:
                            result = await getattr(service, name)(**args)
                    except Exception as exc:
                        errors.append(f"{name}: {type(exc).__name__}: {exc}")
                        continue
                    worker.done(name, result)

            await asyncio.wait_for(asyncio.gather(*(run(w) for w in workers)), 120)
            elapsed = time.monotonic() - started
            assert not errors, errors[:5]
            await asyncio.to_thread(check_no_leaks, config, workers, service.get_pool_info)
        return elapsed

    elapsed = asyncio.run(main())
    figures.add("load", operations=OPERATIONS, errors=len(errors), rows_lost=0)
    figures.peak("load", async_ops_per_s=OPERATIONS / elapsed)
