"""AsyncDatabaseService on uvloop (the `uvloop` extra): the same calls, pipelined reads and
their failures included, answer as they do on asyncio's own loop."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from coderunner_sql import AsyncDatabaseService, DatabaseConfig, ValidationError
from coderunner_sql.codegen._plans import PLAIN, Plan
from coderunner_sql.codegen._run_async import method

uvloop = pytest.importorskip("uvloop")

DIVIDE = method(Plan("divide", "$", read=True), "SELECT 10 / %(n)s::int", PLAIN)


async def _scenario(config: DatabaseConfig) -> tuple[str, int]:
    async with AsyncDatabaseService(config.replace(pool_min=1, pool_max=4)) as db:
        made = [
            await db.create_user(email=f"{uuid.uuid4().hex[:12]}@example.com", password_hash="h")
            for _ in range(8)
        ]
        calls = [
            db.run(DIVIDE, n=0) if i % 25 == 7 else db.get_user_by_id(made[i % 8].id)
            for i in range(200)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        for i, result in enumerate(results):
            if i % 25 == 7:
                assert isinstance(result, ValidationError), result
            else:
                assert result == made[i % 8]
        async with db.transaction() as tx:
            assert await tx.get_user_by_id(made[0].id) == made[0]
        pipeline = db._pipeline
        assert pipeline is not None
        return type(asyncio.get_running_loop()).__module__, pipeline.reads


def test_the_service_and_its_pipelined_reads_on_uvloop(db_config: DatabaseConfig) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        loop_module, batched = runner.run(_scenario(db_config))
    assert loop_module.startswith("uvloop")
    assert batched > 100
