"""Loading `queries/*.sql` through aiosql, and which record each query's rows become."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosql

from coderunner_sql.records import (
    Deployment,
    DeploymentDetails,
    Project,
    ProjectWithUser,
    SystemStats,
    User,
)
from coderunner_sql.resources import queries_dir

__all__ = ["RESULT_TYPES", "load_queries"]

RESULT_TYPES: dict[str, type[Any]] = {
    "create_user": User,
    "get_user_by_id": User,
    "get_user_by_email": User,
    "update_user": User,
    "list_users": User,
    "list_users_after": User,
    "create_project": Project,
    "get_project_by_id": Project,
    "list_projects_by_user_id": Project,
    "list_projects_by_user_id_after": Project,
    "update_project": Project,
    "get_project_with_user": ProjectWithUser,
    "create_deployment": Deployment,
    "create_deployments": Deployment,
    "get_deployment_by_id": Deployment,
    "list_deployments_by_project_id": Deployment,
    "list_deployments_by_project_id_after": Deployment,
    "list_deployments_by_status": Deployment,
    "list_deployments_by_status_after": Deployment,
    "stream_deployments_by_status": Deployment,
    "update_deployment_status": Deployment,
    "update_deployment": Deployment,
    "get_deployment_with_details": DeploymentDetails,
    "get_system_stats": SystemStats,
    "get_system_stats_in_scope": SystemStats,
}
"""Query name -> the record its rows fill. Queries not listed return tuples or values."""


def load_queries(adapter: Any, directory: str | Path | None = None) -> Any:
    """aiosql's `Queries` for every `.sql` file in `directory` (default: `queries/`)."""
    # aiosql calls a non-string adapter argument to build the adapter; hand it ours.
    return aiosql.from_path(queries_dir(directory), lambda: adapter)
