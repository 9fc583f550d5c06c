# Generated from coderunner_sql/service_async.py by tools/async_to_sync.py: do not edit.
# Change the async source and run `python tools/async_to_sync.py`.
"""`DatabaseService`: the typed data API on a `ConnectionPool` — its lifecycle, the
rules of a call (retry a read once, never a write; replicas; PgBouncer's per-transaction
settings), transactions, health and key rotation.

This file is the one source of `service.py` (`DatabaseService`, on a `ConnectionPool`),
which `tools/async_to_sync.py` generates from it; CI fails when the two differ. The data
methods are `DataAPI`'s (`data_api.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import TypeVar, cast
from uuid import UUID

import psycopg
from psycopg import IsolationLevel
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from coderunner_sql._compat import run_blocking, sleep
from coderunner_sql.codegen import runtime
from coderunner_sql.connection import connect_failure
from coderunner_sql.connections import Connections, connection_class
from coderunner_sql.converter import use_deep_json
from coderunner_sql.data_api import Conn, DataAPI, IdLike
from coderunner_sql.deadline import within
from coderunner_sql.encryption import KeyRing, RotationReport
from coderunner_sql.errors import (
    DatabaseError,
    DatabaseTimeoutError,
    DatabaseUnavailableError,
    translate,
)
from coderunner_sql.params import connection_infos_resealed
from coderunner_sql.query_methods import PLANS, GetServerInfoRow, Queries
from coderunner_sql.records import (
    HealthReport,
)
from coderunner_sql.replicas import Replicas
from coderunner_sql.resources import queries_dir
from coderunner_sql.routing import ReplicaState
from coderunner_sql.service_base import ServiceBase
from coderunner_sql.telemetry import note_batch
from coderunner_sql.tenants import ScopedService
from coderunner_sql.transaction import Transaction
from coderunner_sql.validation import as_uuid, check_batch_size

__all__ = ["DataAPI", "DatabaseService", "ScopedService", "Transaction"]

T = TypeVar("T")
_READ_ONLY = psycopg.errors.ReadOnlySqlTransaction.sqlstate


def _pick_replica(conn: Conn) -> None:
    # The "read" that picks a replica for a stream, which then reads on its own.
    return None


class DatabaseService(ServiceBase, DataAPI):
    """The data API on a pool: `connect()`, call methods, `disconnect()` (or `with`)."""

    _pool: ConnectionPool[Conn] | None
    _connections: Connections | None
    _replicas: Replicas

    # -- lifecycle ----------------------------------------------------------------------

    def _bind_queries(self) -> None:
        # Typed by the generated Protocol: `load` builds the object it describes.
        self._queries = cast(Queries, runtime.load(queries_dir(), PLANS, self._watch))
        self._replicas = Replicas(self._router, self._queries)

    def _configure(self, conn: Conn) -> None:
        # JSON of any depth reads back (rows stored 3,000 deep by other clients too).
        use_deep_json(conn)
        settings = self._statement_timeout()
        if settings is not None:
            self._queries.set_statement_timeout(conn, **settings)

    def connect(self) -> None:
        """Open the pool; an unreachable server raises `DatabaseUnavailableError`."""
        if self._pool is not None and not self._closing:
            return
        try:
            probe = psycopg.Connection.connect(**self.config.connect_kwargs())
        except psycopg.Error as exc:
            raise connect_failure(exc, self.config) from None
        probe.close()
        self._reach.succeeded()
        pool: ConnectionPool[Conn] = ConnectionPool(
            configure=self._configure,
            connection_class=connection_class(self.config, self._reach),
            **self._pool_kwargs(),
        )
        try:
            pool.open(wait=True, timeout=max(self.config.connection_timeout_ms / 1000, 5.0))
        except Exception as exc:
            pool.close()
            raise translate(exc, operation="connect") from None
        self._pool = pool
        self._connections = Connections(
            pool,
            wait=lambda timeout: self._acquire_wait(pool, timeout),
            failure=lambda exc, name, closed: self._acquire_failure(exc, name, closed=closed),
            connect_wait=self._connect_wait,
            waiters=self._waiters,
            waited=self._telemetry.waited,
        )
        self._closing = False
        self._replicas.open(self._pool_kwargs, self._configure, self._connect_wait)

    def _release(self, conn: Conn, *, clean: bool) -> None:
        # A transaction's connection: back in autocommit, or closed (see Connections).
        connections = self._connections
        if connections is None:
            conn.close()
        else:
            connections.release(conn, clean=clean)

    def initialize(self) -> None:
        """Check the schema: `SchemaNotReadyError` lists pending migrations, drift raises
        `MigrationIntegrityError`, a role that may not read it `PermissionDeniedError`."""
        from coderunner_sql.migrations import Migrator

        run_blocking(Migrator(self.config).ensure_ready)

    def disconnect(self, timeout: float = 30.0) -> None:
        """Stop new calls, wait up to `timeout` seconds for calls in flight, close the pool."""
        pool = self._pool
        if pool is None:
            return
        self._closing = True
        deadline = time.monotonic() + timeout
        while self._in_use() and time.monotonic() < deadline:
            sleep(0.01)
        connections, self._connections = self._connections, None
        if connections is not None:
            connections.close()
        self._replicas.close()
        self._pool = None
        self._closing = False

    def __enter__(self) -> DatabaseService:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()

    # -- running queries ----------------------------------------------------------------

    def _live(self) -> Connections:
        connections = self._connections
        if connections is None or self._closing:
            raise DatabaseUnavailableError("the service is not connected: call connect() first")
        return connections

    def _connection(self, name: str, timeout: float | None = None) -> AbstractContextManager[Conn]:
        return self._live().connection(name, timeout)

    def _run(self, name: str, run: Callable[[Conn], T], conn: Conn, snapshot: bool = False) -> T:
        try:
            if self._pgbouncer_settings is None and not snapshot:
                return run(conn)
            with self._transaction_block(conn, snapshot):
                # Behind PgBouncer the server session is shared: settings last one transaction.
                if self._pgbouncer_settings is not None:
                    self._queries.set_statement_timeout(conn, **self._pgbouncer_settings)
                return run(conn)
        except psycopg.Error as exc:  # from outside a query: a scoped call's BEGIN or COMMIT
            raise translate(exc, operation=name) from None

    @contextmanager
    def _transaction_block(self, conn: Conn, snapshot: bool) -> Iterator[None]:
        # snapshot: REPEATABLE READ, so every statement in the block reads one snapshot.
        if not snapshot or conn.info.transaction_status != TransactionStatus.IDLE:
            with conn.transaction():
                yield
            return
        conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
        try:
            with conn.transaction():
                yield
        finally:
            if not conn.closed:
                conn.set_isolation_level(None)

    def _borrow(self, name: str) -> AbstractContextManager[Conn]:
        return self._streaming(name)

    @contextmanager
    def _streaming(self, name: str) -> Iterator[Conn]:
        # A read that streams (iter_*): a replica's connection when one may serve it.
        with self._telemetry.call(name) as call:
            found = self._from_replica(name, _pick_replica) if self._router.replicas else None
            if found is None:
                source = self._connection(name)
            else:
                replica = found[1]
                call.served_by(replica.config.host, replica.config.port, replica.index)
                source = self._replicas.connection(replica, name)
            with source as conn:
                if self._pgbouncer_settings is None:
                    yield conn
                    return
                try:
                    with conn.transaction():
                        self._queries.set_statement_timeout(conn, **self._pgbouncer_settings)
                        yield conn
                except psycopg.Error as exc:
                    raise translate(exc, operation=name) from None

    def _read(self, name: str, run: Callable[[Conn], T], *, snapshot: bool = False) -> T:
        with self._telemetry.call(name) as call:
            if self._router.replicas:
                found = self._from_replica(name, run, snapshot)
                if found is not None:
                    replica = found[1]
                    call.served_by(replica.config.host, replica.config.port, replica.index)
                    return found[0]
            # A read that lost its connection before any result is safe to send once more.
            # Not getting a connection at all is not retried: the pool has already waited;
            # nor is a read the server did not answer in time: the bound is for the call.
            with self._connection(name) as conn:
                try:
                    return self._run(name, run, conn, snapshot)
                except DatabaseTimeoutError:
                    raise
                except DatabaseUnavailableError as exc:
                    # The broken connection goes back to the pool, which replaces it.
                    call.retry(exc)
            with self._connection(name) as conn:
                return self._run(name, run, conn, snapshot)

    def _write(self, name: str, run: Callable[[Conn], T]) -> T:
        # A write is never retried: it may have committed before the connection died.
        with self._telemetry.call(name), self._connection(name) as conn:
            try:
                result = self._run(name, run, conn)
            except DatabaseUnavailableError as exc:
                if exc.sqlstate == _READ_ONLY:
                    raise  # refused by a read-only server: certainly not written
                self._router.note_write(None)
                raise type(exc)(
                    f"{exc} — the write may or may not have been applied",
                    outcome_unknown=True,
                ) from None
            self._replicas.note_write(conn)
            return result

    # -- transactions -------------------------------------------------------------------

    def begin_transaction(self) -> Transaction:
        """Start a transaction on a connection of its own; finish it with commit or rollback."""
        span = self._telemetry.begin_transaction()
        try:
            conn = self._begin()
        except BaseException as exc:
            self._telemetry.end_transaction(span, "begin", exc)
            raise
        return Transaction(self, conn, span)

    def _begin(self) -> Conn:
        connections = self._live()
        conn = connections.acquire("begin_transaction")
        try:
            conn.set_autocommit(False)
            if self._pgbouncer_settings is not None:
                self._queries.set_statement_timeout(conn, **self._pgbouncer_settings)
        except (psycopg.Error, DatabaseError) as exc:
            # Half set up: the pool discards it rather than lend it again.
            self._release(conn, clean=False)
            raise translate(exc, operation="begin_transaction") from None
        return conn

    def commit_transaction(self, tx: Transaction) -> None:
        """Commit a transaction from `begin_transaction()`."""
        tx.commit()

    def rollback_transaction(self, tx: Transaction) -> None:
        """Roll back a transaction from `begin_transaction()`."""
        tx.rollback()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A transaction that commits when the block ends and rolls back if it raises."""
        tx = self.begin_transaction()
        try:
            yield tx
        except BaseException:
            if tx.active:
                tx.rollback()
            raise
        if tx.active:
            tx.commit()

    def execute_in_transaction(self, fn: Callable[[Transaction], T]) -> T:
        """Call `fn(tx)` in a transaction: commit when it returns, roll back when it raises."""
        with self.transaction() as tx:
            return fn(tx)

    # -- tenants and secrets ------------------------------------------------------------

    def for_user(self, user_id: IdLike) -> ScopedService:
        """This service seen by one user: row-level security hides every other user's rows."""
        return ScopedService(self, as_uuid(user_id, "user_id"))

    def rotate_encryption_key(self, *, batch_size: int = 500) -> RotationReport:
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
            after, count, left = self._rotate_batch(keys, after, size)
            rewritten += count
            skipped += left
            batches += 1 if count or left else 0
        return RotationReport(
            kid=keys.newest.kid, rewritten=rewritten, batches=batches, skipped=skipped
        )

    def _rotate_batch(self, keys: KeyRing, after: UUID, size: int) -> tuple[UUID | None, int, int]:
        def run(conn: Conn) -> tuple[UUID | None, int, int]:
            batch = self._queries.list_connection_infos_to_rotate(
                conn, after_id=after, kid=keys.newest.kid, batch_size=size
            )
            if not batch:
                return None, 0, 0
            args = connection_infos_resealed(batch, keys)
            note_batch(len(args["ids"]))
            self._queries.update_connection_infos(conn, **args)
            return batch[-1].id, len(args["ids"]), len(batch) - len(args["ids"])

        with self.transaction() as tx:
            return tx._write("rotate_encryption_key", run)

    # -- monitoring ---------------------------------------------------------------------

    def health_check(self) -> HealthReport:
        """One round trip to the server, timed; never raises (status says unhealthy)."""
        started = time.perf_counter()
        info: GetServerInfoRow | None = None
        error: BaseException | None = None
        timeout = self.config.connection_timeout_ms / 1000
        # Within its timeout on a stalled network too: the round trip is bounded by it.
        with within(timeout), self._telemetry.call("health_check") as call:
            try:
                with self._connection("health_check", timeout=timeout) as conn:
                    info = self._queries.get_server_info(conn)
            except Exception as exc:
                error = exc
                call.fail(exc)
        finished = time.perf_counter()
        self._replicas.check()
        return self._health(started, finished, info, error)

    # -- read replicas ------------------------------------------------------------------

    def _from_replica(
        self, name: str, run: Callable[[Conn], T], snapshot: bool = False
    ) -> tuple[T, ReplicaState] | None:
        # The read's result and the replica that served it; None: the primary must serve it.
        return self._replicas.serve(name, run, self._run, lambda: self._closing, snapshot)

    def _note_write(self, conn: Conn) -> None:
        self._replicas.note_write(conn)
