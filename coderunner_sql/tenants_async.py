"""`AsyncScopedService`: the data API as one user sees it (row-level security), each call in
a transaction that names the user.

This file is the one source of `tenants.py` (`ScopedService`), which
`tools/async_to_sync.py` generates from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

from coderunner_sql.data_api_async import AsyncDataAPI, Conn
from coderunner_sql.errors import (
    PermissionDeniedError,
)
from coderunner_sql.transaction_async import AsyncTransaction

if TYPE_CHECKING:
    from coderunner_sql.service_async import AsyncDatabaseService

__all__ = ["AsyncScopedService"]

T = TypeVar("T")


class AsyncScopedService(AsyncDataAPI):
    """The data API of one user (from `for_user()`): row-level security hides other users' rows.

    Each call runs in a transaction that first switches to the role `coderunner_tenant` and
    names the user in `coderunner.user_id`, both transaction-local, so a pooled connection
    never keeps them; the login needs to be able to SET ROLE to it (a member of
    `coderunner_app`, or a superuser). See docs/reliability.md.
    """

    def __init__(self, service: AsyncDatabaseService, user_id: UUID) -> None:
        self._service = service
        self._queries = service._queries
        self._watch = service._watch
        self._methods = service._methods
        self._keys = service._keys
        self._in_scope = True
        self.user_id = user_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(user_id={self.user_id})"

    async def _enter(self, conn: Conn) -> None:
        try:
            await self._queries.set_user_scope(conn, user_id=str(self.user_id))
        except PermissionDeniedError as exc:
            # The server's message names the role no more (quoted names are cut from
            # errors): say which one the login must be able to take.
            raise PermissionDeniedError(
                f"{exc}: for_user() needs a login that may SET ROLE coderunner_tenant"
                " (a member of coderunner_app)"
            ) from None

    def _scoped(self, run: Callable[[Conn], Awaitable[T]]) -> Callable[[Conn], Awaitable[T]]:
        async def scoped(conn: Conn) -> T:
            async with conn.transaction():
                await self._enter(conn)
                return await run(conn)

        return scoped

    async def _read(
        self, name: str, run: Callable[[Conn], Awaitable[T]], *, snapshot: bool = False
    ) -> T:
        return await self._service._read(name, self._scoped(run), snapshot=snapshot)

    async def _write(self, name: str, run: Callable[[Conn], Awaitable[T]]) -> T:
        return await self._service._write(name, self._scoped(run))

    @asynccontextmanager
    async def _borrow(self, name: str) -> AsyncIterator[Conn]:
        async with self._service._borrow(name) as conn, conn.transaction():
            await self._enter(conn)
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncTransaction]:
        """A transaction of this user's: commits when the block ends, rolls back if it raises."""
        async with self._service.transaction() as tx:
            await tx._write("for_user", self._enter)
            tx._in_scope = True
            yield tx

    async def execute_in_transaction(self, fn: Callable[[AsyncTransaction], Awaitable[T]]) -> T:
        """Call `fn(tx)` in a transaction of this user's: commit on return, roll back on raise."""
        async with self.transaction() as tx:
            return await fn(tx)
