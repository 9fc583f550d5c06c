"""asyncpg with its own pool; it prepares and caches every statement by itself.

The pool keeps its default `reset`: every release runs asyncpg's reset query (one more
round trip per call), as it does in applications that do not change it.

Records become the same dataclasses as the floor's (positionally: the SQL's column order
matches the fields), and jsonb gets a `json.loads` codec, as any asyncpg user sets up,
so it returns the same values as psycopg does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from bench import models
from bench.contenders import sql
from bench.contenders.base import POOL_SIZE, AsyncContender, DeploymentRow, to_columns

GET_USER = sql.dollar(sql.GET_USER)
CREATE_USER = sql.dollar(sql.CREATE_USER)
GET_DEPLOYMENT_WITH_DETAILS = sql.dollar(sql.GET_DEPLOYMENT_WITH_DETAILS)
DEPLOYMENTS_BY_STATUS = sql.dollar(sql.DEPLOYMENTS_BY_STATUS)
CREATE_DEPLOYMENTS = sql.dollar(sql.CREATE_DEPLOYMENTS)
CREATE_DEPLOYMENT = sql.dollar(sql.CREATE_DEPLOYMENT)
SYSTEM_STATS = sql.SYSTEM_STATS

assert sql.names(sql.DEPLOYMENTS_BY_STATUS) == ("status", "limit", "offset")
assert sql.names(sql.CREATE_DEPLOYMENTS) == sql.BULK_INSERT_COLUMNS


async def _init_connection(conn: Any) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Asyncpg(AsyncContender):
    name = "asyncpg"
    description = "asyncpg pool (automatic prepared statements), records into dataclasses"

    async def setup(self, url: str) -> None:
        import asyncpg

        self.pool = await asyncpg.create_pool(
            url, min_size=POOL_SIZE, max_size=POOL_SIZE, init=_init_connection
        )

    async def get_user_by_id(self, user_id: UUID) -> models.User | None:
        row = await self.pool.fetchrow(GET_USER, user_id)
        return models.User(*row) if row is not None else None

    async def create_user(self, email: str, password_hash: str, plan_type: str) -> models.User:
        return models.User(*await self.pool.fetchrow(CREATE_USER, email, password_hash, plan_type))

    async def get_deployment_with_details(
        self, deployment_id: UUID
    ) -> models.DeploymentDetails | None:
        row = await self.pool.fetchrow(GET_DEPLOYMENT_WITH_DETAILS, deployment_id)
        return models.details_from_values(row) if row is not None else None

    async def get_deployments_by_status(self, status: str, limit: int) -> models.Page:
        rows = await self.pool.fetch(DEPLOYMENTS_BY_STATUS, status, limit, 0)
        items = [models.Deployment(*r[1:]) for r in rows if r[1] is not None]
        return models.Page(items, rows[0][0])

    async def create_deployments(self, rows: Sequence[DeploymentRow]) -> list[models.Deployment]:
        created = await self.pool.fetch(CREATE_DEPLOYMENTS, *to_columns(rows))
        return [models.Deployment(*r) for r in created]

    async def create_deployment(self, project_id: UUID, runtime_type: str) -> models.Deployment:
        return models.Deployment(
            *await self.pool.fetchrow(CREATE_DEPLOYMENT, project_id, runtime_type)
        )

    async def get_system_stats(self) -> models.SystemStats:
        return models.stats_from_values(await self.pool.fetchrow(SYSTEM_STATS))

    async def close(self) -> None:
        await self.pool.close()
