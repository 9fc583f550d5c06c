"""Opening single connections, and saying in one line why one could not be opened."""

from __future__ import annotations

from typing import Any

import psycopg

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.errors import DatabaseUnavailableError

__all__ = ["connect", "connect_failure"]


def _where(config: DatabaseConfig) -> str:
    host = config.host or "localhost"
    return f"{host}:{config.port or 5432}"


def connect_failure(exc: BaseException, config: DatabaseConfig) -> DatabaseUnavailableError:
    """A one-line error for a failed connect, built from the config (never its password)."""
    text = str(exc).lower()
    state = getattr(exc, "sqlstate", None)
    if state in ("28P01", "28000") or "authentication failed" in text or "no password" in text:
        message = (
            f"authentication failed for user {config.user or '(default)'!r} at {_where(config)}"
        )
    elif "role" in text and "does not exist" in text:
        message = f"role {config.user!r} does not exist on {_where(config)}"
    elif state == "3D000" or ("database" in text and "does not exist" in text):
        message = f"database {config.dbname!r} does not exist on {_where(config)}"
    elif "could not translate host name" in text or "name or service not known" in text:
        message = f"cannot resolve host {config.host!r}"
    else:
        reason = "connection refused" if "refused" in text else "no answer"
        if "timeout" in text or "timed out" in text:
            reason = "timed out"
        elif "ssl" in text or "certificate" in text:
            reason = "TLS negotiation failed: " + str(exc).strip().splitlines()[-1][:200]
        message = f"cannot reach PostgreSQL at {_where(config)} ({reason})"
    return DatabaseUnavailableError(message)


def connect(config: DatabaseConfig, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open one connection; a failure raises `DatabaseUnavailableError` naming host and port."""
    try:
        return psycopg.connect(**{**config.connect_kwargs(), **kwargs})
    except psycopg.Error as exc:
        raise connect_failure(exc, config) from None
