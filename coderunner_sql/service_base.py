"""What the sync and async services share that does no I/O: configuration, the loaded
queries, pool settings, pool statistics and the process-wide instances."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

import attrs

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.errors import DatabaseUnavailableError
from coderunner_sql.loader import RESULT_TYPES, load_queries
from coderunner_sql.query_watch import QueryWatch
from coderunner_sql.records import (
    DeploymentStatus,
    HealthDetails,
    HealthReport,
    PoolInfo,
    SystemStats,
)

__all__ = ["ServiceBase"]


class ServiceBase:
    """Configuration and bookkeeping common to `DatabaseService` and `AsyncDatabaseService`."""

    _adapter_class: ClassVar[type[Any]]
    _instances: ClassVar[dict[type[Any], Any]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, config: DatabaseConfig | None = None) -> None:
        self.config = config if config is not None else DatabaseConfig.from_env()
        self._watch = QueryWatch(
            RESULT_TYPES,
            slow_query_ms=self.config.slow_query_ms,
            # PgBouncer in transaction mode cannot keep server-side prepared statements.
            prepare=not self.config.pgbouncer,
        )
        self._q: Any = load_queries(self._adapter_class(self._watch))
        self._pool: Any = None
        self._closing = False

    @classmethod
    def get_instance(cls, config: DatabaseConfig | None = None) -> Self:
        """The process-wide instance of this service, created on first call."""
        with cls._instances_lock:
            instance = cls._instances.get(cls)
            if instance is None:
                instance = cls._instances[cls] = cls(config)
            return instance

    def _pool_kwargs(self) -> dict[str, Any]:
        cfg = self.config
        connection = cfg.connect_kwargs()
        connection["autocommit"] = True
        if cfg.pgbouncer:
            connection["prepare_threshold"] = None
        return {
            "kwargs": connection,
            "min_size": cfg.pool_min,
            "max_size": cfg.pool_max,
            "timeout": cfg.acquire_timeout_ms / 1000,
            "max_idle": cfg.idle_timeout_ms / 1000,
            "reconnect_timeout": max(cfg.acquire_timeout_ms / 1000, 30.0),
            "name": cfg.application_name,
            "open": False,
        }

    def _statement_timeout(self) -> dict[str, Any] | None:
        if self.config.statement_timeout_ms is None:
            return None
        return {"timeout": str(self.config.statement_timeout_ms), "is_local": False}

    def _live_pool(self) -> Any:
        if self._pool is None or self._closing:
            raise DatabaseUnavailableError("the service is not connected: call connect() first")
        return self._pool

    def get_pool_info(self) -> PoolInfo:
        """Open, idle and in-use connections and waiting callers, right now."""
        if self._pool is None:
            return PoolInfo(total_count=0, idle_count=0, waiting_count=0, connected_clients=0)
        stats = self._pool.get_stats()
        total = stats.get("pool_size", 0)
        idle = stats.get("pool_available", 0)
        return PoolInfo(
            total_count=total,
            idle_count=idle,
            waiting_count=stats.get("requests_waiting", 0),
            connected_clients=max(total - idle, 0),
        )

    def _in_use(self) -> int:
        return 0 if self._pool is None else self.get_pool_info().connected_clients

    @staticmethod
    def _complete_stats(stats: SystemStats) -> SystemStats:
        counts = stats.deployments_by_status
        return attrs.evolve(
            stats,
            deployments_by_status={status: counts.get(status, 0) for status in DeploymentStatus},
        )

    def _health(
        self, started: float, finished: float, info: Any, error: BaseException | None
    ) -> HealthReport:
        pool = self.get_pool_info() if self._pool is not None else None
        if error is not None or info is None:
            return HealthReport(
                "unhealthy",
                HealthDetails(
                    timestamp=datetime.now(UTC),
                    version=None,
                    response_time_ms=None,
                    pool=pool,
                    error=str(error) if error is not None else "no answer",
                ),
            )
        version, server_time = info
        return HealthReport(
            "healthy",
            HealthDetails(
                timestamp=server_time,
                version=str(version),
                response_time_ms=round((finished - started) * 1000, 3),
                pool=pool,
            ),
        )
