"""Which server a command talks to: `--database`, the environment, or the embedded default."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.embedded import DEFAULT_DATA_DIR, EmbeddedServer
from coderunner_sql.errors import ConfigError

__all__ = [
    "DATA_DIR_ENV",
    "EMBEDDED_DBNAME",
    "EMBEDDED_ENV",
    "Target",
    "choose_target",
    "embedded_refusal",
]

DATA_DIR_ENV = "CODERUNNER_SQL_DATA_DIR"
EMBEDDED_ENV = "CODERUNNER_SQL_EMBEDDED"
# The embedded cluster is private to this folder, so its default database serves.
EMBEDDED_DBNAME = "postgres"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
# Variables that say "a server was meant": present, even empty, they are a setting gone missing.
_CONNECTION_PREFIXES = ("DB_", "DATABASE_URL", "DATABASE_READ_URL")


@attrs.define
class Target:
    """The database a command uses, and the embedded server behind it if there is one."""

    config: DatabaseConfig
    embedded: EmbeddedServer | None = None

    def describe(self) -> str:
        """One line for stderr: which server is in use (never a secret)."""
        if self.embedded is not None:
            return (
                f"using embedded PostgreSQL at {self.config.host}:{self.config.port} "
                f"(data: {self.embedded.data_dir})"
            )
        return f"using {self.config.describe()}"

    def close(self) -> None:
        """Stop the embedded server if this process started it."""
        if self.embedded is not None and self.embedded.started_here:
            self.embedded.stop()


def _flag(environ: Mapping[str, str], var: str) -> bool:
    value = environ.get(var, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{var} must be true or false, got {environ[var]!r}")


def _on_terminal() -> bool:
    # A person can both answer (stdin) and read what is printed (stderr).
    try:
        return sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty()
    except ValueError:  # a closed stream: certainly no person at it
        return False


def embedded_refusal(environ: Mapping[str, str], *, interactive: bool | None = None) -> str | None:
    """Why an embedded server must not stand in for an unconfigured application database here
    (a setting present but empty or partial, CI, no terminal), or None when it may."""
    present = sorted(k for k in environ if k.startswith(_CONNECTION_PREFIXES))
    if present:
        empty = [k for k in present if not environ[k].strip()]
        given = [k for k in present if environ[k].strip()]
        parts = [f"{', '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty"] if empty else []
        if given:
            parts.append(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} set")
        return f"{' and '.join(parts)}, but no server is named (DATABASE_URL, DB_HOST or DB_NAME)"
    ci = environ.get("CI", "").strip().lower()
    if ci not in _FALSE:
        return "no server is configured (DATABASE_URL, DB_HOST or DB_NAME) and CI is set"
    if not (_on_terminal() if interactive is None else interactive):
        return "no server is configured (DATABASE_URL, DB_HOST or DB_NAME) and not on a terminal"
    return None


def choose_target(
    database_url: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    say: Callable[[str], None] | None = None,
    app_data: bool = False,
    allow_embedded: bool = False,
    interactive: bool | None = None,
) -> Target:
    """`database_url`, else `DATABASE_URL`/`DB_*`, else an embedded server (started if needed).

    With `app_data` (a command on the application's own database), the embedded server is
    used only where nothing suggests a server was meant (see `embedded_refusal`), unless
    `allow_embedded` or `CODERUNNER_SQL_EMBEDDED=1` opts in; otherwise `ConfigError`.
    """
    env = os.environ if environ is None else environ
    base = DatabaseConfig.from_env(env)
    if database_url:
        url_config = DatabaseConfig.from_url(database_url)
        connection_fields = ("host", "port", "dbname", "user", "password", "sslmode", "options")
        return Target(base.replace(**{f: getattr(url_config, f) for f in connection_fields}))
    if env.get("DATABASE_URL", "").strip() or env.get("DB_HOST") or env.get("DB_NAME"):
        return Target(base)
    opted_in = allow_embedded or _flag(env, EMBEDDED_ENV)
    if app_data and not opted_in:
        # `--database "$DATABASE_URL"` with the secret missing arrives here as "".
        refusal = (
            "--database is empty"
            if database_url is not None
            else embedded_refusal(env, interactive=interactive)
        )
        if refusal is not None:
            raise ConfigError(
                f"no database to use: {refusal}. Set DATABASE_URL (or DB_HOST) or pass "
                f"--database URL; to use a throwaway embedded server instead, pass --embedded "
                f"or set {EMBEDDED_ENV}=1"
            )
    folder = Path(data_dir or env.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
    if say is not None and not (folder / "PG_VERSION").exists():
        say(f"initialising embedded PostgreSQL in {folder} (first run only)")
    server = EmbeddedServer(folder).start()
    return Target(server.config(EMBEDDED_DBNAME).replace(**_pool_fields(base)), server)


def _pool_fields(config: DatabaseConfig) -> dict[str, object]:
    keep = (
        "pool_min",
        "pool_max",
        "idle_timeout_ms",
        "connection_timeout_ms",
        "acquire_timeout_ms",
        "slow_query_ms",
        "statement_timeout_ms",
        "call_timeout_ms",
    )
    return {name: getattr(config, name) for name in keep}
