"""`DatabaseConfig.from_env`: every variable, its default, and a clear error for each bad value."""

from __future__ import annotations

from typing import Any

import pytest

from coderunner_sql import DatabaseConfig, DatabaseError, DatabaseUnavailableError
from coderunner_sql.errors import ConfigError
from tests.helpers import assert_library_error

SECRET = "s3cr3t-Pa55"


def from_env(**environ: str) -> DatabaseConfig:
    return DatabaseConfig.from_env(environ=environ)


def assert_hidden(config: DatabaseConfig, secret: str = SECRET) -> None:
    for shown in (repr(config), str(config), config.describe(), f"{config}", f"{config!r}"):
        assert secret not in shown


# -- DATABASE_URL ---------------------------------------------------------------------------


def test_database_url_fields() -> None:
    config = from_env(DATABASE_URL=f"postgresql://app:{SECRET}@db.example.com:6543/coderunner")
    assert (config.host, config.port, config.dbname) == ("db.example.com", 6543, "coderunner")
    assert (config.user, config.password, config.sslmode) == ("app", SECRET, None)
    assert config.is_configured


@pytest.mark.parametrize("scheme", ["postgres", "postgresql+psycopg", "postgresql+psycopg3"])
def test_database_url_other_schemes(scheme: str) -> None:
    config = from_env(DATABASE_URL=f"{scheme}://app:{SECRET}@db:5433/app")
    assert (config.host, config.port, config.user, config.password) == ("db", 5433, "app", SECRET)


def test_database_url_percent_encoded_parts() -> None:
    config = from_env(DATABASE_URL="postgresql://ad%40min:p%40ss%3Aw%2Fd%23%25@h/my%20db")
    assert config.user == "ad@min"
    assert config.password == "p@ss:w/d#%"
    assert config.dbname == "my db"
    # Round trip: the URL it gives back parses to the same config.
    assert DatabaseConfig.from_url(config.url()) == config


def test_database_url_wins_over_db_variables() -> None:
    config = from_env(
        DATABASE_URL="postgresql://app@url-host/url_db", DB_HOST="other", DB_NAME="other"
    )
    assert (config.host, config.dbname) == ("url-host", "url_db")


def test_database_url_query_string() -> None:
    config = from_env(
        DATABASE_URL="postgresql:///app?host=/var/run/postgresql&port=5499&connect_timeout=3"
    )
    assert (config.host, config.port, config.dbname) == ("/var/run/postgresql", 5499, "app")
    assert config.options == {"connect_timeout": "3"}


@pytest.mark.parametrize(
    ("sslmode", "db_ssl"), [("verify-full", "false"), ("disable", "true"), ("prefer", "true")]
)
def test_sslmode_in_url_wins_over_db_ssl(sslmode: str, db_ssl: str) -> None:
    config = from_env(DATABASE_URL=f"postgresql://h/db?sslmode={sslmode}", DB_SSL=db_ssl)
    assert config.sslmode == sslmode
    assert config.connect_kwargs()["sslmode"] == sslmode


def test_db_ssl_applies_to_a_url_without_sslmode() -> None:
    assert from_env(DATABASE_URL="postgresql://h/db", DB_SSL="true").sslmode == "require"


# -- DB_* variables -------------------------------------------------------------------------


def test_db_variables() -> None:
    config = from_env(
        DB_HOST="db.internal", DB_PORT="6432", DB_NAME="cr", DB_USER="svc", DB_PASSWORD=SECRET
    )
    assert (config.host, config.port, config.dbname) == ("db.internal", 6432, "cr")
    assert (config.user, config.password) == ("svc", SECRET)
    kwargs = config.connect_kwargs()
    assert kwargs["host"] == "db.internal"
    assert kwargs["port"] == 6432
    assert kwargs["password"] == SECRET


def test_nothing_set_means_embedded() -> None:
    config = from_env()
    assert config.host is None
    assert config.dbname is None
    assert not config.is_configured


def test_empty_variables_are_unset() -> None:
    assert from_env(DB_PORT="", DB_POOL_MAX="", DATABASE_URL="  ") == from_env()


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on", " True "])
def test_db_ssl_true_requires_tls(value: str) -> None:
    config = from_env(DB_HOST="h", DB_SSL=value)
    assert config.sslmode == "require"
    assert config.connect_kwargs()["sslmode"] == "require"


@pytest.mark.parametrize("value", ["false", "False", "0", "no", "off", ""])
def test_db_ssl_false_does_not_require_tls(value: str) -> None:
    config = from_env(DB_HOST="h", DB_SSL=value)
    assert config.sslmode != "require"
    assert config.connect_kwargs().get("sslmode") != "require"


# -- pool settings --------------------------------------------------------------------------


def test_pool_defaults() -> None:
    config = from_env(DB_HOST="h")
    assert config.pool_min == 2
    assert config.pool_max == 10
    assert config.idle_timeout_ms == 30_000
    assert config.connection_timeout_ms == 2_000
    assert config.acquire_timeout_ms == 60_000
    assert config.slow_query_ms == 1_000
    assert config.statement_timeout_ms is None


def test_pool_variables() -> None:
    config = from_env(
        DB_POOL_MIN="0",
        DB_POOL_MAX="25",
        DB_IDLE_TIMEOUT="1500",
        DB_CONNECTION_TIMEOUT="4500",
        DB_ACQUIRE_TIMEOUT="750",
        DB_SLOW_QUERY_MS="0",
        DB_STATEMENT_TIMEOUT="15000",
    )
    assert (config.pool_min, config.pool_max) == (0, 25)
    assert config.idle_timeout_ms == 1500
    assert config.connection_timeout_ms == 4500
    assert config.acquire_timeout_ms == 750
    assert config.slow_query_ms == 0
    assert config.statement_timeout_ms == 15_000
    # libpq's connect_timeout is in whole seconds.
    assert config.connect_kwargs()["connect_timeout"] == 4


def test_pool_variables_also_apply_with_database_url() -> None:
    config = from_env(DATABASE_URL="postgresql://h/db", DB_POOL_MAX="3", DB_POOL_MIN="3")
    assert (config.pool_min, config.pool_max) == (3, 3)


# -- bad values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"DB_PORT": "abc"}, ["DB_PORT", "'abc'"]),
        ({"DB_PORT": "54.32"}, ["DB_PORT", "'54.32'"]),
        ({"DB_PORT": "0"}, ["DB_PORT", "'0'"]),
        ({"DB_PORT": "70000"}, ["DB_PORT", "'70000'"]),
        ({"DB_POOL_MIN": "-1"}, ["DB_POOL_MIN", "'-1'"]),
        ({"DB_POOL_MAX": "-5"}, ["DB_POOL_MAX", "'-5'"]),
        ({"DB_POOL_MAX": "0"}, ["DB_POOL_MAX", "'0'"]),
        ({"DB_POOL_MIN": "5", "DB_POOL_MAX": "3"}, ["DB_POOL_MIN", "DB_POOL_MAX", "5", "3"]),
        ({"DB_POOL_MIN": "11"}, ["DB_POOL_MIN", "11", "10"]),  # over the default max
        ({"DB_IDLE_TIMEOUT": "soon"}, ["DB_IDLE_TIMEOUT", "'soon'"]),
        ({"DB_CONNECTION_TIMEOUT": "0"}, ["DB_CONNECTION_TIMEOUT", "'0'"]),
        ({"DB_ACQUIRE_TIMEOUT": "1.5"}, ["DB_ACQUIRE_TIMEOUT", "'1.5'"]),
        ({"DB_SLOW_QUERY_MS": "-1"}, ["DB_SLOW_QUERY_MS", "'-1'"]),
        ({"DB_STATEMENT_TIMEOUT": "0"}, ["DB_STATEMENT_TIMEOUT", "'0'"]),
        ({"DB_STATEMENT_TIMEOUT": "30s"}, ["DB_STATEMENT_TIMEOUT", "'30s'"]),
        ({"DB_SSL": "maybe"}, ["DB_SSL", "'maybe'"]),
    ],
)
def test_bad_variable(environ: dict[str, str], names: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        DatabaseConfig.from_env(environ={**environ, "DB_PASSWORD": SECRET})
    message = str(info.value)
    for name in names:
        assert name in message
    assert SECRET not in message
    assert isinstance(info.value, DatabaseError)
    assert_library_error(info)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"mysql://app:{SECRET}@h/db", "mysql://app:***@h/db"),
        (f"app:{SECRET}@h/db", "app:***@h/db"),  # no scheme at all
        (f"http://h/db?password={SECRET}", "http://h/db?password=***"),
        (f"postgresql://app:{SECRET}@h:notaport/db", "h:notaport"),
        (f"postgresql://app:{SECRET}@h:99999/db", "99999"),
        (f"postgresql://app:{SECRET}@h:0/db", "0"),
        (f"postgresql://app:{SECRET}@[::1/db", "[::1"),  # unclosed IPv6 bracket
        (f"postgresql://app:{SECRET}@h/db?sslmode=sometimes", "'sometimes'"),
        (f"postgresql://app:{SECRET}@h/db?port=x", "'x'"),
        (f"postgresql://app:{SECRET}/x@h:y/db", "DATABASE_URL"),  # unencoded '/' in password
    ],
)
def test_bad_database_url(url: str, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env(DATABASE_URL=url)
    message = str(info.value)
    assert "DATABASE_URL" in message
    assert shown in message
    assert SECRET not in message
    assert_library_error(info)


def test_bad_read_url_is_masked() -> None:
    with pytest.raises(ConfigError) as info:
        from_env(DATABASE_URL="postgresql://h/db", DATABASE_READ_URL=f"mysql://r:{SECRET}@r/db")
    assert "DATABASE_READ_URL" in str(info.value)
    assert SECRET not in str(info.value)


def test_unknown_sslmode_given_directly() -> None:
    with pytest.raises(ConfigError, match="'sometimes'"):
        DatabaseConfig(host="h", sslmode="sometimes")


# -- the password stays hidden ----------------------------------------------------------------


@pytest.mark.parametrize(
    "environ",
    [
        {"DATABASE_URL": f"postgresql://app:{SECRET}@h:5432/db?sslmode=require"},
        {"DATABASE_URL": f"postgresql://h/db?password={SECRET}"},
        {"DB_HOST": "h", "DB_USER": "app", "DB_PASSWORD": SECRET},
        {"DB_HOST": "/run/postgresql", "DB_PASSWORD": SECRET},
        {"DB_PASSWORD": SECRET},
    ],
)
def test_password_never_shown(environ: dict[str, str]) -> None:
    config = DatabaseConfig.from_env(environ=environ)
    assert config.password == SECRET
    assert_hidden(config)
    assert "***" in config.describe()
    assert SECRET not in config.url(with_password=False)
    assert SECRET in config.conninfo()  # the one place it must be


def test_password_hidden_in_read_urls_repr() -> None:
    config = from_env(
        DATABASE_URL="postgresql://h/db", DATABASE_READ_URL=f"postgresql://r:{SECRET}@replica/db"
    )
    assert_hidden(config)


def test_describe_names_the_server() -> None:
    config = from_env(DB_HOST="db.internal", DB_PORT="6432", DB_NAME="cr", DB_USER="svc")
    assert config.describe() == "postgresql://svc@db.internal:6432/cr"


# -- a statement timeout takes effect -----------------------------------------------------------


def test_statement_timeout_cancels_a_long_query(
    db_config: DatabaseConfig, open_service: Any
) -> None:
    environ = {"DATABASE_URL": db_config.url(), "DB_STATEMENT_TIMEOUT": "100", "DB_POOL_MIN": "1"}
    config = DatabaseConfig.from_env(environ=environ)
    assert config.statement_timeout_ms == 100
    service = open_service(config)
    assert service.query("SHOW statement_timeout") == [{"statement_timeout": "100ms"}]
    with pytest.raises(DatabaseError) as info:
        service.query("SELECT pg_sleep(1)")
    assert_library_error(info)
    assert "statement timeout" in str(info.value)
    # The server cancelled it and nothing was written: not "unavailable", not "maybe applied".
    assert not isinstance(info.value, DatabaseUnavailableError)
    assert info.value.sqlstate == "57014"
    assert service.query("SELECT 1 AS one") == [{"one": 1}]
