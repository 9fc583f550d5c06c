"""The interface every contender implements: one method per benchmarked operation.

A contender is constructed without arguments, gets the database URL in `setup`, and is
closed once at the end. Sync contenders subclass `SyncContender`; async ones subclass
`AsyncContender`, whose methods are coroutines with the same names and arguments. The runner
drives both, sync ones on the main thread (and a thread pool for the concurrent operation),
async ones on a single event loop.

Every contender is given a pool of `POOL_SIZE` connections, so the 8-way concurrent
operation never waits for a connection and pool sizing is not what is being compared.

Methods may return any shape; `bench.verify` checks results by duck typing (`.id`,
`.items`, `.total`…), so the library's own models pass without conversion.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from uuid import UUID

POOL_SIZE = 8

DeploymentRow = Mapping[str, Any]
"""One `create_deployments` input row: project_id, runtime_type, status, public_url,
app_sandbox_id (the keys the library's `create_deployments` takes)."""


class SyncContender(ABC):
    name: ClassVar[str]
    is_async: ClassVar[bool] = False
    description: ClassVar[str] = ""

    @abstractmethod
    def setup(self, url: str) -> None: ...

    @abstractmethod
    def get_user_by_id(self, user_id: UUID) -> Any: ...

    @abstractmethod
    def create_user(self, email: str, password_hash: str, plan_type: str) -> Any: ...

    @abstractmethod
    def get_deployment_with_details(self, deployment_id: UUID) -> Any: ...

    @abstractmethod
    def get_deployments_by_status(self, status: str, limit: int) -> Any:
        """The newest `limit` deployments with `status` and the exact count of that status."""

    @abstractmethod
    def create_deployments(self, rows: Sequence[DeploymentRow]) -> Any: ...

    @abstractmethod
    def create_deployment(self, project_id: UUID, runtime_type: str) -> Any: ...

    @abstractmethod
    def get_system_stats(self) -> Any: ...

    @abstractmethod
    def close(self) -> None: ...


class AsyncContender(ABC):
    name: ClassVar[str]
    is_async: ClassVar[bool] = True
    description: ClassVar[str] = ""

    @abstractmethod
    async def setup(self, url: str) -> None: ...

    @abstractmethod
    async def get_user_by_id(self, user_id: UUID) -> Any: ...

    @abstractmethod
    async def create_user(self, email: str, password_hash: str, plan_type: str) -> Any: ...

    @abstractmethod
    async def get_deployment_with_details(self, deployment_id: UUID) -> Any: ...

    @abstractmethod
    async def get_deployments_by_status(self, status: str, limit: int) -> Any: ...

    @abstractmethod
    async def create_deployments(self, rows: Sequence[DeploymentRow]) -> Any: ...

    @abstractmethod
    async def create_deployment(self, project_id: UUID, runtime_type: str) -> Any: ...

    @abstractmethod
    async def get_system_stats(self) -> Any: ...

    @abstractmethod
    async def close(self) -> None: ...


Contender = SyncContender | AsyncContender


def to_columns(rows: Sequence[DeploymentRow]) -> tuple[list[Any], ...]:
    """`create_deployments` rows as one list per column, in `sql.BULK_INSERT_COLUMNS` order."""
    return (
        [r["project_id"] for r in rows],
        [r["runtime_type"] for r in rows],
        [r["status"] for r in rows],
        [r["public_url"] for r in rows],
        [r["app_sandbox_id"] for r in rows],
    )
