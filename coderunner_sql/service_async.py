"""`AsyncDatabaseService`: the typed data API on an `AsyncConnectionPool` — its lifecycle, the
rules of a call (retry a read once, never a write; replicas; PgBouncer's per-transaction
settings), transactions, health and key rotation.

This file is the one source of `service.py` (`DatabaseService`, on a `ConnectionPool`),
which `tools/async_to_sync.py` generates from it; CI fails when the two differ. The data
methods are `AsyncDataAPI`'s (`data_api_async.py`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Concatenate, ParamSpec, TypeVar, cast
from uuid import UUID

import psycopg
from psycopg import IsolationLevel
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from coderunner_sql._compat import asleep, to_thread
from coderunner_sql.codegen import runtime
from coderunner_sql.codegen._plans import one
from coderunner_sql.codegen._run_async import SOURCE
from coderunner_sql.connection import connect_failure
from coderunner_sql.connections_async import AsyncConnections, connection_class
from coderunner_sql.converter import use_deep_json
from coderunner_sql.data_api_async import AsyncDataAPI, Conn, IdLike
from coderunner_sql.deadline import within
from coderunner_sql.encryption import KeyRing, RotationReport
from coderunner_sql.errors import (
    DatabaseError,
    DatabaseTimeoutError,
    DatabaseUnavailableError,
    translate,
)
from coderunner_sql.params import connection_infos_resealed
from coderunner_sql.pipelining import ReadPipeline
from coderunner_sql.query_methods import PLANS, AsyncQueries, GetServerInfoRow
from coderunner_sql.records import (
    HealthReport,
)
from coderunner_sql.replicas_async import AsyncReplicas
from coderunner_sql.resources import queries_dir
from coderunner_sql.routing import ReplicaState
from coderunner_sql.service_base import ServiceBase
from coderunner_sql.telemetry import note_batch
from coderunner_sql.tenants_async import AsyncScopedService
from coderunner_sql.transaction_async import AsyncTransaction
from coderunner_sql.validation import as_uuid, check_batch_size

__all__ = ["AsyncDataAPI", "AsyncDatabaseService", "AsyncScopedService", "AsyncTransaction"]

T = TypeVar("T")
# async only
P = ParamSpec("P")
_READ_ONLY = psycopg.errors.ReadOnlySqlTransaction.sqlstate


async def _pick_replica(conn: Conn) -> None:
    # The "read" that picks a replica for a stream, which then reads on its own.
    return None


class AsyncDatabaseService(ServiceBase, AsyncDataAPI):
    """The data API on a pool: `connect()`, call methods, `disconnect()` (or `async with`)."""

    _pool: AsyncConnectionPool[Conn] | None
    _connections: AsyncConnections | None
    _replicas: AsyncReplicas

    # -- lifecycle ----------------------------------------------------------------------

    def _bind_queries(self) -> None:
        # Typed by the generated Protocol: `load_async` builds the object it describes.
        self._queries = cast(AsyncQueries, runtime.load_async(queries_dir(), PLANS, self._watch))
        self._replicas = AsyncReplicas(self._router, self._queries)

    async def _configure(self, conn: Conn) -> None:
        # JSON of any depth reads back (rows stored 3,000 deep by other clients too).
        use_deep_json(conn)
        settings = self._statement_timeout()
        if settings is not None:
            await self._queries.set_statement_timeout(conn, **settings)

    async def connect(self) -> None:
        """Open the pool; an unreachable server raises `DatabaseUnavailableError`."""
        if self._pool is not None and not self._closing:
            return
        try:
            probe = await psycopg.AsyncConnection.connect(**self.config.connect_kwargs())
        except psycopg.Error as exc:
            raise connect_failure(exc, self.config) from None
        await probe.close()
        self._reach.succeeded()
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            configure=self._configure,
            connection_class=connection_class(self.config, self._reach),
            **self._pool_kwargs(),
        )
        try:
            await pool.open(wait=True, timeout=max(self.config.connection_timeout_ms / 1000, 5.0))
        except Exception as exc:
            await pool.close()
            raise translate(exc, operation="connect") from None
        self._pool = pool
        self._connections = AsyncConnections(
            pool,
            wait=lambda timeout: self._acquire_wait(pool, timeout),
            failure=lambda exc, name, closed: self._acquire_failure(exc, name, closed=closed),
            connect_wait=self._connect_wait,
            waiters=self._waiters,
            waited=self._telemetry.waited,
        )
        # async only: reads in flight together share a round trip (pipelining.py).
        self._pipeline = self._read_pipeline(self._connections)
        self._closing = False
        await self._replicas.open(self._pool_kwargs, self._configure, self._connect_wait)

    # async only: batching is what one event loop has in flight; threads each wait on their own.
    def _read_pipeline(self, connections: AsyncConnections) -> ReadPipeline | None:
        config = self.config
        # Off where it is not proven: PgBouncer lends the server per transaction, and a read
        # a replica may serve is routed one by one.
        if not config.pipeline or config.pgbouncer or config.read_urls:
            return None
        return ReadPipeline(connections, self._watch, config.call_bound_s)

    async def _release(self, conn: Conn, *, clean: bool) -> None:
        # A transaction's connection: back in autocommit, or closed (see AsyncConnections).
        connections = self._connections
        if connections is None:
            await conn.close()
        else:
            await connections.release(conn, clean=clean)

    async def initialize(self) -> None:
        """Check the schema: `SchemaNotReadyError` lists pending migrations, drift raises
        `MigrationIntegrityError`, a role that may not read it `PermissionDeniedError`."""
        from coderunner_sql.migrations import Migrator

        await to_thread(Migrator(self.config).ensure_ready)

    async def disconnect(self, timeout: float = 30.0) -> None:
        """Stop new calls, wait up to `timeout` seconds for calls in flight, close the pool."""
        pool = self._pool
        if pool is None:
            return
        self._closing = True
        deadline = time.monotonic() + timeout
        while self._in_use() and time.monotonic() < deadline:
            await asleep(0.01)
        connections, self._connections = self._connections, None
        # async only
        self._pipeline = None
        if connections is not None:
            await connections.close()
        await self._replicas.close()
        self._pool = None
        self._closing = False

    async def __aenter__(self) -> AsyncDatabaseService:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    # -- running queries ----------------------------------------------------------------

    def _live(self) -> AsyncConnections:
        connections = self._connections
        if connections is None or self._closing:
            raise DatabaseUnavailableError("the service is not connected: call connect() first")
        return connections

    def _connection(
        self, name: str, timeout: float | None = None
    ) -> AbstractAsyncContextManager[Conn]:
        return self._live().connection(name, timeout)

    async def _run(
        self, name: str, run: Callable[[Conn], Awaitable[T]], conn: Conn, snapshot: bool = False
    ) -> T:
        try:
            if self._pgbouncer_settings is None and not snapshot:
                return await run(conn)
            async with self._transaction_block(conn, snapshot):
                # Behind PgBouncer the server session is shared: settings last one transaction.
                if self._pgbouncer_settings is not None:
                    await self._queries.set_statement_timeout(conn, **self._pgbouncer_settings)
                return await run(conn)
        except psycopg.Error as exc:  # from outside a query: a scoped call's BEGIN or COMMIT
            raise translate(exc, operation=name) from None

    @asynccontextmanager
    async def _transaction_block(self, conn: Conn, snapshot: bool) -> AsyncIterator[None]:
        # snapshot: REPEATABLE READ, so every statement in the block reads one snapshot.
        if not snapshot or conn.info.transaction_status != TransactionStatus.IDLE:
            async with conn.transaction():
                yield
            return
        await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
        try:
            async with conn.transaction():
                yield
        finally:
            if not conn.closed:
                await conn.set_isolation_level(None)

    def _borrow(self, name: str) -> AbstractAsyncContextManager[Conn]:
        return self._streaming(name)

    @asynccontextmanager
    async def _streaming(self, name: str) -> AsyncIterator[Conn]:
        # A read that streams (iter_*): a replica's connection when one may serve it.
        with self._telemetry.call(name) as call:
            found = await self._from_replica(name, _pick_replica) if self._router.replicas else None
            if found is None:
                source = self._connection(name)
            else:
                replica = found[1]
                call.served_by(replica.config.host, replica.config.port, replica.index)
                source = self._replicas.connection(replica, name)
            async with source as conn:
                if self._pgbouncer_settings is None:
                    yield conn
                    return
                try:
                    async with conn.transaction():
                        await self._queries.set_statement_timeout(conn, **self._pgbouncer_settings)
                        yield conn
                except psycopg.Error as exc:
                    raise translate(exc, operation=name) from None

    async def _read(
        self, name: str, run: Callable[[Conn], Awaitable[T]], *, snapshot: bool = False
    ) -> T:
        with self._telemetry.call(name) as call:
            if self._router.replicas:
                found = await self._from_replica(name, run, snapshot)
                if found is not None:
                    replica = found[1]
                    call.served_by(replica.config.host, replica.config.port, replica.index)
                    return found[0]
            # A read that lost its connection before any result is safe to send once more.
            # Not getting a connection at all is not retried: the pool has already waited;
            # nor is a read the server did not answer in time: the bound is for the call.
            async with self._connection(name) as conn:
                try:
                    return await self._run(name, run, conn, snapshot)
                except DatabaseTimeoutError:
                    raise
                except DatabaseUnavailableError as exc:
                    # The broken connection goes back to the pool, which replaces it.
                    call.retry(exc)
            async with self._connection(name) as conn:
                return await self._run(name, run, conn, snapshot)

    # async only: a read that finds others in flight joins their batch (pipelining.py); a
    # lone read goes alone, waiting for no batch.
    async def _fetch(
        self,
        query: Callable[Concatenate[Conn, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        pipeline = self._pipeline
        if pipeline is None or args:
            return await AsyncDataAPI._fetch(self, query, *args, **kwargs)
        pipeline.active += 1
        try:
            if pipeline.active == 1:  # nothing else in flight: alone, on the direct path
                return await AsyncDataAPI._fetch(self, query, *args, **kwargs)
            self._live()
            plan, sql = getattr(query, SOURCE)
            with self._telemetry.call(plan.name), self._watch(plan.name, sql) as st:
                rows, st.rows = await pipeline.read(plan, sql, kwargs)
        finally:
            pipeline.active -= 1
        result: T = rows if plan.suffix == "" else one(plan, rows)
        return result

    async def _write(self, name: str, run: Callable[[Conn], Awaitable[T]]) -> T:
        # A write is never retried: it may have committed before the connection died.
        with self._telemetry.call(name):
            async with self._connection(name) as conn:
                try:
                    result = await self._run(name, run, conn)
                except DatabaseUnavailableError as exc:
                    if exc.sqlstate == _READ_ONLY:
                        raise  # refused by a read-only server: certainly not written
                    self._router.note_write(None)
                    raise type(exc)(
                        f"{exc} — the write may or may not have been applied",
                        outcome_unknown=True,
                    ) from None
                await self._replicas.note_write(conn)
                return result

    # -- transactions -------------------------------------------------------------------

    async def begin_transaction(self) -> AsyncTransaction:
        """Start a transaction on a connection of its own; finish it with commit or rollback."""
        span = self._telemetry.begin_transaction()
        try:
            conn = await self._begin()
        except BaseException as exc:
            self._telemetry.end_transaction(span, "begin", exc)
            raise
        return AsyncTransaction(self, conn, span)

    async def _begin(self) -> Conn:
        connections = self._live()
        conn = await connections.acquire("begin_transaction")
        try:
            await conn.set_autocommit(False)
            if self._pgbouncer_settings is not None:
                await self._queries.set_statement_timeout(conn, **self._pgbouncer_settings)
        except (psycopg.Error, DatabaseError) as exc:
            # Half set up: the pool discards it rather than lend it again.
            await self._release(conn, clean=False)
            raise translate(exc, operation="begin_transaction") from None
        return conn

    async def commit_transaction(self, tx: AsyncTransaction) -> None:
        """Commit a transaction from `begin_transaction()`."""
        await tx.commit()

    async def rollback_transaction(self, tx: AsyncTransaction) -> None:
        """Roll back a transaction from `begin_transaction()`."""
        await tx.rollback()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncTransaction]:
        """A transaction that commits when the block ends and rolls back if it raises."""
        tx = await self.begin_transaction()
        try:
            yield tx
        except BaseException:
            if tx.active:
                await tx.rollback()
            raise
        if tx.active:
            await tx.commit()

    async def execute_in_transaction(self, fn: Callable[[AsyncTransaction], Awaitable[T]]) -> T:
        """Call `fn(tx)` in a transaction: commit when it returns, roll back when it raises."""
        async with self.transaction() as tx:
            return await fn(tx)

    # -- tenants and secrets ------------------------------------------------------------

    def for_user(self, user_id: IdLike) -> AsyncScopedService:
        """This service seen by one user: row-level security hides every other user's rows."""
        return AsyncScopedService(self, as_uuid(user_id, "user_id"))

    async def rotate_encryption_key(self, *, batch_size: int = 500) -> RotationReport:
        """Re-encrypt every stored db_connection_info object (plaintext too) under the newest
        key, `batch_size` rows per transaction; values that are not objects are left as they
        are and counted in `skipped`; `EncryptionError` if a row opens with no key."""
        keys = self._require_keys("rotate_encryption_key")
        size = check_batch_size(batch_size)
        after: UUID | None = UUID(int=0)
        rewritten = skipped = batches = 0
        # Until a batch comes back empty, not until one rewrites nothing: a batch may hold
        # only values that are left alone.
        while after is not None:
            after, count, left = await self._rotate_batch(keys, after, size)
            rewritten += count
            skipped += left
            batches += 1 if count or left else 0
        return RotationReport(
            kid=keys.newest.kid, rewritten=rewritten, batches=batches, skipped=skipped
        )

    async def _rotate_batch(
        self, keys: KeyRing, after: UUID, size: int
    ) -> tuple[UUID | None, int, int]:
        async def run(conn: Conn) -> tuple[UUID | None, int, int]:
            batch = await self._queries.list_connection_infos_to_rotate(
                conn, after_id=after, kid=keys.newest.kid, batch_size=size
            )
            if not batch:
                return None, 0, 0
            args = connection_infos_resealed(batch, keys)
            note_batch(len(args["ids"]))
            await self._queries.update_connection_infos(conn, **args)
            return batch[-1].id, len(args["ids"]), len(batch) - len(args["ids"])

        async with self.transaction() as tx:
            return await tx._write("rotate_encryption_key", run)

    # -- monitoring ---------------------------------------------------------------------

    async def health_check(self) -> HealthReport:
        """One round trip to the server, timed; never raises (status says unhealthy)."""
        started = time.perf_counter()
        info: GetServerInfoRow | None = None
        error: BaseException | None = None
        timeout = self.config.connection_timeout_ms / 1000
        # Within its timeout on a stalled network too: the round trip is bounded by it.
        with within(timeout), self._telemetry.call("health_check") as call:
            try:
                async with self._connection("health_check", timeout=timeout) as conn:
                    info = await self._queries.get_server_info(conn)
            except Exception as exc:
                error = exc
                call.fail(exc)
        finished = time.perf_counter()
        await self._replicas.check()
        return self._health(started, finished, info, error)

    # -- read replicas ------------------------------------------------------------------

    async def _from_replica(
        self, name: str, run: Callable[[Conn], Awaitable[T]], snapshot: bool = False
    ) -> tuple[T, ReplicaState] | None:
        # The read's result and the replica that served it; None: the primary must serve it.
        return await self._replicas.serve(name, run, self._run, lambda: self._closing, snapshot)

    async def _note_write(self, conn: Conn) -> None:
        await self._replicas.note_write(conn)
