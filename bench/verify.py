"""Check every contender's answers once before timing it: a contender that does less work
(a wrong page, a missing join, a count that is not exact) would look fast for no good reason.

Results are read by duck typing (dataclasses, attrs classes, mappings, ORM instances), so
the library's own models are checked without adapters. Expected values come from plain SQL.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator, Mapping, Sized
from typing import Any

import psycopg

from bench.models import STATUSES
from bench.workload import BY_STATUS, PAGE_SIZE, Operation, Workload

Call = Callable[..., Any]
"""Runs one contender method by name with arguments and returns its result."""


def attributes(obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if hasattr(obj, "__attrs_attrs__"):
        return {a.name: getattr(obj, a.name) for a in obj.__attrs_attrs__}
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "_asdict"):
        return dict(obj._asdict())
    if hasattr(obj, "__dict__"):
        return {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    return {}


def leaves(obj: Any, depth: int = 3) -> Iterator[Any]:
    """Every scalar reachable through attributes, `depth` levels down."""
    for value in attributes(obj).values():
        if isinstance(value, str | int | float | uuid.UUID) or value is None:
            yield value
        elif depth > 1:
            yield from leaves(value, depth - 1)


STATS = """
SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM projects), count(*),
       count(*) FILTER (WHERE status = %s), count(*) FILTER (WHERE status = %s),
       count(*) FILTER (WHERE status = %s), count(*) FILTER (WHERE status = %s)
FROM deployments
"""


def _one(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def check(
    call: Call, operations: list[Operation], workload: Workload, name: str, url: str
) -> dict[str, str]:
    """What is wrong with contender `name`'s answers, by method (empty when all are right)."""
    problems: dict[str, str] = {}
    checked: set[str] = set()
    with psycopg.connect(url, autocommit=True) as conn:
        for op in operations:
            if op.method in checked:
                continue
            checked.add(op.method)
            try:
                problem = _check(call, op, workload, name, conn)
            except Exception as exc:
                problem = f"raised {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
            if problem:
                problems[op.method] = problem
    return problems


def _check(
    call: Call, op: Operation, workload: Workload, name: str, conn: psycopg.Connection[Any]
) -> str | None:
    args = workload.calls(op, name, 0)[0]
    before = _one(conn, "SELECT count(*) FROM deployments")
    result = call(op.method, *args)
    match op.method:
        case "get_user_by_id":
            email = _one(conn, "SELECT email FROM users WHERE id = %s", args[0])
            got = attributes(result)
            if got.get("id") != args[0] or got.get("email") != email:
                return f"expected user {args[0]} <{email}>, got {result!r:.200}"
        case "create_user":
            if attributes(result).get("email") != args[0]:
                return f"expected the new user <{args[0]}>, got {result!r:.200}"
            if not _one(conn, "SELECT count(*) FROM users WHERE email = %s", args[0]):
                return "the user is not in the table"
        case "get_deployment_with_details":
            expected = _one(
                conn,
                "SELECT d.id, p.name, u.email FROM deployments d JOIN projects p"
                " ON p.id = d.project_id JOIN users u ON u.id = p.user_id WHERE d.id = %s",
                args[0],
            )
            missing = set(expected) - set(leaves(result))
            if missing:
                return f"the result lacks {sorted(map(str, missing))}: {result!r:.200}"
        case "get_deployments_by_status":
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM deployments WHERE status = %s"
                    " ORDER BY created_at DESC, id DESC LIMIT %s",
                    (BY_STATUS, PAGE_SIZE),
                )
            ]
            total = _one(conn, "SELECT count(*) FROM deployments WHERE status = %s", BY_STATUS)
            page = attributes(result)
            got_ids = [attributes(item).get("id") for item in page.get("items", [])]
            if got_ids != ids:
                return f"page is not the newest {PAGE_SIZE} {BY_STATUS} rows in order"
            if page.get("total") != total:
                return f"total is {page.get('total')!r}, expected {total}"
        case "create_deployments":
            count = len(result) if isinstance(result, Sized) else result
            if count != len(args[0]):
                return f"expected {len(args[0])} created rows back, got {count!r}"
            if _one(conn, "SELECT count(*) FROM deployments") - before != len(args[0]):
                return "the table did not grow by the number of rows"
        case "create_deployment":
            if attributes(result).get("project_id") != args[0]:
                return f"expected a deployment of project {args[0]}, got {result!r:.200}"
        case "get_system_stats":
            counts = _one(conn, STATS, *STATUSES)
            missing = set(counts) - set(leaves(result))
            if missing:
                return f"counts {sorted(missing)} missing from {result!r:.300}"
    return None
