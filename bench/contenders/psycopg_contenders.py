"""psycopg 3 used directly: the floor (sync) and its async twin.

Both use a psycopg_pool of autocommit connections, `prepare=True` on every execute (each
pooled connection prepares a statement on first use) and `class_row` into the dataclasses
of `bench.models`. The joined and aggregate rows use small positional row factories, since
they nest or reshape columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from bench import models
from bench.contenders import sql
from bench.contenders.base import (
    POOL_SIZE,
    AsyncContender,
    DeploymentRow,
    SyncContender,
    to_columns,
)


def _details_row(cursor: Any) -> Callable[[Sequence[Any]], models.DeploymentDetails]:
    return models.details_from_values


def _stats_row(cursor: Any) -> Callable[[Sequence[Any]], models.SystemStats]:
    return models.stats_from_values


def _page_row(cursor: Any) -> Callable[[Sequence[Any]], tuple[int, models.Deployment | None]]:
    def make(values: Sequence[Any]) -> tuple[int, models.Deployment | None]:
        return values[0], (models.Deployment(*values[1:]) if values[1] is not None else None)

    return make


def _page(rows: list[tuple[int, models.Deployment | None]]) -> models.Page:
    return models.Page([d for _, d in rows if d is not None], rows[0][0])


def _bulk_params(rows: Sequence[DeploymentRow]) -> dict[str, list[Any]]:
    return dict(zip(sql.BULK_INSERT_COLUMNS, to_columns(rows), strict=True))


class PsycopgSync(SyncContender):
    name = "psycopg-sync"
    description = "psycopg 3 ConnectionPool, autocommit, prepare=True, class_row (the floor)"

    def setup(self, url: str) -> None:
        from psycopg.rows import class_row
        from psycopg_pool import ConnectionPool

        self.user_row = class_row(models.User)
        self.deployment_row = class_row(models.Deployment)
        self.pool = ConnectionPool(
            url,
            min_size=POOL_SIZE,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True},
            open=True,
            name=self.name,
        )
        self.pool.wait()

    def _one(self, statement: str, params: dict[str, Any], row_factory: Any) -> Any:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=row_factory)
            cur.execute(statement, params, prepare=True)
            return cur.fetchone()

    def _all(self, statement: str, params: dict[str, Any], row_factory: Any) -> list[Any]:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=row_factory)
            cur.execute(statement, params, prepare=True)
            return cur.fetchall()

    def get_user_by_id(self, user_id: UUID) -> models.User | None:
        return self._one(sql.GET_USER, {"id": user_id}, self.user_row)

    def create_user(self, email: str, password_hash: str, plan_type: str) -> models.User:
        params = {"email": email, "password_hash": password_hash, "plan_type": plan_type}
        return self._one(sql.CREATE_USER, params, self.user_row)

    def get_deployment_with_details(self, deployment_id: UUID) -> models.DeploymentDetails | None:
        return self._one(sql.GET_DEPLOYMENT_WITH_DETAILS, {"id": deployment_id}, _details_row)

    def get_deployments_by_status(self, status: str, limit: int) -> models.Page:
        params = {"status": status, "limit": limit, "offset": 0}
        return _page(self._all(sql.DEPLOYMENTS_BY_STATUS, params, _page_row))

    def create_deployments(self, rows: Sequence[DeploymentRow]) -> list[models.Deployment]:
        return self._all(sql.CREATE_DEPLOYMENTS, _bulk_params(rows), self.deployment_row)

    def create_deployment(self, project_id: UUID, runtime_type: str) -> models.Deployment:
        params = {"project_id": project_id, "runtime_type": runtime_type}
        return self._one(sql.CREATE_DEPLOYMENT, params, self.deployment_row)

    def get_system_stats(self) -> models.SystemStats:
        return self._one(sql.SYSTEM_STATS, {}, _stats_row)

    def close(self) -> None:
        self.pool.close()


class PsycopgAsync(AsyncContender):
    name = "psycopg-async"
    description = "psycopg 3 AsyncConnectionPool, autocommit, prepare=True, class_row"

    async def setup(self, url: str) -> None:
        from psycopg.rows import class_row
        from psycopg_pool import AsyncConnectionPool

        self.user_row = class_row(models.User)
        self.deployment_row = class_row(models.Deployment)
        self.pool = AsyncConnectionPool(
            url,
            min_size=POOL_SIZE,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True},
            open=False,
            name=self.name,
        )
        await self.pool.open(wait=True)

    async def _one(self, statement: str, params: dict[str, Any], row_factory: Any) -> Any:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=row_factory)
            await cur.execute(statement, params, prepare=True)
            return await cur.fetchone()

    async def _all(self, statement: str, params: dict[str, Any], row_factory: Any) -> list[Any]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=row_factory)
            await cur.execute(statement, params, prepare=True)
            return await cur.fetchall()

    async def get_user_by_id(self, user_id: UUID) -> models.User | None:
        return await self._one(sql.GET_USER, {"id": user_id}, self.user_row)

    async def create_user(self, email: str, password_hash: str, plan_type: str) -> models.User:
        params = {"email": email, "password_hash": password_hash, "plan_type": plan_type}
        return await self._one(sql.CREATE_USER, params, self.user_row)

    async def get_deployment_with_details(
        self, deployment_id: UUID
    ) -> models.DeploymentDetails | None:
        return await self._one(sql.GET_DEPLOYMENT_WITH_DETAILS, {"id": deployment_id}, _details_row)

    async def get_deployments_by_status(self, status: str, limit: int) -> models.Page:
        params = {"status": status, "limit": limit, "offset": 0}
        return _page(await self._all(sql.DEPLOYMENTS_BY_STATUS, params, _page_row))

    async def create_deployments(self, rows: Sequence[DeploymentRow]) -> list[models.Deployment]:
        return await self._all(sql.CREATE_DEPLOYMENTS, _bulk_params(rows), self.deployment_row)

    async def create_deployment(self, project_id: UUID, runtime_type: str) -> models.Deployment:
        params = {"project_id": project_id, "runtime_type": runtime_type}
        return await self._one(sql.CREATE_DEPLOYMENT, params, self.deployment_row)

    async def get_system_stats(self) -> models.SystemStats:
        return await self._one(sql.SYSTEM_STATS, {}, _stats_row)

    async def close(self) -> None:
        await self.pool.close()
