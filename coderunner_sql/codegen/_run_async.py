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

    async def run(conn: psycopg.AsyncConnection[Any], *many: Any, **given: Any) -> Any:
        try:
            if plan.suffix == "#":
                await conn.execute(sql.encode())
                return None
            cursor = conn.cursor(row_factory=rows) if rows is not None else conn.cursor()
            async with cursor as cur:
                if plan.suffix == "*!":
                    await cur.executemany(sql, [params(plan, p) for p in many[0]])
                    return cur.rowcount
                await cur.execute(sql, params(plan, given))
                if plan.suffix == "!":
                    return cur.rowcount
                if plan.suffix == "":
                    return await cur.fetchall()
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise translate(exc, operation=op, write=plan.suffix not in ("", "^", "$")) from None
        return one(plan, row)

    run.__name__ = plan.name
    return run
