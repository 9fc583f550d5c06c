"""The typed rows and results the services return (frozen attrs classes) and the enums.

Secret fields (`User.password_hash`, `Deployment.db_connection_info`) are left out of
`repr` and carry `metadata={"secret": True}`, which `coderunner_sql.converter.to_dict` honours.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID

import attrs

__all__ = [
    "Deployment",
    "DeploymentDetails",
    "DeploymentStatus",
    "HealthDetails",
    "HealthReport",
    "NewDeployment",
    "Page",
    "PlanType",
    "PoolInfo",
    "Project",
    "ProjectWithUser",
    "ReplicaHealth",
    "SystemStats",
    "User",
]

T = TypeVar("T")
SECRET: dict[str, Any] = {"secret": True}


class PlanType(enum.StrEnum):
    """A user's subscription plan (the `plan_type` enum in PostgreSQL)."""

    FREE = "free"
    PERSONAL = "personal"
    TEAM = "team"


class DeploymentStatus(enum.StrEnum):
    """Where a deployment is in its life (the `deployment_status` enum in PostgreSQL)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    FAILED = "FAILED"


@attrs.frozen
class User:
    """A row of `users`."""

    id: UUID
    email: str
    password_hash: str = attrs.field(repr=False, metadata=SECRET)
    plan_type: PlanType
    created_at: datetime
    updated_at: datetime


@attrs.frozen
class Project:
    """A row of `projects`."""

    id: UUID
    user_id: UUID
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime


@attrs.frozen
class Deployment:
    """A row of `deployments`."""

    id: UUID
    project_id: UUID
    app_sandbox_id: str | None
    public_url: str | None
    db_sandbox_id: str | None
    db_connection_info: dict[str, Any] | None = attrs.field(repr=False, metadata=SECRET)
    status: DeploymentStatus
    runtime_type: str
    created_at: datetime
    updated_at: datetime


@attrs.frozen(kw_only=True)
class NewDeployment:
    """One deployment to create, as `create_deployments` accepts it (dicts work too)."""

    project_id: UUID | str
    runtime_type: str
    app_sandbox_id: str | None = None
    public_url: str | None = None
    db_sandbox_id: str | None = None
    db_connection_info: dict[str, Any] | None = attrs.field(
        default=None, repr=False, metadata=SECRET
    )
    status: DeploymentStatus | str = DeploymentStatus.PENDING


@attrs.frozen
class ProjectWithUser:
    """A project and the user who owns it."""

    project: Project
    user: User


@attrs.frozen
class DeploymentDetails:
    """A deployment with its project and the project's owner."""

    deployment: Deployment
    project: Project
    user: User


@attrs.frozen
class Page(Generic[T]):
    """One page of a listing, newest first.

    `total` counts every matching row whatever the offset (None when the listing was asked
    `with_total=False`); `next_cursor`, when set, fetches the next page via `after=`.
    """

    items: list[T]
    total: int | None
    limit: int
    offset: int
    next_cursor: str | None = None


@attrs.frozen
class SystemStats:
    """Platform-wide counts; `deployments_by_status` has every status, 0 when none."""

    total_users: int
    total_projects: int
    total_deployments: int
    running_deployments: int
    deployments_by_status: dict[DeploymentStatus, int]


@attrs.frozen
class PoolInfo:
    """The connection pool right now: open, idle and in-use connections, waiting callers."""

    total_count: int
    idle_count: int
    waiting_count: int
    connected_clients: int


@attrs.frozen
class ReplicaHealth:
    """One read replica as `health_check` found it; "lagging" and "down" replicas are
    skipped and their reads served by the primary."""

    url: str
    status: Literal["healthy", "lagging", "down", "unknown"]
    lag_ms: float | None
    pool: PoolInfo | None
    reads: int = 0
    error: str | None = None


@attrs.frozen
class HealthDetails:
    """What `health_check` measured; `replicas` is empty without `DATABASE_READ_URL`."""

    timestamp: datetime
    version: str | None
    response_time_ms: float | None
    pool: PoolInfo | None
    error: str | None = None
    replicas: tuple[ReplicaHealth, ...] = ()


@attrs.frozen
class HealthReport:
    """`status` is "healthy" when a round trip to the server succeeded."""

    status: Literal["healthy", "unhealthy"]
    details: HealthDetails

    @property
    def healthy(self) -> bool:
        """True when `status` is "healthy"."""
        return self.status == "healthy"
