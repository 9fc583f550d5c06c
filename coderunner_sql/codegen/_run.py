# Generated from coderunner_sql/codegen/_run_async.py by tools/async_to_sync.py: do not edit.
# Change the async source and run `python tools/async_to_sync.py`.
"""How a generated module's query runs on a psycopg connection, rows materialised before it
returns. Written once, for async connections; tools/async_to_sync.py writes the sync twin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from coderunner_sql.codegen._plans import Plan, Rows, one, params
from coderunner_sql.errors import translate

__all__ = ["method"]


def method(plan: Plan, sql: str) -> Callable[..., Any]:
    """The function that runs `plan`'s query, rows materialised before it returns."""
    rows = Rows(plan.record, plan.plain) if plan.record is not None else None
    op = f"query {plan.name}"

    def run(conn: psycopg.Connection[Any], *many: Any, **given: Any) -> Any:
        try:
            if plan.suffix == "#":
                conn.execute(sql.encode())
                return None
            cursor = conn.cursor(row_factory=rows) if rows is not None else conn.cursor()
            with cursor as cur:
                if plan.suffix == "*!":
                    cur.executemany(sql, [params(plan, p) for p in many[0]])
                    return cur.rowcount
                cur.execute(sql, params(plan, given))
                if plan.suffix == "!":
                    return cur.rowcount
                if plan.suffix == "":
                    return cur.fetchall()
                row = cur.fetchone()
        except psycopg.Error as exc:
            raise translate(exc, operation=op, write=plan.suffix not in ("", "^", "$")) from None
        return one(plan, row)

    run.__name__ = plan.name
    return run
