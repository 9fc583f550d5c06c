"""Pipelined reads (coderunner_sql/pipelining.py): reads that arrive while others are in flight
share one round trip on one connection, and every caller still gets exactly its own result or
its own error — on a real server, with real concurrency on one event loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from coderunner_sql import (
    AsyncDatabaseService,
    DatabaseConfig,
    User,
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


async def test_a_burst_gives_its_connection_back_before_the_next_call_returns(
    adb: AsyncDatabaseService,
) -> None:
    # Once every batched read has its answer, the runner's connection is back in the pool by
    # the time any later call returns: nothing stays lent behind callers that are done.
    made = await users(adb, 4)
    # Warmed up first: while the pool grows, it counts a connection it is still opening as
    # lent.
    await asyncio.gather(*(adb.get_user_by_id(made[i % 4].id) for i in range(16)))
    await asyncio.sleep(0.2)
    for _ in range(20):
        await asyncio.gather(*(adb.get_user_by_id(made[i % 4].id) for i in range(16)))
        assert await adb.get_user_by_id(made[0].id) == made[0]
        assert adb.get_pool_info().connected_clients == 0
