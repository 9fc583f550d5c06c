"""What the sync and async services share that does no I/O: configuration, the loaded
queries, pool settings, pool statistics and the process-wide instances."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from psycopg_pool import PoolTimeout

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.encryption import KeyRing
from coderunner_sql.errors import (
    DatabaseError,
    DatabaseUnavailableError,
    EncryptionError,
    translate,
)
from coderunner_sql.query_methods import GetServerInfoRow, SetStatementTimeoutParams
from coderunner_sql.query_watch import QueryWatch
from coderunner_sql.records import (
    DeploymentStatus,
    HealthDetails,
    HealthReport,
    PoolInfo,
    ReplicaHealth,
    SystemStats,
)
from coderunner_sql.routing import PrimaryScope, Router
from coderunner_sql.telemetry import PoolSample, Telemetry

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from coderunner_sql.pipelining import ReadPipeline

__all__ = ["ServiceBase"]

_RECONNECT_TIMEOUT_S = 5.0
_STATUSES = tuple(DeploymentStatus)


class _Reachability:
    """What the pool's latest attempt to open a connection said about the server."""

    def __init__(self) -> None:
        self.down = False
        self.reason = ""

    def failed(self, reason: str) -> None:
        self.reason = reason
        self.down = True

    def succeeded(self) -> None:
        self.down = False


class ServiceBase:
    """Configuration and bookkeeping common to `DatabaseService` and `AsyncDatabaseService`."""

    _replicas: Any  # the replicas' pools and I/O (set by `_bind_queries`)
    _instances: ClassVar[dict[type[Any], Any]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        config: DatabaseConfig | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        """`config` (default: from the environment); OpenTelemetry providers other than the
        global ones for this service's spans and metrics (see docs/observability.md)."""
        self.config = config if config is not None else DatabaseConfig.from_env()
        key = self.config.encryption_key
        self._keys: KeyRing | None = KeyRing.parse(key) if key is not None else None
        self._reach = _Reachability()
        # Callers that gave up waiting for a pooled connection (the pool's own count also
        # holds each slice of `_acquire`'s wait).
        self._acquire_timeouts = 0
        self._telemetry = Telemetry(
            self.config,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            pools=self._pool_samples,
        )
        self._watch = QueryWatch(
            slow_query_ms=self.config.slow_query_ms,
            # PgBouncer in transaction mode cannot keep server-side prepared statements.
            prepare=not self.config.pgbouncer,
            keys=self._keys,
            telemetry=self._telemetry,
        )
        # Generated methods given to run(), each with its twin under this service's watch.
        self._methods: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._pool: Any = None
        self._closing = False
        # Callers waiting for a pooled connection right now (see `_acquire`).
        self._waiters: set[object] = set()
        self._router = Router(self.config)
        # Set by connect(): the primary's lender (connections module) and the replicas'.
        self._connections: Any = None
        # AsyncDatabaseService's batches of concurrent reads (pipelining.py), when on.
        self._pipeline: ReadPipeline | None = None
        self._pgbouncer_settings = self._transaction_settings()
        self._bind_queries()

    def _bind_queries(self) -> None:
        # Sets `_queries`, the package's generated query methods run under this service's watch
        # (typed by the subclass: Queries or AsyncQueries), and `_replicas`, which uses them.
        raise NotImplementedError

    @classmethod
    def get_instance(cls, config: DatabaseConfig | None = None) -> Self:
        """The process-wide instance of this service, created on first call."""
        with cls._instances_lock:
            instance = cls._instances.get(cls)
            if instance is None:
                instance = cls._instances[cls] = cls(config)
            return instance

    def primary(self) -> PrimaryScope:
        """`with db.primary():` (or `async with`): reads in the block, in this thread or
        task, go to the primary instead of a read replica."""
        return self._router.pin()

    def _pool_kwargs(self, config: DatabaseConfig | None = None) -> dict[str, Any]:
        cfg = self.config if config is None else config
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
            # The pool retries a failed connect after 1, 2, 4… seconds until this runs out;
            # then the next caller starts a fresh attempt at once. Short, so a server back
            # from a restart is found within about two seconds, not after a long backoff.
            "reconnect_timeout": _RECONNECT_TIMEOUT_S,
            "name": cfg.application_name,
            "open": False,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.describe()})"

    def _connect_wait(self) -> float:
        # One connect attempt's time, plus a moment for the pool to hand the connection over.
        return self.config.connection_timeout_ms / 1000 + 0.25

    def _acquire_wait(self, pool: Any, timeout: float | None) -> float:
        # While the server is known to be down and no idle connection is left, waiting the
        # whole acquire timeout only hides the outage: wait one connect attempt instead.
        wait = pool.timeout if timeout is None else timeout
        if self._reach.down and not pool.get_stats().get("pool_available", 0):
            wait = min(wait, self._connect_wait())
        return float(wait)

    def _acquire_failure(
        self, exc: BaseException, name: str, *, closed: bool = False
    ) -> DatabaseError:
        if isinstance(exc, PoolTimeout):
            self._acquire_timeouts += 1
        error = translate(exc, operation=name)
        if not isinstance(error, DatabaseUnavailableError):
            return error
        # Not "pool exhausted" when the pool is empty because the server does not answer.
        if self._reach.down:
            return DatabaseUnavailableError(f"{name}: {self._reach.reason}")
        if closed:
            return DatabaseUnavailableError(
                f"{name}: the server closed the pooled connections and none reopened in time"
            )
        return error

    def _require_keys(self, name: str) -> KeyRing:
        if self._keys is None:
            raise EncryptionError(
                f"{name}: no encryption key: set CODERUNNER_SQL_ENCRYPTION_KEY "
                "(kid:base64key, newest last)"
            )
        return self._keys

    def _statement_timeout(self) -> SetStatementTimeoutParams | None:
        # Behind PgBouncer a session setting would outlive the transaction and reach
        # another client: there `_transaction_settings` applies it per transaction instead.
        if self.config.statement_timeout_ms is None or self.config.pgbouncer:
            return None
        return {"timeout": str(self.config.statement_timeout_ms), "is_local": False}

    def _transaction_settings(self) -> SetStatementTimeoutParams | None:
        if self.config.statement_timeout_ms is None or not self.config.pgbouncer:
            return None
        return {"timeout": str(self.config.statement_timeout_ms), "is_local": True}

    @property
    def _replica_pools(self) -> list[Any]:
        return list(self._replicas.pools)

    def get_pool_info(self) -> PoolInfo:
        """Open, idle and in-use connections and waiting callers, right now."""
        return self._pool_info(self._pool, len(self._waiters))

    @staticmethod
    def _pool_info(pool: Any, waiting: int | None = None) -> PoolInfo:
        if pool is None:
            return PoolInfo(total_count=0, idle_count=0, waiting_count=0, connected_clients=0)
        stats = pool.get_stats()
        total = stats.get("pool_size", 0)
        idle = stats.get("pool_available", 0)
        # psycopg_pool's own count keeps callers that gave up until a connection comes back.
        if waiting is None:
            waiting = stats.get("requests_waiting", 0)
        return PoolInfo(
            total_count=total,
            idle_count=idle,
            waiting_count=waiting,
            connected_clients=max(total - idle, 0),
        )

    def _pool_samples(self) -> Iterator[PoolSample]:
        # What the pool metrics report (coderunner_sql.telemetry): the primary's pool and
        # each replica's, while connected.
        if self._pool is None:
            return
        info = self.get_pool_info()
        yield PoolSample(
            self.config.application_name,
            idle=info.idle_count,
            used=info.connected_clients,
            pending=info.waiting_count,
            max=self._pool.max_size,
            timeouts=self._acquire_timeouts,
        )
        for index, pool in enumerate(self._replica_pools):
            replica = self._pool_info(pool)
            yield PoolSample(
                f"{self.config.application_name}-replica-{index}",
                idle=replica.idle_count,
                used=replica.connected_clients,
                pending=replica.waiting_count,
                max=pool.max_size,
                timeouts=0,
            )

    def _in_use(self) -> int:
        if self._pool is None:
            return 0
        lent = sum(replica.borrowed for replica in self._router.replicas)
        batched = 0 if self._pipeline is None else self._pipeline.active
        return self.get_pool_info().connected_clients + lent + batched

    def _replica_health(self) -> tuple[ReplicaHealth, ...]:
        pools = self._replica_pools
        return tuple(
            ReplicaHealth(
                url=replica.label,
                status=replica.status,
                lag_ms=replica.lag_ms,
                pool=self._pool_info(pools[replica.index]) if replica.index < len(pools) else None,
                reads=replica.reads,
                error=replica.error,
            )
            for replica in self._router.replicas
        )

    @staticmethod
    def _complete_stats(stats: SystemStats) -> SystemStats:
        counts = stats.deployments_by_status
        # Built directly, not with attrs.evolve: this runs on every get_system_stats call.
        return SystemStats(
            stats.total_users,
            stats.total_projects,
            stats.total_deployments,
            stats.running_deployments,
            {status: counts.get(status, 0) for status in _STATUSES},
        )

    def _health(
        self,
        started: float,
        finished: float,
        info: GetServerInfoRow | None,
        error: BaseException | None,
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
                    replicas=self._replica_health(),
                ),
            )
        version, server_time = info.version, info.server_time
        return HealthReport(
            "healthy",
            HealthDetails(
                timestamp=server_time if server_time is not None else datetime.now(UTC),
                version=str(version),
                response_time_ms=round((finished - started) * 1000, 3),
                pool=pool,
                replicas=self._replica_health(),
            ),
        )
