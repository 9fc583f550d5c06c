# Generated from coderunner_sql/data_api_async.py by tools/async_to_sync.py: do not edit.
# Change the async source and run `python tools/async_to_sync.py`.
"""`DataAPI`: every data method, written once for the service (a pooled connection per
call), its transactions (one connection throughout) and its users' scopes.

This file is the one source of `data_api.py` (`DataAPI`), which `tools/async_to_sync.py`
generates from it. Every method's SQL is the named query it calls in `queries/`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, closing
from typing import Any, Concatenate, ParamSpec, TypeVar
from uuid import UUID

import psycopg

from coderunner_sql.codegen import _run, runtime
from coderunner_sql.codegen._plans import Plan
from coderunner_sql.encryption import KeyRing
from coderunner_sql.errors import (
    ConflictError,
    NotFoundError,
    QueryError,
    ValidationError,
)
from coderunner_sql.pagination import PageRequest, page_request
from coderunner_sql.params import (
    UNSET,
    Unset,
    deployment_create,
    deployment_update,
    deployments_create,
    project_create,
    project_update,
    query_params,
    user_create,
    user_update,
)
from coderunner_sql.query_methods import Queries
from coderunner_sql.query_watch import QueryWatch
from coderunner_sql.records import (
    Deployment,
    DeploymentDetails,
    DeploymentStatus,
    NewDeployment,
    Page,
    PlanType,
    Project,
    ProjectWithUser,
    SystemStats,
    User,
)
from coderunner_sql.service_base import ServiceBase
from coderunner_sql.telemetry import current, name_comment, note_batch
from coderunner_sql.validation import as_enum, as_text, as_uuid, check_batch_size

__all__ = ["DataAPI"]

T = TypeVar("T")
P = ParamSpec("P")
Conn = psycopg.Connection[Any]
IdLike = UUID | str
# Caller-written SQL (`query()`) is named on the server too; its own text follows.
_RAW_COMMENT = name_comment("query")


class DataAPI:
    """Every data method, written once for the service (a pooled connection per call) and
    for transactions (one connection throughout)."""

    _queries: Queries
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

    def _fetch(
        self,
        query: Callable[Concatenate[Conn, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        # A read of one generated method (the service may send it with others in flight).
        def call(conn: Conn) -> T:
            return query(conn, *args, **kwargs)

        return self._read(query.__name__, call)

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
            result: T = self._fetch(method, *args, **kwargs)
            return result
        return self._write(plan.name, call)

    # -- raw SQL ------------------------------------------------------------------------

    def query(
        self, sql: str, params: Mapping[str, Any] | Iterable[Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run your own SQL with bound parameters (`%s` or `%(name)s`); rows as dicts."""
        text = as_text(sql, "sql")  # libpq would cut the statement at a NUL, silently
        args = query_params(params)
        watch = self._watch
        return self._write("query", lambda conn: _run.raw(conn, text, args, watch, _RAW_COMMENT))

    # -- users --------------------------------------------------------------------------

    def create_user(
        self, *, email: str, password_hash: str, plan_type: PlanType | str = PlanType.FREE
    ) -> User:
        """Create a user; a taken email in any letter case raises `AlreadyExistsError`."""
        args = user_create(email, password_hash, plan_type)
        return self._write("create_user", lambda conn: self._queries.create_user(conn, **args))

    def get_user_by_id(self, id: IdLike) -> User | None:
        """The user with this id, or None."""
        uid = as_uuid(id)
        return self._fetch(self._queries.get_user_by_id, id=uid)

    def get_user_by_email(self, email: str) -> User | None:
        """The user with this email in any letter case (Unicode case folding), or None."""
        address = as_text(email, "email")
        return self._fetch(self._queries.get_user_by_email, email=address)

    def update_user(
        self,
        id: IdLike,
        *,
        email: str | Unset = UNSET,
        password_hash: str | Unset = UNSET,
        plan_type: PlanType | str | Unset = UNSET,
    ) -> User:
        """Change only the given fields; a missing user raises `NotFoundError`."""
        args = user_update(id, email, password_hash, plan_type)
        user = self._write("update_user", lambda conn: self._queries.update_user(conn, **args))
        if user is None:
            raise NotFoundError(f"update_user: no user with id {args['id']}")
        return user

    def delete_user(self, id: IdLike) -> None:
        """Delete a user with their projects and deployments; `NotFoundError` if absent."""
        uid = as_uuid(id)
        count = self._write("delete_user", lambda conn: self._queries.delete_user(conn, id=uid))
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
            self._queries.list_users,
            self._queries.list_users_after,
            (self._queries.count_users_in_scope if self._in_scope else self._queries.count_users)
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
        args = project_create(user_id, name, description)
        return self._write(
            "create_project", lambda conn: self._queries.create_project(conn, **args)
        )

    def get_project_by_id(self, id: IdLike) -> Project | None:
        """The project with this id, or None."""
        pid = as_uuid(id)
        return self._fetch(self._queries.get_project_by_id, id=pid)

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
            self._queries.list_projects_by_user_id,
            self._queries.list_projects_by_user_id_after,
            self._queries.count_projects_by_user_id if with_total else None,
            {"user_id": as_uuid(user_id, "user_id")},
            page_request(limit, offset, after),
        )

    def update_project(
        self, id: IdLike, *, name: str | Unset = UNSET, description: str | Unset | None = UNSET
    ) -> Project:
        """Change only the given fields (`description=None` clears it); `NotFoundError` if none."""
        args = project_update(id, name, description)
        project = self._write(
            "update_project", lambda conn: self._queries.update_project(conn, **args)
        )
        if project is None:
            raise NotFoundError(f"update_project: no project with id {args['id']}")
        return project

    def delete_project(self, id: IdLike) -> None:
        """Delete a project and its deployments; `NotFoundError` if absent."""
        pid = as_uuid(id)
        count = self._write(
            "delete_project", lambda conn: self._queries.delete_project(conn, id=pid)
        )
        if count == 0:
            raise NotFoundError(f"delete_project: no project with id {pid}")

    def get_project_with_user(self, id: IdLike) -> ProjectWithUser | None:
        """A project with its owner, or None."""
        pid = as_uuid(id)
        return self._fetch(self._queries.get_project_with_user, id=pid)

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
        args = deployment_create(
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
            "create_deployment", lambda conn: self._queries.create_deployment(conn, **args)
        )

    def create_deployments(
        self, items: Iterable[Mapping[str, Any] | NewDeployment]
    ) -> list[Deployment]:
        """Create many deployments in one statement: all of them, or none on any error."""
        args = deployments_create(items, keys=self._keys)
        if not args["project_ids"]:
            return []

        def run(conn: Conn) -> list[Deployment]:
            note_batch(len(args["project_ids"]))
            return self._queries.create_deployments(conn, **args)

        return self._write("create_deployments", run)

    def get_deployment_by_id(self, id: IdLike) -> Deployment | None:
        """The deployment with this id, or None."""
        did = as_uuid(id)
        return self._fetch(self._queries.get_deployment_by_id, id=did)

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
            self._queries.list_deployments_by_project_id,
            self._queries.list_deployments_by_project_id_after,
            self._queries.count_deployments_by_project_id if with_total else None,
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
            self._queries.list_deployments_by_status,
            self._queries.list_deployments_by_status_after,
            (
                self._queries.count_deployments_by_status_in_scope
                if self._in_scope
                else self._queries.count_deployments_by_status
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
            self._queries.stream_deployments_by_status,
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
            row = self._queries.update_deployment_status(
                conn, id=did, status=state, expected=before
            )
            if row is not None:
                return row
            current = self._queries.get_deployment_status(conn, id=did)
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
        args = deployment_update(id, fields, keys=self._keys)
        deployment = self._write(
            "update_deployment", lambda conn: self._queries.update_deployment(conn, **args)
        )
        if deployment is None:
            raise NotFoundError(f"update_deployment: no deployment with id {args['id']}")
        return deployment

    def delete_deployment(self, id: IdLike) -> None:
        """Delete one deployment; `NotFoundError` if absent."""
        did = as_uuid(id)
        count = self._write(
            "delete_deployment", lambda conn: self._queries.delete_deployment(conn, id=did)
        )
        if count == 0:
            raise NotFoundError(f"delete_deployment: no deployment with id {did}")

    def get_deployment_with_details(self, id: IdLike) -> DeploymentDetails | None:
        """A deployment with its project and the project's owner, or None."""
        did = as_uuid(id)
        return self._fetch(self._queries.get_deployment_with_details, id=did)

    def get_running_deployment_count_by_user(self, user_id: IdLike) -> int:
        """How many of the user's deployments are RUNNING (0 for an unknown user)."""
        uid = as_uuid(user_id, "user_id")
        count = self._fetch(self._queries.get_running_deployment_count_by_user, user_id=uid)
        return count or 0

    # -- analytics ----------------------------------------------------------------------

    def get_system_stats(self) -> SystemStats:
        """Counts of users, projects, deployments and deployments per status, in one round trip."""
        stats = (
            self._read("get_system_stats", self._queries.get_system_stats_in_scope)
            if self._in_scope
            else self._fetch(self._queries.get_system_stats)
        )
        if stats is None:  # an aggregate always returns its row
            raise QueryError("get_system_stats: the server returned no row")
        return ServiceBase._complete_stats(stats)
