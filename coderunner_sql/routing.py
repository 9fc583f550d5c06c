"""Read replicas: which server answers a read, and what the service knows about each replica.

I/O-free bookkeeping shared by the sync and async services (they own the pools and run the
queries). A read goes to a replica unless:

- the caller is inside `with service.primary():` (or `async with`);
- the service wrote something the replica has not replayed yet (read-your-writes: the
  primary's WAL position after the write against the replica's `pg_last_wal_replay_lsn()`);
- the replica is down (retried after `RETRY_DOWN_S`) or lags more than
  `DB_REPLICA_MAX_LAG_MS` (checked again after `STATUS_TTL_S`).

Then it goes to the primary. Each replica that becomes unusable is logged once, as a
warning, and once more (as info) when it is back.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Sequence
from typing import Literal

import psycopg

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.errors import (
    ConflictError,
    DatabaseError,
    DatabaseUnavailableError,
    PoolExhaustedError,
    QueryError,
)
from coderunner_sql.query_methods import GetReplicaStatusRow

__all__ = [
    "RETRY_DOWN_S",
    "STATUS_TTL_S",
    "PrimaryScope",
    "ReplicaState",
    "Router",
    "falls_back",
    "parse_lsn",
    "replica_config",
]

log = logging.getLogger("coderunner_sql.routing")

STATUS_TTL_S = 1.0
"""How long a replica's measured lag and replay position are trusted before re-measuring."""

RETRY_DOWN_S = 5.0
"""How long a replica that failed is left alone before a read tries it again."""

_POLL_S = 0.005
_QUERY_CANCELED = psycopg.errors.QueryCanceled.sqlstate

# The routers pinned to their primary in the current thread or task (`Router.pin()`).
_PINNED: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "coderunner_sql_pinned", default=frozenset()
)

Status = Literal["unknown", "healthy", "lagging", "down"]


def parse_lsn(text: str) -> int:
    """A `pg_lsn` such as `16/B374D848` as one comparable integer."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def replica_config(primary: DatabaseConfig, url: str) -> DatabaseConfig:
    """The primary's settings with the replica's address; user, password and database
    default to the primary's when the replica URL leaves them out."""
    read = DatabaseConfig.from_url(url)
    same_user = read.user is None or read.user == primary.user
    return primary.replace(
        host=read.host,
        port=read.port,
        dbname=read.dbname or primary.dbname,
        user=read.user or primary.user,
        password=read.password if read.password is not None or not same_user else primary.password,
        sslmode=read.sslmode or primary.sslmode,
        options={**primary.options, **read.options},
        read_urls=(),
    )


def falls_back(error: DatabaseError) -> bool:
    """True when a read that failed on a replica should be sent to the primary instead:
    the replica is unreachable, cancelled it for a recovery conflict, or rejected it (a
    schema it has not replayed yet) — but not a statement timeout, which would only run as
    long again on the primary, nor a bad argument, which the primary would reject too."""
    if isinstance(error, DatabaseUnavailableError | ConflictError):
        return True
    return isinstance(error, QueryError) and error.sqlstate != _QUERY_CANCELED


class ReplicaState:
    """What the service last measured about one replica."""

    def __init__(self, index: int, config: DatabaseConfig) -> None:
        self.index = index
        self.config = config
        self.label = config.describe()
        self.status: Status = "unknown"
        self.in_recovery: bool | None = None
        self.lag_ms: float | None = None
        self.replayed_lsn = 0
        self.reads = 0
        self.borrowed = 0
        self.error: str | None = None
        self.recheck_at = 0.0
        self.measured_at = 0.0

    def __repr__(self) -> str:
        return f"ReplicaState({self.label!r}, {self.status})"


class PrimaryScope:
    """`with service.primary():` (or `async with`): every read in the block, in this thread
    or task, goes to the primary."""

    def __init__(self, router: Router) -> None:
        self._key = id(router)
        self._tokens: list[contextvars.Token[frozenset[int]]] = []

    def __enter__(self) -> PrimaryScope:
        self._tokens.append(_PINNED.set(_PINNED.get() | {self._key}))
        return self

    def __exit__(self, *exc: object) -> None:
        _PINNED.reset(self._tokens.pop())

    async def __aenter__(self) -> PrimaryScope:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)


class Router:
    """The replicas of one service and the WAL position its reads must see."""

    def __init__(self, config: DatabaseConfig) -> None:
        self.replicas = [
            ReplicaState(index, replica_config(config, url))
            for index, url in enumerate(config.read_urls)
        ]
        self.max_lag_ms = config.replica_max_lag_ms
        self.wait_s = config.replica_wait_ms / 1000
        # A replica lends a connection within this or the read goes to the primary.
        self.acquire_timeout_s = min(max(config.connection_timeout_ms / 1000, 0.05), 1.0)
        self._write_lsn = 0
        self._pinned_until = 0.0
        self._next = 0
        self._lock = threading.Lock()

    def pin(self) -> PrimaryScope:
        """A context manager sending this thread's or task's reads to the primary."""
        return PrimaryScope(self)

    def candidates(self) -> Sequence[ReplicaState]:
        """The replicas to try for a read, in round-robin order; empty means the primary."""
        if not self.replicas or id(self) in _PINNED.get():
            return ()
        now = time.monotonic()
        if now < self._pinned_until:
            return ()
        usable = [r for r in self.replicas if self._worth_trying(r, now)]
        if len(usable) > 1:
            self._next = start = (self._next + 1) % len(usable)
            usable = usable[start:] + usable[:start]
        return usable

    def _worth_trying(self, replica: ReplicaState, now: float) -> bool:
        if replica.status in ("lagging", "down"):
            return now >= replica.recheck_at
        # Measured behind our last write a moment ago: not worth a round trip yet.
        behind = replica.replayed_lsn < self._write_lsn
        return not (behind and not self.wait_s and now < replica.measured_at + _POLL_S * 2)

    # -- what a replica told us -------------------------------------------------------

    @property
    def write_lsn(self) -> int:
        """The WAL position this service's last write reached (0 before any write)."""
        return self._write_lsn

    def needs_status(self, replica: ReplicaState) -> bool:
        """True when the replica's status must be measured before it serves a read."""
        return (
            replica.status != "healthy"
            or time.monotonic() >= replica.recheck_at
            or replica.replayed_lsn < self._write_lsn
        )

    def observe(self, replica: ReplicaState, row: GetReplicaStatusRow | None) -> None:
        """Record a `get_replica_status` row: in recovery, replayed LSN, lag in ms."""
        in_recovery = row is not None and bool(row.in_recovery)
        replayed = None if row is None else row.replayed_lsn
        lag_ms = None if row is None else row.lag_ms
        with self._lock:
            replica.in_recovery = bool(in_recovery)
            replica.replayed_lsn = max(replica.replayed_lsn, parse_lsn(replayed or "0/0"))
            replica.lag_ms = round(float(lag_ms), 3) if lag_ms is not None else None
            replica.measured_at = time.monotonic()
            replica.recheck_at = replica.measured_at + STATUS_TTL_S
            lagging = replica.lag_ms is not None and replica.lag_ms > self.max_lag_ms
            before, replica.status = replica.status, "lagging" if lagging else "healthy"
            replica.error = None
        if lagging and before != "lagging":
            log.warning(
                "replica %s lags %.0f ms (more than DB_REPLICA_MAX_LAG_MS=%d): reads go to "
                "the primary until it catches up",
                replica.label,
                replica.lag_ms,
                self.max_lag_ms,
            )
        elif not lagging and before in ("lagging", "down"):
            log.info("replica %s is back: serving reads again", replica.label)

    def caught_up(self, replica: ReplicaState) -> bool:
        """True when the replica may serve a read now: healthy and past our last write."""
        return replica.status == "healthy" and replica.replayed_lsn >= self._write_lsn

    def failed(self, replica: ReplicaState, error: DatabaseError) -> None:
        """A read on the replica failed; an unreachable replica is left alone for a while.

        A pool that lent no connection while none of ours was out is down; one that had
        lent them all is only busy."""
        busy = isinstance(error, PoolExhaustedError) and replica.borrowed > 0
        if busy or not isinstance(error, DatabaseUnavailableError):
            log.info("replica %s could not serve a read, the primary did: %s", replica.label, error)
            return
        with self._lock:
            before, replica.status = replica.status, "down"
            replica.error = str(error)
            replica.recheck_at = time.monotonic() + RETRY_DOWN_S
        if before != "down":
            log.warning(
                "replica %s is unavailable, reads go to the primary (next try in %.0f s): %s",
                replica.label,
                RETRY_DOWN_S,
                error,
            )

    def lend(self, replica: ReplicaState, change: int) -> None:
        """Count a connection of `replica`'s pool lent (+1) or given back (-1)."""
        with self._lock:
            replica.borrowed += change

    def served(self, replica: ReplicaState) -> None:
        """Count a read served by `replica`."""
        with self._lock:
            replica.reads += 1

    # -- what a write told us ---------------------------------------------------------

    def note_write(self, lsn: str | None) -> None:
        """Remember a committed write's WAL position; None (it could not be read) sends
        reads to the primary for DB_REPLICA_MAX_LAG_MS instead."""
        with self._lock:
            if lsn is None:
                self._pinned_until = time.monotonic() + self.max_lag_ms / 1000
            else:
                self._write_lsn = max(self._write_lsn, parse_lsn(lsn))

    def wait_deadline(self) -> float:
        """Until when a read may wait for a replica to replay this service's last write."""
        return time.monotonic() + self.wait_s

    @staticmethod
    def poll_interval() -> float:
        """How long to sleep between two looks at a replica's replay position."""
        return _POLL_S
