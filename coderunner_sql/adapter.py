# Generated from coderunner_sql/adapter_async.py by tools/async_to_sync.py: do not edit.
# Change the async source and run `python tools/async_to_sync.py`.
"""The aiosql driver adapter every query runs through (async; `adapter.py` is generated from it).

aiosql turns each named query in `queries/` into a method; this adapter executes it. It is
the one place that prepares statements, builds records from rows (through the converter),
reads JSON of any depth (`converter.use_deep_json`), times every statement for the
slow-query log and telemetry (name, milliseconds and rows, never parameters) and translates
driver errors.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import psycopg
from aiosql.adapters.pyformat import PyFormatAdapter
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from coderunner_sql.converter import use_deep_json
from coderunner_sql.errors import ValidationError, scrub, translate
from coderunner_sql.query_watch import QueryWatch
from coderunner_sql.telemetry import Call, name_comment

__all__ = ["QueryAdapter"]

_stream_ids = itertools.count(1)
# Caller-written SQL (`query()`) is named on the server too; its own text follows.
_RAW_COMMENT = name_comment("query")


class QueryAdapter(PyFormatAdapter):
    """Runs aiosql's queries on psycopg connections, returning records, never raw driver errors."""

    def __init__(self, watch: QueryWatch) -> None:
        self.watch = watch

    def _record_cursor(self, conn: psycopg.Connection[Any], query_name: str) -> Any:
        use_deep_json(conn)
        factory = self.watch.row_factory(query_name)
        if factory is None:
            return conn.cursor()
        return conn.cursor(row_factory=factory)

    # aiosql's protocol types the generator loosely; ours yields records.
    def select(  # type: ignore[override]
        self, conn: Any, query_name: str, sql: str, parameters: Any, record_class: Any = None
    ) -> Iterator[Any]:
        """Rows of a listing, fetched in full before the first is yielded."""
        with self.watch(query_name, sql) as st:
            cursor = self._record_cursor(conn, query_name)
            with cursor as cur:
                cur.execute(sql, parameters, prepare=self.watch.prepare)
                rows = cur.fetchall()
                st.rows = len(rows)
        yield from rows

    def select_one(
        self, conn: Any, query_name: str, sql: str, parameters: Any, record_class: Any = None
    ) -> Any:
        """The first row (as its record), or None."""
        with self.watch(query_name, sql) as st:
            cursor = self._record_cursor(conn, query_name)
            with cursor as cur:
                cur.execute(sql, parameters, prepare=self.watch.prepare)
                st.rows = cur.rowcount
                return cur.fetchone()

    def select_value(self, conn: Any, query_name: str, sql: str, parameters: Any) -> Any:
        """The first column of the first row, or None."""
        use_deep_json(conn)
        with self.watch(query_name, sql) as st, conn.cursor() as cur:
            cur.execute(sql, parameters, prepare=self.watch.prepare)
            st.rows = cur.rowcount
            row = cur.fetchone()
            return row[0] if row is not None else None

    def insert_returning(self, conn: Any, query_name: str, sql: str, parameters: Any) -> Any:
        """The row a write returned (as its record), or None."""
        return self.select_one(conn, query_name, sql, parameters)

    # aiosql's async protocol says None (its sync one says int); callers need the count.
    def insert_update_delete(  # type: ignore[override, unused-ignore]
        self, conn: Any, query_name: str, sql: str, parameters: Any
    ) -> int:
        """How many rows a write touched."""
        with self.watch(query_name, sql) as st, conn.cursor() as cur:
            cur.execute(sql, parameters, prepare=self.watch.prepare)
            st.rows = cur.rowcount
            return int(cur.rowcount)

    def execute_script(self, conn: Any, sql: str) -> str:
        """Run a script (`#` queries), returning the last status message."""
        with self.watch("script", sql), conn.cursor() as cur:
            cur.execute(sql)
            return str(cur.statusmessage or "")

    def stream(
        self,
        conn: psycopg.Connection[Any],
        query_name: str,
        sql: str,
        parameters: Any,
        batch_size: int,
        call: Call | None = None,
    ) -> Iterator[Any]:
        """Rows of a listing through a server-side cursor, `batch_size` at a time; `call`:
        the service call whose span records them (each fetch may run in another context)."""
        use_deep_json(conn)
        factory: Any = self.watch.row_factory(query_name)
        # A named cursor lives in a transaction: its own, or the caller's. Not a savepoint in
        # the caller's: a stream closed early would roll back to it, undoing the caller's
        # writes made while reading. Beginning and ending it can fail too (in an aborted
        # transaction, on a lost connection): those errors are translated like the statements'.
        block: AbstractContextManager[Any] = (
            conn.transaction()
            if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE
            else nullcontext()
        )
        try:
            with block:
                # Unique per stream: two streams may be open in one transaction.
                name = f"stream_{query_name}_{next(_stream_ids)}"
                cursor = conn.cursor(name=name, row_factory=factory)
                with cursor as cur:
                    with self.watch(query_name, sql, call):
                        cur.execute(sql, parameters)
                    while True:
                        with self.watch(query_name, sql, call) as st:
                            rows = cur.fetchmany(batch_size)
                            st.rows = len(rows)
                        if not rows:
                            break
                        yield from rows
        except psycopg.Error as exc:
            raise translate(exc, operation=query_name) from None

    def raw(
        self, conn: psycopg.Connection[Any], sql: str, params: Mapping[str, Any] | Any = None
    ) -> list[dict[str, Any]]:
        """Run caller-written SQL with bound parameters; rows as dicts (none for writes)."""
        use_deep_json(conn)
        # Its SQL stays out of telemetry: the caller's text may hold literals.
        with self.watch("query") as st, conn.cursor(row_factory=dict_row) as cur:
            refused = None
            try:
                cur.execute(_RAW_COMMENT + sql, params)
            except UnicodeEncodeError as exc:
                scrub(exc)  # it holds the whole parameter
                refused = "a parameter is not valid Unicode text (it holds a lone surrogate)"
            except (TypeError, ValueError) as exc:  # psycopg's checks of SQL and params
                refused = str(exc)
                scrub(exc)
            if refused is not None:
                raise ValidationError(f"query: {refused}")
            st.rows = cur.rowcount
            return cur.fetchall() if cur.description else []
