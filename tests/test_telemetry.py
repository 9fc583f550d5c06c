"""Observability: OpenTelemetry spans and metrics (the real SDK, in memory), the query name on
the server (`pg_stat_activity`), and the structured slow-query log."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import attrs
import psycopg
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from coderunner_sql import (
    AlreadyExistsError,
    AsyncDatabaseService,
    DatabaseConfig,
    DatabaseService,
    DatabaseUnavailableError,
    DeploymentStatus,
)
from tests.helpers import make_project, make_user, unique_email
from tests.plugins.proxy import SyncProxy

SECRET_HASH = "argon2$telemetry-secret-hash"


@attrs.define
class Traced:
    """A connected service whose spans and metrics go to the in-memory SDK."""

    db: Any
    config: DatabaseConfig
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = list(self.exporter.get_finished_spans())
        return [s for s in found if name is None or s.name == name]

    def span(self, name: str) -> ReadableSpan:
        found = self.spans(name)
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for m in scope.metrics
            if m.name == metric
            for point in m.data.data_points
        ]


def open_traced(request: pytest.FixtureRequest, config: DatabaseConfig, kind: str) -> Traced:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    providers = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
    db: Any
    if kind == "sync":
        db = DatabaseService(config, **providers)
    else:
        loop = request.getfixturevalue("event_loop_thread")
        db = SyncProxy(AsyncDatabaseService(config, **providers), loop)
    db.connect()

    def close() -> None:
        db.disconnect()
        meter_provider.shutdown()
        tracer_provider.shutdown()

    request.addfinalizer(close)
    return Traced(db, config, exporter, reader)


@pytest.fixture(params=["sync", "async"])
def traced(request: pytest.FixtureRequest, db_config: DatabaseConfig) -> Traced:
    """A service of each kind on this test's own database, traced into memory."""
    return open_traced(request, db_config, request.param)


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# -- spans ----------------------------------------------------------------------------------


def test_each_call_is_one_client_span_named_and_attributed_by_the_conventions(
    traced: Traced,
) -> None:
    user = make_user(traced.db, password_hash=SECRET_HASH)
    traced.exporter.clear()

    assert traced.db.get_user_by_id(user.id) == user

    span = traced.span("get_user_by_id")
    assert traced.spans() == [span]
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attributes = _attributes(span)
    config = traced.config
    expected = {
        "db.system.name": "postgresql",
        "db.namespace": config.dbname,
        "db.operation.name": "get_user_by_id",
        "db.query.summary": "get_user_by_id",
        "db.response.returned_rows": 1,
    }
    if config.host:
        expected["server.address"] = config.host
        expected["server.port"] = config.port or 5432
    assert {k: attributes.get(k) for k in expected} == expected
    text = attributes["db.query.text"]
    assert text.startswith("/* get_user_by_id */ SELECT ")
    assert "%(id)s" in text
    assert str(user.id) not in text


def test_spans_hold_the_sql_never_parameters_or_secrets(traced: Traced) -> None:
    email = unique_email("secret")
    user = make_user(traced.db, email=email, password_hash=SECRET_HASH)
    traced.db.update_user(user.id, password_hash=SECRET_HASH + "-2")
    traced.db.query("SELECT %s::text AS token", ["hunter2-parameter"])

    spans = traced.spans()
    assert {s.name for s in spans} == {"create_user", "update_user", "query"}
    dumped = "\n".join(span.to_json() for span in spans)
    for secret in (SECRET_HASH, email, "hunter2", str(user.id), traced.config.password or "\0"):
        assert secret not in dumped
    # The caller's own SQL may hold literals: only its name is recorded.
    assert "db.query.text" not in _attributes(traced.span("query"))
    assert _attributes(traced.span("query"))["db.query.summary"] == "query"


def test_a_call_of_several_statements_names_each_query(traced: Traced) -> None:
    make_user(traced.db)
    traced.exporter.clear()

    page = traced.db.get_users(limit=10)

    assert page.total == 1
    attributes = _attributes(traced.span("get_users"))
    assert attributes["db.query.summary"] == "list_users; count_users"
    assert attributes["db.query.text"].startswith("/* list_users */ SELECT ")
    assert "/* count_users */ SELECT " in attributes["db.query.text"]


def test_a_transaction_is_the_parent_of_its_calls(traced: Traced) -> None:
    with traced.db.transaction() as tx:
        user = make_user(tx)
        make_project(tx, user)

    transaction = traced.span("transaction")
    assert transaction.kind is SpanKind.INTERNAL
    assert _attributes(transaction)["coderunner_sql.transaction.outcome"] == "commit"
    children = [s for s in traced.spans() if s is not transaction]
    assert [s.name for s in children] == ["create_user", "create_project"]
    context = transaction.get_span_context()
    assert context is not None
    for child in children:
        assert child.kind is SpanKind.CLIENT
        assert child.parent is not None
        assert child.parent.span_id == context.span_id
        assert child.get_span_context().trace_id == context.trace_id  # type: ignore[union-attr]
    # Not parented to one another outside a transaction.
    traced.exporter.clear()
    make_user(traced.db)
    assert traced.span("create_user").parent is None


def test_a_failed_call_has_error_status_type_and_sqlstate(traced: Traced) -> None:
    email = unique_email()
    make_user(traced.db, email=email)
    traced.exporter.clear()

    with pytest.raises(AlreadyExistsError):
        make_user(traced.db, email=email.upper())

    span = traced.span("create_user")
    assert span.status.status_code is StatusCode.ERROR
    attributes = _attributes(span)
    assert attributes["error.type"] == "coderunner_sql.errors.AlreadyExistsError"
    assert attributes["db.response.status_code"] == "23505"
    assert email not in (span.status.description or "")


def test_a_rolled_back_transaction_says_so_on_its_span(traced: Traced) -> None:
    email = unique_email()
    make_user(traced.db, email=email)

    with pytest.raises(AlreadyExistsError), traced.db.transaction() as tx:
        make_user(tx, email=email)

    transaction = traced.span("transaction")
    assert _attributes(transaction)["coderunner_sql.transaction.outcome"] == "rollback"
    failed = [s for s in traced.spans("create_user") if s.parent is not None]
    assert len(failed) == 1
    assert failed[0].status.status_code is StatusCode.ERROR


def test_a_bulk_call_records_its_batch_size(traced: Traced) -> None:
    project = make_project(traced.db)
    traced.exporter.clear()

    created = traced.db.create_deployments(
        [{"project_id": project.id, "runtime_type": "python"} for _ in range(3)]
    )

    assert len(created) == 3
    attributes = _attributes(traced.span("create_deployments"))
    assert attributes["db.operation.batch.size"] == 3
    assert attributes["db.response.returned_rows"] == 3


def test_a_stream_is_one_span_for_all_its_fetches(traced: Traced) -> None:
    project = make_project(traced.db)
    traced.db.create_deployments(
        [{"project_id": project.id, "runtime_type": "python"} for _ in range(5)]
    )
    traced.exporter.clear()

    rows = list(traced.db.iter_deployments_by_status(DeploymentStatus.PENDING, batch_size=2))

    assert len(rows) == 5
    attributes = _attributes(traced.span("iter_deployments_by_status"))
    assert attributes["db.query.summary"] == "stream_deployments_by_status"
    assert attributes["db.response.returned_rows"] == 5


# -- metrics --------------------------------------------------------------------------------


def test_every_statement_is_timed_by_query_name_and_outcome(traced: Traced) -> None:
    email = unique_email()
    user = make_user(traced.db, email=email)
    for _ in range(3):
        traced.db.get_user_by_id(user.id)
    with pytest.raises(AlreadyExistsError):
        make_user(traced.db, email=email)

    points = traced.points("db.client.operation.duration")
    by_key = {(p.attributes["db.query.summary"], p.attributes.get("error.type")): p for p in points}
    reads = by_key[("get_user_by_id", None)]
    assert reads.count == 3
    assert 0 < reads.sum < 3 * 10  # seconds, not milliseconds
    assert reads.attributes["db.system.name"] == "postgresql"
    assert by_key[("create_user", None)].count == 1
    failed = by_key[("create_user", "coderunner_sql.errors.AlreadyExistsError")]
    assert failed.count == 1
    assert failed.attributes["db.response.status_code"] == "23505"


def test_pool_metrics_come_from_the_pool(traced: Traced) -> None:
    make_user(traced.db)
    name = traced.config.application_name
    info = traced.db.get_pool_info()

    counts = {
        p.attributes["db.client.connection.state"]: p.value
        for p in traced.points("db.client.connection.count")
        if p.attributes["db.client.connection.pool.name"] == name
    }
    assert counts == {"idle": info.idle_count, "used": info.connected_clients}
    assert counts["idle"] >= 1
    (maximum,) = traced.points("db.client.connection.max")
    assert maximum.value == traced.config.pool_max
    (pending,) = traced.points("db.client.connection.pending_requests")
    assert pending.value == 0
    (timeouts,) = traced.points("db.client.connection.timeouts")
    assert timeouts.value == 0
    (waits,) = traced.points("db.client.connection.wait_time")
    assert waits.count >= 1
    assert waits.attributes == {"db.client.connection.pool.name": name}

    # While a transaction holds a connection it counts as used.
    tx = traced.db.begin_transaction()
    try:
        used = {
            p.attributes["db.client.connection.state"]: p.value
            for p in traced.points("db.client.connection.count")
        }
        assert used["used"] == 1
    finally:
        tx.rollback()


def test_a_caller_that_gives_up_on_the_pool_counts_as_a_timeout(
    request: pytest.FixtureRequest, db_config: DatabaseConfig
) -> None:
    traced = open_traced(
        request, db_config.replace(pool_min=1, pool_max=1, acquire_timeout_ms=300), "sync"
    )
    tx = traced.db.begin_transaction()
    try:
        with pytest.raises(DatabaseUnavailableError):
            traced.db.get_system_stats()
    finally:
        tx.rollback()

    (timeouts,) = traced.points("db.client.connection.timeouts")
    assert timeouts.value == 1
    span = traced.span("get_system_stats")
    assert span.status.status_code is StatusCode.ERROR
    assert _attributes(span)["error.type"] == "coderunner_sql.errors.PoolExhaustedError"


# -- on the server --------------------------------------------------------------------------


def _wait_for_activity(config: DatabaseConfig, prefix: str) -> tuple[int, str, str]:
    """(pid, application_name, query) of the backend running a statement that starts with
    `prefix`, seen from a connection of its own."""
    with psycopg.connect(**config.connect_kwargs(), autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT pid, application_name, query FROM pg_stat_activity"
                " WHERE state = 'active' AND starts_with(query, %s) AND pid <> pg_backend_pid()",
                [prefix],
            ).fetchone()
            if row is not None:
                return int(row[0]), str(row[1]), str(row[2])
            time.sleep(0.02)
    raise AssertionError(f"no running statement starts with {prefix!r}")


def test_pg_stat_activity_names_the_running_query(traced: Traced) -> None:
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(traced.db.query, "SELECT pg_sleep(0.5) AS slept")
        _pid, application, query = _wait_for_activity(traced.config, "/* query */ ")
        running.result(timeout=10)

    assert application == traced.config.application_name
    assert query == "/* query */ SELECT pg_sleep(0.5) AS slept"


def test_a_named_query_shows_its_name_and_an_unconfirmed_write_says_so(
    traced: Traced,
) -> None:
    user = make_user(traced.db)
    blocker = traced.db.begin_transaction()
    blocker.update_user(user.id, plan_type="team")  # holds the row lock
    traced.exporter.clear()

    with ThreadPoolExecutor(1) as pool:
        waiting: Future[Any] = pool.submit(traced.db.update_user, user.id, plan_type="personal")
        pid, application, query = _wait_for_activity(traced.config, "/* update_user */ ")
        assert application == traced.config.application_name
        assert query.startswith("/* update_user */ UPDATE users")
        # The write's connection dies before its answer: it may or may not have committed.
        with psycopg.connect(**traced.config.connect_kwargs(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        with pytest.raises(DatabaseUnavailableError) as raised:
            waiting.result(timeout=10)
    blocker.rollback()

    assert raised.value.outcome_unknown
    span = [s for s in traced.spans("update_user") if s.parent is None][-1]
    attributes = _attributes(span)
    assert attributes["coderunner_sql.outcome_unknown"] is True
    assert attributes["error.type"] == "coderunner_sql.errors.DatabaseUnavailableError"


def test_the_prepared_statement_carries_the_constant_comment(
    request: pytest.FixtureRequest, db_config: DatabaseConfig
) -> None:
    """The comment is part of the loaded SQL, the same on every call: the server prepares
    one statement per query, and pg_stat_statements groups them as one."""
    if db_config.pgbouncer:
        pytest.skip("behind PgBouncer statements are not prepared")
    traced = open_traced(request, db_config.replace(pool_min=1, pool_max=1), "sync")
    user = make_user(traced.db)
    for _ in range(6):  # past psycopg's prepare threshold
        traced.db.get_user_by_id(user.id)

    texts = {_attributes(s)["db.query.text"] for s in traced.spans("get_user_by_id")}
    assert len(texts) == 1
    # One pooled connection: the session that prepared it is the one asked.
    prepared = [
        row["statement"]
        for row in traced.db.query("SELECT statement FROM pg_prepared_statements")
        if "FROM users" in row["statement"] and "WHERE id = $1" in row["statement"]
    ]
    assert len(prepared) == 1
    assert prepared[0].startswith("/* get_user_by_id */ SELECT ")


# -- slow-query log -------------------------------------------------------------------------


def test_slow_queries_are_structured_records(
    request: pytest.FixtureRequest, db_config: DatabaseConfig, caplog: pytest.LogCaptureFixture
) -> None:
    traced = open_traced(request, db_config.replace(slow_query_ms=1), "sync")
    with caplog.at_level(logging.WARNING, logger="coderunner_sql.queries"):
        traced.db.query("SELECT pg_sleep(0.01), %s::text AS token", ["hunter2-parameter"])

    (record,) = [r for r in caplog.records if r.name == "coderunner_sql.queries"]
    fields = record.__dict__
    assert fields["query_name"] == "query"
    assert fields["duration_ms"] >= 10
    assert fields["rows"] == 1
    assert fields["outcome"] == "ok"
    assert "hunter2" not in caplog.text
    assert "hunter2" not in repr(fields)


# -- the global providers, and none at all --------------------------------------------------


def _run(config: DatabaseConfig, *parts: str) -> dict[str, Any]:
    """Run a script made of `parts` (each dedented) in a fresh interpreter; its last line
    of output, as JSON."""
    env = {**os.environ, "CODERUNNER_TEST_URL": config.url()}
    done = subprocess.run(
        [sys.executable, "-c", "\n".join(textwrap.dedent(part) for part in parts)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


_SERVICE = """
    import json, os, sys
    from coderunner_sql import DatabaseConfig, DatabaseService
    config = DatabaseConfig.from_url(os.environ["CODERUNNER_TEST_URL"])
"""

_GLOBAL_SDK = """
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()

    def configure():
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
"""


def test_a_script_that_sets_the_global_providers_sees_spans_and_metrics(
    db_config: DatabaseConfig,
) -> None:
    result = _run(
        db_config,
        _GLOBAL_SDK,
        _SERVICE,
        """
        configure()
        with DatabaseService(config) as db:
            db.get_user_by_email("nobody@example.com")
            data = reader.get_metrics_data()
            names = sorted(
                m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
            )
        spans = [s.name for s in exporter.get_finished_spans()]
        print(json.dumps({"spans": spans, "metrics": names}))
        """,
    )

    assert result["spans"] == ["get_user_by_email"]
    assert result["metrics"] == sorted(
        [
            "db.client.operation.duration",
            "db.client.connection.wait_time",
            "db.client.connection.count",
            "db.client.connection.max",
            "db.client.connection.pending_requests",
            "db.client.connection.timeouts",
        ]
    )


def test_a_provider_set_after_the_service_starts_is_picked_up(db_config: DatabaseConfig) -> None:
    result = _run(
        db_config,
        _GLOBAL_SDK,
        _SERVICE,
        """
        import time
        with DatabaseService(config) as db:
            db.get_user_by_email("before@example.com")
            configure()
            time.sleep(1.1)  # a service looks for a newly set provider once a second
            db.get_user_by_email("after@example.com")
        print(json.dumps({"spans": [s.name for s in exporter.get_finished_spans()]}))
        """,
    )

    assert result["spans"] == ["get_user_by_email"]


def test_without_opentelemetry_nothing_is_imported_and_calls_work(
    db_config: DatabaseConfig,
) -> None:
    result = _run(
        db_config,
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the `otel` extra were not installed
        """,
        _SERVICE,
        """
        from coderunner_sql import telemetry
        with DatabaseService(config) as db:
            found = db.get_user_by_email("nobody@example.com")
            with db.transaction() as tx:
                tx.get_system_stats()
            rows = list(db.iter_deployments_by_status("RUNNING"))
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m])
        print(json.dumps({"otel": telemetry.OTEL, "found": found, "rows": rows, "loaded": loaded}))
        """,
    )

    assert result == {"otel": False, "found": None, "rows": [], "loaded": []}


def test_without_a_configured_sdk_calls_record_nothing(db_config: DatabaseConfig) -> None:
    result = _run(
        db_config,
        _SERVICE,
        """
        from coderunner_sql import telemetry
        with DatabaseService(config) as db:
            db.get_user_by_email("nobody@example.com")
            call = db._telemetry.call("get_user_by_email")
        print(json.dumps({"otel": telemetry.OTEL, "recording": call is not telemetry.current()}))
        """,
    )

    assert result == {"otel": True, "recording": False}
