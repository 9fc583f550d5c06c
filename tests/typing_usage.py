"""Uses the public API as an application would; `mypy --strict` checks it in CI.

Never run: it exists so that a change breaking the public types fails type-checking.
"""

from __future__ import annotations

from uuid import UUID

from coderunner_sql import (
    AsyncDatabaseService,
    DatabaseConfig,
    DatabaseService,
    Deployment,
    DeploymentStatus,
    Page,
    PlanType,
    SystemStats,
    Transaction,
    User,
)


def sync_usage(config: DatabaseConfig) -> tuple[User, Page[Deployment], SystemStats, int]:
    with DatabaseService(config) as db:
        user: User = db.create_user(
            email="a@example.com", password_hash="h", plan_type=PlanType.TEAM
        )
        found: User | None = db.get_user_by_id(user.id)
        assert found is not None
        project = db.create_project(user_id=str(user.id), name="app", description=None)
        db.update_project(project.id, description=None)
        deployment = db.create_deployment(project_id=project.id, runtime_type="python")
        db.update_deployment_status(deployment.id, DeploymentStatus.RUNNING, expected="PENDING")

        def body(tx: Transaction) -> UUID:
            return tx.create_user(email="b@example.com", password_hash="h").id

        created: UUID = db.execute_in_transaction(body)
        assert created
        page: Page[Deployment] = db.get_deployments_by_status("RUNNING", limit=10)
        running: int = db.get_running_deployment_count_by_user(user.id)
        return user, page, db.get_system_stats(), running


async def async_usage(config: DatabaseConfig) -> float | None:
    async with AsyncDatabaseService(config) as db:
        user = await db.create_user(email="c@example.com", password_hash="h")
        async with db.transaction() as tx:
            await tx.update_user(user.id, plan_type=PlanType.PERSONAL)
        report = await db.health_check()
        return report.details.response_time_ms
