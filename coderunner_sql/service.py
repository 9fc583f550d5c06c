# Generated from coderunner_sql/service_async.py by tools/async_to_sync.py: do not edit.
# Change the async source and run `python tools/async_to_sync.py`.
"""`DatabaseService`: the typed data API on a `ConnectionPool`.

This file is the one source of both services: `service.py` (`DatabaseService`, on a
`ConnectionPool`) is generated from it by `tools/async_to_sync.py`, and CI fails when the
two differ. Every method's SQL is the named query it calls in `queries/`.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, closing, contextmanager
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, cast
from uuid import UUID

import psycopg
from psycopg import IsolationLevel
from psycopg.abc import PQGen
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from coderunner_sql import params as p
from coderunner_sql._compat import Lock, run_blocking, sleep
from coderunner_sql.codegen import _run, runtime
from coderunner_sql.codegen._plans import Plan
from coderunner_sql.connection import connect_failure
from coderunner_sql.converter import use_deep_json
from coderunner_sql.deadline import abandon, limit, within
from coderunner_sql.encryption import KeyRing, RotationReport
from coderunner_sql.errors import (
    ConflictError,
    DatabaseError,
    DatabaseTimeoutError,
    DatabaseUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    QueryError,
    ValidationError,
    translate,
)
from coderunner_sql.pagination import PageRequest, page_request
from coderunner_sql.params import UNSET, Unset
from coderunner_sql.query_methods import PLANS, GetServerInfoRow, Queries
from coderunner_sql.query_watch import QueryWatch
from coderunner_sql.records import (
    Deployment,
    DeploymentDetails,
    DeploymentStatus,
    HealthReport,
    NewDeployment,
    Page,
    PlanType,
    Project,
    ProjectWithUser,
    SystemStats,
    User,
)
from coderunner_sql.resources import queries_dir
from coderunner_sql.routing import ReplicaState, falls_back
from coderunner_sql.service_base import ServiceBase, _Reachability, _stale
from coderunner_sql.telemetry import current, name_comment, note_batch
from coderunner_sql.validation import as_enum, as_text, as_uuid, check_batch_size

__all__ = ["DataAPI", "DatabaseService", "ScopedService", "Transaction"]

T = TypeVar("T")
RV = TypeVar("RV")
P = ParamSpec("P")
Conn = psycopg.Connection[Any]
_ACQUIRE_SLICE_S = 0.5
_READ_ONLY = psycopg.errors.ReadOnlySqlTransaction.sqlstate
_WAIT_INTERVAL_S = 0.1  # psycopg's own: how often a wait wakes to notice interrupts
IdLike = UUID | str
# Caller-written SQL (`query()`) is named on the server too; its own text follows.
_RAW_COMMENT = name_comment("query")


def _nothing(conn: Conn) -> None:
    # The "read" that picks a replica for a stream, which then reads on its own.
    return None


class DataAPI:
    """Every data method, written once for the service (a pooled connection per call) and
    for transactions (one connection throughout)."""

    _q: Queries
    _watch: QueryWatch
    # A generated method passed to run() -> its twin under this service's watch.
    _methods: weakref.WeakKeyDictionary[Any, tuple[Plan, Callable[..., Any]]]
    _keys: KeyRing | None = None
    # Inside a user scope the platform-wide counters (row_counts) are hidden: count rows.
    _in_scope = False

    def _read(self, name: str, run: Callable[[Conn], T], *, snapshot: bool = False) -> T:
        # snapshot=True: every statement of `run` sees the same snapshot of the database.
        raise NotImplementedError

    def _write(self, name: str, run: Callable[[Conn], T]) -> T:
        raise NotImplementedError

    def _borrow(self, name: str) -> AbstractContextManager[Conn]:
        raise NotImplementedError

    def _stream(
        self,
        name: str,
        query: Callable[..., list[T]],
        given: Mapping[str, Any],
        size: int,
    ) -> Iterator[T]:
        return self._rows(name, query, given, size)

    def _rows(
        self,
        name: str,
        query: Callable[..., list[T]],
        given: Mapping[str, Any],
        size: int,
    ) -> Iterator[T]:
        found = runtime.source(query)
        if found is None:
            raise TypeError(f"{name}: {query!r} is not a generated query method")
        plan, sql = found
        with self._borrow(name) as conn:
            # Each row may be asked for from another task (or context): the call's span is
            # handed over, not looked up.
            call = current()
            rows = _run.stream(conn, plan, sql, given, size, self._watch, call)
            # Closed explicitly: a caller that stops early must not leave the stream's
            # transaction open on a connection going back to the pool (or on its own).
            with closing(rows) as stream:
                yield from stream

    def _page(
        self,
        name: str,
        listing: Callable[..., list[T]],
        listing_after: Callable[..., list[T]],
        count: Callable[..., int | None] | None,
        keys: dict[str, Any],
        request: PageRequest,
    ) -> Page[T]:
        query = listing if request.after is None else listing_after

        def run(conn: Conn) -> Page[T]:
            items = query(conn, **keys, **request.params())
            total = None if count is None else count(conn, **keys)
            return request.page(items, total)

        # The total must describe the very rows listed: both statements in one snapshot.
        return self._read(name, run, snapshot=count is not None)

    # -- your own queries ---------------------------------------------------------------

    def run(
        self,
        query: Callable[Concatenate[Conn, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run a method of a module written by `coderunner-sql generate` (`q.name`) here:
        this service's errors, timing and replicas; a plain SELECT is retried once after a
        lost connection, anything else never."""
        known = self._methods.get(query)
        if known is None:
            found = runtime.source(query)
            if found is None:
                raise ValidationError(
                    f"run: {query!r} is not a query method of a module written by"
                    " `coderunner-sql generate`"
                )
            plan, sql = found
            known = self._methods[query] = (plan, _run.method(plan, sql, self._watch))
        plan, method = known

        def call(conn: Conn) -> T:
            result: T = method(conn, *args, **kwargs)
            return result

        if plan.read:
            return self._read(plan.name, call)
        return self._write(plan.name, call)

    # -- raw SQL ------------------------------------------------------------------------

    def query(
        self, sql: str, params: Mapping[str, Any] | Iterable[Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run your own SQL with bound parameters (`%s` or `%(name)s`); rows as dicts."""
        text = as_text(sql, "sql")  # libpq would cut the statement at a NUL, silently
        args = p.query_params(params)
        watch = self._watch
        return self._write("query", lambda conn: _run.raw(conn, text, args, watch, _RAW_COMMENT))

    # -- users --------------------------------------------------------------------------

    def create_user(
        self, *, email: str, password_hash: str, plan_type: PlanType | str = PlanType.FREE
    ) -> User:
        """Create a user; a taken email in any letter case raises `AlreadyExistsError`."""
        args = p.user_create(email, password_hash, plan_type)
        return self._write("create_user", lambda conn: self._q.create_user(conn, **args))

    def get_user_by_id(self, id: IdLike) -> User | None:
        """The user with this id, or None."""
        uid = as_uuid(id)
        return self._read("get_user_by_id", lambda conn: self._q.get_user_by_id(conn, id=uid))

    def get_user_by_email(self, email: str) -> User | None:
        """The user with this email in any letter case (Unicode case folding), or None."""
        address = as_text(email, "email")
        return self._read(
            "get_user_by_email", lambda conn: self._q.get_user_by_email(conn, email=address)
        )

    def update_user(
        self,
        id: IdLike,
        *,
        email: str | Unset = UNSET,
        password_hash: str | Unset = UNSET,
        plan_type: PlanType | str | Unset = UNSET,
    ) -> User:
        """Change only the given fields; a missing user raises `NotFoundError`."""
        args = p.user_update(id, email, password_hash, plan_type)
        user = self._write("update_user", lambda conn: self._q.update_user(conn, **args))
        if user is None:
            raise NotFoundError(f"update_user: no user with id {args['id']}")
        return user

    def delete_user(self, id: IdLike) -> None:
        """Delete a user with their projects and deployments; `NotFoundError` if absent."""
        uid = as_uuid(id)
        count = self._write("delete_user", lambda conn: self._q.delete_user(conn, id=uid))
        if count == 0:
            raise NotFoundError(f"delete_user: no user with id {uid}")

    def get_users(
        self,
        limit: int = 50,
        offset: int = 0,
        *,
        after: str | None = None,
        with_total: bool = True,
    ) -> Page[User]:
        """A page of users, newest first; `after=` a page's `next_cursor` pages by keyset."""
        return self._page(
            "get_users",
            self._q.list_users,
            self._q.list_users_after,
            (self._q.count_users_in_scope if self._in_scope else self._q.count_users)
            if with_total
            else None,
            {},
            page_request(limit, offset, after),
        )

    # -- projects -----------------------------------------------------------------------

    def create_project(
        self, *, user_id: IdLike, name: str, description: str | None = None
    ) -> Project:
        """Create a project; a name the user already has (any case) raises `AlreadyExistsError`."""
        args = p.project_create(user_id, name, description)
        return self._write("create_project", lambda conn: self._q.create_project(conn, **args))

    def get_project_by_id(self, id: IdLike) -> Project | None:
        """The project with this id, or None."""
        pid = as_uuid(id)
        return self._read("get_project_by_id", lambda conn: self._q.get_project_by_id(conn, id=pid))

    def get_projects_by_user_id(
        self,
        user_id: IdLike,
        limit: int = 50,
        offset: int = 0,
        *,
        after: str | None = None,
        with_total: bool = True,
    ) -> Page[Project]:
        """A page of one user's projects, newest first (`after=` pages by keyset)."""
        return self._page(
            "get_projects_by_user_id",
            self._q.list_projects_by_user_id,
            self._q.list_projects_by_user_id_after,
            self._q.count_projects_by_user_id if with_total else None,
            {"user_id": as_uuid(user_id, "user_id")},
            page_request(limit, offset, after),
        )

    def update_project(
        self, id: IdLike, *, name: str | Unset = UNSET, description: str | Unset | None = UNSET
    ) -> Project:
        """Change only the given fields (`description=None` clears it); `NotFoundError` if none."""
        args = p.project_update(id, name, description)
        project = self._write("update_project", lambda conn: self._q.update_project(conn, **args))
        if project is None:
            raise NotFoundError(f"update_project: no project with id {args['id']}")
        return project

    def delete_project(self, id: IdLike) -> None:
        """Delete a project and its deployments; `NotFoundError` if absent."""
        pid = as_uuid(id)
        count = self._write("delete_project", lambda conn: self._q.delete_project(conn, id=pid))
        if count == 0:
            raise NotFoundError(f"delete_project: no project with id {pid}")

    def get_project_with_user(self, id: IdLike) -> ProjectWithUser | None:
        """A project with its owner, or None."""
        pid = as_uuid(id)
        return self._read(
            "get_project_with_user", lambda conn: self._q.get_project_with_user(conn, id=pid)
        )

    # -- deployments --------------------------------------------------------------------

    def create_deployment(
        self,
        *,
        project_id: IdLike,
        runtime_type: str,
        app_sandbox_id: str | None = None,
        public_url: str | None = None,
        db_sandbox_id: str | None = None,
        db_connection_info: Mapping[str, Any] | None = None,
        status: DeploymentStatus | str = DeploymentStatus.PENDING,
    ) -> Deployment:
        """Create a deployment; a missing project raises `NotFoundError`."""
        args = p.deployment_create(
            project_id,
            runtime_type,
            app_sandbox_id,
            public_url,
            db_sandbox_id,
            db_connection_info,
            status,
            keys=self._keys,
        )
        return self._write(
            "create_deployment", lambda conn: self._q.create_deployment(conn, **args)
        )

    def create_deployments(
        self, items: Iterable[Mapping[str, Any] | NewDeployment]
    ) -> list[Deployment]:
        """Create many deployments in one statement: all of them, or none on any error."""
        args = p.deployments_create(items, keys=self._keys)
        if not args["project_ids"]:
            return []

        def run(conn: Conn) -> list[Deployment]:
            note_batch(len(args["project_ids"]))
            return self._q.create_deployments(conn, **args)

        return self._write("create_deployments", run)

    def get_deployment_by_id(self, id: IdLike) -> Deployment | None:
        """The deployment with this id, or None."""
        did = as_uuid(id)
        return self._read(
            "get_deployment_by_id", lambda conn: self._q.get_deployment_by_id(conn, id=did)
        )

    def get_deployments_by_project_id(
        self,
        project_id: IdLike,
        limit: int = 50,
        offset: int = 0,
        *,
        after: str | None = None,
        with_total: bool = True,
    ) -> Page[Deployment]:
        """A page of one project's deployments, newest first (`after=` pages by keyset)."""
        return self._page(
            "get_deployments_by_project_id",
            self._q.list_deployments_by_project_id,
            self._q.list_deployments_by_project_id_after,
            self._q.count_deployments_by_project_id if with_total else None,
            {"project_id": as_uuid(project_id, "project_id")},
            page_request(limit, offset, after),
        )

    def get_deployments_by_status(
        self,
        status: DeploymentStatus | str,
        limit: int = 50,
        offset: int = 0,
        *,
        after: str | None = None,
        with_total: bool = True,
    ) -> Page[Deployment]:
        """A page of the deployments in one status, newest first (`after=` pages by keyset)."""
        return self._page(
            "get_deployments_by_status",
            self._q.list_deployments_by_status,
            self._q.list_deployments_by_status_after,
            (
                self._q.count_deployments_by_status_in_scope
                if self._in_scope
                else self._q.count_deployments_by_status
            )
            if with_total
            else None,
            {"status": as_enum(status, DeploymentStatus, "status")},
            page_request(limit, offset, after),
        )

    def iter_deployments_by_status(
        self, status: DeploymentStatus | str, batch_size: int = 1000
    ) -> Iterator[Deployment]:
        """Every deployment in one status, newest first, streamed through a server-side
        cursor `batch_size` rows at a time (memory stays flat however many there are)."""
        state = as_enum(status, DeploymentStatus, "status")
        size = check_batch_size(batch_size)
        return self._stream(
            "iter_deployments_by_status",
            self._q.stream_deployments_by_status,
            {"status": state},
            size,
        )

    def update_deployment_status(
        self,
        id: IdLike,
        status: DeploymentStatus | str,
        *,
        expected: DeploymentStatus | str | None = None,
    ) -> Deployment:
        """Set the status; with `expected`, only from that status, else `ConflictError`."""
        did = as_uuid(id)
        state = as_enum(status, DeploymentStatus, "status")
        before = None if expected is None else as_enum(expected, DeploymentStatus, "expected")

        def run(conn: Conn) -> Deployment:
            row = self._q.update_deployment_status(conn, id=did, status=state, expected=before)
            if row is not None:
                return row
            current = self._q.get_deployment_status(conn, id=did)
            if current is None:
                raise NotFoundError(f"update_deployment_status: no deployment with id {did}")
            raise ConflictError(
                f"update_deployment_status: deployment {did} is {current}, not {before}"
            )

        return self._write("update_deployment_status", run)

    def update_deployment(
        self,
        id: IdLike,
        *,
        app_sandbox_id: str | Unset | None = UNSET,
        public_url: str | Unset | None = UNSET,
        db_sandbox_id: str | Unset | None = UNSET,
        db_connection_info: Mapping[str, Any] | Unset | None = UNSET,
        status: DeploymentStatus | str | Unset = UNSET,
        runtime_type: str | Unset = UNSET,
    ) -> Deployment:
        """Change only the given fields (nullable ones accept None); `NotFoundError` if absent."""
        fields = {
            "app_sandbox_id": app_sandbox_id,
            "public_url": public_url,
            "db_sandbox_id": db_sandbox_id,
            "db_connection_info": db_connection_info,
            "status": status,
            "runtime_type": runtime_type,
        }
        args = p.deployment_update(id, fields, keys=self._keys)
        deployment = self._write(
            "update_deployment", lambda conn: self._q.update_deployment(conn, **args)
        )
        if deployment is None:
            raise NotFoundError(f"update_deployment: no deployment with id {args['id']}")
        return deployment

    def delete_deployment(self, id: IdLike) -> None:
        """Delete one deployment; `NotFoundError` if absent."""
        did = as_uuid(id)
        count = self._write(
            "delete_deployment", lambda conn: self._q.delete_deployment(conn, id=did)
        )
        if count == 0:
            raise NotFoundError(f"delete_deployment: no deployment with id {did}")

    def get_deployment_with_details(self, id: IdLike) -> DeploymentDetails | None:
        """A deployment with its project and the project's owner, or None."""
        did = as_uuid(id)
        return self._read(
            "get_deployment_with_details",
            lambda conn: self._q.get_deployment_with_details(conn, id=did),
        )

    def get_running_deployment_count_by_user(self, user_id: IdLike) -> int:
        """How many of the user's deployments are RUNNING (0 for an unknown user)."""
        uid = as_uuid(user_id, "user_id")
        count = self._read(
            "get_running_deployment_count_by_user",
            lambda conn: self._q.get_running_deployment_count_by_user(conn, user_id=uid),
        )
        return count or 0

    # -- analytics ----------------------------------------------------------------------

    def get_system_stats(self) -> SystemStats:
        """Counts of users, projects, deployments and deployments per status, in one round trip."""
        query = self._q.get_system_stats_in_scope if self._in_scope else self._q.get_system_stats
        stats = self._read("get_system_stats", query)
        if stats is None:  # an aggregate always returns its row
            raise QueryError("get_system_stats: the server returned no row")
        return ServiceBase._complete_stats(stats)


class Transaction(DataAPI):
    """Every data method plus `query()`, all on one connection inside one transaction.

    Calls from several threads (or tasks) run one at a time; once `commit()` or `rollback()`
    has begun, further calls raise `DatabaseError` instead of running outside the transaction.
    """

    def __init__(self, service: DatabaseService, conn: Conn, span: Any = None) -> None:
        self._service = service
        self._q = service._q
        self._watch = service._watch
        self._methods = service._methods
        self._keys = service._keys
        self._conn: Conn | None = conn
        # The parent span of this transaction's calls (None when nothing records them).
        self._span = span
        self._lock = Lock()
        # Streams still open on this connection: closed before the transaction ends, so
        # none of them later touches a connection that went back to the pool.
        self._streams: weakref.WeakSet[Iterator[Any]] = weakref.WeakSet()

    def _live(self, name: str) -> Conn:
        if self._conn is None:
            raise DatabaseError(f"{name}: the transaction is already finished")
        return self._conn

    def _read(self, name: str, run: Callable[[Conn], T], *, snapshot: bool = False) -> T:
        # The caller's transaction already decides what its statements see.
        with self._lock, self._service._telemetry.call(name, self._span):
            return run(self._live(name))

    def _write(self, name: str, run: Callable[[Conn], T]) -> T:
        with self._lock, self._service._telemetry.call(name, self._span):
            return run(self._live(name))

    @contextmanager
    def _borrow(self, name: str) -> Iterator[Conn]:
        with self._lock:
            conn = self._live(name)
        with self._service._telemetry.call(name, self._span):
            yield conn

    def _stream(
        self,
        name: str,
        query: Callable[..., list[T]],
        given: Mapping[str, Any],
        size: int,
    ) -> Iterator[T]:
        rows = self._rows(name, query, given, size)
        self._streams.add(rows)
        return rows

    @property
    def active(self) -> bool:
        """True until `commit()` or `rollback()`."""
        return self._conn is not None

    def _finish(self, commit: bool) -> None:
        name = "commit" if commit else "rollback"
        with self._lock:
            conn = self._live(name)
            self._conn = None
            clean = failed = False
            error: DatabaseError | None = None
            try:
                for stream in list(self._streams):
                    stream.close()  # type: ignore[attr-defined]
                # After a failed statement PostgreSQL answers COMMIT with a rollback and no
                # error: say so, or the caller believes changes were saved that were not.
                failed = commit and conn.info.transaction_status == TransactionStatus.INERROR
                if commit and not failed:
                    conn.commit()
                else:
                    conn.rollback()
                conn.set_autocommit(True)
                clean = True
                if commit and not failed:
                    self._service._note_write(conn)
            except RuntimeError:  # close() of a stream another thread or task is reading
                error = DatabaseError(
                    f"{name}: a stream of this transaction is still being read elsewhere;"
                    " the transaction was rolled back"
                )
            except (psycopg.Error, DatabaseError) as exc:
                error = translate(exc, operation=name, write=commit)
                # A COMMIT the server refused (serialization failure, a deferred constraint)
                # leaves a sound connection with its transaction ended: keep it.
                clean = self._service._restore(conn)
            finally:
                # Every way out — COMMIT refused, the connection lost, the caller
                # interrupted — hands back a connection in autocommit, or none at all.
                self._service._release(conn, clean=clean)
        if error is None and failed:
            error = QueryError(
                "commit: a statement in this transaction failed, so it was rolled back"
                " and nothing was saved"
            )
        self._service._telemetry.end_transaction(self._span, name, error)
        if error is not None:
            raise error

    def commit(self) -> None:
        """Make every change of this transaction permanent and release its connection."""
        self._finish(commit=True)

    def rollback(self) -> None:
        """Undo every change of this transaction and release its connection."""
        self._finish(commit=False)


class DatabaseService(ServiceBase, DataAPI):
    """The data API on a pool: `connect()`, call methods, `disconnect()` (or `with`)."""

    _pool: ConnectionPool[Conn] | None

    # -- lifecycle ----------------------------------------------------------------------

    def _bind_queries(self) -> None:
        # Typed by the generated Protocol: `load` builds the object it describes.
        self._q = cast(Queries, runtime.load(queries_dir(), PLANS, self._watch))

    def _configure(self, conn: Conn) -> None:
        # JSON of any depth reads back (rows stored 3,000 deep by other clients too).
        use_deep_json(conn)
        settings = self._statement_timeout()
        if settings is not None:
            self._q.set_statement_timeout(conn, **settings)

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
            connection_class=self._connection_class(self._reach),
            **self._pool_kwargs(),
        )
        try:
            pool.open(wait=True, timeout=max(self.config.connection_timeout_ms / 1000, 5.0))
        except Exception as exc:
            pool.close()
            raise translate(exc, operation="connect") from None
        self._pool = pool
        self._closing = False
        self._replica_pools = [self._open_replica(r) for r in self._router.replicas]

    def _connection_class(self, reach: _Reachability | None) -> type[Conn]:
        config = self.config
        bound = config.call_bound_s

        class PooledConnection(psycopg.Connection[Any]):
            """A pooled connection whose every wait for the server is bounded (see
            `coderunner_sql.deadline`), recording whether the server answered the pool."""

            @classmethod
            def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
                try:
                    conn = super().connect(conninfo, **kwargs)
                except psycopg.Error as exc:
                    if reach is not None:
                        reach.failed(str(connect_failure(exc, config)))
                    raise
                if reach is not None:
                    reach.succeeded()
                return conn

            def wait(
                self,
                gen: PQGen[RV],
                interval: float = _WAIT_INTERVAL_S,
                timeout: float | None = None,
            ) -> RV:
                if timeout is not None:  # psycopg's own timed waits (notifies)
                    return super().wait(gen, interval, timeout)
                seconds = limit(bound)
                try:
                    return super().wait(gen, interval, seconds)
                except psycopg.errors._WaitTimeout:
                    raise abandon(self, seconds or 0.0) from None

        return PooledConnection

    @staticmethod
    def _restore(conn: Conn) -> bool:
        # True when the connection is back in autocommit with no transaction open.
        if conn.broken or conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
            return False
        try:
            conn.set_autocommit(True)
        except psycopg.Error:
            return False
        return True

    def _release(self, conn: Conn, *, clean: bool) -> None:
        # A transaction's connection goes back in autocommit or not at all: one left outside
        # autocommit would run the next caller's writes in a transaction nobody commits. (Not
        # a pool `reset=` hook: with one, psycopg_pool returns every connection via a worker.)
        if not clean or not conn.autocommit:
            conn.close()
        pool = self._pool
        if pool is None:
            conn.close()
        else:
            pool.putconn(conn)

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
        pool.close()
        replicas, self._replica_pools = self._replica_pools, []
        for replica_pool in replicas:
            replica_pool.close()
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

    @contextmanager
    def _connection(self, name: str, timeout: float | None = None) -> Iterator[Conn]:
        pool = self._live_pool()
        conn = self._acquire(pool, name, timeout)
        try:
            yield conn
        except DatabaseUnavailableError:
            # Never lent again, even if its socket looks fine: it may be on a primary that a
            # failover demoted (read-only), which new connections to the cluster's URL skip.
            conn.close()
            raise
        finally:
            pool.putconn(conn)

    def _acquire(self, pool: ConnectionPool[Conn], name: str, timeout: float | None = None) -> Conn:
        # A connection the server has already closed is replaced here, before anything is
        # sent on it: a write that fails after this point may really have reached the server.
        started = time.monotonic()
        deadline = started + self._acquire_wait(pool, timeout)
        closed = 0
        while closed <= 2 * pool.max_size:
            # Waited in slices: when the pool learns meanwhile that the server is down, the
            # wait is cut to one connect attempt rather than the whole acquire timeout.
            wait = max(min(deadline - time.monotonic(), _ACQUIRE_SLICE_S), 0.001)
            # Counted here, not by the pool: its count keeps callers that gave up until a
            # connection comes back. A set's add/discard is atomic across threads.
            waiter = object()
            self._waiters.add(waiter)
            try:
                conn = pool.getconn(timeout=wait)
            except PoolTimeout as exc:
                deadline = min(deadline, started + self._acquire_wait(pool, timeout))
                if time.monotonic() < deadline:
                    continue
                raise self._acquire_failure(exc, name, closed=bool(closed)) from None
            except psycopg.Error as exc:  # the pool's own errors (PoolClosed…) are psycopg's
                raise self._acquire_failure(exc, name, closed=bool(closed)) from None
            finally:
                self._waiters.discard(waiter)
            if not _stale(conn):
                self._telemetry.waited(time.monotonic() - started)
                return conn
            try:
                pool.check_connection(conn)
            except psycopg.Error:
                pool.putconn(conn)  # broken: the pool discards it and opens another
                # The server closed it: if it is gone, the replacement tells within a
                # connect attempt, so waiting longer only hides the outage.
                closed += 1
                deadline = min(deadline, time.monotonic() + self._connect_wait())
                continue
            self._telemetry.waited(time.monotonic() - started)
            return conn
        raise DatabaseUnavailableError(f"{name}: the server closed every pooled connection")

    def _run(self, name: str, run: Callable[[Conn], T], conn: Conn, snapshot: bool = False) -> T:
        try:
            if self._local is None and not snapshot:
                return run(conn)
            with self._transaction_block(conn, snapshot):
                # Behind PgBouncer the server session is shared: settings last one transaction.
                if self._local is not None:
                    self._q.set_statement_timeout(conn, **self._local)
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
            found = self._from_replica(name, _nothing) if self._router.replicas else None
            if found is None:
                source = self._connection(name)
            else:
                replica = found[1]
                call.served_by(replica.config.host, replica.config.port, replica.index)
                source = self._replica_connection(replica, name)
            with source as conn:
                if self._local is None:
                    yield conn
                    return
                try:
                    with conn.transaction():
                        self._q.set_statement_timeout(conn, **self._local)
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
            self._note_write(conn)
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
        pool = self._live_pool()
        conn = self._acquire(pool, "begin_transaction")
        try:
            conn.set_autocommit(False)
            if self._local is not None:
                self._q.set_statement_timeout(conn, **self._local)
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
            batch = self._q.list_connection_infos_to_rotate(
                conn, after_id=after, kid=keys.newest.kid, batch_size=size
            )
            if not batch:
                return None, 0, 0
            args = p.connection_infos_resealed(batch, keys)
            note_batch(len(args["ids"]))
            self._q.update_connection_infos(conn, **args)
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
                    info = self._q.get_server_info(conn)
            except Exception as exc:
                error = exc
                call.fail(exc)
        finished = time.perf_counter()
        self._check_replicas()
        return self._health(started, finished, info, error)

    # -- read replicas ------------------------------------------------------------------

    def _open_replica(self, replica: ReplicaState) -> ConnectionPool[Conn]:
        kwargs = self._pool_kwargs(replica.config)
        kwargs["name"] = f"{kwargs['name']}-replica-{replica.index}"
        pool: ConnectionPool[Conn] = ConnectionPool(
            configure=self._configure,
            connection_class=self._connection_class(None),
            **kwargs,
        )
        # Not waiting: a replica that is down must not stop the service from starting.
        pool.open(wait=False)
        return pool

    @contextmanager
    def _replica_connection(self, replica: ReplicaState, name: str) -> Iterator[Conn]:
        pool = self._replica_pools[replica.index]
        conn: Conn | None = None
        try:
            for _ in range(pool.max_size + 1):
                conn = pool.getconn(timeout=self._router.acquire_timeout_s)
                if not _stale(conn):
                    break
                try:
                    pool.check_connection(conn)
                    break
                except psycopg.Error:
                    pool.putconn(conn)  # the pool discards it and opens another
                    conn = None
        except psycopg.Error as exc:
            raise translate(exc, operation=name) from None
        if conn is None:
            raise DatabaseUnavailableError(f"{name}: the replica closed every pooled connection")
        self._router.lend(replica, 1)
        try:
            yield conn
        finally:
            self._router.lend(replica, -1)
            pool.putconn(conn)

    def _from_replica(
        self, name: str, run: Callable[[Conn], T], snapshot: bool = False
    ) -> tuple[T, ReplicaState] | None:
        # The read's result and the replica that served it; None: the primary must serve it.
        for replica in self._router.candidates():
            if self._closing or replica.index >= len(self._replica_pools):
                return None
            try:
                with self._replica_connection(replica, name) as conn:
                    if not self._replica_ready(replica, conn):
                        current().replica("replica.skipped", replica.index)
                        continue
                    result = self._run(name, run, conn, snapshot)
            except DatabaseError as exc:
                if not falls_back(exc):
                    raise
                self._router.failed(replica, exc)
                current().replica("replica.failed", replica.index, exc)
                continue
            self._router.served(replica)
            return result, replica
        return None

    def _replica_ready(self, replica: ReplicaState, conn: Conn) -> bool:
        # Fresh enough (lag) and, after a write of ours, replayed past it; waits for that
        # at most DB_REPLICA_WAIT_MS.
        router = self._router
        if router.needs_status(replica):
            router.observe(replica, self._q.get_replica_status(conn))
        deadline = router.wait_deadline()
        while replica.status == "healthy" and not router.caught_up(replica):
            if time.monotonic() >= deadline:
                return False
            sleep(router.poll_interval())
            router.observe(replica, self._q.get_replica_status(conn))
        return router.caught_up(replica)

    def _note_write(self, conn: Conn) -> None:
        # Where the primary's WAL is once a write has committed: a replica serves this
        # service's reads again only after replaying past it. Only with replicas configured.
        if not self._router.replicas:
            return
        try:
            position = self._q.get_wal_position(conn)
        except DatabaseError:
            position = None  # reads then go to the primary for DB_REPLICA_MAX_LAG_MS
        self._router.note_write(position)

    def _check_replicas(self) -> None:
        for replica in self._router.replicas[: len(self._replica_pools)]:
            try:
                with self._replica_connection(replica, "health_check") as conn:
                    self._router.observe(replica, self._q.get_replica_status(conn))
            except DatabaseError as exc:
                self._router.failed(replica, exc)


class ScopedService(DataAPI):
    """The data API of one user (from `for_user()`): row-level security hides other users' rows.

    Each call runs in a transaction that first switches to the role `coderunner_tenant` and
    names the user in `coderunner.user_id`, both transaction-local, so a pooled connection
    never keeps them; the login needs to be able to SET ROLE to it (a member of
    `coderunner_app`, or a superuser). See docs/reliability.md.
    """

    def __init__(self, service: DatabaseService, user_id: UUID) -> None:
        self._service = service
        self._q = service._q
        self._watch = service._watch
        self._methods = service._methods
        self._keys = service._keys
        self._in_scope = True
        self.user_id = user_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(user_id={self.user_id})"

    def _enter(self, conn: Conn) -> None:
        try:
            self._q.set_user_scope(conn, user_id=str(self.user_id))
        except PermissionDeniedError as exc:
            # The server's message names the role no more (quoted names are cut from
            # errors): say which one the login must be able to take.
            raise PermissionDeniedError(
                f"{exc}: for_user() needs a login that may SET ROLE coderunner_tenant"
                " (a member of coderunner_app)"
            ) from None

    def _scoped(self, run: Callable[[Conn], T]) -> Callable[[Conn], T]:
        def scoped(conn: Conn) -> T:
            with conn.transaction():
                self._enter(conn)
                return run(conn)

        return scoped

    def _read(self, name: str, run: Callable[[Conn], T], *, snapshot: bool = False) -> T:
        return self._service._read(name, self._scoped(run), snapshot=snapshot)

    def _write(self, name: str, run: Callable[[Conn], T]) -> T:
        return self._service._write(name, self._scoped(run))

    @contextmanager
    def _borrow(self, name: str) -> Iterator[Conn]:
        with self._service._borrow(name) as conn, conn.transaction():
            self._enter(conn)
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A transaction of this user's: commits when the block ends, rolls back if it raises."""
        with self._service.transaction() as tx:
            tx._write("for_user", self._enter)
            tx._in_scope = True
            yield tx

    def execute_in_transaction(self, fn: Callable[[Transaction], T]) -> T:
        """Call `fn(tx)` in a transaction of this user's: commit on return, roll back on raise."""
        with self.transaction() as tx:
            return fn(tx)
