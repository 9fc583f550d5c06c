"""A connection the server refuses is reported in the server's own words, never as another
cause: not "timed out" because its message holds the word "timeout", not "no answer" when
it did answer. Each case makes the refusal for real on the test server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from coderunner_sql import DatabaseConfig, DatabaseUnavailableError
from coderunner_sql.connection import connect
from coderunner_sql.health import database_health
from coderunner_sql.migrations import Migrator
from tests.helpers import assert_library_error

SECRET = "s3cr3t-Pa55-refused"


def where(config: DatabaseConfig) -> str:
    """host:port as the errors name it."""
    return f"{config.host}:{config.port}"


def admin(config: DatabaseConfig) -> psycopg.Connection[Any]:
    """A superuser connection to the test server."""
    return psycopg.connect(**config.connect_kwargs(), autocommit=True)


@pytest.fixture
def limited_role(pg_admin_config: DatabaseConfig) -> Iterator[str]:
    """A login role already at its CONNECTION LIMIT (0)."""
    name = f"crsql_limited_{uuid.uuid4().hex[:8]}"
    with admin(pg_admin_config) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 0").format(sql.Identifier(name))
        )
    try:
        yield name
    finally:
        with admin(pg_admin_config) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def closed_database(pg_admin_config: DatabaseConfig) -> Iterator[str]:
    """A database with ALLOW_CONNECTIONS false."""
    name = f"crsql_closed_{uuid.uuid4().hex[:8]}"
    with admin(pg_admin_config) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
    try:
        yield name
    finally:
        with admin(pg_admin_config) as conn:
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


def refusal(config: DatabaseConfig, open_service: Any) -> str:
    """The message of every way to connect (one connection, the services, a migration run,
    the health report), checked to be one and the same."""
    messages = []
    for attempt in (lambda: connect(config), lambda: open_service(config), Migrator(config).status):
        with pytest.raises(DatabaseUnavailableError) as info:
            attempt()
        assert_library_error(info)
        messages.append(str(info.value))
    health = database_health(config)
    assert not health.healthy
    messages.append(health.report.details.error or "")
    assert len(set(messages)) == 1, messages
    assert SECRET not in messages[0]
    return messages[0]


def test_an_invalid_session_option_is_not_a_timeout(
    pg_admin_config: DatabaseConfig, open_service: Any
) -> None:
    config = pg_admin_config.replace(options={"options": "-c statement_timeout=abc"})
    assert refusal(config, open_service) == (
        f"PostgreSQL at {where(config)} refused the connection: "
        'invalid value for parameter "statement_timeout": "abc"'
    )


def test_a_role_at_its_connection_limit_is_not_no_answer(
    pg_admin_config: DatabaseConfig, limited_role: str, open_service: Any
) -> None:
    config = pg_admin_config.replace(user=limited_role)
    assert refusal(config, open_service) == (
        f"PostgreSQL at {where(config)} refused the connection: "
        f'too many connections for role "{limited_role}"'
    )


def test_a_database_closed_to_connections_is_not_no_answer(
    pg_admin_config: DatabaseConfig, closed_database: str, open_service: Any
) -> None:
    config = pg_admin_config.replace(dbname=closed_database)
    assert refusal(config, open_service) == (
        f"PostgreSQL at {where(config)} refused the connection: "
        f'database "{closed_database}" is not currently accepting connections'
    )


def test_a_database_named_like_tls_is_still_missing(
    pg_admin_config: DatabaseConfig, open_service: Any
) -> None:
    # "ssl" in the server's message once made any refusal a TLS failure.
    config = pg_admin_config.replace(dbname=f"ssl_certificate_{uuid.uuid4().hex[:6]}")
    assert refusal(config, open_service) == (
        f"database {config.dbname!r} does not exist on {where(config)}"
    )


def test_a_secret_the_server_echoes_is_masked(
    pg_admin_config: DatabaseConfig, open_service: Any
) -> None:
    # The server quotes a bad setting's value back; a config's secrets never reach the error.
    config = pg_admin_config.replace(
        password=SECRET,
        options={"options": f"-c statement_timeout={SECRET}", "sslpassword": SECRET},
    )
    assert refusal(config, open_service) == (
        f"PostgreSQL at {where(config)} refused the connection: "
        'invalid value for parameter "statement_timeout": "***"'
    )
