"""Connection and pool configuration, read from the environment or given directly."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import attrs

from coderunner_sql.errors import ConfigError

__all__ = ["DEFAULT_CALL_BOUND_S", "SECRET_OPTIONS", "TCP_DEFAULTS", "DatabaseConfig"]

_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg3")
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


SECRET_OPTIONS = frozenset(
    {"password", "sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key"}
)
"""libpq connection options whose values are secrets: masked wherever a config is shown."""

TCP_DEFAULTS: Mapping[str, int] = MappingProxyType(
    {
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": 30_000,
    }
)
"""libpq TCP settings every connection gets unless the URL gives its own: a dead peer or a
stalled path is noticed in about a minute, not the operating system's two hours."""

DEFAULT_CALL_BOUND_S = 300.0
"""The client-side bound on one call when neither `DB_CALL_TIMEOUT` nor
`DB_STATEMENT_TIMEOUT` is set."""

_SECRET_KEYS = "|".join(sorted(SECRET_OPTIONS))
# `?password=…` in a URL's query string: the value runs to the next `&` or `#`.
_QUERY_SECRET = re.compile(rf"(?P<head>[?&](?:{_SECRET_KEYS})=)[^&#]*", re.IGNORECASE)
# `password=…` in libpq's keyword form: a quoted value (backslash escapes) or up to a space.
_KEYWORD_SECRET = re.compile(
    rf"(?P<head>(?:^|\s)(?:{_SECRET_KEYS})\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|\S*)", re.IGNORECASE
)
# A scheme with one or more slashes, so `postgresql:/user:pw@h` is masked like `://`; with
# none (`app:pw@h`), what looks like a scheme may be the user name.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/+")


def _mask(url: str) -> str:
    """The URL (or keyword string) with every secret replaced by `***`, even when malformed."""
    # Keyword and query secrets first, while the text still has the shape they are found by.
    text = _KEYWORD_SECRET.sub(r"\g<head>***", _QUERY_SECRET.sub(r"\g<head>***", url))
    scheme = _SCHEME.match(text)
    head = scheme.group() if scheme else ""
    rest = text[len(head) :]
    # Up to the *last* `@`: an unencoded password may hold `@`, `/` or `?`, and masking too
    # much of a URL in an error message is harmless.
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.split(':', 1)[0]}:***@{host}"
    return head + rest


def _masked_options(options: Mapping[str, str]) -> str:
    return repr({k: "***" if k.lower() in SECRET_OPTIONS else v for k, v in options.items()})


@attrs.frozen(kw_only=True)
class DatabaseConfig:
    """Where the database is and how the pool behaves; the password never shows in its repr."""

    host: str | None = None
    # A cluster's nodes from a multi-host URL (`postgresql://h1:5432,h2:5432/db`), which
    # libpq tries in order (with `target_session_attrs` choosing the primary or a standby);
    # `host` and `port` are then None.
    hosts: tuple[tuple[str, int], ...] = attrs.field(default=(), converter=tuple)
    port: int | None = None
    dbname: str | None = None
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    sslmode: str | None = None
    options: Mapping[str, str] = attrs.field(factory=dict, converter=dict, repr=_masked_options)
    pool_min: int = 2
    pool_max: int = 10
    idle_timeout_ms: int = 30_000
    connection_timeout_ms: int = 2_000
    acquire_timeout_ms: int = 60_000
    slow_query_ms: int = 1_000
    statement_timeout_ms: int | None = None
    call_timeout_ms: int | None = None
    application_name: str = "coderunner-sql"
    pgbouncer: bool = False
    pipeline: bool = True
    read_urls: tuple[str, ...] = attrs.field(default=(), converter=tuple, repr=False)
    replica_max_lag_ms: int = 5_000
    replica_wait_ms: int = 0
    encryption_key: str | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.pool_min < 0 or self.pool_max < 1 or self.pool_min > self.pool_max:
            raise ConfigError(
                "pool size (DB_POOL_MIN, DB_POOL_MAX): need 0 <= min <= max and max >= 1, "
                f"got min={self.pool_min} max={self.pool_max}"
            )
        if self.sslmode is not None and self.sslmode not in _SSLMODES:
            raise ConfigError(
                f"sslmode must be one of {', '.join(_SSLMODES)}, got {self.sslmode!r}"
            )
        if self.call_timeout_ms is not None and self.call_timeout_ms < 0:
            raise ConfigError(
                f"call timeout (DB_CALL_TIMEOUT) must be at least 0, got {self.call_timeout_ms}"
            )
        if self.encryption_key is not None:
            from coderunner_sql.encryption import KeyRing

            KeyRing.parse(self.encryption_key)  # a malformed ring fails here, not mid-write

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> DatabaseConfig:
        """Parse a `postgresql://user:password@host:port/db?sslmode=…` URL."""
        return cls(**{**_parse_url(url, "database URL"), **overrides})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DatabaseConfig:
        """Read `DATABASE_URL` or the `DB_*` variables; a bad value raises `ConfigError`."""
        env = os.environ if environ is None else environ
        fields: dict[str, Any] = {}
        url = env.get("DATABASE_URL", "").strip()
        if url:
            fields.update(_parse_url(url, "DATABASE_URL"))
        else:
            for var, name, parse in _CONNECTION_VARS:
                if env.get(var, "") != "":
                    fields[name] = parse(var, env[var])
        ssl = env.get("DB_SSL")
        if ssl is not None and "sslmode" not in fields:
            fields["sslmode"] = _parse_ssl(ssl)
        key = env.get("CODERUNNER_SQL_ENCRYPTION_KEY", "").strip()
        if key:
            fields["encryption_key"] = key
        for var, name, parse in _POOL_VARS:
            if env.get(var, "") != "":
                fields[name] = parse(var, env[var])
        read = env.get("DATABASE_READ_URL", "").strip()
        if read:
            # Split only where a URL starts: a multi-host URL has commas of its own.
            urls = tuple(u.strip() for u in _URL_START.split(read) if u.strip())
            for u in urls:
                _parse_url(u, "DATABASE_READ_URL")
            fields["read_urls"] = urls
        return cls(**fields)

    # -- use --------------------------------------------------------------------------

    @property
    def is_configured(self) -> bool:
        """True when a server was named (a host or database); False means "use embedded"."""
        return self.host is not None or bool(self.hosts) or self.dbname is not None

    @property
    def call_bound_s(self) -> float | None:
        """Seconds one call may take on the client side before it is abandoned; None: no bound."""
        if self.call_timeout_ms is not None:
            return None if self.call_timeout_ms == 0 else self.call_timeout_ms / 1000
        if self.statement_timeout_ms is not None:
            # The server's own cancel gets the first chance; the bound only catches an answer
            # that cannot come back (a stalled network), a connect's time later.
            return (self.statement_timeout_ms + max(self.connection_timeout_ms, 1000)) / 1000
        return DEFAULT_CALL_BOUND_S

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `psycopg.connect` (they include the password)."""
        kwargs: dict[str, Any] = {
            key: value
            for key, value in (
                ("host", self.host),
                ("port", self.port),
                ("dbname", self.dbname),
                ("user", self.user),
                ("password", self.password),
                ("sslmode", self.sslmode),
            )
            if value is not None
        }
        if self.hosts:
            kwargs["host"] = ",".join(host for host, _ in self.hosts)
            kwargs["port"] = ",".join(str(port) for _, port in self.hosts)
        kwargs.update(self.options)
        for key, value in TCP_DEFAULTS.items():
            kwargs.setdefault(key, value)
        kwargs.setdefault("application_name", self.application_name)
        kwargs["connect_timeout"] = max(1, round(self.connection_timeout_ms / 1000))
        return kwargs

    def conninfo(self) -> str:
        """A libpq connection string (it includes the password: never log it)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo("", **self.connect_kwargs())

    def url(self, *, scheme: str = "postgresql", with_password: bool = True) -> str:
        """This config as a URL (`with_password=False`: every secret as `***`); `scheme=
        "postgresql+psycopg"` gives yoyo's form."""
        auth = quote(self.user or "", safe="")
        if with_password and self.password is not None:
            auth += ":" + quote(self.password, safe="")
        elif self.password is not None:
            auth += ":***"
        host = self.host or ",".join(f"{_bracketed(h)}:{port}" for h, port in self.hosts)
        if host.startswith("/"):  # a socket directory goes in the query string
            netloc = f"{auth}@" if auth else ""
            query = {"host": host}
        else:
            netloc = (f"{auth}@" if auth else "") + host + (f":{self.port}" if self.port else "")
            query = {}
            if self.port and not host:
                query["port"] = str(self.port)
        if self.sslmode:
            query["sslmode"] = self.sslmode
        query.update(
            {
                key: "***" if not with_password and key.lower() in SECRET_OPTIONS else value
                for key, value in self.options.items()
            }
        )
        suffix = f"?{urlencode(query, safe='*')}" if query else ""
        return f"{scheme}://{netloc}/{quote(self.dbname or '', safe='')}{suffix}"

    def describe(self) -> str:
        """A one-line, secret-free description: `user@host:port/db`."""
        return self.url(with_password=False)

    def __str__(self) -> str:
        return self.describe()

    def replace(self, **changes: Any) -> DatabaseConfig:
        """A copy with some fields changed."""
        return attrs.evolve(self, **changes)


# -- parsing helpers -----------------------------------------------------------------


_URL_START = re.compile(r",(?=\s*postgres(?:ql)?(?:\+\w+)?://)")


def _parse_int(var: str, value: str, *, low: int = 0, high: int | None = None) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(f"{var} must be a whole number, got {value!r}") from None
    if number < low or (high is not None and number > high):
        span = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{var} must be {span}, got {value!r}")
    return number


def _parse_bool(var: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{var} must be true or false, got {value!r}")


def _parse_ssl(value: str) -> str | None:
    # DB_SSL=true means require; a mode name (verify-full…) is taken as it is.
    mode = value.strip().lower()
    if mode in _SSLMODES:
        return mode
    try:
        return "require" if _parse_bool("DB_SSL", value) else None
    except ConfigError:
        raise ConfigError(
            f"DB_SSL must be true, false or an sslmode ({', '.join(_SSLMODES)}), got {value!r}"
        ) from None


def _int(low: int = 0, high: int | None = None) -> Callable[[str, str], int]:
    return lambda var, value: _parse_int(var, value, low=low, high=high)


def _text(var: str, value: str) -> str:
    return value


_CONNECTION_VARS: tuple[tuple[str, str, Callable[[str, str], Any]], ...] = (
    ("DB_HOST", "host", _text),
    ("DB_PORT", "port", _int(1, 65535)),
    ("DB_NAME", "dbname", _text),
    ("DB_USER", "user", _text),
    ("DB_PASSWORD", "password", _text),
)

_POOL_VARS: tuple[tuple[str, str, Callable[[str, str], Any]], ...] = (
    ("DB_POOL_MIN", "pool_min", _int(0, 1000)),
    ("DB_POOL_MAX", "pool_max", _int(1, 1000)),
    ("DB_IDLE_TIMEOUT", "idle_timeout_ms", _int(1)),
    ("DB_CONNECTION_TIMEOUT", "connection_timeout_ms", _int(1)),
    ("DB_ACQUIRE_TIMEOUT", "acquire_timeout_ms", _int(1)),
    ("DB_SLOW_QUERY_MS", "slow_query_ms", _int(0)),
    ("DB_STATEMENT_TIMEOUT", "statement_timeout_ms", _int(1)),
    ("DB_CALL_TIMEOUT", "call_timeout_ms", _int(0)),
    ("DB_PGBOUNCER", "pgbouncer", _parse_bool),
    ("DB_PIPELINE", "pipeline", _parse_bool),
    ("DB_REPLICA_MAX_LAG_MS", "replica_max_lag_ms", _int(0)),
    ("DB_REPLICA_WAIT_MS", "replica_wait_ms", _int(0)),
)


_KEYWORD_FORM = re.compile(r"^\s*[A-Za-z_]+\s*=")


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _cluster_hosts(
    netloc: str, source: str, masked: str
) -> tuple[str, tuple[tuple[str, int], ...]]:
    """`user@h1:p1,h2:p2` -> (`user@h1`, ((h1, p1), (h2, p2))): urlsplit reads one host only."""
    userinfo, at, hostlist = netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for entry in hostlist.split(","):
        try:
            node = urlsplit(f"//{entry}")
            port = node.port or 5432
        except ValueError:
            raise ConfigError(f"{source} has a malformed host {entry!r}: {masked}") from None
        if not node.hostname or not 1 <= port <= 65535:
            raise ConfigError(f"{source} has a malformed host {entry!r}: {masked}")
        nodes.append((unquote(node.hostname), port))
    first = _bracketed(nodes[0][0])
    return f"{userinfo}{at}{first}", tuple(nodes)


def _parse_url(url: str, source: str) -> dict[str, Any]:
    masked = _mask(url)
    hosts: tuple[tuple[str, int], ...] = ()
    try:
        parts = urlsplit(url)
        if "," in parts.netloc.rpartition("@")[2]:
            netloc, hosts = _cluster_hosts(parts.netloc, source, masked)
            parts = parts._replace(netloc=netloc)
        port = parts.port
    except ConfigError:
        raise  # a ValueError too, but already the precise one
    except ValueError:
        raise ConfigError(f"{source} is not a valid URL: {masked}") from None
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"{source} port must be between 1 and 65535, got {port}: {masked}")
    if parts.scheme not in _SCHEMES:
        hint = ""
        if not parts.scheme and _KEYWORD_FORM.match(url):
            hint = " (this is libpq's key=value form: write it as a URL)"
        raise ConfigError(
            f"{source} must start with postgresql:// (or postgresql+psycopg://){hint}, got {masked}"
        )
    if not url[len(parts.scheme) + 1 :].startswith("//"):
        # `postgresql:/user:pw@h/db` parses as a socket connection to a database named
        # `user:pw@h/db`: a typo that would connect elsewhere and print the password.
        raise ConfigError(f"{source} is not a valid URL (it needs {parts.scheme}://): {masked}")
    if "/" in parts.path[1:] or (not parts.netloc and "@" in parts.path):
        raise ConfigError(
            f"{source} is not a valid URL (a '/' or '@' in the database name must be "
            f"percent-encoded): {masked}"
        )
    query = dict(parse_qsl(parts.query))
    fields: dict[str, Any] = {
        "host": unquote(parts.hostname) if parts.hostname else query.pop("host", None),
        "port": port,
        "dbname": unquote(parts.path.lstrip("/")) or query.pop("dbname", None),
        "user": unquote(parts.username) if parts.username else query.pop("user", None),
        "password": unquote(parts.password)
        if parts.password is not None
        else query.pop("password", None),
        "sslmode": query.pop("sslmode", None),
    }
    if hosts:
        fields.update(host=None, port=None, hosts=hosts)
    if "port" in query:
        fields["port"] = _parse_int(f"{source} port", query.pop("port"), low=1, high=65535)
    if fields["sslmode"] is not None and fields["sslmode"] not in _SSLMODES:
        raise ConfigError(f"{source} has an unknown sslmode {fields['sslmode']!r}")
    _check_options(query, source)
    fields["options"] = query
    return {key: value for key, value in fields.items() if value is not None}


def _check_options(options: Mapping[str, str], source: str) -> None:
    """Reject query-string keys libpq does not know, naming the key (never the URL)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import make_conninfo

    for key, value in options.items():
        try:
            make_conninfo("", **{key: value})
        except ProgrammingError:
            hint = " (use sslmode=require)" if key == "ssl" else ""
            raise ConfigError(f"{source} has an unknown connection option {key!r}{hint}") from None
