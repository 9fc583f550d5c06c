# Generated from coderunner_sql/replicas_async.py by tools/async_to_sync.py: do not edit.
# Change the async source and run `python tools/async_to_sync.py`.
"""The read replicas' pools and the I/O of sending a read to one; what to decide (which
replica, whether it is fresh enough, when to fall back) is `coderunner_sql.routing`'s.

This file is the one source of `replicas.py` (`Replicas`), which `tools/async_to_sync.py`
generates from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from coderunner_sql._compat import sleep
from coderunner_sql.config import DatabaseConfig
from coderunner_sql.connections import Connections, connection_class
from coderunner_sql.errors import DatabaseError, translate
from coderunner_sql.query_methods import Queries
from coderunner_sql.routing import ReplicaState, Router, falls_back
from coderunner_sql.telemetry import current

__all__ = ["Replicas"]

T = TypeVar("T")
Conn = psycopg.Connection[Any]
# How a service runs one call's work on a connection: (name, work, connection, snapshot).
Runner = Callable[[str, Callable[[Conn], T], Conn, bool], T]


class Replicas:
    """One pool per configured replica, opened with the service and closed with it."""

    def __init__(self, router: Router, queries: Queries) -> None:
        self.router = router
        self._queries = queries
        self.pools: list[ConnectionPool[Conn]] = []
        self._lenders: list[Connections] = []

    def open(
        self,
        pool_kwargs: Callable[[DatabaseConfig], dict[str, Any]],
        configure: Callable[[Conn], None],
        connect_wait: Callable[[], float],
    ) -> None:
        """Open a pool per replica, without waiting: one that is down must not stop the
        service from starting."""
        for replica in self.router.replicas:
            kwargs = pool_kwargs(replica.config)
            kwargs["name"] = f"{kwargs['name']}-replica-{replica.index}"
            pool: ConnectionPool[Conn] = ConnectionPool(
                configure=configure,
                connection_class=connection_class(replica.config, None),
                **kwargs,
            )
            pool.open(wait=False)
            self.pools.append(pool)
            self._lenders.append(
                Connections(
                    pool,
                    wait=lambda timeout: self.router.acquire_timeout_s,
                    failure=lambda exc, name, closed: translate(exc, operation=name),
                    connect_wait=connect_wait,
                )
            )

    def close(self) -> None:
        """Close every replica's pool."""
        lenders, self._lenders, self.pools = self._lenders, [], []
        for lender in lenders:
            lender.close()

    @contextmanager
    def connection(self, replica: ReplicaState, name: str) -> Iterator[Conn]:
        """A sound connection to `replica`, counted as lent while the block runs."""
        with self._lenders[replica.index].connection(name) as conn:
            self.router.lend(replica, 1)
            try:
                yield conn
            finally:
                self.router.lend(replica, -1)

    def serve(
        self,
        name: str,
        run: Callable[[Conn], T],
        runner: Runner[T],
        closing: Callable[[], bool],
        snapshot: bool = False,
    ) -> tuple[T, ReplicaState] | None:
        """The read's result and the replica that served it; None: the primary must serve it."""
        for replica in self.router.candidates():
            if closing() or replica.index >= len(self._lenders):
                return None
            try:
                with self.connection(replica, name) as conn:
                    if not self._ready(replica, conn):
                        current().replica("replica.skipped", replica.index)
                        continue
                    result = runner(name, run, conn, snapshot)
            except DatabaseError as exc:
                if not falls_back(exc):
                    raise
                self.router.failed(replica, exc)
                current().replica("replica.failed", replica.index, exc)
                continue
            self.router.served(replica)
            return result, replica
        return None

    def _ready(self, replica: ReplicaState, conn: Conn) -> bool:
        # Fresh enough (lag) and, after a write of ours, replayed past it; waits for that
        # at most DB_REPLICA_WAIT_MS.
        router = self.router
        if router.needs_status(replica):
            router.observe(replica, self._queries.get_replica_status(conn))
        deadline = router.wait_deadline()
        while replica.status == "healthy" and not router.caught_up(replica):
            if time.monotonic() >= deadline:
                return False
            sleep(router.poll_interval())
            router.observe(replica, self._queries.get_replica_status(conn))
        return router.caught_up(replica)

    def note_write(self, conn: Conn) -> None:
        """After a committed write on the primary `conn`: a replica serves this service's
        reads again only once it has replayed past where the primary's WAL is now."""
        if not self.router.replicas:
            return
        try:
            position = self._queries.get_wal_position(conn)
        except DatabaseError:
            position = None  # reads then go to the primary for DB_REPLICA_MAX_LAG_MS
        self.router.note_write(position)

    def check(self) -> None:
        """Ask every replica how far behind it is (the health check's round)."""
        for replica in self.router.replicas[: len(self._lenders)]:
            try:
                with self.connection(replica, "health_check") as conn:
                    self.router.observe(replica, self._queries.get_replica_status(conn))
            except DatabaseError as exc:
                self.router.failed(replica, exc)
