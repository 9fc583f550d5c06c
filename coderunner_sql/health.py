"""One-shot health of a database: the server round trip and the schema's migration state."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import attrs

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.errors import DatabaseError
from coderunner_sql.records import HealthDetails, HealthReport

__all__ = ["DatabaseHealth", "SchemaState", "database_health"]


@attrs.frozen
class SchemaState:
    """How the database's schema compares with the migrations folder."""

    applied: int
    pending: tuple[str, ...]
    drifted: tuple[str, ...]
    error: str | None = None

    @property
    def ready(self) -> bool:
        """True when every migration is applied and none changed since."""
        return not self.pending and not self.drifted and self.error is None


@attrs.frozen
class DatabaseHealth:
    """The server's health report and the schema state; `healthy` needs both to be good."""

    report: HealthReport
    schema: SchemaState | None

    @property
    def healthy(self) -> bool:
        """True when the server answered and the schema is fully migrated, with no drift."""
        return self.report.healthy and self.schema is not None and self.schema.ready


def _schema(config: DatabaseConfig, migrations: str | Path | None) -> SchemaState:
    from coderunner_sql.migrations import Migrator

    try:
        states = Migrator(config, migrations).status()
    except DatabaseError as exc:
        return SchemaState(applied=0, pending=(), drifted=(), error=str(exc))
    return SchemaState(
        applied=sum(s.state in ("applied", "unrecorded") for s in states),
        pending=tuple(s.id for s in states if s.state == "pending"),
        drifted=tuple(s.id for s in states if s.state in ("changed", "missing")),
    )


def database_health(config: DatabaseConfig, migrations: str | Path | None = None) -> DatabaseHealth:
    """Connect once, time a round trip, and read the migration state; never raises."""
    from coderunner_sql.service import DatabaseService

    service = DatabaseService(config.replace(pool_min=1, pool_max=1))
    try:
        service.connect()
    except DatabaseError as exc:
        details = HealthDetails(
            timestamp=datetime.now(UTC),
            version=None,
            response_time_ms=None,
            pool=None,
            error=str(exc),
        )
        return DatabaseHealth(HealthReport("unhealthy", details), None)
    try:
        report = service.health_check()
    finally:
        service.disconnect()
    return DatabaseHealth(report, _schema(config, migrations) if report.healthy else None)
