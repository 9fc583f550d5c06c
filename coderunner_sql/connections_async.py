"""How a caller gets a sound connection from a pool and gives it back: one `AsyncConnections`
per pool, the primary's and each replica's, so the stale-connection loop exists once.

This file is the one source of `connections.py` (`Connections`, for `ConnectionPool`), which
`tools/async_to_sync.py` generates from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import psycopg
from psycopg.abc import PQGen
from psycopg.pq import ConnStatus, TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.connection import connect_failure
from coderunner_sql.deadline import abandon, limit
from coderunner_sql.errors import DatabaseError, DatabaseUnavailableError
from coderunner_sql.service_base import _Reachability

__all__ = ["AsyncConnections", "AsyncLent", "connection_class", "restore", "stale"]

RV = TypeVar("RV")
Conn = psycopg.AsyncConnection[Any]
_ACQUIRE_SLICE_S = 0.5
_WAIT_INTERVAL_S = 0.1  # psycopg's own: how often a wait wakes to notice interrupts


def connection_class(config: DatabaseConfig, reach: _Reachability | None) -> type[Conn]:
    """The class of a pool's connections: every wait for the server bounded by
    `config.call_bound_s`, and (with `reach`) whether the server answered the pool noted."""
    bound = config.call_bound_s

    class PooledConnection(psycopg.AsyncConnection[Any]):
        """A pooled connection whose every wait for the server is bounded (see
        `coderunner_sql.deadline`), recording whether the server answered the pool."""

        query_cursors: dict[object, Any]
        """A cursor per generated method that ran here (codegen/_run_async.py)."""

        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
            try:
                conn = await super().connect(conninfo, **kwargs)
            except psycopg.Error as exc:
                if reach is not None:
                    reach.failed(str(connect_failure(exc, config)))
                raise
            if reach is not None:
                reach.succeeded()
            conn.query_cursors = {}
            return conn

        async def wait(
            self,
            gen: PQGen[RV],
            interval: float = _WAIT_INTERVAL_S,
            timeout: float | None = None,
        ) -> RV:
            if timeout is not None:  # psycopg's own timed waits (notifies)
                return await super().wait(gen, interval, timeout)
            seconds = limit(bound)
            try:
                return await super().wait(gen, interval, seconds)
            except psycopg.errors._WaitTimeout:
                raise abandon(self, seconds or 0.0) from None

    return PooledConnection


def stale(conn: Conn) -> bool:
    """True when an idle pooled connection may be dead, found without a round trip.

    An idle connection has nothing to read. When the server ends a session (restart,
    pg_terminate_backend, idle timeout) it sends a last error and closes the socket. libpq
    reads without waiting: once takes in that error, once more finds the socket closed.
    Neither releases the GIL; a `poll()` or `PQisBusy()` here would, and under 8 threads
    that cost the service a quarter to a half of its throughput.
    """
    if conn.closed or conn.broken:
        return True
    pgconn = conn.pgconn
    try:
        pgconn.consume_input()
        pgconn.consume_input()
    except psycopg.Error:
        return True
    return pgconn.status != ConnStatus.OK


async def restore(conn: Conn) -> bool:
    """Put a transaction's connection back in autocommit: True when it is, with no
    transaction open (False: it must not be lent again)."""
    if conn.broken or conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
        return False
    try:
        await conn.set_autocommit(True)
    except psycopg.Error:
        return False
    return True


class AsyncConnections:
    """One pool, and the one way its connections are lent and taken back."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Conn],
        *,
        wait: Callable[[float | None], float],
        failure: Callable[[BaseException, str, bool], DatabaseError],
        connect_wait: Callable[[], float],
        waiters: set[object] | None = None,
        waited: Callable[[float], None] | None = None,
    ) -> None:
        self.pool = pool
        # How long a caller may wait (given its own timeout); the error when it cannot have
        # a connection (the exception, the call's name, whether the server closed some).
        self._wait = wait
        self._failure = failure
        self._connect_wait = connect_wait
        self._waiters = waiters
        self._waited = waited
        self.closed = False

    async def acquire(self, name: str, timeout: float | None = None) -> Conn:
        """A connection the server has not closed (one it has is replaced first, before
        anything is sent on it: a write that fails after this point may have reached it)."""
        pool = self.pool
        started = time.monotonic()
        deadline = started + self._wait(timeout)
        closed = 0
        while closed <= 2 * pool.max_size:
            # Waited in slices: when the pool learns meanwhile that the server is down, the
            # wait is cut to one connect attempt rather than the whole acquire timeout.
            wait = max(min(deadline - time.monotonic(), _ACQUIRE_SLICE_S), 0.001)
            # Counted here, not by the pool: its count keeps callers that gave up until a
            # connection comes back. A set's add/discard is atomic across threads.
            waiter = object()
            if self._waiters is not None:
                self._waiters.add(waiter)
            try:
                conn = await pool.getconn(timeout=wait)
            except PoolTimeout as exc:
                deadline = min(deadline, started + self._wait(timeout))
                if time.monotonic() < deadline:
                    continue
                raise self._failure(exc, name, bool(closed)) from None
            except psycopg.Error as exc:  # the pool's own errors (PoolClosed…) are psycopg's
                raise self._failure(exc, name, bool(closed)) from None
            finally:
                if self._waiters is not None:
                    self._waiters.discard(waiter)
            if stale(conn):
                try:
                    await pool.check_connection(conn)
                except psycopg.Error:
                    await pool.putconn(conn)  # broken: the pool discards it and opens another
                    # The server closed it: if it is gone, the replacement tells within a
                    # connect attempt, so waiting longer only hides the outage.
                    closed += 1
                    deadline = min(deadline, time.monotonic() + self._connect_wait())
                    continue
            if self._waited is not None:
                self._waited(time.monotonic() - started)
            return conn
        raise DatabaseUnavailableError(f"{name}: the server closed every pooled connection")

    def connection(self, name: str, timeout: float | None = None) -> AsyncLent:
        """A sound connection for one call (`async with`), back in the pool after it."""
        return AsyncLent(self, name, timeout)

    async def release(self, conn: Conn, *, clean: bool) -> None:
        """Take back a transaction's connection: in autocommit, or closed."""
        # One left outside autocommit would run the next caller's writes in a transaction
        # nobody commits. (Not a pool `reset=` hook: with one, psycopg_pool returns every
        # connection via a worker.)
        if not clean or not conn.autocommit or self.closed:
            await conn.close()
        if not self.closed:
            await self.pool.putconn(conn)

    async def close(self) -> None:
        """Close the pool and every connection in it."""
        self.closed = True
        await self.pool.close()


class AsyncLent:
    """One connection lent for one call. (A class, not a generator: it runs on every call.)"""

    __slots__ = ("_conn", "_lender", "_name", "_timeout")

    def __init__(self, lender: AsyncConnections, name: str, timeout: float | None) -> None:
        self._lender = lender
        self._name = name
        self._timeout = timeout

    async def __aenter__(self) -> Conn:
        self._conn = conn = await self._lender.acquire(self._name, self._timeout)
        return conn

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        try:
            if isinstance(exc, DatabaseUnavailableError):
                # Never lent again, even if its socket looks fine: it may be on a primary
                # that a failover demoted (read-only), which new connections to the
                # cluster's URL skip.
                await conn.close()
        finally:
            await self._lender.pool.putconn(conn)
