"""Opening single connections, and saying in one line why one could not be opened."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.errors import DatabaseUnavailableError

__all__ = ["connect", "connect_failure"]


def _where(config: DatabaseConfig) -> str:
    host = config.host or "localhost"
    return f"{host}:{config.port or 5432}"


# libpq's "connection failed: connection to server at "h" (1.2.3.4), port 5432 failed: "
_LIBPQ_PREFIX = re.compile(
    r"^(?:connection failed: )?(?:connection to server (?:at|on) .*? failed: )?"
)


def _libpq_reason(exc: BaseException) -> str:
    """The first line of a libpq error without its "connection to server … failed:" lead."""
    lines = str(exc).strip().splitlines()
    return _LIBPQ_PREFIX.sub("", lines[0])[:200] if lines else type(exc).__name__


def _tls_failure(exc: BaseException, config: DatabaseConfig) -> str:
    text = str(exc).lower()
    reason = _libpq_reason(exc)
    if "certificate verify failed" in text:
        reason += " (the server's certificate is not signed by a CA in sslrootcert)"
    elif "root certificate file" in text:
        reason += " (name the CA with sslrootcert=, or use sslmode=require not to verify)"
    mode = config.sslmode or "prefer"
    return f"cannot reach PostgreSQL at {_where(config)} over TLS (sslmode={mode}): {reason}"


def connect_failure(exc: BaseException, config: DatabaseConfig) -> DatabaseUnavailableError:
    """A one-line error for a failed connect, built from the config (never its password)."""
    text = str(exc).lower()
    state = getattr(exc, "sqlstate", None)
    if "ssl" in text or "certificate" in text:
        message = _tls_failure(exc, config)
    elif state in ("28P01", "28000") or "authentication failed" in text or "no password" in text:
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
        message = f"cannot reach PostgreSQL at {_where(config)} ({reason})"
    return DatabaseUnavailableError(message)


def connect(config: DatabaseConfig, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open one connection; a failure raises `DatabaseUnavailableError` naming host and port."""
    try:
        return psycopg.connect(**{**config.connect_kwargs(), **kwargs})
    except psycopg.Error as exc:
        raise connect_failure(exc, config) from None
