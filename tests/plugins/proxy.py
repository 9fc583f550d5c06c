"""Drive an async object from sync test code, so one test body checks both services."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any


class SyncProxy:
    """Wraps an async service or transaction; each coroutine method runs on `loop` and blocks."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = loop

    @property
    def wrapped(self) -> Any:
        """The async object behind the proxy."""
        return self._target

    def _run(self, awaitable: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(awaitable, self._loop).result()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name == "transaction":
            return self._transaction
        if name == "execute_in_transaction":
            return self._execute_in_transaction
        if name == "for_user":
            return lambda *a, **k: SyncProxy(attr(*a, **k), self._loop)
        if name == "begin_transaction":
            return lambda: SyncProxy(self._run(attr()), self._loop)
        if name in ("commit_transaction", "rollback_transaction"):
            return lambda tx: self._run(attr(tx.wrapped))
        if inspect.iscoroutinefunction(attr):
            return lambda *a, **k: self._run(attr(*a, **k))
        if inspect.isasyncgenfunction(attr) or name.startswith("iter_"):
            return lambda *a, **k: self._iterate(attr(*a, **k))
        return attr

    def _iterate(self, agen: Any) -> Iterator[Any]:
        """A sync generator over an async one; closing it (or breaking out) closes both."""
        try:
            while True:
                try:
                    yield self._run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._run(agen.aclose())

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[SyncProxy]:
        manager = self._target.transaction()
        tx = self._run(manager.__aenter__())
        try:
            yield SyncProxy(tx, self._loop)
        except BaseException as exc:
            if not self._run(manager.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self._run(manager.__aexit__(None, None, None))

    def _execute_in_transaction(self, fn: Callable[[Any], Any]) -> Any:
        loop = self._loop

        async def call(tx: Any) -> Any:
            # The test's sync fn blocks on the loop, so it runs in a worker thread.
            return await asyncio.to_thread(fn, SyncProxy(tx, loop))

        return self._run(self._target.execute_in_transaction(call))
