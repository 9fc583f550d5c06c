"""SQLAlchemy 2.x over psycopg 3: Core statements and the declarative ORM.

Both use SQLAlchemy's defaults apart from the pool size (`QueuePool` of `POOL_SIZE`, no
overflow), so reads pay its usual BEGIN/ROLLBACK around each checkout: that is what a
SQLAlchemy user gets unless they opt into autocommit. psycopg prepares repeated statements
itself after a few executions.

Core builds the same dataclasses as the floor and uses the same single-round-trip shapes
(a lateral page joined to its total, one aggregate for the stats). The ORM returns mapped
instances, loads details with joined eager loading, and reads a page's total with a second
query, as ORM code usually does. Totals and stats read the row_counts counters, as every
contender does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Text,
    Uuid,
    bindparam,
    create_engine,
    func,
    insert,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ENUM, JSONB
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    joinedload,
    mapped_column,
    relationship,
    sessionmaker,
)

from bench import models
from bench.contenders import sql
from bench.contenders.base import POOL_SIZE, DeploymentRow, SyncContender

PlanType = ENUM(*models.PLANS, name="plan_type", create_type=False)
DeploymentStatus = ENUM(*models.STATUSES, name="deployment_status", create_type=False)


class Base(DeclarativeBase):
    pass


class UserRow(Base):
    __tablename__ = "users"
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, server_default=func.gen_random_uuid())
    email: Mapped[str] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(Text)
    plan_type: Mapped[str] = mapped_column(PlanType, server_default="free")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    projects: Mapped[list[ProjectRow]] = relationship(back_populates="user")


class ProjectRow(Base):
    __tablename__ = "projects"
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, server_default=func.gen_random_uuid())
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    user: Mapped[UserRow] = relationship(back_populates="projects")
    deployments: Mapped[list[DeploymentRowORM]] = relationship(back_populates="project")


class DeploymentRowORM(Base):
    __tablename__ = "deployments"
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, server_default=func.gen_random_uuid())
    project_id: Mapped[UUID] = mapped_column(ForeignKey("projects.id"))
    app_sandbox_id: Mapped[str | None] = mapped_column(Text)
    public_url: Mapped[str | None] = mapped_column(Text)
    db_sandbox_id: Mapped[str | None] = mapped_column(Text)
    db_connection_info: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(DeploymentStatus, server_default="PENDING")
    runtime_type: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    project: Mapped[ProjectRow] = relationship(back_populates="deployments")


users = UserRow.__table__
projects = ProjectRow.__table__
deployments = DeploymentRowORM.__table__

USER_COLUMNS = [users.c[f] for f in models.User.__dataclass_fields__]
PROJECT_COLUMNS = [projects.c[f] for f in models.Project.__dataclass_fields__]
DEPLOYMENT_COLUMNS = [deployments.c[f] for f in models.Deployment.__dataclass_fields__]


def _engine(url: str) -> Any:
    return create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1),
        pool_size=POOL_SIZE,
        max_overflow=0,
    )


# Counts come from the counters in row_counts, as the library reads them (bench/contenders/sql.py
# says why): the same SQL as the raw contenders.
STATS = text(sql.SYSTEM_STATS)
STATUS_TOTAL = text(
    "SELECT coalesce(sum(n), 0)::bigint AS total FROM row_counts WHERE counter = :counter"
).columns(total=BigInteger)


class SqlalchemyCore(SyncContender):
    name = "sqlalchemy-core"
    description = "SQLAlchemy 2 Core (postgresql+psycopg), rows into dataclasses"

    def setup(self, url: str) -> None:
        self.engine = _engine(url)
        d = deployments.c
        self.get_user = select(*USER_COLUMNS).where(users.c.id == bindparam("id"))
        self.create_user_stmt = insert(users).returning(*USER_COLUMNS)
        self.details = (
            select(*DEPLOYMENT_COLUMNS, *PROJECT_COLUMNS, *USER_COLUMNS)
            .join_from(deployments, projects, d.project_id == projects.c.id)
            .join(users, projects.c.user_id == users.c.id)
            .where(d.id == bindparam("id"))
        )
        total = STATUS_TOTAL.subquery("t")
        page = (
            select(*DEPLOYMENT_COLUMNS)
            .where(d.status == bindparam("status"))
            .order_by(d.created_at.desc(), d.id.desc())
            .limit(bindparam("limit"))
            .offset(bindparam("offset"))
            .lateral("p")
        )
        self.by_status = (
            select(total.c.total, *page.c)
            .select_from(total.outerjoin(page, true()))
            .order_by(page.c.created_at.desc(), page.c.id.desc())
        )
        self.create_many = insert(deployments).returning(
            *DEPLOYMENT_COLUMNS, sort_by_parameter_order=True
        )
        self.create_one = insert(deployments).returning(*DEPLOYMENT_COLUMNS)
        self.stats = STATS
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def get_user_by_id(self, user_id: UUID) -> models.User | None:
        with self.engine.connect() as conn:
            row = conn.execute(self.get_user, {"id": user_id}).one_or_none()
        return models.User(*row) if row is not None else None

    def create_user(self, email: str, password_hash: str, plan_type: str) -> models.User:
        params = {"email": email, "password_hash": password_hash, "plan_type": plan_type}
        with self.engine.begin() as conn:
            row = conn.execute(self.create_user_stmt, params).one()
        return models.User(*row)

    def get_deployment_with_details(self, deployment_id: UUID) -> models.DeploymentDetails | None:
        with self.engine.connect() as conn:
            row = conn.execute(self.details, {"id": deployment_id}).one_or_none()
        return models.details_from_values(row) if row is not None else None

    def get_deployments_by_status(self, status: str, limit: int) -> models.Page:
        params = {"status": status, "counter": f"deployments.{status}", "limit": limit, "offset": 0}
        with self.engine.connect() as conn:
            rows = conn.execute(self.by_status, params).all()
        items = [models.Deployment(*r[1:]) for r in rows if r[1] is not None]
        return models.Page(items, rows[0][0])

    def create_deployments(self, rows: Sequence[DeploymentRow]) -> list[models.Deployment]:
        with self.engine.begin() as conn:
            created = conn.execute(self.create_many, list(rows)).all()
        return [models.Deployment(*r) for r in created]

    def create_deployment(self, project_id: UUID, runtime_type: str) -> models.Deployment:
        params = {"project_id": project_id, "runtime_type": runtime_type}
        with self.engine.begin() as conn:
            row = conn.execute(self.create_one, params).one()
        return models.Deployment(*row)

    def get_system_stats(self) -> models.SystemStats:
        with self.engine.connect() as conn:
            row = conn.execute(self.stats).one()
        return models.stats_from_values(row)

    def close(self) -> None:
        self.engine.dispose()


class SqlalchemyOrm(SyncContender):
    name = "sqlalchemy-orm"
    description = "SQLAlchemy 2 ORM: declarative classes, one Session per call"

    def setup(self, url: str) -> None:
        self.engine = _engine(url)
        self.session: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)
        self.details_options = (joinedload(DeploymentRowORM.project).joinedload(ProjectRow.user),)
        self.stats = STATS
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def get_user_by_id(self, user_id: UUID) -> UserRow | None:
        with self.session() as session:
            return session.get(UserRow, user_id)

    def create_user(self, email: str, password_hash: str, plan_type: str) -> UserRow:
        with self.session() as session:
            user = UserRow(email=email, password_hash=password_hash, plan_type=plan_type)
            session.add(user)
            session.commit()
            return user

    def get_deployment_with_details(self, deployment_id: UUID) -> DeploymentRowORM | None:
        with self.session() as session:
            return session.get(DeploymentRowORM, deployment_id, options=self.details_options)

    def get_deployments_by_status(self, status: str, limit: int) -> models.Page:
        with self.session() as session:
            items = session.scalars(
                select(DeploymentRowORM)
                .where(DeploymentRowORM.status == status)
                .order_by(DeploymentRowORM.created_at.desc(), DeploymentRowORM.id.desc())
                .limit(limit)
            ).all()
            total = session.scalar(STATUS_TOTAL, {"counter": f"deployments.{status}"})
        return models.Page(list(items), total or 0)

    def create_deployments(self, rows: Sequence[DeploymentRow]) -> list[DeploymentRowORM]:
        with self.session() as session:
            created = session.scalars(
                insert(DeploymentRowORM).returning(DeploymentRowORM, sort_by_parameter_order=True),
                list(rows),
            ).all()
            session.commit()
        return list(created)

    def create_deployment(self, project_id: UUID, runtime_type: str) -> DeploymentRowORM:
        with self.session() as session:
            deployment = DeploymentRowORM(project_id=project_id, runtime_type=runtime_type)
            session.add(deployment)
            session.commit()
            return deployment

    def get_system_stats(self) -> models.SystemStats:
        with self.session() as session:
            row = session.execute(self.stats).one()
        return models.stats_from_values(row)

    def close(self) -> None:
        self.engine.dispose()
