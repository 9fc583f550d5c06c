"""Hand-written SQL for the raw-driver contenders (psycopg sync and async, asyncpg).

Written in psycopg's `%(name)s` style; `dollar()` turns a statement into asyncpg's `$n`
style. Column lists are spelled out, in the field order of `bench.models`, because the
asyncpg contender builds the dataclasses positionally.

`DEPLOYMENTS_BY_STATUS` is one round trip that still returns the total when the page is
empty: the total is read from the counters in row_counts (as the library reads it) and the
page joins it laterally.
"""

from __future__ import annotations

import re

import aiosql

from coderunner_sql.resources import queries_dir

GET_USER = """
SELECT id, email, password_hash, plan_type, created_at, updated_at
FROM users
WHERE id = %(id)s
"""

CREATE_USER = """
INSERT INTO users (email, password_hash, plan_type)
VALUES (%(email)s, %(password_hash)s, %(plan_type)s)
RETURNING id, email, password_hash, plan_type, created_at, updated_at
"""

GET_DEPLOYMENT_WITH_DETAILS = """
SELECT d.id, d.project_id, d.app_sandbox_id, d.public_url, d.db_sandbox_id,
       d.db_connection_info, d.status, d.runtime_type, d.created_at, d.updated_at,
       p.id, p.user_id, p.name, p.description, p.created_at, p.updated_at,
       u.id, u.email, u.password_hash, u.plan_type, u.created_at, u.updated_at
FROM deployments AS d
JOIN projects AS p ON p.id = d.project_id
JOIN users AS u ON u.id = p.user_id
WHERE d.id = %(id)s
"""

DEPLOYMENTS_BY_STATUS = """
SELECT t.total,
       d.id, d.project_id, d.app_sandbox_id, d.public_url, d.db_sandbox_id,
       d.db_connection_info, d.status, d.runtime_type, d.created_at, d.updated_at
FROM (SELECT coalesce(sum(n), 0)::bigint AS total
      FROM row_counts
      WHERE counter = 'deployments.' || %(status)s::deployment_status::text) AS t
LEFT JOIN LATERAL (
    SELECT id, project_id, app_sandbox_id, public_url, db_sandbox_id,
           db_connection_info, status, runtime_type, created_at, updated_at
    FROM deployments
    WHERE status = %(status)s
    ORDER BY created_at DESC, id DESC
    LIMIT %(limit)s OFFSET %(offset)s
) AS d ON true
ORDER BY d.created_at DESC, d.id DESC
"""

BULK_INSERT_COLUMNS = ("project_id", "runtime_type", "status", "public_url", "app_sandbox_id")

# %(name)b: psycopg sends the arrays in binary, which skips quoting every element in
# Python (several ms for 1,000 rows); the library's bulk insert does the same.
CREATE_DEPLOYMENTS = """
INSERT INTO deployments (project_id, runtime_type, status, public_url, app_sandbox_id)
SELECT * FROM unnest(
    %(project_id)b::uuid[],
    %(runtime_type)b::text[],
    %(status)b::text[]::deployment_status[],
    %(public_url)b::text[],
    %(app_sandbox_id)b::text[]
)
RETURNING id, project_id, app_sandbox_id, public_url, db_sandbox_id,
          db_connection_info, status, runtime_type, created_at, updated_at
"""

CREATE_DEPLOYMENT = """
INSERT INTO deployments (project_id, runtime_type)
VALUES (%(project_id)s, %(runtime_type)s)
RETURNING id, project_id, app_sandbox_id, public_url, db_sandbox_id,
          db_connection_info, status, runtime_type, created_at, updated_at
"""

# The library keeps exact counts in row_counts (trigger-kept, sharded counter rows; see
# migrations/*_row_counts.sql) and reads them instead of count(*). Every contender runs the
# library's own statistics query (queries/stats.sql, get_system_stats), so the server does
# the same work for all of them and what differs is the client.
SYSTEM_STATS = aiosql.from_path(queries_dir(), "psycopg").get_system_stats.sql

_NAMED = re.compile(r"%\((\w+)\)[sbt]")


def dollar(statement: str) -> str:
    """`%(name)s` (or `%(name)b`) placeholders as `$1`, `$2`… numbered by first appearance."""
    order: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${order.setdefault(match.group(1), len(order) + 1)}"

    return _NAMED.sub(number, statement)


def names(statement: str) -> tuple[str, ...]:
    """The parameter names of `statement`, in `dollar()`'s numbering order."""
    return tuple(dict.fromkeys(_NAMED.findall(statement)))
