# Generated from coderunner_sql/codegen/_run_async.py by tools/async_to_sync.py: do not edit.
# Change the async source and run `python tools/async_to_sync.py`.
"""How a query runs on a psycopg connection: a generated method (rows materialised before
it returns), a stream of one through a server-side cursor, and caller-written SQL.

Written once, for async connections; tools/async_to_sync.py writes the sync twin. Each
statement runs inside its watch (`_plans.Watch`): a generated module's own `load()` only
translates errors; a service's watch also times, logs, traces and opens encrypted values.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from coderunner_sql.codegen._plans import Plan, Watch, converter, one, row_factory
from coderunner_sql.errors import ValidationError, scrub, translate

__all__ = ["SOURCE", "method", "raw", "stream"]

SOURCE = "__coderunner_query__"
"""The attribute of a generated method holding its (plan, SQL)."""

_stream_ids = itertools.count(1)


def method(plan: Plan, sql: str, watch: Watch) -> Callable[..., Any]:
    """The function that runs `plan`'s query under `watch`, rows materialised before it
    returns."""
    rows = row_factory(plan, watch)
    name, suffix, prepare = plan.name, plan.suffix, watch.prepare
    convert = converter(plan)
    script = sql.encode()  # bytes: psycopg sends it as it is, no placeholders parsed
    key = object()  # this method's cursor among a pooled connection's (see below)

    def run(conn: psycopg.Connection[Any], *many: Any, **given: Any) -> Any:
        with watch(name, sql) as st:
            if suffix == "#":
                conn.execute(script)
                return None
            # A pooled connection keeps one cursor per method: psycopg keeps a cursor's
            # adapters while its query stays the same, which a new cursor would look up
            # again on every call. Not closed by a `with`: a client-side cursor holds
            # nothing on the server.
            kept: dict[object, Any] | None = getattr(conn, "query_cursors", None)
            cur = None if kept is None else kept.get(key)
            if cur is None:
                cur = conn.cursor(row_factory=rows) if rows is not None else conn.cursor()
                if kept is not None:
                    kept[key] = cur
            if suffix == "*!":
                cur.executemany(sql, [convert(p) for p in many[0]])
                st.rows = cur.rowcount
                return cur.rowcount
            cur.execute(sql, convert(given), prepare=prepare)
            st.rows = cur.rowcount
            if suffix == "!":
                return cur.rowcount
            if suffix == "":
                return cur.fetchall()
            row = cur.fetchone()
        return one(plan, row)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = f"Run the query {name}."
    setattr(run, SOURCE, (plan, sql))
    return run


def stream(
    conn: psycopg.Connection[Any],
    plan: Plan,
    sql: str,
    given: Mapping[str, Any],
    size: int,
    watch: Watch,
    call: Any = None,
) -> Generator[Any, None, None]:
    """Rows of a listing through a server-side cursor, `size` at a time; `call`: the
    service call whose span records them (each fetch may run in another context)."""
    rows = row_factory(plan, watch)
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
            cursor_name = f"stream_{plan.name}_{next(_stream_ids)}"
            cursor = (
                conn.cursor(cursor_name, row_factory=rows) if rows else conn.cursor(cursor_name)
            )
            with cursor as cur:
                with watch(plan.name, sql, call):
                    cur.execute(sql, converter(plan)(given))
                while True:
                    with watch(plan.name, sql, call) as st:
                        batch = cur.fetchmany(size)
                        st.rows = len(batch)
                    if not batch:
                        break
                    yield from batch
    except psycopg.Error as exc:
        raise translate(exc, operation=plan.name) from None


def raw(
    conn: psycopg.Connection[Any],
    sql: str,
    params: Mapping[str, Any] | Any,
    watch: Watch,
    comment: str = "",
) -> list[dict[str, Any]]:
    """Run caller-written SQL with bound parameters; rows as dicts (none for writes)."""
    # Its SQL stays out of telemetry: the caller's text may hold literals.
    with watch("query") as st, conn.cursor(row_factory=dict_row) as cur:
        refused = None
        try:
            cur.execute(comment + sql, params)
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
