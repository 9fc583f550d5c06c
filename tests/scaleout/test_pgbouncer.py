"""The services behind a real PgBouncer in transaction pooling mode.

With one server connection in the bouncer's pool, two services take turns on the *same*
PostgreSQL session: whatever one leaves in that session the other would see. These tests
prove nothing is left there: no session setting, no prepared statement.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from coderunner_sql import DatabaseConfig, DeploymentStatus
from coderunner_sql.errors import QueryError
from tests.helpers import make_deployment, make_project, make_user
from tests.plugins.pgbouncer import PgBouncer

pytestmark = pytest.mark.slow


@pytest.fixture
def one_server_connection(bouncer_factory: Any, app_config: DatabaseConfig) -> DatabaseConfig:
    """The app database through a private PgBouncer whose pool holds one server connection."""
    bouncer: PgBouncer = bouncer_factory(app_config, pool_size=1)
    return bouncer.config(app_config).replace(pool_min=1, pool_max=2)


def backend_pid(service: Any) -> int:
    return int(service.query("SELECT pg_backend_pid() AS pid")[0]["pid"])


def test_pgbouncer_is_debians_and_pools_transactions(one_server_connection, open_service):
    db = open_service(one_server_connection)
    rows = db.query("SELECT current_setting('server_version_num')::int AS v")
    assert rows[0]["v"] >= 150000
    # Transaction mode: a transaction keeps its server connection to the end.
    with db.transaction() as tx:
        first = tx.query("SELECT pg_backend_pid() AS pid")
        second = tx.query("SELECT pg_backend_pid() AS pid")
    assert first == second


def test_statement_timeout_stays_with_the_service_that_set_it(one_server_connection, open_service):
    timed = open_service(one_server_connection.replace(statement_timeout_ms=200))
    plain = open_service(one_server_connection)
    # One server connection behind the bouncer: both services talk to the same session.
    assert backend_pid(timed) == backend_pid(plain)

    for _ in range(2):
        with pytest.raises(QueryError, match="statement timeout"):
            timed.query("SELECT pg_sleep(2)")
        assert timed.query("SHOW statement_timeout") == [{"statement_timeout": "200ms"}]
        assert plain.query("SHOW statement_timeout") == [{"statement_timeout": "0"}]
        plain.query("SELECT pg_sleep(0.3)")  # longer than the other service's limit

    # The timeout holds for the typed methods and for transactions too.
    user = make_user(timed)
    assert timed.get_user_by_id(user.id) == user
    with timed.transaction() as tx:
        assert tx.query("SHOW statement_timeout") == [{"statement_timeout": "200ms"}]
    assert plain.query("SHOW statement_timeout") == [{"statement_timeout": "0"}]


def test_a_session_level_setting_would_leak_through_the_bouncer(
    one_server_connection, open_service
):
    """The harness can see a leak: the pre-PgBouncer way (a setting per session) leaks."""
    leaky = open_service(one_server_connection.replace(pgbouncer=False, statement_timeout_ms=200))
    plain = open_service(one_server_connection)
    assert backend_pid(leaky) == backend_pid(plain)
    assert plain.query("SHOW statement_timeout") == [{"statement_timeout": "200ms"}]


def test_no_prepared_statement_is_left_on_the_shared_connection(
    one_server_connection, open_service
):
    first = open_service(one_server_connection)
    second = open_service(one_server_connection)
    user = make_user(first)
    # psycopg would prepare a statement run 5 times; the services must never do so here.
    for _ in range(8):
        assert first.get_user_by_id(user.id) == user
        assert second.get_user_by_id(user.id) == user
        assert second.get_users(limit=5).total == 1
    assert first.query("SELECT count(*) AS n FROM pg_prepared_statements") == [{"n": 0}]


def test_transactions_and_server_side_cursors_work_through_the_bouncer(
    one_server_connection, open_service
):
    db = open_service(one_server_connection.replace(statement_timeout_ms=5_000))
    other = open_service(one_server_connection)
    project = make_project(db)
    made = [make_deployment(db, project, status="RUNNING") for _ in range(5)]

    tx = db.begin_transaction()
    tx.update_deployment_status(made[0].id, "STOPPED")
    streamed = list(tx.iter_deployments_by_status("RUNNING", batch_size=2))
    db.commit_transaction(tx)
    assert {d.id for d in streamed} == {d.id for d in made[1:]}

    # A named cursor outside a transaction of the caller's: batches fetched one by one
    # while another service's calls wait for (and then get) the one server connection.
    seen = []
    for deployment in other.iter_deployments_by_status(DeploymentStatus.RUNNING, batch_size=1):
        seen.append(deployment.id)
    assert sorted(seen) == sorted(d.id for d in made[1:])
    assert db.get_deployment_by_id(made[0].id).status == DeploymentStatus.STOPPED
    assert other.query("SHOW statement_timeout") == [{"statement_timeout": "0"}]


def test_the_via_pgbouncer_switch_decides_where_db_config_points(db_config, pgbouncer):
    """`TEST_VIA_PGBOUNCER=1` (a CI step) sends the data-API tests through a real bouncer."""
    with psycopg.connect(**db_config.connect_kwargs(), prepare_threshold=None) as conn:
        row = conn.execute("SELECT inet_server_port()").fetchone()
    assert row is not None
    if pgbouncer is None:
        assert not db_config.pgbouncer
        assert row[0] == db_config.port
    else:
        # The server's own port is not the one the tests dialled: a bouncer is in between.
        assert db_config.pgbouncer
        assert db_config.port == pgbouncer.port
        assert row[0] != pgbouncer.port
