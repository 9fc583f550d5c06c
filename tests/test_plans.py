"""Every named query in queries/ is planned without a sequential scan of a big table.

One database per module is seeded with tens of thousands of rows (INSERT … SELECT
generate_series, a couple of seconds) and ANALYZEd; then each query is EXPLAINed, never
run, with real ids, cursors and values. A plan fails when any node, sub-plans included,
reads users, projects or deployments with a Seq Scan: at a million rows that is the
difference between a millisecond and a second. row_counts (a few dozen rows) and the
system catalogs may be scanned.

Each query is planned as the services run it:

* `owner`: the connecting role, which owns the tables, so row-level security does not
  apply (migrations, the test suite, the benchmark). Both the custom plan for the given
  values and, on PostgreSQL 16+, the generic plan a prepared statement may switch to.
* `app` and `scope`: as a member of `coderunner_app` (what an application should log in
  as), platform-wide and inside `for_user()`'s scope. Row-level security adds its policy
  to every query there; the plans that it turns into sequential scans are listed in
  `RLS_SEQ_SCANS` (expected failures, strict: fixing one makes its test fail until it is
  taken off the list).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import aiosql
import psycopg
import pytest
from psycopg.types.json import Jsonb

from coderunner_sql import DatabaseConfig
from coderunner_sql.resources import queries_dir
from tests.plugins.postgres import create_database, drop_database

LARGE_TABLES = frozenset({"users", "projects", "deployments"})

QUERIES = aiosql.from_path(queries_dir(), "psycopg")

# Queries that cannot be EXPLAINed, with why. Everything else in queries/ is checked.
NOT_EXPLAINABLE = {
    # DDL (`#` script): EXPLAIN takes only DML; it touches one bookkeeping table.
    "internal.create_migration_checksums_table",
    "internal.create_migration_repairs_table",
    "internal.create_repeatables_table",
    "internal.grant_bookkeeping_reads",
}

SEED = """
INSERT INTO users (email, password_hash, plan_type, created_at)
SELECT 'user' || g || '@example.com', 'argon2$hash-' || g,
       (ARRAY['free', 'personal', 'team']::plan_type[])[1 + g % 3],
       now() - random() * interval '365 days'
FROM generate_series(1, 5000) AS g;

INSERT INTO projects (user_id, name, description, created_at)
SELECT u.id, 'project-' || g, CASE WHEN g % 2 = 0 THEN 'an app' END,
       now() - random() * interval '365 days'
FROM (SELECT id, row_number() OVER () AS n FROM users) AS u,
     generate_series(u.n * 3 - 2, u.n * 3) AS g;

INSERT INTO deployments (project_id, runtime_type, status, public_url, db_connection_info,
                         created_at)
SELECT p.id, 'python3.12',
       (ARRAY['PENDING', 'RUNNING', 'RUNNING', 'STOPPED', 'STOPPED', 'STOPPED',
              'FAILED']::deployment_status[])[1 + g % 7],
       'https://app-' || g || '.example.com',
       CASE WHEN g % 3 = 0 THEN jsonb_build_object('host', 'db-' || g, 'port', 5432) END,
       now() - random() * interval '365 days'
FROM (SELECT id, row_number() OVER () AS n FROM projects) AS p,
     generate_series(p.n * 3 - 2, p.n * 3) AS g;
"""

# Where a query takes a parameter in another type than its name usually means.
OVERRIDES: dict[str, dict[str, Any]] = {
    # set_config takes text: the service passes the user id as a string.
    "set_user_scope": {"user_id": str(uuid.UUID(int=1))},
}

_TARGET = re.compile(r"\b(?:FROM|UPDATE|INTO)\s+(users|projects|deployments)\b", re.IGNORECASE)
_DATA = re.compile(r"\b(users|projects|deployments|row_counts)\b")
_NAMED = re.compile(r"%\((\w+)\)s")


class Seeded:
    """Real values from the seeded database, handed out by parameter name."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        def one(query: str, *args: Any) -> Any:
            row = conn.execute(query, args).fetchone()
            assert row is not None
            return row

        # The user with the most deployments, one of their projects, and a row some way
        # down each newest-first listing (its id and created_at make a keyset cursor).
        (self.user_id,) = one(
            "SELECT p.user_id FROM projects AS p JOIN deployments AS d ON d.project_id = p.id"
            " GROUP BY p.user_id ORDER BY count(*) DESC LIMIT 1"
        )
        (self.project_id,) = one("SELECT id FROM projects WHERE user_id = %s LIMIT 1", self.user_id)
        (self.email,) = one("SELECT email FROM users WHERE id = %s", self.user_id)
        self.rows = {
            table: one(
                f"SELECT id, created_at FROM {table}"  # noqa: S608 - fixed table names
                " ORDER BY created_at DESC, id DESC OFFSET 100 LIMIT 1"
            )
            for table in sorted(LARGE_TABLES)
        }

    def parameters(self, sql: str) -> dict[str, Callable[[], Any]]:
        """Parameter name -> its value for a query whose SQL is `sql`."""
        found = _TARGET.search(sql)
        row_id, row_created = self.rows[found.group(1) if found else "deployments"]
        flags = [
            "email",
            "password_hash",
            "plan_type",
            "name",
            "description",
            "app_sandbox_id",
            "public_url",
            "db_sandbox_id",
            "db_connection_info",
            "status",
            "runtime_type",
        ]
        return {
            # Keys and cursors: a real row of the table the query reads or writes.
            "id": lambda: row_id,
            "after_created_at": lambda: row_created,
            "after_id": lambda: row_id,
            "user_id": lambda: self.user_id,
            "project_id": lambda: self.project_id,
            "email": lambda: self.email,
            # Paging, as the services send it.
            "limit": lambda: 50,
            "offset": lambda: 0,
            "batch_size": lambda: 500,
            # Column values.
            "status": lambda: "RUNNING",
            "expected": lambda: "PENDING",
            "password_hash": lambda: "argon2$new",
            "plan_type": lambda: "team",
            "name": lambda: "renamed",
            "description": lambda: "a description",
            "runtime_type": lambda: "node22",
            "app_sandbox_id": lambda: "sbx-1",
            "public_url": lambda: "https://new.example.com",
            "db_sandbox_id": lambda: "dbx-1",
            "db_connection_info": lambda: Jsonb({"host": "db"}),
            "kid": lambda: "k2",
            **{f"set_{flag}": (lambda: True) for flag in flags},
            # Bulk writes: one array per column.
            "project_ids": lambda: [self.project_id] * 3,
            "runtime_types": lambda: ["node22"] * 3,
            "app_sandbox_ids": lambda: [None] * 3,
            "public_urls": lambda: [None] * 3,
            "db_sandbox_ids": lambda: [None] * 3,
            "db_connection_infos": lambda: [None] * 3,
            "statuses": lambda: ["PENDING"] * 3,
            "ids": lambda: [row_id],
            "infos": lambda: [Jsonb({"host": "db"})],
            # Bookkeeping and session settings.
            "lock_key": lambda: 1,
            "migration_id": lambda: "20261125100000_initial_schema",
            "sha256": lambda: "0" * 64,
            "recorded_by": lambda: "tests",
            "timeout": lambda: "5000",
            "is_local": lambda: True,
            "oids": lambda: [23, 25],
            "names": lambda: ["nextval", "lower"],
            "old_sha256": lambda: "0" * 64,
            "new_sha256": lambda: "1" * 64,
            "operator": lambda: "tests",
            "template": lambda: None,
        }


def _query(name: str) -> Any:
    """A query by its name, `internal.get_types` for one in a subfolder (a namespace)."""
    found: Any = QUERIES
    for part in name.split("."):
        found = getattr(found, part)
    return found


def _query_names() -> list[str]:
    # aiosql adds a `<name>_cursor` twin of every listing: the same SQL.
    names = [n for n in QUERIES.available_queries if not n.endswith("_cursor")]
    return [n for n in names if n not in NOT_EXPLAINABLE]


def _reads_data(sql: str) -> bool:
    return _DATA.search(sql) is not None


def _contexts(name: str, sql: str) -> list[str]:
    """The roles a query runs as: bookkeeping only as the owner; `*_in_scope` queries only
    in a user's scope; queries of the platform-wide counters never in one."""
    if name.endswith("_in_scope"):
        return ["scope"]
    if not _reads_data(sql):
        return ["owner"]
    if "row_counts" in sql:
        return ["owner", "app"]
    return ["owner", "app", "scope"]


# Plans that row-level security (migrations/*_row_level_security.sql) turns into sequential
# scans for the application role, as expected failures. None today: coderunner_app's policy
# is `true`, which the planner drops, and coderunner_tenant's compare indexed columns with a
# value computed once per statement. What remains of row-level security is that quals with
# functions that are not leakproof (enum equality, lower()) cannot fix an index's leading
# column for ordering, which is why listings by status ORDER BY status first.
RLS_SEQ_SCANS: set[tuple[str, str]] = set()


def _cases() -> Iterator[Any]:
    for name in _query_names():
        for context in _contexts(name, _query(name).sql):
            marks = []
            if (context, name) in RLS_SEQ_SCANS:
                marks.append(
                    pytest.mark.xfail(
                        reason="row-level security forces a sequential scan", strict=True
                    )
                )
            yield pytest.param(context, name, id=f"{context}-{name}", marks=marks)


@pytest.fixture(scope="module")
def seeded_db(
    pg_admin_url: str, pg_admin_config: DatabaseConfig, template_db: str
) -> Iterator[DatabaseConfig]:
    """A migrated database of this module's own with 5,000 users, 15,000 projects and
    45,000 deployments, ANALYZEd."""
    name = create_database(pg_admin_url, template=template_db, prefix="crsql_plans")
    config = pg_admin_config.replace(dbname=name)
    try:
        with psycopg.connect(**config.connect_kwargs()) as conn:
            conn.execute(SEED)
        with psycopg.connect(**config.connect_kwargs(), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE users, projects, deployments, row_counts")
        yield config
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture(scope="module")
def conn(seeded_db: DatabaseConfig) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(**seeded_db.connect_kwargs(), autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def seeded(conn: psycopg.Connection[Any]) -> Seeded:
    return Seeded(conn)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _seq_scans(plan: dict[str, Any]) -> list[str]:
    return sorted(
        node["Relation Name"]
        for node in _nodes(plan)
        if node["Node Type"] == "Seq Scan" and node.get("Relation Name") in LARGE_TABLES
    )


def _statement(name: str, sql: str) -> str:
    # Streamed queries run as a server-side cursor, which PostgreSQL plans for the first
    # rows (cursor_tuple_fraction), so explain them as one.
    return f"DECLARE plan_check CURSOR FOR {sql}" if name.startswith("stream_") else sql


def _explain(
    conn: psycopg.Connection[Any],
    statement: str,
    params: dict[str, Any] | None,
    context: str,
    user_id: uuid.UUID,
    options: str = "",
) -> dict[str, Any]:
    with conn.transaction():
        if context != "owner":
            conn.execute("SET LOCAL ROLE coderunner_app")
        if context == "scope":  # as for_user() enters its scope (role and user)
            QUERIES.set_user_scope(conn, user_id=str(user_id))
        row = conn.execute(f"EXPLAIN (FORMAT JSON{options}) {statement}", params).fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def _describe(plan: dict[str, Any]) -> str:
    return ", ".join(
        f"{n['Node Type']} on {n['Relation Name']}" for n in _nodes(plan) if "Relation Name" in n
    )


@pytest.mark.parametrize(("context", "name"), list(_cases()))
def test_plan_reads_no_big_table_sequentially(
    conn: psycopg.Connection[Any], seeded: Seeded, context: str, name: str
) -> None:
    if context != "owner":
        row = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'coderunner_app'").fetchone()
        if row is None:
            pytest.skip("the coderunner_app role does not exist on this server")
    query = _query(name)
    known = seeded.parameters(query.sql)
    missing = [p for p in query.parameters if p not in known]
    assert not missing, f"{name}: add a value for parameter(s) {missing} to Seeded.parameters"
    params = {p: known[p]() for p in query.parameters}
    params.update(OVERRIDES.get(name, {}))

    plan = _explain(conn, _statement(name, query.sql), params, context, seeded.user_id)
    assert not _seq_scans(plan), f"{name} ({context}): {_describe(plan)}"

    if context == "owner" and conn.info.server_version >= 160000 and query.parameters:
        # The plan a prepared statement may settle on after five runs: no values known.
        order = list(dict.fromkeys(_NAMED.findall(query.sql)))
        generic = _NAMED.sub(lambda m: f"${order.index(m.group(1)) + 1}", query.sql)
        generic = generic.replace("%%", "%")
        plan = _explain(
            conn, _statement(name, generic), None, context, seeded.user_id, ", GENERIC_PLAN"
        )
        assert not _seq_scans(plan), f"{name} (generic plan): {_describe(plan)}"


def test_every_query_is_checked() -> None:
    """A query left out of the checks is left out on purpose (NOT_EXPLAINABLE, with why)."""
    every = {n for n in QUERIES.available_queries if not n.endswith("_cursor")}
    assert every >= NOT_EXPLAINABLE, "NOT_EXPLAINABLE names a query that no longer exists"
    assert set(_query_names()) | NOT_EXPLAINABLE == every
