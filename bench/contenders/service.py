"""The library itself: `DatabaseService` (sync) and `AsyncDatabaseService` (async).

Thin adapters: each method calls the service's method of the same name and returns what it
returns. The services get the same pool size as every other contender.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from bench.contenders.base import POOL_SIZE, AsyncContender, DeploymentRow, SyncContender


def _config(url: str) -> Any:
    from coderunner_sql.config import DatabaseConfig

    return DatabaseConfig.from_url(url, pool_min=POOL_SIZE, pool_max=POOL_SIZE)


class ServiceSync(SyncContender):
    name = "coderunner-sync"
    description = "coderunner_sql.DatabaseService"

    def setup(self, url: str) -> None:
        from coderunner_sql import DatabaseService

        self.service = DatabaseService(_config(url))
        self.service.connect()

    def get_user_by_id(self, user_id: UUID) -> Any:
        return self.service.get_user_by_id(user_id)

    def create_user(self, email: str, password_hash: str, plan_type: str) -> Any:
        return self.service.create_user(
            email=email, password_hash=password_hash, plan_type=plan_type
        )

    def get_deployment_with_details(self, deployment_id: UUID) -> Any:
        return self.service.get_deployment_with_details(deployment_id)

    def get_deployments_by_status(self, status: str, limit: int) -> Any:
        return self.service.get_deployments_by_status(status, limit=limit, offset=0)

    def create_deployments(self, rows: Sequence[DeploymentRow]) -> Any:
        return self.service.create_deployments(list(rows))

    def create_deployment(self, project_id: UUID, runtime_type: str) -> Any:
        return self.service.create_deployment(project_id=project_id, runtime_type=runtime_type)

    def get_system_stats(self) -> Any:
        return self.service.get_system_stats()

    def close(self) -> None:
        self.service.disconnect()


class ServiceAsync(AsyncContender):
    name = "coderunner-async"
    description = "coderunner_sql.AsyncDatabaseService"

    async def setup(self, url: str) -> None:
        from coderunner_sql import AsyncDatabaseService

        self.service = AsyncDatabaseService(_config(url))
        await self.service.connect()

    async def get_user_by_id(self, user_id: UUID) -> Any:
        return await self.service.get_user_by_id(user_id)

    async def create_user(self, email: str, password_hash: str, plan_type: str) -> Any:
        return await self.service.create_user(
            email=email, password_hash=password_hash, plan_type=plan_type
        )

    async def get_deployment_with_details(self, deployment_id: UUID) -> Any:
        return await self.service.get_deployment_with_details(deployment_id)

    async def get_deployments_by_status(self, status: str, limit: int) -> Any:
        return await self.service.get_deployments_by_status(status, limit=limit, offset=0)

    async def create_deployments(self, rows: Sequence[DeploymentRow]) -> Any:
        return await self.service.create_deployments(list(rows))

    async def create_deployment(self, project_id: UUID, runtime_type: str) -> Any:
        return await self.service.create_deployment(
            project_id=project_id, runtime_type=runtime_type
        )

    async def get_system_stats(self) -> Any:
        return await self.service.get_system_stats()

    async def close(self) -> None:
        await self.service.disconnect()
