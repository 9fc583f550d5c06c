"""The row shapes every hand-written contender returns, so all of them do the same work.

The raw-driver and SQLAlchemy Core contenders build these dataclasses (the floor builds them
with psycopg's `class_row`); the ORM contender returns its mapped instances instead, because
that is what an ORM user gets. Field order matches the column order in `contenders/sql.py`,
which lets the asyncpg and Core contenders build them positionally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

STATUSES = ("PENDING", "RUNNING", "STOPPED", "FAILED")
PLANS = ("free", "personal", "team")


@dataclass(slots=True)
class User:
    id: UUID
    email: str
    password_hash: str
    plan_type: str
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class Project:
    id: UUID
    user_id: UUID
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class Deployment:
    id: UUID
    project_id: UUID
    app_sandbox_id: str | None
    public_url: str | None
    db_sandbox_id: str | None
    db_connection_info: dict[str, Any] | None
    status: str
    runtime_type: str
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class DeploymentDetails:
    deployment: Deployment
    project: Project
    user: User


@dataclass(slots=True)
class Page:
    items: list[Any]
    total: int


@dataclass(slots=True)
class SystemStats:
    users: int
    projects: int
    deployments: int
    running_deployments: int
    deployments_by_status: dict[str, int] = field(default_factory=dict)


USER_WIDTH = 6
PROJECT_WIDTH = 6
DEPLOYMENT_WIDTH = 10


def details_from_values(values: Any) -> DeploymentDetails:
    """A joined deployment + project + user row (in `sql.DETAILS_COLUMNS` order), nested."""
    d = DEPLOYMENT_WIDTH
    p = d + PROJECT_WIDTH
    return DeploymentDetails(
        Deployment(*values[:d]), Project(*values[d:p]), User(*values[p : p + USER_WIDTH])
    )


def stats_from_values(values: Any) -> SystemStats:
    """A row of the library's stats query: users, projects, deployments, running, and the
    count per status as a JSON object (statuses with no rows left out, filled in here, as
    the library does)."""
    counts = values[4] or {}
    by_status = {status: counts.get(status, 0) for status in STATUSES}
    return SystemStats(values[0], values[1], values[2], values[3], by_status)
