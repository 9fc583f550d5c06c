"""`DatabaseConfig.from_env`: every variable, its default, and a clear error for each bad value."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import pq

from coderunner_sql import (
    DatabaseConfig,
    DatabaseError,
    DatabaseService,
    DatabaseUnavailableError,
)
from coderunner_sql.config import DEFAULT_CALL_BOUND_S, SECRET_OPTIONS, TCP_DEFAULTS
from coderunner_sql.connection import connect
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


# -- the bound on every call (stalled networks) ------------------------------------------------


def test_call_timeout_defaults_to_the_module_constant() -> None:
    config = from_env(DB_HOST="h")
    assert config.call_timeout_ms is None
    assert config.call_bound_s == DEFAULT_CALL_BOUND_S == 300.0


@pytest.mark.parametrize(
    ("environ", "bound"),
    [
        ({"DB_CALL_TIMEOUT": "1500"}, 1.5),
        ({"DB_CALL_TIMEOUT": "0"}, None),  # no client-side bound at all
        ({"DB_CALL_TIMEOUT": "0", "DB_STATEMENT_TIMEOUT": "500"}, None),
        ({"DB_CALL_TIMEOUT": "2500", "DB_STATEMENT_TIMEOUT": "60000"}, 2.5),  # given wins
        # Derived: the statement timeout plus a connect's time, at least a second.
        ({"DB_STATEMENT_TIMEOUT": "5000"}, 7.0),
        ({"DB_STATEMENT_TIMEOUT": "5000", "DB_CONNECTION_TIMEOUT": "300"}, 6.0),
        ({"DB_STATEMENT_TIMEOUT": "250", "DB_CONNECTION_TIMEOUT": "4000"}, 4.25),
    ],
)
def test_call_bound(environ: dict[str, str], bound: float | None) -> None:
    config = from_env(DB_HOST="h", **environ)
    assert config.call_bound_s == bound
    if "DB_CALL_TIMEOUT" in environ:
        assert config.call_timeout_ms == int(environ["DB_CALL_TIMEOUT"])


def test_call_timeout_is_not_read_from_the_url() -> None:
    with pytest.raises(ConfigError, match="unknown connection option 'call_timeout'"):
        from_env(DATABASE_URL="postgresql://h/db?call_timeout=5")
    config = from_env(DATABASE_URL="postgresql://h/db", DB_CALL_TIMEOUT="750")
    assert config.call_timeout_ms == 750
    assert "call_timeout" not in config.connect_kwargs()


def test_negative_call_timeout_given_directly() -> None:
    with pytest.raises(ConfigError, match="DB_CALL_TIMEOUT"):
        DatabaseConfig(host="h", call_timeout_ms=-1)


def test_tcp_keepalive_defaults() -> None:
    kwargs = from_env(DB_HOST="h").connect_kwargs()
    assert {key: kwargs[key] for key in TCP_DEFAULTS} == {
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": 30_000,
    }


def test_tcp_options_in_the_url_win() -> None:
    config = from_env(DATABASE_URL="postgresql://h/db?keepalives_idle=5&tcp_user_timeout=0")
    kwargs = config.connect_kwargs()
    assert (kwargs["keepalives_idle"], kwargs["tcp_user_timeout"]) == ("5", "0")
    assert kwargs["keepalives_count"] == 3
    assert config.options == {"keepalives_idle": "5", "tcp_user_timeout": "0"}
    assert "keepalives_count" not in config.url()  # defaults are not written into the URL


def test_a_connection_carries_the_tcp_settings(db_config: DatabaseConfig) -> None:
    def in_use(config: DatabaseConfig) -> dict[str, str]:
        with connect(config) as conn:
            return {
                option.keyword.decode(): (option.val or b"").decode()
                for option in conn.pgconn.info
                if option.keyword.decode() in TCP_DEFAULTS
            }

    assert in_use(db_config) == {key: str(value) for key, value in TCP_DEFAULTS.items()}
    mine = db_config.replace(options={**db_config.options, "keepalives_idle": "7"})
    assert in_use(mine)["keepalives_idle"] == "7"


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
        ({"DB_CALL_TIMEOUT": "-1"}, ["DB_CALL_TIMEOUT", "'-1'"]),
        ({"DB_CALL_TIMEOUT": "2s"}, ["DB_CALL_TIMEOUT", "'2s'"]),
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
        # libpq's keyword form, a common mix-up, in its spellings.
        (f"host=db.internal password={SECRET} dbname=app", "key=value form"),
        (f"host=h port=5432 password = {SECRET} dbname=d", "password = ***"),
        (f"host=h password='{SECRET} x\\' y' dbname=d", "password=*** dbname=d"),
        (f"dbname=d sslpassword={SECRET}", "sslpassword=***"),
        # One slash, three or none: libpq would take it all as a local database name.
        (f"postgresql:/app:{SECRET}@db.internal:5432/app", "postgresql:/app:***@db.internal"),
        (f"postgresql:///app:{SECRET}@db.internal/app", "postgresql:///app:***@db.internal"),
        (f"postgresql:///app:{SECRET}@db.internal", "postgresql:///app:***@db.internal"),
        (f"postgresql:app:{SECRET}@db.internal/app", "***@db.internal/app"),
        (f"postgresql://h/db?sslpassword={SECRET}&sslmode=bogus", "'bogus'"),
        (f"postgresql://app@h:99999/db?sslpassword={SECRET}&x=1", "?sslpassword=***&x=1"),
        (f"mysql://h/db?a=1&SSLPassword={SECRET}", "&SSLPassword=***"),
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


def test_keyword_form_is_rejected_with_a_hint() -> None:
    with pytest.raises(ConfigError) as info:
        from_env(DATABASE_URL=f"host=db.internal password={SECRET} dbname=app")
    assert str(info.value) == (
        "DATABASE_URL must start with postgresql:// (or postgresql+psycopg://) (this is "
        "libpq's key=value form: write it as a URL), got host=db.internal password=*** dbname=app"
    )


def test_one_slash_typo_is_malformed_not_a_socket_database() -> None:
    with pytest.raises(ConfigError, match="it needs postgresql://") as info:
        DatabaseConfig.from_url(f"postgresql:/app:{SECRET}@db.internal:5432/app")
    assert SECRET not in str(info.value)
    # Percent-encoded, the same characters are a database name like any other.
    config = DatabaseConfig.from_url("postgresql:///a%40b%2Fc?host=/run/postgresql")
    assert config.dbname == "a@b/c"


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


@pytest.mark.parametrize("key", sorted(SECRET_OPTIONS - {"password"}))
def test_secret_options_never_shown(key: str) -> None:
    url = f"postgresql://app@h/db?{key}={SECRET}&sslmode=require&application_name=svc"
    config = DatabaseConfig.from_url(url)
    assert config.connect_kwargs()[key] == SECRET  # libpq still gets it
    assert_hidden(config)
    assert SECRET not in config.url(with_password=False)
    assert f"{key}=***" in config.describe()
    assert "application_name=svc" in config.describe()
    assert DatabaseConfig.from_url(config.url()) == config  # the full URL keeps it
    assert SECRET not in repr(DatabaseService(config))
    with pytest.raises(ConfigError) as info:
        DatabaseConfig.from_url(url.replace("require", "bogus"))
    assert SECRET not in str(info.value)


def test_every_libpq_secret_option_is_masked() -> None:
    # libpq marks the options a form must not echo with "*"; a newer libpq may add some.
    starred = {
        option.keyword.decode() for option in pq.Conninfo.get_defaults() if option.dispchar == b"*"
    }
    assert {"password", "sslpassword"} <= starred
    assert starred <= SECRET_OPTIONS


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


def test_a_multi_host_url_names_every_node_of_a_cluster():
    url = (
        "postgresql://app:s3cret@10.0.0.1:5432,10.0.0.2:5433,[::1]/db"
        "?target_session_attrs=read-write"
    )
    config = DatabaseConfig.from_url(url)
    assert config.hosts == (("10.0.0.1", 5432), ("10.0.0.2", 5433), ("::1", 5432))
    assert config.host is None
    assert config.port is None
    kwargs = config.connect_kwargs()
    assert kwargs["host"] == "10.0.0.1,10.0.0.2,::1"
    assert kwargs["port"] == "5432,5433,5432"
    assert kwargs["target_session_attrs"] == "read-write"
    assert config.is_configured
    assert DatabaseConfig.from_url(config.url()) == config
    assert "s3cret" not in repr(config) + str(config) + config.describe()
    assert config.describe().startswith(
        "postgresql://app:***@10.0.0.1:5432,10.0.0.2:5433,[::1]:5432/"
    )


@pytest.mark.parametrize("hosts", ["h1:5432,:5433", "h1:5432,h2:99999", "h1:5432,h2:x"])
def test_a_malformed_node_in_a_cluster_url_is_refused(hosts):
    with pytest.raises(ConfigError, match="malformed host") as caught:
        DatabaseConfig.from_url(f"postgresql://app:s3cret@{hosts}/db")
    assert "s3cret" not in str(caught.value)


def test_read_urls_split_only_between_urls():
    env = {
        "DATABASE_URL": "postgresql://app@h1,h2/db?target_session_attrs=read-write",
        "DATABASE_READ_URL": (
            "postgresql://app@h1,h2,h3/db?target_session_attrs=prefer-standby,"
            " postgresql://app@replica/db"
        ),
    }
    config = DatabaseConfig.from_env(env)
    assert config.read_urls == (
        "postgresql://app@h1,h2,h3/db?target_session_attrs=prefer-standby",
        "postgresql://app@replica/db",
    )
