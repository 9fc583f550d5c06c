"""Races: concurrent callers contending for one unique value or one state change.

The promises: of 20 callers creating a user with one email in different letter cases,
exactly one succeeds and the rest get `AlreadyExistsError`; of 20 callers moving one
deployment from PENDING to RUNNING, exactly one wins and the rest get `ConflictError`;
of 20 callers naming a project the same, one wins. Run from threads (the sync service)
and from asyncio tasks (the async one), released together.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from coderunner_sql import (
    AlreadyExistsError,
    AsyncDatabaseService,
    ConflictError,
    DatabaseConfig,
    DatabaseService,
    DeploymentStatus,
)
from tests.reliability.conftest import Figures

CALLERS = 20
ROUNDS = 3


def cases(word: str, count: int) -> list[str]:
    """`count` spellings of `word` differing only in letter case."""
    found = {word}
    seed = 1
    while len(found) < count:
        found.add("".join(c.upper() if seed >> i & 1 else c for i, c in enumerate(word)))
        seed += 1
    return sorted(found)[:count]


def race_threads(calls: list[Callable[[], Any]]) -> Counter[str]:
    """Start every call at once on its own thread; count outcomes by class name."""
    barrier = threading.Barrier(len(calls))
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def run(call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            call()
            kind = "ok"
        except Exception as exc:
            kind = type(exc).__name__
        with lock:
            outcomes[kind] += 1

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


async def race_tasks(calls: list[Callable[[], Any]]) -> Counter[str]:
    """Start every coroutine call at once as a task; count outcomes by class name."""
    results = await asyncio.gather(*(call() for call in calls), return_exceptions=True)
    return Counter("ok" if not isinstance(r, BaseException) else type(r).__name__ for r in results)


def race_config(config: DatabaseConfig) -> DatabaseConfig:
    # As many connections as callers, so they really reach the server together.
    return config.replace(pool_min=CALLERS, pool_max=CALLERS)


def expect(outcomes: Counter[str], loser: str) -> None:
    assert outcomes == Counter({"ok": 1, loser: CALLERS - 1}), outcomes


racers = pytest.mark.parametrize("racer", ["sync", "async"])


@racers
def test_one_email_in_twenty_letter_cases(
    db_config: DatabaseConfig, racer: str, figures: Figures
) -> None:
    config = race_config(db_config)
    for _ in range(ROUNDS):
        emails = cases(f"race{uuid.uuid4().hex[:8]}@example.com", CALLERS)
        if racer == "sync":
            with DatabaseService(config) as db:
                outcomes = race_threads(
                    [lambda e=e: db.create_user(email=e, password_hash="h") for e in emails]
                )
        else:

            async def main(emails: list[str] = emails) -> Counter[str]:
                async with AsyncDatabaseService(config) as db:
                    return await race_tasks(
                        [lambda e=e: db.create_user(email=e, password_hash="h") for e in emails]
                    )

            outcomes = asyncio.run(main())
        expect(outcomes, "AlreadyExistsError")
    with DatabaseService(config) as db:
        assert db.get_users().total == ROUNDS
    figures.add("races", operations=ROUNDS * CALLERS, races=ROUNDS, winners=ROUNDS)


@racers
def test_one_status_change_from_pending(
    db_config: DatabaseConfig, racer: str, figures: Figures
) -> None:
    config = race_config(db_config)
    with DatabaseService(config) as setup:
        user = setup.create_user(email=f"st-{uuid.uuid4().hex}@example.com", password_hash="h")
        project = setup.create_project(user_id=user.id, name="race")
        deployments = [
            setup.create_deployment(project_id=project.id, runtime_type="python")
            for _ in range(ROUNDS)
        ]
    for deployment in deployments:
        if racer == "sync":
            with DatabaseService(config) as db:
                outcomes = race_threads(
                    [
                        lambda d=deployment: db.update_deployment_status(
                            d.id, DeploymentStatus.RUNNING, expected=DeploymentStatus.PENDING
                        )
                    ]
                    * CALLERS
                )
        else:

            async def main(d: Any = deployment) -> Counter[str]:
                async with AsyncDatabaseService(config) as db:
                    return await race_tasks(
                        [
                            lambda: db.update_deployment_status(
                                d.id, DeploymentStatus.RUNNING, expected=DeploymentStatus.PENDING
                            )
                        ]
                        * CALLERS
                    )

            outcomes = asyncio.run(main())
        expect(outcomes, "ConflictError")
    with DatabaseService(config) as db:
        for deployment in deployments:
            assert db.get_deployment_by_id(deployment.id).status == DeploymentStatus.RUNNING
    figures.add("races", operations=ROUNDS * CALLERS, races=ROUNDS, winners=ROUNDS)


@racers
def test_one_project_name_per_user(db_config: DatabaseConfig, racer: str, figures: Figures) -> None:
    config = race_config(db_config)
    with DatabaseService(config) as setup:
        user = setup.create_user(email=f"pn-{uuid.uuid4().hex}@example.com", password_hash="h")
    for round_ in range(ROUNDS):
        names = cases(f"my-app-{round_}", CALLERS)
        if racer == "sync":
            with DatabaseService(config) as db:
                outcomes = race_threads(
                    [lambda n=n: db.create_project(user_id=user.id, name=n) for n in names]
                )
        else:

            async def main(names: list[str] = names) -> Counter[str]:
                async with AsyncDatabaseService(config) as db:
                    return await race_tasks(
                        [lambda n=n: db.create_project(user_id=user.id, name=n) for n in names]
                    )

            outcomes = asyncio.run(main())
        expect(outcomes, "AlreadyExistsError")
    with DatabaseService(config) as db:
        assert db.get_projects_by_user_id(user.id).total == ROUNDS
    figures.add("races", operations=ROUNDS * CALLERS, races=ROUNDS, winners=ROUNDS)


def test_the_losers_see_the_winner(db_config: DatabaseConfig, figures: Figures) -> None:
    """After a lost race the row is there to read: losers can recover by reading it."""
    config = race_config(db_config)
    email = f"Seen-{uuid.uuid4().hex[:8]}@Example.com"
    with DatabaseService(config) as db:
        outcomes = race_threads(
            [lambda e=e: db.create_user(email=e, password_hash="h") for e in cases(email, CALLERS)]
        )
        expect(outcomes, "AlreadyExistsError")
        winner = db.get_user_by_email(email.lower())
        assert winner is not None
        with pytest.raises(AlreadyExistsError) as caught:
            db.create_user(email=email.upper(), password_hash="h")
        assert caught.value.field == "email"
        # The status race's loser learns the current state from the error.
        project = db.create_project(user_id=winner.id, name="x")
        deployment = db.create_deployment(
            project_id=project.id, runtime_type="python", status=DeploymentStatus.RUNNING
        )
        with pytest.raises(ConflictError, match="is RUNNING, not PENDING"):
            db.update_deployment_status(
                deployment.id, DeploymentStatus.STOPPED, expected=DeploymentStatus.PENDING
            )
    figures.add("races", operations=CALLERS + 4, races=1, winners=1)
