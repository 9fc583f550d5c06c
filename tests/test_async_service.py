"""What only the async service has: `async with`, awaitable methods, `async def fn(tx)`,
`async for` streaming, cancellation, and tasks sharing one pool on one event loop.

pytest runs no coroutines by itself, so each test drives its own event loop with
`asyncio.run()` and creates the `AsyncDatabaseService` inside it, as an application would.
Behaviour both services share is tested through the `db` fixture in the other files.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator
from typing import get_type_hints

import pytest

from coderunner_sql import (
    AlreadyExistsError,
    AsyncDatabaseService,
    AsyncTransaction,
    DatabaseError,
    DatabaseUnavailableError,
    Deployment,
    DeploymentStatus,
    PoolInfo,
    SchemaNotReadyError,
    User,
)
from coderunner_sql.embedded import free_port
from tests.helpers import unique_email
from tests.test_transactions import EXPECTED_DATA_METHODS

SERVICE_COROUTINES = {
    "connect",
    "disconnect",
    "initialize",
    "health_check",
    "begin_transaction",
    "commit_transaction",
    "rollback_transaction",
    "execute_in_transaction",
}


async def new_user(db, **fields):
    fields.setdefault("email", unique_email("async"))
    fields.setdefault("password_hash", "argon2$async")
    return await db.create_user(**fields)


def test_every_data_method_is_a_coroutine_function():
    for name in EXPECTED_DATA_METHODS - {"iter_deployments_by_status"}:
        assert inspect.iscoroutinefunction(getattr(AsyncDatabaseService, name)), name
        assert inspect.iscoroutinefunction(getattr(AsyncTransaction, name)), name
    # A plain method returning the stream, so a transaction can close streams left open.
    for cls in (AsyncDatabaseService, AsyncTransaction):
        method = cls.iter_deployments_by_status
        assert not inspect.iscoroutinefunction(method)
        assert get_type_hints(method)["return"] == AsyncIterator[Deployment]
    for name in SERVICE_COROUTINES:
        assert inspect.iscoroutinefunction(getattr(AsyncDatabaseService, name)), name
    assert not inspect.iscoroutinefunction(AsyncDatabaseService.get_pool_info)


def test_async_with_connects_and_disconnects(shared_db_config):
    async def main():
        async with AsyncDatabaseService(shared_db_config) as db:
            pending = db.create_user(email=unique_email(), password_hash="h")
            assert inspect.isawaitable(pending)
            user = await pending
            assert isinstance(user, User)
            assert await db.get_user_by_id(user.id) == user
            assert (await db.health_check()).healthy
            assert db.get_pool_info().total_count >= 1
        assert db.get_pool_info() == PoolInfo(0, 0, 0, 0)
        assert not (await db.health_check()).healthy
        with pytest.raises(DatabaseUnavailableError, match="not connected"):
            await db.get_user_by_id(user.id)

    asyncio.run(main())


def test_async_with_disconnects_when_the_body_raises(shared_db_config):
    async def main():
        db = AsyncDatabaseService(shared_db_config)

        async def block():
            async with db:
                await new_user(db)
                raise RuntimeError("inside")

        with pytest.raises(RuntimeError, match="inside"):
            await block()
        assert db.get_pool_info().total_count == 0

    asyncio.run(main())


def test_connect_to_a_closed_port_raises_and_health_stays_unhealthy(shared_db_config):
    config = shared_db_config.replace(host="127.0.0.1", port=free_port())

    async def main():
        db = AsyncDatabaseService(config)
        with pytest.raises(DatabaseUnavailableError, match="cannot reach"):
            await db.connect()
        report = await db.health_check()
        assert report.status == "unhealthy"
        assert report.details.pool is None

    asyncio.run(main())


# -- transactions with coroutines -------------------------------------------------------


def test_execute_in_transaction_with_an_async_fn_commits_and_returns(shared_db_config):
    async def main():
        async with AsyncDatabaseService(shared_db_config) as db:

            async def fn(tx):
                assert isinstance(tx, AsyncTransaction)
                user = await new_user(tx)
                project = await tx.create_project(user_id=user.id, name="async-tx")
                await tx.create_deployments(
                    [{"project_id": project.id, "runtime_type": "python"}] * 2
                )
                return user, project

            user, project = await db.execute_in_transaction(fn)

            assert await db.get_user_by_id(user.id) == user
            assert (await db.get_deployments_by_project_id(project.id)).total == 2

    asyncio.run(main())


def test_execute_in_transaction_with_an_async_fn_rolls_back_and_reraises(shared_db_config):
    email = unique_email()

    async def main():
        async with AsyncDatabaseService(shared_db_config) as db:

            async def fn(tx):
                await tx.create_user(email=email, password_hash="h")
                await asyncio.sleep(0)
                raise LookupError("undo")

            with pytest.raises(LookupError, match="undo"):
                await db.execute_in_transaction(fn)

            assert await db.get_user_by_email(email) is None
            assert db.get_pool_info().connected_clients == 0

    asyncio.run(main())


def test_async_with_transaction_commits_and_rolls_back(shared_db_config):
    kept, dropped = unique_email(), unique_email()

    async def main():
        async with AsyncDatabaseService(shared_db_config) as db:
            async with db.transaction() as tx:
                user = await tx.create_user(email=kept, password_hash="h")
                assert await db.get_user_by_id(user.id) is None  # not yet committed
            assert await db.get_user_by_id(user.id) == user

            async def block():
                async with db.transaction() as tx:
                    await tx.create_user(email=dropped, password_hash="h")
                    await tx.create_user(email=kept.upper(), password_hash="h")

            with pytest.raises(AlreadyExistsError):
                await block()
            assert await db.get_user_by_email(dropped) is None

    asyncio.run(main())


def test_begin_commit_and_rollback_are_awaited(shared_db_config):
    async def main():
        async with AsyncDatabaseService(shared_db_config) as db:
            tx = await db.begin_transaction()
            user = await new_user(tx)
            await db.commit_transaction(tx)
            assert not tx.active
            assert await db.get_user_by_id(user.id) == user

            tx = await db.begin_transaction()
            await tx.delete_user(user.id)
            await db.rollback_transaction(tx)
            assert await db.get_user_by_id(user.id) == user

            with pytest.raises(DatabaseError, match="already finished"):
                await tx.get_users()

    asyncio.run(main())


# -- streaming --------------------------------------------------------------------------


def test_async_for_over_a_stream_and_stopping_early(shared_db_config):
    async def main():
        async with AsyncDatabaseService(shared_db_config) as db:
            user = await new_user(db)
            project = await db.create_project(user_id=user.id, name="stream")
            made = await db.create_deployments(
                [{"project_id": project.id, "runtime_type": "go", "status": "FAILED"}] * 5
            )
            mine = {d.id for d in made}

            seen = [d async for d in db.iter_deployments_by_status("FAILED", batch_size=2)]
            assert mine <= {d.id for d in seen}

            async with contextlib.aclosing(
                db.iter_deployments_by_status(DeploymentStatus.FAILED, batch_size=1)
            ) as stream:
                async for deployment in stream:
                    assert deployment.status is DeploymentStatus.FAILED
                    break
            assert db.get_pool_info().connected_clients == 0
            assert (await db.query("SELECT 1 AS ok")) == [{"ok": 1}]

    asyncio.run(main())


# -- cancellation -----------------------------------------------------------------------


def test_a_cancelled_call_gives_its_connection_back(shared_db_config):
    async def main():
        async with AsyncDatabaseService(shared_db_config.replace(pool_max=1)) as db:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(db.query("SELECT pg_sleep(5)"), 0.2)
            assert time.monotonic() - started < 2

            # The only connection is back, usable, and the server stopped sleeping.
            assert await db.query("SELECT 1 AS ok") == [{"ok": 1}]
            assert db.get_pool_info().connected_clients == 0

    asyncio.run(main())


def test_a_cancelled_transaction_is_rolled_back(shared_db_config):
    email = unique_email()

    async def main():
        async with AsyncDatabaseService(shared_db_config) as db:

            async def slow(tx):
                await tx.create_user(email=email, password_hash="h")
                await tx.query("SELECT pg_sleep(5)")

            with pytest.raises(TimeoutError):
                await asyncio.wait_for(db.execute_in_transaction(slow), 0.2)

            assert await db.get_user_by_email(email) is None
            assert db.get_pool_info().connected_clients == 0

    asyncio.run(main())


# -- lifecycle --------------------------------------------------------------------------


def test_disconnect_waits_for_a_task_in_flight(shared_db_config):
    async def main():
        db = AsyncDatabaseService(shared_db_config)
        await db.connect()
        in_flight = asyncio.create_task(db.query("SELECT 'done' AS outcome FROM pg_sleep(0.5)"))
        while db.get_pool_info().connected_clients == 0:
            await asyncio.sleep(0.005)

        started = time.monotonic()
        await db.disconnect()

        assert time.monotonic() - started >= 0.3
        assert in_flight.done()
        assert await in_flight == [{"outcome": "done"}]
        with pytest.raises(DatabaseUnavailableError):
            await db.query("SELECT 1")

    asyncio.run(main())


def test_get_instance_returns_the_same_async_service(fresh_instances, shared_db_config):
    async def main():
        db = AsyncDatabaseService.get_instance(shared_db_config)
        assert AsyncDatabaseService.get_instance() is db
        await db.connect()
        try:
            assert (await AsyncDatabaseService.get_instance().health_check()).healthy
        finally:
            await db.disconnect()

    asyncio.run(main())


def test_initialize_is_awaited(shared_db_config, empty_db_config):
    async def main():
        await AsyncDatabaseService(shared_db_config).initialize()
        with pytest.raises(SchemaNotReadyError) as caught:
            await AsyncDatabaseService(empty_db_config).initialize()
        assert "20261125100000_initial_schema" in caught.value.pending

    asyncio.run(main())


# -- tasks sharing one pool -------------------------------------------------------------


def test_eight_tasks_share_one_pool(db_config):
    async def worker(db, n):
        user = await db.create_user(email=f"task-{n}@example.com", password_hash="h")
        project = await db.create_project(user_id=user.id, name=f"project-{n}")
        made = await db.create_deployments(
            [{"project_id": project.id, "runtime_type": "python"}] * 3
        )
        await db.update_deployment_status(made[0].id, "RUNNING", expected="PENDING")
        await db.update_deployment(made[1].id, db_connection_info={"task": n})
        await db.delete_deployment(made[2].id)

        async def more(tx):
            await tx.create_project(user_id=user.id, name=f"extra-{n}")
            await asyncio.sleep(0.01)  # hold the connection while other tasks wait
            return await tx.get_projects_by_user_id(user.id)

        page = await db.execute_in_transaction(more)
        assert page.total == 2
        assert await db.get_user_by_email(f"TASK-{n}@example.com") == user
        assert await db.get_running_deployment_count_by_user(user.id) == 1
        details = await db.get_deployment_with_details(made[1].id)
        assert details.deployment.db_connection_info == {"task": n}
        assert details.user == user
        assert (await db.health_check()).healthy
        return user.id

    async def main():
        async with AsyncDatabaseService(db_config.replace(pool_max=3)) as db:
            user_ids = await asyncio.gather(*(worker(db, n) for n in range(8)))
            assert len(set(user_ids)) == 8
            stats = await db.get_system_stats()
            assert (stats.total_users, stats.total_projects, stats.total_deployments) == (
                8,
                16,
                16,
            )
            assert stats.deployments_by_status[DeploymentStatus.RUNNING] == 8
            assert stats.deployments_by_status[DeploymentStatus.PENDING] == 8
            info = db.get_pool_info()
            assert info.total_count <= 3
            assert info.connected_clients == 0

    asyncio.run(main())


def test_an_async_stream_left_by_break_is_closed_before_the_transaction_commits(db_config):
    # `async for … break` does not close an async generator (only its finaliser would,
    # later): the transaction must, or COMMIT meets the stream's open cursor.
    async def main():
        async with AsyncDatabaseService(db_config) as db:
            user = await db.create_user(email=unique_email(), password_hash="h")
            project = await db.create_project(user_id=user.id, name="p")
            await db.create_deployments([{"project_id": project.id, "runtime_type": "go"}] * 3)
            async with db.transaction() as tx:
                async for deployment in tx.iter_deployments_by_status("PENDING", batch_size=1):
                    await tx.update_deployment(deployment.id, public_url="https://kept.example.com")
                    break
                kept = await tx.create_user(email=unique_email(), password_hash="h")
            assert await db.get_user_by_id(kept.id) == kept
            page = await db.get_deployments_by_project_id(project.id)
            assert [d.public_url for d in page.items].count("https://kept.example.com") == 1
            assert db.get_pool_info().connected_clients == 0

    asyncio.run(main())
