"""The migrated schema's rules hold in SQL itself, and the service reports them by name."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg

from coderunner_sql import (
    AlreadyExistsError,
    DatabaseConfig,
    DeploymentStatus,
    NotFoundError,
    PlanType,
    ValidationError,
)
from coderunner_sql.errors import _UNIQUE_FIELDS, CHECK_MESSAGES
from tests.helpers import assert_library_error, make_project, make_user
from tests.plugins.postgres import create_database, drop_database

# Every lookup the data API makes, and the index that serves it.
LOOKUP_INDEXES = {
    "user by id": ("SELECT * FROM users WHERE id = %(id)s", {"users_pkey"}),
    "user by email": (
        "SELECT * FROM users WHERE coderunner_fold(email) = coderunner_fold('A@b.co')",
        {"users_email_fold_key"},
    ),
    "user by non-ASCII email": (
        "SELECT * FROM users WHERE coderunner_fold(email) = coderunner_fold('ÉLODIE@b.co')",
        {"users_email_fold_key"},
    ),
    "users page": (
        "SELECT * FROM users ORDER BY created_at DESC, id DESC LIMIT 50",
        {"users_created_at_idx"},
    ),
    "users page after": (
        "SELECT * FROM users WHERE (created_at, id) < (now(), %(id)s) "
        "ORDER BY created_at DESC, id DESC LIMIT 50",
        {"users_created_at_idx"},
    ),
    "project by id": ("SELECT * FROM projects WHERE id = %(id)s", {"projects_pkey"}),
    "projects of a user": (
        "SELECT * FROM projects WHERE user_id = %(id)s ORDER BY created_at DESC, id DESC LIMIT 50",
        {"projects_user_created_idx"},
    ),
    "projects of a user after": (
        "SELECT * FROM projects WHERE user_id = %(id)s AND (created_at, id) < (now(), %(id)s) "
        "ORDER BY created_at DESC, id DESC LIMIT 50",
        {"projects_user_created_idx"},
    ),
    "project count of a user": (
        "SELECT count(*) FROM projects WHERE user_id = %(id)s",
        {"projects_user_created_idx", "projects_user_name_fold_key"},
    ),
    "project by user and name": (
        "SELECT * FROM projects WHERE user_id = %(id)s "
        "AND coderunner_fold(name) = coderunner_fold('App')",
        {"projects_user_name_fold_key"},
    ),
    "deployment by id": ("SELECT * FROM deployments WHERE id = %(id)s", {"deployments_pkey"}),
    "deployments of a project": (
        "SELECT * FROM deployments WHERE project_id = %(id)s "
        "ORDER BY created_at DESC, id DESC LIMIT 50",
        {"deployments_project_created_idx"},
    ),
    "deployment count of a project": (
        "SELECT count(*) FROM deployments WHERE project_id = %(id)s",
        {"deployments_project_created_idx"},
    ),
    "deployments by status": (
        "SELECT * FROM deployments WHERE status = 'RUNNING' "
        "ORDER BY created_at DESC, id DESC LIMIT 50",
        {"deployments_status_created_idx"},
    ),
    "deployments by status after": (
        "SELECT * FROM deployments WHERE status = 'RUNNING' AND (created_at, id) < (now(), %(id)s) "
        "ORDER BY created_at DESC, id DESC LIMIT 50",
        {"deployments_status_created_idx"},
    ),
}
EXPECTED_INDEXES = set().union(*(names for _, names in LOOKUP_INDEXES.values()))


@pytest.fixture(scope="module")
def schema_db(
    pg_admin_url: str, pg_admin_config: DatabaseConfig, template_db: str
) -> Iterator[DatabaseConfig]:
    """One migrated database for this module's SQL-level tests (each rolls its work back)."""
    name = create_database(pg_admin_url, template=template_db)
    try:
        yield pg_admin_config.replace(dbname=name)
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture
def conn(schema_db: DatabaseConfig) -> Iterator[psycopg.Connection[Any]]:
    """A connection in a transaction that is rolled back when the test ends."""
    with psycopg.connect(schema_db.conninfo()) as connection:
        try:
            yield connection
        finally:
            connection.rollback()


def one(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def insert_user(conn: psycopg.Connection[Any], email: str | None = None, **extra: Any) -> Any:
    fields = {"email": email or f"u-{uuid.uuid4().hex[:8]}@example.com", "password_hash": "h"}
    fields.update(extra)
    columns = ", ".join(fields)
    values = ", ".join(f"%({key})s" for key in fields)
    query = f"INSERT INTO users ({columns}) VALUES ({values}) RETURNING id"  # noqa: S608
    return one(conn, query, fields)


def insert_project(conn: psycopg.Connection[Any], user_id: Any, name: str = "app") -> Any:
    return one(
        conn,
        "INSERT INTO projects (user_id, name) VALUES (%s, %s) RETURNING id",
        (user_id, name),
    )


def insert_deployment(conn: psycopg.Connection[Any], project_id: Any, **extra: Any) -> Any:
    fields = {"project_id": project_id, "runtime_type": "python", **extra}
    columns = ", ".join(fields)
    values = ", ".join(f"%({key})s" for key in fields)
    query = f"INSERT INTO deployments ({columns}) VALUES ({values}) RETURNING id"  # noqa: S608
    return one(conn, query, fields)


def rejected(
    conn: psycopg.Connection[Any], error: type[psycopg.Error], query: str, params: Any = None
) -> psycopg.Error:
    """Run `query`, which must fail with `error`; returns the error."""
    with pytest.raises(error) as info, conn.transaction():  # a savepoint: the test goes on
        conn.execute(query, params)
    return info.value


# -- users ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    ["a@b.co", "first.last+tag@sub.example.com", "o'brien@example.ie", "x@y.z" + "a" * 240],
)
def test_well_formed_emails_are_stored(conn: psycopg.Connection[Any], email: str) -> None:
    user_id = insert_user(conn, email)
    assert one(conn, "SELECT email FROM users WHERE id = %s", (user_id,)) == email


@pytest.mark.parametrize(
    "email",
    [
        "",
        "plain",
        "no-domain@",
        "@no-local.com",
        "no-dot@localhost",
        "two@@example.com",
        "a@b@example.com",
        "with space@example.com",
        "tab\t@example.com",
        "trailing@example.com ",
        "x@y.z" + "a" * 250,  # 255 characters
    ],
)
def test_malformed_emails_violate_users_email_shape(
    conn: psycopg.Connection[Any], email: str
) -> None:
    error = rejected(
        conn,
        pg.CheckViolation,
        "INSERT INTO users (email, password_hash) VALUES (%s, 'h')",
        (email,),
    )
    assert error.diag.constraint_name == "users_email_shape"


def test_email_is_unique_ignoring_case(conn: psycopg.Connection[Any]) -> None:
    insert_user(conn, "Ada@Example.com")
    error = rejected(
        conn,
        pg.UniqueViolation,
        "INSERT INTO users (email, password_hash) VALUES ('ada@example.COM', 'h')",
    )
    assert error.diag.constraint_name == "users_email_fold_key"
    other = insert_user(conn, "bob@example.com")
    error = rejected(
        conn,
        pg.UniqueViolation,
        "UPDATE users SET email = 'ADA@example.com' WHERE id = %s",
        (other,),
    )
    assert error.diag.constraint_name == "users_email_fold_key"
    assert one(conn, "SELECT count(*) FROM users") == 2


# Raw SQL writers meet the same rule as the service: it is the index's, not the library's.
@pytest.mark.parametrize(
    ("taken", "again"),
    [
        ("ÉLODIE@example.com", "élodie@example.com"),
        ("ΑΘΗΝΑ@example.com", "αθηνα@example.com"),
        ("ИВАН@example.com", "иван@example.com"),
        ("\uff21\uff22\uff23@example.com", "\uff41\uff42\uff43@example.com"),
        ("STRASSE@example.com", "straße@example.com"),
    ],
)
def test_email_is_unique_ignoring_non_ascii_case(
    conn: psycopg.Connection[Any], taken: str, again: str
) -> None:
    insert_user(conn, taken)
    error = rejected(
        conn,
        pg.UniqueViolation,
        "INSERT INTO users (email, password_hash) VALUES (%s, 'h')",
        (again,),
    )
    assert error.diag.constraint_name == "users_email_fold_key"
    other = insert_user(conn)
    error = rejected(
        conn, pg.UniqueViolation, "UPDATE users SET email = %s WHERE id = %s", (again, other)
    )
    assert error.diag.constraint_name == "users_email_fold_key"


def test_fold_is_the_same_whatever_the_session_locale(conn: psycopg.Connection[Any]) -> None:
    # lower() follows the database's LC_CTYPE; coderunner_fold() calls nothing that does.
    assert one(conn, "SELECT coderunner_fold('ÉLODIE ΑΘΗΝΑ ИВАН \uff21\uff22\uff23 STRASSE')") == (
        "élodie αθηνα иван abc strasse"
    )
    assert one(conn, "SELECT coderunner_fold(NULL)") is None
    assert one(conn, "SELECT coderunner_fold('')") == ""
    volatility = one(
        conn, "SELECT provolatile FROM pg_proc WHERE oid = 'coderunner_fold(text)'::regprocedure"
    )
    assert volatility == "i"


def test_plan_type_defaults_to_free(conn: psycopg.Connection[Any]) -> None:
    user_id = insert_user(conn)
    assert one(conn, "SELECT plan_type::text FROM users WHERE id = %s", (user_id,)) == "free"
    team = insert_user(conn, plan_type="team")
    assert one(conn, "SELECT plan_type::text FROM users WHERE id = %s", (team,)) == "team"
    rejected(
        conn,
        pg.InvalidTextRepresentation,
        "INSERT INTO users (email, password_hash, plan_type) VALUES ('g@b.co', 'h', 'gold')",
    )


@pytest.mark.parametrize("password_hash", ["", "x" * 1025])
def test_password_hash_length(conn: psycopg.Connection[Any], password_hash: str) -> None:
    error = rejected(
        conn,
        pg.CheckViolation,
        "INSERT INTO users (email, password_hash) VALUES ('a@b.co', %s)",
        (password_hash,),
    )
    assert error.diag.constraint_name == "users_password_hash_length"
    insert_user(conn, password_hash="x" * 1024)


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("users", "email"),
        ("users", "password_hash"),
        ("users", "plan_type"),
        ("projects", "user_id"),
        ("projects", "name"),
        ("deployments", "project_id"),
        ("deployments", "runtime_type"),
        ("deployments", "status"),
    ],
)
def test_required_columns_are_not_null(
    conn: psycopg.Connection[Any], table: str, column: str
) -> None:
    nullable = one(
        conn,
        "SELECT is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s AND column_name = %s",
        (table, column),
    )
    assert nullable == "NO"


def test_enum_labels_match_the_python_enums(conn: psycopg.Connection[Any]) -> None:
    def labels(type_name: str) -> list[str]:
        rows = conn.execute(
            "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
            "WHERE t.typname = %s ORDER BY e.enumsortorder",
            (type_name,),
        ).fetchall()
        return [label for (label,) in rows]

    assert labels("plan_type") == [member.value for member in PlanType]
    assert labels("deployment_status") == [member.value for member in DeploymentStatus]


# -- projects -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "x" * 100, "My App", "日本語のアプリ"])
def test_project_names_of_1_to_100_characters(conn: psycopg.Connection[Any], name: str) -> None:
    project_id = insert_project(conn, insert_user(conn), name)
    assert one(conn, "SELECT name FROM projects WHERE id = %s", (project_id,)) == name


@pytest.mark.parametrize("name", ["", "x" * 101, "é" * 101])
def test_project_name_length_is_checked(conn: psycopg.Connection[Any], name: str) -> None:
    user_id = insert_user(conn)
    error = rejected(
        conn,
        pg.CheckViolation,
        "INSERT INTO projects (user_id, name) VALUES (%s, %s)",
        (user_id, name),
    )
    assert error.diag.constraint_name == "projects_name_length"


def test_project_description_length(conn: psycopg.Connection[Any]) -> None:
    user_id = insert_user(conn)
    query = "INSERT INTO projects (user_id, name, description) VALUES (%s, %s, %s)"
    conn.execute(query, (user_id, "ok", "d" * 10_000))
    conn.execute(query, (user_id, "none", None))
    error = rejected(conn, pg.CheckViolation, query, (user_id, "long", "d" * 10_001))
    assert error.diag.constraint_name == "projects_description_length"


def test_project_name_unique_per_user_ignoring_case(conn: psycopg.Connection[Any]) -> None:
    ada, bob = insert_user(conn), insert_user(conn)
    insert_project(conn, ada, "My App")
    error = rejected(
        conn,
        pg.UniqueViolation,
        "INSERT INTO projects (user_id, name) VALUES (%s, 'my app')",
        (ada,),
    )
    assert error.diag.constraint_name == "projects_user_name_fold_key"
    error = rejected(
        conn,
        pg.UniqueViolation,
        "INSERT INTO projects (user_id, name) VALUES (%s, 'MY \uff21\uff30\uff30')",
        (ada,),
    )
    assert error.diag.constraint_name == "projects_user_name_fold_key"
    insert_project(conn, bob, "MY APP")  # another user may use the name
    insert_project(conn, ada, "My App 2")
    assert one(conn, "SELECT count(*) FROM projects") == 3


# -- deployments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://a.io", "https://app-1.coderunner.dev/path?q=1#x", None, "https://" + "a" * 2040]
)
def test_public_url_accepts_http_and_https(conn: psycopg.Connection[Any], url: str | None) -> None:
    project_id = insert_project(conn, insert_user(conn))
    deployment_id = insert_deployment(conn, project_id, public_url=url)
    assert one(conn, "SELECT public_url FROM deployments WHERE id = %s", (deployment_id,)) == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://a.io",
        "javascript:alert(1)",
        "a.io",
        "https://",
        "https://a b.io",
        "HTTPS://a.io",
        " https://a.io",
        "https://" + "a" * 2041,  # 2049 characters
    ],
)
def test_public_url_must_be_http_or_https(conn: psycopg.Connection[Any], url: str) -> None:
    project_id = insert_project(conn, insert_user(conn))
    error = rejected(
        conn,
        pg.CheckViolation,
        "INSERT INTO deployments (project_id, runtime_type, public_url) VALUES (%s, 'python', %s)",
        (project_id, url),
    )
    assert error.diag.constraint_name == "deployments_public_url_shape"


@pytest.mark.parametrize("runtime", ["python", "node18", "python3.11", "deno_1-x", "a" * 32])
def test_runtime_type_short_lowercase_identifiers(
    conn: psycopg.Connection[Any], runtime: str
) -> None:
    insert_deployment(conn, insert_project(conn, insert_user(conn)), runtime_type=runtime)


@pytest.mark.parametrize(
    "runtime", ["", "Python", "NODE", "1python", "_x", "py thon", "py/thon", "a" * 33, "ruby\n"]
)
def test_runtime_type_shape_is_checked(conn: psycopg.Connection[Any], runtime: str) -> None:
    project_id = insert_project(conn, insert_user(conn))
    error = rejected(
        conn,
        pg.CheckViolation,
        "INSERT INTO deployments (project_id, runtime_type) VALUES (%s, %s)",
        (project_id, runtime),
    )
    assert error.diag.constraint_name == "deployments_runtime_type_shape"


@pytest.mark.parametrize("column", ["app_sandbox_id", "db_sandbox_id"])
def test_sandbox_id_length(conn: psycopg.Connection[Any], column: str) -> None:
    project_id = insert_project(conn, insert_user(conn))
    insert_deployment(conn, project_id, **{column: "s" * 255})
    with pytest.raises(pg.CheckViolation) as info, conn.transaction():
        insert_deployment(conn, project_id, **{column: "s" * 256})
    assert info.value.diag.constraint_name == "deployments_sandbox_id_length"


def test_status_defaults_to_pending(conn: psycopg.Connection[Any]) -> None:
    project_id = insert_project(conn, insert_user(conn))
    deployment_id = insert_deployment(conn, project_id)
    status = one(conn, "SELECT status::text FROM deployments WHERE id = %s", (deployment_id,))
    assert status == "PENDING"
    rejected(
        conn,
        pg.InvalidTextRepresentation,
        "INSERT INTO deployments (project_id, runtime_type, status) "
        "VALUES (%s, 'python', 'pending')",
        (project_id,),
    )


def test_db_connection_info_is_jsonb(conn: psycopg.Connection[Any]) -> None:
    project_id = insert_project(conn, insert_user(conn))
    info = {"host": "db", "port": 5432, "nested": {"ok": True}}
    deployment_id = insert_deployment(conn, project_id, db_connection_info=json.dumps(info))
    kind = one(
        conn,
        "SELECT jsonb_typeof(db_connection_info) FROM deployments WHERE id = %s",
        (deployment_id,),
    )
    assert kind == "object"


# -- foreign keys --------------------------------------------------------------------------------


def test_deleting_a_user_cascades_to_projects_and_deployments(
    conn: psycopg.Connection[Any],
) -> None:
    ada, bob = insert_user(conn), insert_user(conn)
    for owner in (ada, bob):
        for name in ("one", "two"):
            project_id = insert_project(conn, owner, name)
            insert_deployment(conn, project_id)
            insert_deployment(conn, project_id)
    conn.execute("DELETE FROM users WHERE id = %s", (ada,))
    assert one(conn, "SELECT count(*) FROM projects WHERE user_id = %s", (ada,)) == 0
    assert one(conn, "SELECT count(*) FROM projects") == 2
    assert one(conn, "SELECT count(*) FROM deployments") == 4
    left = one(
        conn,
        "SELECT count(*) FROM deployments d JOIN projects p ON p.id = d.project_id "
        "WHERE p.user_id = %s",
        (bob,),
    )
    assert left == 4


def test_deleting_a_project_cascades_to_deployments(conn: psycopg.Connection[Any]) -> None:
    user_id = insert_user(conn)
    gone, kept = insert_project(conn, user_id, "gone"), insert_project(conn, user_id, "kept")
    insert_deployment(conn, gone)
    insert_deployment(conn, kept)
    conn.execute("DELETE FROM projects WHERE id = %s", (gone,))
    assert one(conn, "SELECT count(*) FROM deployments WHERE project_id = %s", (gone,)) == 0
    assert one(conn, "SELECT count(*) FROM deployments WHERE project_id = %s", (kept,)) == 1
    assert one(conn, "SELECT count(*) FROM users") == 1


def test_foreign_keys_reject_missing_parents(conn: psycopg.Connection[Any]) -> None:
    rejected(
        conn,
        pg.ForeignKeyViolation,
        "INSERT INTO projects (user_id, name) VALUES (%s, 'x')",
        (uuid.uuid4(),),
    )
    rejected(
        conn,
        pg.ForeignKeyViolation,
        "INSERT INTO deployments (project_id, runtime_type) VALUES (%s, 'python')",
        (uuid.uuid4(),),
    )


def test_foreign_keys_are_on_delete_cascade(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        "SELECT conrelid::regclass::text, confrelid::regclass::text, confdeltype "
        "FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
    ).fetchall()
    # confdeltype 'c' is ON DELETE CASCADE.
    assert {("deployments", "projects", "c"), ("projects", "users", "c")} <= set(rows)


# -- updated_at ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "change", "same"),
    [
        ("users", "plan_type = 'team'", "plan_type = plan_type"),
        ("projects", "description = 'new'", "name = name"),
        ("deployments", "status = 'RUNNING'", "runtime_type = runtime_type"),
    ],
)
def test_updated_at_moves_on_change_only(
    db_config: DatabaseConfig, table: str, change: str, same: str
) -> None:
    # Autocommit: now() is a transaction's start time, so each statement needs its own.
    conn = psycopg.connect(db_config.conninfo(), autocommit=True)
    with conn:
        _check_updated_at(conn, table, change, same)


def _check_updated_at(conn: psycopg.Connection[Any], table: str, change: str, same: str) -> None:
    user_id = insert_user(conn)
    project_id = insert_project(conn, user_id)
    row_id = {
        "users": user_id,
        "projects": project_id,
        "deployments": insert_deployment(conn, project_id),
    }[table]
    read = f"SELECT created_at, updated_at FROM {table} WHERE id = %s"  # noqa: S608 - fixed names
    created, updated = conn.execute(read, (row_id,)).fetchone() or (None, None)
    assert created == updated

    time.sleep(0.002)
    conn.execute(f"UPDATE {table} SET {same} WHERE id = %s", (row_id,))  # noqa: S608
    assert conn.execute(read, (row_id,)).fetchone() == (created, updated)

    conn.execute(f"UPDATE {table} SET {change} WHERE id = %s", (row_id,))  # noqa: S608
    created_after, bumped = conn.execute(read, (row_id,)).fetchone() or (None, None)
    assert created_after == created
    assert bumped > updated


# -- every constraint is known to the error translation -------------------------------------------


def test_every_check_constraint_has_a_message(conn: psycopg.Connection[Any]) -> None:
    checks = {
        name
        for (name,) in conn.execute(
            "SELECT conname FROM pg_constraint "
            "WHERE contype = 'c' AND connamespace = 'public'::regnamespace"
        )
    }
    assert checks, "the schema has no CHECK constraints?"
    assert checks - set(CHECK_MESSAGES) == set(), "CHECK constraints without a message"
    assert set(CHECK_MESSAGES) - checks == set(), "messages for constraints that do not exist"


def test_every_unique_index_has_a_field_name(conn: psycopg.Connection[Any]) -> None:
    unique = {
        name
        for (name,) in conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE i.indisunique AND NOT i.indisprimary "
            "AND t.relnamespace = 'public'::regnamespace "
            "AND t.relname NOT LIKE '\\_yoyo%%' AND t.relname <> 'yoyo_lock' "
            "AND t.relname <> '_coderunner_migrations'"
        )
    }
    assert unique >= {"users_email_fold_key", "projects_user_name_fold_key"}
    assert unique - set(_UNIQUE_FIELDS) == set(), "unique indexes without a field name"
    assert set(_UNIQUE_FIELDS) - unique == set(), "field names for indexes that do not exist"


def test_every_lookup_has_its_index(conn: psycopg.Connection[Any]) -> None:
    present = {
        name
        for (name,) in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
            "AND tablename IN ('users', 'projects', 'deployments')"
        )
    }
    assert present >= EXPECTED_INDEXES
    # Plans over empty, never-analysed tables are a coin toss: give the planner real rows and
    # statistics (all rolled back with the test), and price sequential scans and sorts out, so
    # a lookup without a usable index shows a scan of the wrong index or of the whole table,
    # and a listing shows the index that returns its rows in order (with two projects a user,
    # another index of the user's and a sort cost about the same: a coin toss again).
    conn.execute(
        "INSERT INTO users (email, password_hash) "
        "SELECT 'u' || i || '@example.com', 'h' FROM generate_series(1, 1000) AS i"
    )
    conn.execute(
        "INSERT INTO projects (user_id, name) "
        "SELECT id, n FROM users, (VALUES ('app'), ('api')) AS v (n)"
    )
    conn.execute(
        "INSERT INTO deployments (project_id, runtime_type, status) "
        "SELECT id, 'python', (enum_range(NULL::deployment_status))[1 + i % 4] "
        "FROM projects, generate_series(1, 2) AS i"
    )
    conn.execute("ANALYZE users, projects, deployments")
    conn.execute("SET LOCAL enable_seqscan = off")
    conn.execute("SET LOCAL enable_sort = off")
    for lookup, (query, indexes) in LOOKUP_INDEXES.items():
        plan = one(conn, f"EXPLAIN (FORMAT JSON) {query}", {"id": uuid.uuid4()})
        nodes = list(_plan_nodes(plan[0]["Plan"]))
        used = {node["Index Name"] for node in nodes if "Index Name" in node}
        assert used & indexes, f"{lookup}: uses {used or 'no index'}, wants one of {indexes}"
        assert not [node for node in nodes if node["Node Type"] == "Seq Scan"], lookup


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


# -- through the service --------------------------------------------------------------------------


BROKEN_RULES = [
    (lambda db: make_user(db, email="not-an-email"), "users_email_shape"),
    (lambda db: make_user(db, password_hash=""), "users_password_hash_length"),
    (lambda db: make_project(db, name=""), "projects_name_length"),
    (lambda db: make_project(db, name="n" * 101), "projects_name_length"),
    (lambda db: make_project(db, description="d" * 10_001), "projects_description_length"),
    (lambda db: _deployment(db, public_url="ftp://x.io"), "deployments_public_url_shape"),
    (lambda db: _deployment(db, runtime_type="Python"), "deployments_runtime_type_shape"),
    (lambda db: _deployment(db, app_sandbox_id="s" * 256), "deployments_sandbox_id_length"),
]


def test_service_names_the_broken_rule(db: Any) -> None:
    for call, constraint in BROKEN_RULES:
        with pytest.raises(ValidationError) as info:
            call(db)
        assert CHECK_MESSAGES[constraint] in str(info.value), constraint
        assert info.value.constraint == constraint
        assert_library_error(info)
    untested = set(CHECK_MESSAGES) - {constraint for _, constraint in BROKEN_RULES}
    assert untested == set(), "add a BROKEN_RULES case for each new CHECK constraint"


def _deployment(db: Any, **fields: Any) -> Any:
    fields.setdefault("runtime_type", "python")
    return db.create_deployment(project_id=make_project(db).id, **fields)


def test_service_reports_duplicates_by_field(db: Any) -> None:
    user = make_user(db, email="Ada@Example.com")
    with pytest.raises(AlreadyExistsError) as info:
        make_user(db, email="ada@example.COM")
    assert info.value.field == "email"
    assert_library_error(info)
    make_project(db, user, name="App")
    with pytest.raises(AlreadyExistsError) as info:
        make_project(db, user, name="APP")
    assert info.value.field == "name"
    assert_library_error(info)


def test_service_defaults_and_cascade(db: Any) -> None:
    user = make_user(db)
    assert user.plan_type is PlanType.FREE
    project = make_project(db, user)
    deployment = db.create_deployment(project_id=project.id, runtime_type="python")
    assert deployment.status is DeploymentStatus.PENDING
    db.delete_user(user.id)
    assert db.get_project_by_id(project.id) is None
    assert db.get_deployment_by_id(deployment.id) is None
    with pytest.raises(NotFoundError):
        db.create_project(user_id=user.id, name="orphan")
