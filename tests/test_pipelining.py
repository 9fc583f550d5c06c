"""Pipelined reads (coderunner_sql/pipelining.py): reads that arrive while others are in flight
share one round trip on one connection, and every caller still gets exactly its own result or
its own error — on a real server, with real concurrency on one event loop."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from coderunner_sql import (
    AsyncDatabaseService,
    DatabaseConfig,
    QueryError,
    User,
    ValidationError,
)
from coderunner_sql.codegen._plans import PLAIN, Plan
from coderunner_sql.codegen._run_async import method
from coderunner_sql.pipelining import ReadPipeline

pytestmark = pytest.mark.asyncio

# Reads of the test's own, marked read-only as the generator would mark a plain SELECT: one
# the server refuses for some inputs, one that takes as long as it is told.
DIVIDE = method(Plan("divide", "$", read=True), "SELECT 10 / %(n)s::int", PLAIN)
SLEEP = method(Plan("sleep", "$", read=True), "SELECT pg_sleep(%(s)s::float8)::text", PLAIN)
CAST = method(Plan("cast_uuid", "$", read=True), "SELECT %(v)s::text::uuid::text", PLAIN)


@pytest_asyncio.fixture
async def adb(db_config: DatabaseConfig) -> AsyncIterator[AsyncDatabaseService]:
    service = AsyncDatabaseService(db_config.replace(pool_min=1, pool_max=4))
    await service.connect()
    try:
        yield service
    finally:
        await service.disconnect()


def pipeline(service: AsyncDatabaseService) -> ReadPipeline:
    found = service._pipeline
    assert found is not None
    return found


async def users(service: AsyncDatabaseService, n: int) -> list[User]:
    return [
        await service.create_user(email=f"{uuid.uuid4().hex[:12]}@example.com", password_hash="h")
        for _ in range(n)
    ]


async def test_concurrent_reads_share_round_trips_and_each_gets_its_own_row(
    adb: AsyncDatabaseService,
) -> None:
    made = await users(adb, 16)
    asked = [made[i % 16] for i in range(400)]
    got = await asyncio.gather(*(adb.get_user_by_id(user.id) for user in asked))
    assert got == asked
    p = pipeline(adb)
    assert p.reads >= 300, "most of the concurrent reads went in batches"
    assert p.batches < p.reads / 4, "a batch carries several reads"
    assert p.active == 0


async def test_every_kind_of_read_is_answered_in_a_batch(adb: AsyncDatabaseService) -> None:
    user = (await users(adb, 1))[0]
    project = await adb.create_project(user_id=user.id, name="p")
    deployment = await adb.create_deployment(project_id=project.id, runtime_type="nodejs")
    before = pipeline(adb).reads
    results = await asyncio.gather(
        adb.get_user_by_id(user.id),
        adb.get_user_by_email(user.email),
        adb.get_user_by_id(uuid.uuid4()),  # none
        adb.get_project_by_id(project.id),
        adb.get_project_with_user(project.id),
        adb.get_deployment_by_id(deployment.id),
        adb.get_deployment_with_details(deployment.id),
        adb.get_running_deployment_count_by_user(user.id),
        adb.get_system_stats(),
    )
    assert results[0] == user
    assert results[1] == user
    assert results[2] is None
    assert results[3] == project
    assert results[5] == deployment
    assert results[4] is not None
    assert results[4].user.id == user.id
    assert results[6] is not None
    assert results[6].deployment == deployment
    assert results[6].project == project
    assert results[6].user.id == user.id
    assert results[7] == 0
    assert results[8].total_users == 1
    assert results[8].total_deployments == 1
    assert pipeline(adb).reads - before >= 7


async def test_a_lone_read_waits_for_no_batch(adb: AsyncDatabaseService) -> None:
    user = (await users(adb, 1))[0]
    for _ in range(20):
        assert await adb.get_user_by_id(user.id) == user
    assert pipeline(adb).batches == 0


async def test_a_read_the_server_refuses_fails_alone(adb: AsyncDatabaseService) -> None:
    made = await users(adb, 8)
    calls: list[Any] = []
    for i in range(120):
        if i % 10 == 5:
            calls.append(adb.run(DIVIDE, n=0))
        else:
            calls.append(adb.get_user_by_id(made[i % 8].id))
    results = await asyncio.gather(*calls, return_exceptions=True)
    for i, result in enumerate(results):
        if i % 10 == 5:
            assert isinstance(result, ValidationError), result  # as when it runs alone
            assert "division by zero" in str(result)
        else:
            assert result == made[i % 8]
    p = pipeline(adb)
    assert p.resent > 0, "reads skipped after another's error were sent again"
    # And the connection is sound afterwards, its prepared statements included.
    assert await asyncio.gather(*(adb.get_user_by_id(u.id) for u in made)) == made


async def test_bad_input_reaching_the_server_fails_only_its_read(
    adb: AsyncDatabaseService,
) -> None:
    made = await users(adb, 4)
    results = await asyncio.gather(
        *(adb.get_user_by_id(u.id) for u in made),
        adb.run(CAST, v="not-a-uuid"),
        *(adb.get_user_by_id(u.id) for u in made),
        adb.run(CAST, v=str(made[0].id)),
        return_exceptions=True,
    )
    assert list(results[:4]) == made
    assert list(results[5:9]) == made
    assert isinstance(results[4], ValidationError)
    assert results[9] == str(made[0].id)


async def test_a_statement_timeout_fails_its_read_and_delays_no_other_past_its_bound(
    db_config: DatabaseConfig,
) -> None:
    config = db_config.replace(pool_min=1, pool_max=4, statement_timeout_ms=300)
    async with AsyncDatabaseService(config) as service:
        made = await users(service, 4)
        started = time.monotonic()
        finished: dict[int, float] = {}

        async def read(i: int) -> Any:
            try:
                if i == 3:
                    return await service.run(SLEEP, s=5)
                return await service.get_user_by_id(made[i % 4].id)
            finally:
                finished[i] = time.monotonic() - started

        results = await asyncio.gather(*(read(i) for i in range(40)), return_exceptions=True)
        # The server's statement_timeout: the same error as when the read runs alone.
        assert isinstance(results[3], QueryError), results[3]
        assert "statement timeout" in str(results[3])
        assert [r for i, r in enumerate(results) if i != 3] == [
            made[i % 4] for i in range(40) if i != 3
        ]
        bound = config.call_bound_s
        assert bound is not None
        assert max(finished.values()) < bound, finished
        assert pipeline(service).batches > 0


async def test_a_cancelled_caller_changes_no_other_result(adb: AsyncDatabaseService) -> None:
    made = await users(adb, 8)
    tasks = [asyncio.create_task(adb.get_user_by_id(made[i % 8].id)) for i in range(80)]
    slow = [asyncio.create_task(adb.run(SLEEP, s=0.2)) for _ in range(4)]
    await asyncio.sleep(0)
    for task in tasks[5::7] + slow[:2]:
        task.cancel()
    results = await asyncio.gather(*tasks, *slow, return_exceptions=True)
    for i, result in enumerate(results[:80]):
        if tasks[i].cancelled():
            assert isinstance(result, asyncio.CancelledError)
        else:
            assert result == made[i % 8]
    assert results[82:] == ["", ""]
    # Nothing left lent or queued; the service answers as before.
    assert pipeline(adb).active == 0
    assert await adb.get_user_by_id(made[0].id) == made[0]
    await asyncio.sleep(0.3)  # the cancelled sleeps' answers arrive and are thrown away
    assert adb.get_pool_info().connected_clients == 0
    assert await asyncio.gather(*(adb.get_user_by_id(u.id) for u in made)) == made


async def test_a_statement_first_prepared_in_a_failed_batch_is_prepared_again(
    db_config: DatabaseConfig,
) -> None:
    # One connection: the batch that failed and every later read share it. The read that
    # is skipped was to prepare its statement in that batch; psycopg noted it as prepared
    # when it queued the Parse, which the server skipped. Reading it again must work.
    config = db_config.replace(pool_min=1, pool_max=1)
    async with AsyncDatabaseService(config) as service:
        user = (await users(service, 1))[0]
        project = await service.create_project(user_id=user.id, name="p")
        results = await asyncio.gather(
            service.get_user_by_id(user.id),  # goes alone, holds the one connection
            service.run(DIVIDE, n=0),
            service.get_project_with_user(project.id),  # first use: prepared in the batch
            return_exceptions=True,
        )
        assert results[0] == user
        assert isinstance(results[1], ValidationError)
        assert results[2] is not None
        assert results[2].project == project
        for _ in range(3):
            again = await asyncio.gather(
                service.get_user_by_id(user.id),
                service.get_project_with_user(project.id),
                service.get_project_with_user(project.id),
            )
            assert again[1] == again[2] == results[2]
        assert pipeline(service).resent >= 1


async def test_a_killed_backend_mid_batch_loses_or_confuses_no_read(
    adb: AsyncDatabaseService, db_config: DatabaseConfig
) -> None:
    made = await users(adb, 8)
    stop = asyncio.Event()
    wrong: list[Any] = []
    answered = failed = 0

    async def reader(k: int) -> None:
        nonlocal answered, failed
        i = k
        while not stop.is_set():
            user = made[i % 8]
            i += 1
            try:
                got = await adb.get_user_by_id(user.id)
            except psycopg.Error as exc:  # anything of psycopg escaping is a defect
                wrong.append(exc)
            except Exception:
                failed += 1
            else:
                answered += 1
                if got != user:
                    wrong.append(got)

    readers = [asyncio.create_task(reader(k)) for k in range(16)]
    admin = await psycopg.AsyncConnection.connect(
        **db_config.replace(dbname="postgres").connect_kwargs(), autocommit=True
    )
    try:
        for _ in range(10):
            await asyncio.sleep(0.05)
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                [db_config.dbname],
            )
        await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await admin.close()
    assert not wrong, wrong[:3]
    assert answered > 100
    # Reads are sent again once after a lost connection: few fail, none hang.
    assert failed < answered / 5
    assert await asyncio.gather(*(adb.get_user_by_id(u.id) for u in made)) == made


async def test_transactions_and_user_scopes_are_never_batched(adb: AsyncDatabaseService) -> None:
    made = await users(adb, 4)
    async with adb.transaction() as tx:
        got = await asyncio.gather(*(tx.get_user_by_id(u.id) for u in made))
    assert got == made
    scope = adb.for_user(made[0].id)
    assert (
        await asyncio.gather(*(scope.get_user_by_id(made[0].id) for _ in range(8))) == [made[0]] * 8
    )
    assert pipeline(adb).batches == 0


async def test_disconnect_waits_for_batched_reads(adb: AsyncDatabaseService) -> None:
    made = await users(adb, 4)
    reads = [asyncio.create_task(adb.get_user_by_id(made[i % 4].id)) for i in range(40)]
    await asyncio.sleep(0)
    await adb.disconnect()
    assert await asyncio.gather(*reads) == [made[i % 4] for i in range(40)]


@pytest.mark.parametrize(
    "change",
    [{"pipeline": False}, {"pgbouncer": True}, {"read_urls": ("postgresql://r@127.0.0.1/x",)}],
    ids=["DB_PIPELINE=false", "pgbouncer", "replicas"],
)
async def test_pipelining_is_off_where_it_is_not_proven(
    db_config: DatabaseConfig, change: dict[str, Any]
) -> None:
    service = AsyncDatabaseService(db_config.replace(**change))
    assert service._read_pipeline(None) is None  # type: ignore[arg-type]
    assert AsyncDatabaseService(db_config)._read_pipeline(None) is not None  # type: ignore[arg-type]


async def test_db_pipeline_false_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@127.0.0.1:5432/app")
    assert DatabaseConfig.from_env().pipeline is True
    monkeypatch.setenv("DB_PIPELINE", "false")
    assert DatabaseConfig.from_env().pipeline is False
