# Generated from coderunner_sql/transaction_async.py by tools/async_to_sync.py: do not edit.
# Change the async source and run `python tools/async_to_sync.py`.
"""`Transaction`: every data method on one connection inside one transaction, and how
it ends (commit or rollback) with its connection handed back sound or not at all.

This file is the one source of `transaction.py` (`Transaction`), which
`tools/async_to_sync.py` generates from it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus

from coderunner_sql._compat import Lock
from coderunner_sql.connections import restore
from coderunner_sql.data_api import Conn, DataAPI
from coderunner_sql.errors import (
    DatabaseError,
    QueryError,
    translate,
)

if TYPE_CHECKING:
    from coderunner_sql.service import DatabaseService

__all__ = ["Transaction"]

T = TypeVar("T")


class Transaction(DataAPI):
    """Every data method plus `query()`, all on one connection inside one transaction.

    Calls from several threads (or tasks) run one at a time; once `commit()` or `rollback()`
    has begun, further calls raise `DatabaseError` instead of running outside the transaction.
    """

    def __init__(self, service: DatabaseService, conn: Conn, span: Any = None) -> None:
        self._service = service
        self._queries = service._queries
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
                clean = restore(conn)
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
