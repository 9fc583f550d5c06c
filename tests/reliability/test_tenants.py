"""Tenant isolation: row-level security, seen through the application role.

The promises: a service scoped to user A (`db.for_user(a)`) reads, updates and deletes
only A's user row, projects and deployments, through every method and through `query()`;
B's rows are invisible (None, absent from listings, `NotFoundError` on change) and cannot
be created under B (`PermissionDeniedError`). The unscoped service keeps seeing everything
(platform-wide stats and admin). The application role (`coderunner_app`) has no
BYPASSRLS and cannot CREATE, ALTER or DROP; the role that ran the migrations owns the
schema. Row-level security does not bind superusers or the tables' owner, so every test
here connects as a fresh LOGIN role in `coderunner_app` (dropped afterwards).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from psycopg import sql

from coderunner_sql import (
    DatabaseConfig,
    DatabaseService,
    DeploymentStatus,
    NotFoundError,
)
from coderunner_sql.errors import PermissionDeniedError
from coderunner_sql.migrations import Migrator
from tests.plugins.postgres import create_database, drop_database
from tests.reliability.conftest import Figures, _drop_role, admin_connection


def seed(db: Any, name: str) -> dict[str, Any]:
    user = db.create_user(email=f"{name}-{uuid.uuid4().hex[:8]}@example.com", password_hash="h")
    project = db.create_project(user_id=user.id, name=f"{name}-app")
    deployment = db.create_deployment(
        project_id=project.id, runtime_type="python", status=DeploymentStatus.RUNNING
    )
    return {"user": user, "project": project, "deployment": deployment}


@pytest.fixture
def tenants(
    make_app_login: Callable[[], DatabaseConfig], open_service: Any
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(the unscoped service as the app role, user A's rows, user B's rows)."""
    app = open_service(make_app_login().replace(pool_min=1, pool_max=2))
    return app, seed(app, "alice"), seed(app, "bob")


def test_a_user_sees_only_their_own_rows(tenants: Any, figures: Figures) -> None:
    app, a, b = tenants
    alice = app.for_user(a["user"].id)
    # Reads of B's rows: nothing there.
    assert alice.get_user_by_id(b["user"].id) is None
    assert alice.get_user_by_email(b["user"].email) is None
    assert alice.get_project_by_id(b["project"].id) is None
    assert alice.get_project_with_user(b["project"].id) is None
    assert alice.get_deployment_by_id(b["deployment"].id) is None
    assert alice.get_deployment_with_details(b["deployment"].id) is None
    assert alice.get_projects_by_user_id(b["user"].id).items == []
    assert alice.get_deployments_by_project_id(b["project"].id).items == []
    assert alice.get_running_deployment_count_by_user(b["user"].id) == 0
    # Listings and counts hold A's rows only.
    users = alice.get_users()
    assert [u.id for u in users.items] == [a["user"].id]
    assert users.total == 1
    running = alice.get_deployments_by_status("RUNNING")
    assert [d.id for d in running.items] == [a["deployment"].id]
    assert running.total == 1
    assert [d.id for d in alice.iter_deployments_by_status("RUNNING")] == [a["deployment"].id]
    stats = alice.get_system_stats()
    assert (stats.total_users, stats.total_projects, stats.total_deployments) == (1, 1, 1)
    # Their own rows, in full.
    assert alice.get_user_by_id(a["user"].id) == a["user"]
    assert alice.get_deployment_with_details(a["deployment"].id).user == a["user"]
    # query() is bound too, whatever the SQL.
    assert alice.query("SELECT email FROM users") == [{"email": a["user"].email}]
    assert alice.query("SELECT count(*) AS n FROM deployments") == [{"n": 1}]
    with pytest.raises(PermissionDeniedError):  # platform-wide counters: not a tenant's
        alice.query("SELECT * FROM row_counts")
    # The platform view (unscoped) still sees everybody.
    assert app.get_system_stats().total_users == 2
    assert app.get_users().total == 2
    figures.add("tenants", cross_tenant_reads_refused=15, operations=25)


def test_a_user_cannot_change_or_delete_another_users_rows(tenants: Any, figures: Figures) -> None:
    app, a, b = tenants
    alice = app.for_user(a["user"].id)
    refused = 0
    for change in (
        lambda: alice.update_user(b["user"].id, email="stolen@example.com"),
        lambda: alice.update_project(b["project"].id, name="stolen"),
        lambda: alice.update_deployment(b["deployment"].id, public_url="https://evil.example"),
        lambda: alice.update_deployment_status(b["deployment"].id, "STOPPED"),
        lambda: alice.delete_deployment(b["deployment"].id),
        lambda: alice.delete_project(b["project"].id),
        lambda: alice.delete_user(b["user"].id),
    ):
        with pytest.raises(NotFoundError):
            change()
        refused += 1
    for create in (
        lambda: alice.create_project(user_id=b["user"].id, name="planted"),
        lambda: alice.create_deployment(project_id=b["project"].id, runtime_type="go"),
        lambda: alice.create_deployments([{"project_id": b["project"].id, "runtime_type": "go"}]),
        lambda: alice.create_user(email="new@example.com", password_hash="h"),
        # Moving one's own project to another user is planting it, too.
        lambda: alice.query(
            "UPDATE projects SET user_id = %s WHERE id = %s", [b["user"].id, a["project"].id]
        ),
    ):
        with pytest.raises(PermissionDeniedError, match="row-level security"):
            create()
        refused += 1
    # Raw SQL aimed at B's rows touches none of them.
    assert (
        alice.query(
            "UPDATE users SET password_hash = 'x' WHERE id = %s RETURNING id", [b["user"].id]
        )
        == []
    )
    assert alice.query("DELETE FROM deployments RETURNING id") == [{"id": a["deployment"].id}]
    refused += 2
    # B's rows are exactly as they were; A could change their own.
    assert app.get_user_by_id(b["user"].id) == b["user"]
    assert app.get_project_by_id(b["project"].id) == b["project"]
    assert app.get_deployment_by_id(b["deployment"].id) == b["deployment"]
    assert alice.update_project(a["project"].id, name="renamed").name == "renamed"
    figures.add("tenants", cross_tenant_writes_refused=refused, operations=refused + 4)


def test_scoped_transactions_and_no_scope_left_on_pooled_connections(
    tenants: Any, figures: Figures
) -> None:
    app, a, b = tenants
    alice = app.for_user(a["user"].id)
    with alice.transaction() as tx:
        assert tx.get_user_by_id(b["user"].id) is None
        assert tx.get_users().total == 1
        tx.create_project(user_id=a["user"].id, name="in-tx")

    def body(tx: Any) -> int:
        return len(tx.query("SELECT id FROM projects"))

    assert alice.execute_in_transaction(body) == 2
    # The setting is transaction-local: the next calls on the same pool see everything.
    for _ in range(4):
        assert app.get_users().total == 2
        assert app.query("SELECT current_setting('coderunner.user_id', true) AS s") in (
            [{"s": None}],
            [{"s": ""}],
        )
    bob = app.for_user(b["user"].id)
    assert [p.name for p in bob.get_projects_by_user_id(b["user"].id).items] == ["bob-app"]
    figures.add("tenants", operations=12)


def test_the_app_role_cannot_change_the_schema_or_bypass_security(
    make_app_login: Callable[[], DatabaseConfig], db_config: DatabaseConfig, figures: Figures
) -> None:
    config = make_app_login()
    with DatabaseService(config.replace(pool_min=1, pool_max=1)) as app:
        [role] = app.query(
            "SELECT r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb"
            " FROM pg_roles AS r WHERE r.rolname = 'coderunner_app'"
        )
        assert not any(role.values())
        refused = 0
        for ddl in (
            "CREATE TABLE stolen (x int)",
            "ALTER TABLE users ADD COLUMN x int",
            "ALTER TABLE users DISABLE ROW LEVEL SECURITY",
            "DROP POLICY users_tenant ON users",
            "DROP TABLE deployments",
            "TRUNCATE users",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "INSERT INTO row_counts VALUES ('users', 0, 1000000)",
            "DELETE FROM _yoyo_migration",
        ):
            with pytest.raises(PermissionDeniedError):
                app.query(ddl)
            refused += 1
        app.initialize()  # reading the migration state is allowed
    figures.add("tenants", ddl_refused=refused, operations=refused + 2)


def test_a_migration_role_owns_the_schema_and_the_app_role_is_bound(
    pg_admin_config: DatabaseConfig, make_app_login: Callable[[], DatabaseConfig]
) -> None:
    """The deployment the docs describe: a non-superuser migration role owns the tables."""
    admin = pg_admin_config
    migrator = f"crsql_mig_{uuid.uuid4().hex[:10]}"
    password = f"mig-{uuid.uuid4().hex}"
    with admin_connection(admin) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(migrator), sql.Literal(password)
            )
        )
    name = create_database(admin.url(), prefix="crsql_owned")
    try:
        with admin_connection(admin.replace(dbname=name)) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(name), sql.Identifier(migrator)
                )
            )
            conn.execute(
                sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(migrator))
            )
        owner_config = admin.replace(dbname=name, user=migrator, password=password)
        Migrator(owner_config).apply()
        with admin_connection(owner_config) as conn:
            owners = conn.execute(
                "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        assert owners == [(migrator,)]
        app_config = make_app_login()
        with DatabaseService(app_config.replace(dbname=name, pool_min=1, pool_max=1)) as app:
            a, b = seed(app, "own-a"), seed(app, "own-b")
            assert app.for_user(a["user"].id).get_user_by_id(b["user"].id) is None
            with pytest.raises(PermissionDeniedError):
                app.query("DROP TABLE users")
        with DatabaseService(owner_config.replace(pool_min=1, pool_max=1)) as owner:
            # The owner is not bound by row-level security: it sees every row...
            assert owner.get_users().total == 2
            # ...and, not being a member of coderunner_tenant, may not take a user's scope.
            with pytest.raises(PermissionDeniedError, match="coderunner_tenant"):
                owner.for_user(a["user"].id).get_users()
    finally:
        drop_database(admin.url(), name)
        with admin_connection(admin) as conn:
            _drop_role(conn, migrator)


def test_for_user_binds_even_a_superuser_session(db: Any, figures: Figures) -> None:
    """for_user() switches the transaction to coderunner_tenant, which row-level security
    binds whoever logged in: the test suite's superuser here."""
    a, b = seed(db, "su-a"), seed(db, "su-b")
    alice = db.for_user(a["user"].id)
    assert alice.get_user_by_id(b["user"].id) is None
    assert alice.query("SELECT current_user AS role") == [{"role": "coderunner_tenant"}]
    assert db.query("SELECT current_user = 'coderunner_tenant' AS scoped") == [{"scoped": False}]
    assert db.get_users().total == 2
    figures.add("tenants", cross_tenant_reads_refused=1, operations=4)


def test_a_tenant_only_login_sees_nothing_unscoped(
    db_config: DatabaseConfig, make_app_login: Callable[[], DatabaseConfig], figures: Figures
) -> None:
    """Deny by default: a login in coderunner_tenant alone sees no row until a scope names
    its user (the hardened set-up for code that must never work platform-wide)."""
    app_config = make_app_login()
    with DatabaseService(db_config) as owner:
        a, b = seed(owner, "only-a"), seed(owner, "only-b")
    with admin_connection(db_config) as conn:
        conn.execute(
            sql.SQL("REVOKE coderunner_app FROM {}").format(sql.Identifier(app_config.user))
        )
        conn.execute(
            sql.SQL("GRANT coderunner_tenant TO {}").format(sql.Identifier(app_config.user))
        )
    with DatabaseService(app_config.replace(pool_min=1, pool_max=1)) as tenant:
        assert tenant.get_users(with_total=False).items == []
        assert tenant.get_deployment_by_id(a["deployment"].id) is None
        with pytest.raises(PermissionDeniedError):  # platform-wide counters: not for it
            tenant.get_system_stats()
        assert tenant.for_user(a["user"].id).get_user_by_id(a["user"].id) == a["user"]
        assert tenant.for_user(a["user"].id).get_user_by_id(b["user"].id) is None
    figures.add("tenants", cross_tenant_reads_refused=3, operations=4)
