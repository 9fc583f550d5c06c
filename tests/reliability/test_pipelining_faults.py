"""Pipelined reads under faults (coderunner_sql/pipelining.py): a read the server refuses, bad
input reaching the server, a statement timeout, a cancelled caller, a statement first prepared
in a batch that failed, backends killed mid-batch — in each, every other caller of the batch
gets exactly its own result, and nobody waits past the call bound."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from coderunner_sql import (
    AsyncDatabaseService,
    DatabaseConfig,
    DatabaseUnavailableError,
    QueryError,
    ValidationError,
)
from tests.reliability.conftest import Figures
from tests.test_pipelining import CAST, DIVIDE, SLEEP, adb, pipeline, users

pytestmark = pytest.mark.asyncio
__all__ = ["adb"]  # the fixture, shared with the functional tests


async def test_a_read_the_server_refuses_fails_alone(
    adb: AsyncDatabaseService, figures: Figures
) -> None:
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
    figures.add("pipelined", failing_reads=12, reads_beside_them=108, reads_resent=p.resent)
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
    db_config: DatabaseConfig, figures: Figures
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
        figures.add("pipelined", statement_timeouts=1, reads_beside_them=39)
        figures.peak("pipelined", slowest_read_beside_a_timeout_s=max(finished.values()))
        assert pipeline(service).batches > 0


async def test_a_cancelled_caller_changes_no_other_result(
    adb: AsyncDatabaseService, figures: Figures
) -> None:
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
    cancelled = sum(task.cancelled() for task in tasks + slow)
    figures.add("pipelined", cancelled_callers=cancelled, reads_beside_them=84 - cancelled)
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
    adb: AsyncDatabaseService, db_config: DatabaseConfig, figures: Figures
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
    figures.add("pipelined", kill_rounds=10, reads_answered=answered, reads_failed_cleanly=failed)
    assert await asyncio.gather(*(adb.get_user_by_id(u.id) for u in made)) == made


async def test_each_failing_read_in_a_crowd_gets_its_own_error(
    adb: AsyncDatabaseService, figures: Figures
) -> None:
    # Several failing reads per batch, two kinds of error: psycopg meets the first error
    # while the batch's answers are still arriving and raises it to whoever reads them, so
    # which read failed must come from each read's own answer, never from the order.
    made = await users(adb, 8)
    kinds = {3: "division by zero", 7: "invalid input syntax for type uuid"}
    failing = 0
    for _ in range(15):
        calls: list[Any] = []
        for i in range(200):
            if i % 10 == 3:
                calls.append(adb.run(DIVIDE, n=0))
            elif i % 10 == 7:
                calls.append(adb.run(CAST, v="x"))
            else:
                calls.append(adb.get_user_by_id(made[i % 8].id))
        results = await asyncio.gather(*calls, return_exceptions=True)
        for i, result in enumerate(results):
            if i % 10 in kinds:
                failing += 1
                assert isinstance(result, ValidationError), (i, result)
                assert kinds[i % 10] in str(result), (i, result)
            else:
                assert result == made[i % 8], (i, result)
    figures.add("pipelined", failing_reads=failing, reads_beside_them=15 * 200 - failing)


async def test_reads_batched_on_a_stalled_network_each_fail_within_the_bound(
    db_config: DatabaseConfig, stalling_proxy: Any, figures: Figures
) -> None:
    # A path that stops passing bytes: no answer, no error. A batch waits as long as one
    # call may (the bound), and so does each read queued behind it: none waits for both.
    proxy, config = stalling_proxy(
        db_config.replace(
            statement_timeout_ms=1000, connection_timeout_ms=1000, pool_min=2, pool_max=4
        )
    )
    bound = config.call_bound_s
    assert bound == pytest.approx(2.0)
    async with AsyncDatabaseService(config) as service:
        made = await users(service, 4)
        proxy.stall()
        started = time.monotonic()
        finished: list[float] = []

        async def read(i: int) -> BaseException | None:
            try:
                await service.get_user_by_id(made[i % 4].id)
            except DatabaseUnavailableError as exc:
                return exc
            finally:
                finished.append(time.monotonic() - started)
            return None

        first = [asyncio.create_task(read(i)) for i in range(20)]
        await asyncio.sleep(0.5)  # a second wave, queued behind the stalled batch
        second = [asyncio.create_task(read(i)) for i in range(20)]
        results = await asyncio.gather(*first, *second)
        assert all(isinstance(r, DatabaseUnavailableError) for r in results), results
        # Each read within its own bound (plus the scheduler's slack), counted from when
        # it was made: the second wave started 0.5 s later.
        assert max(finished[:20]) < bound + 0.5, finished
        assert max(finished) < 0.5 + bound + 0.5, finished
        proxy.heal()
        deadline = time.monotonic() + 20
        while True:
            try:
                got = await asyncio.gather(*(service.get_user_by_id(u.id) for u in made))
                break
            except DatabaseUnavailableError:
                assert time.monotonic() < deadline, "the service did not recover"
                await asyncio.sleep(0.2)
        assert got == made
        figures.peak("pipelined", slowest_read_on_a_stalled_network_s=max(finished))
