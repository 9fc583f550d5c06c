"""Which server a command talks to: `--database`, the environment, or the embedded default."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.embedded import DEFAULT_DATA_DIR, EmbeddedServer

__all__ = ["DATA_DIR_ENV", "EMBEDDED_DBNAME", "Target", "choose_target"]

DATA_DIR_ENV = "CODERUNNER_SQL_DATA_DIR"
# The embedded cluster is private to this folder, so its default database serves.
EMBEDDED_DBNAME = "postgres"


@attrs.define
class Target:
    """The database a command uses, and the embedded server behind it if there is one."""

    config: DatabaseConfig
    embedded: EmbeddedServer | None = None

    def describe(self) -> str:
        """One line for stderr: which server is in use (never the password)."""
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


def choose_target(
    database_url: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    say: Callable[[str], None] | None = None,
) -> Target:
    """`database_url`, else `DATABASE_URL`/`DB_*`, else an embedded server (started if needed)."""
    env = os.environ if environ is None else environ
    base = DatabaseConfig.from_env(env)
    if database_url:
        url_config = DatabaseConfig.from_url(database_url)
        connection_fields = ("host", "port", "dbname", "user", "password", "sslmode", "options")
        return Target(base.replace(**{f: getattr(url_config, f) for f in connection_fields}))
    if env.get("DATABASE_URL") or env.get("DB_HOST") or env.get("DB_NAME"):
        return Target(base)
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
    )
    return {name: getattr(config, name) for name in keep}
