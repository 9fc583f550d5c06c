"""The read replicas' pools and the I/O of sending a read to one; what to decide (which
replica, whether it is fresh enough, when to fall back) is `coderunner_sql.routing`'s.

This file is the one source of `replicas.py` (`Replicas`), which `tools/async_to_sync.py`
generates from it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from coderunner_sql._compat import asleep
from coderunner_sql.config import DatabaseConfig
from coderunner_sql.connections_async import AsyncConnections, connection_class
from coderunner_sql.errors import DatabaseError, translate
from coderunner_sql.query_methods import AsyncQueries
from coderunner_sql.routing import ReplicaState, Router, falls_back
from coderunner_sql.telemetry import current

__all__ = ["AsyncReplicas"]

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]
# How a service runs one call's work on a connection: (name, work, connection, snapshot).
Runner = Callable[[str, Callable[[Conn], Awaitable[T]], Conn, bool], Awaitable[T]]


class AsyncReplicas:
    """One pool per configured replica, opened with the service and closed with it."""

    def __init__(self, router: Router, queries: AsyncQueries) -> None:
        self.router = router
        self._queries = queries
        self.pools: list[AsyncConnectionPool[Conn]] = []
        self._lenders: list[AsyncConnections] = []

    async def open(
        self,
        pool_kwargs: Callable[[DatabaseConfig], dict[str, Any]],
        configure: Callable[[Conn], Awaitable[None]],
        connect_wait: Callable[[], float],
    ) -> None:
        """Open a pool per replica, without waiting: one that is down must not stop the
        service from starting."""
        for replica in self.router.replicas:
            kwargs = pool_kwargs(replica.config)
            kwargs["name"] = f"{kwargs['name']}-replica-{replica.index}"
            pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
                configure=configure,
                connection_class=connection_class(replica.config, None),
                **kwargs,
            )
            await pool.open(wait=False)
            self.pools.append(pool)
            self._lenders.append(
                AsyncConnections(
                    pool,
                    wait=lambda timeout: self.router.acquire_timeout_s,
                    failure=lambda exc, name, closed: translate(exc, operation=name),
                    connect_wait=connect_wait,
                )
            )

    async def close(self) -> None:
        """Close every replica's pool."""
        lenders, self._lenders, self.pools = self._lenders, [], []
        for lender in lenders:
            await lender.close()

    @asynccontextmanager
    async def connection(self, replica: ReplicaState, name: str) -> AsyncIterator[Conn]:
        """A sound connection to `replica`, counted as lent while the block runs."""
        async with self._lenders[replica.index].connection(name) as conn:
            self.router.lend(replica, 1)
            try:
                yield conn
            finally:
                self.router.lend(replica, -1)

    async def serve(
        self,
        name: str,
        run: Callable[[Conn], Awaitable[T]],
        runner: Runner[T],
        closing: Callable[[], bool],
        snapshot: bool = False,
    ) -> tuple[T, ReplicaState] | None:
        """The read's result and the replica that served it; None: the primary must serve it."""
        for replica in self.router.candidates():
            if closing() or replica.index >= len(self._lenders):
                return None
            try:
                async with self.connection(replica, name) as conn:
                    if not await self._ready(replica, conn):
                        current().replica("replica.skipped", replica.index)
                        continue
                    result = await runner(name, run, conn, snapshot)
            except DatabaseError as exc:
                if not falls_back(exc):
                    raise
                self.router.failed(replica, exc)
                current().replica("replica.failed", replica.index, exc)
                continue
            self.router.served(replica)
            return result, replica
        return None

    async def _ready(self, replica: ReplicaState, conn: Conn) -> bool:
        # Fresh enough (lag) and, after a write of ours, replayed past it; waits for that
        # at most DB_REPLICA_WAIT_MS.
        router = self.router
        if router.needs_status(replica):
            router.observe(replica, await self._queries.get_replica_status(conn))
        deadline = router.wait_deadline()
        while replica.status == "healthy" and not router.caught_up(replica):
            if time.monotonic() >= deadline:
                return False
            await asleep(router.poll_interval())
            router.observe(replica, await self._queries.get_replica_status(conn))
        return router.caught_up(replica)

    async def note_write(self, conn: Conn) -> None:
        """After a committed write on the primary `conn`: a replica serves this service's
        reads again only once it has replayed past where the primary's WAL is now."""
        if not self.router.replicas:
            return
        try:
            position = await self._queries.get_wal_position(conn)
        except DatabaseError:
            position = None  # reads then go to the primary for DB_REPLICA_MAX_LAG_MS
        self.router.note_write(position)

    async def check(self) -> None:
        """Ask every replica how far behind it is (the health check's round)."""
        for replica in self.router.replicas[: len(self._lenders)]:
            try:
                async with self.connection(replica, "health_check") as conn:
                    self.router.observe(replica, await self._queries.get_replica_status(conn))
            except DatabaseError as exc:
                self.router.failed(replica, exc)
