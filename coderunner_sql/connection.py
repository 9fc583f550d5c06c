"""Opening single connections, and saying in one line why one could not be opened."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from coderunner_sql.config import SECRET_OPTIONS, DatabaseConfig
from coderunner_sql.errors import DatabaseUnavailableError

__all__ = ["connect", "connect_failure"]


def _where(config: DatabaseConfig) -> str:
    if config.hosts:  # a cluster: every node libpq tried
        return ",".join(f"{host}:{port}" for host, port in config.hosts)
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
    reason = _masked(_libpq_reason(exc), config)
    if "certificate verify failed" in text:
        reason += " (the server's certificate is not signed by a CA in sslrootcert)"
    elif "root certificate file" in text:
        reason += " (name the CA with sslrootcert=, or use sslmode=require not to verify)"
    mode = config.sslmode or "prefer"
    return f"cannot reach PostgreSQL at {_where(config)} over TLS (sslmode={mode}): {reason}"


# The server's own refusal, after libpq's lead: "… failed: FATAL:  too many connections …".
_SERVER_REFUSAL = re.compile(r"\bFATAL:\s+(?P<reason>[^\n]*)")
_NO_ROLE = re.compile(r'^role ".*" does not exist$')
_NO_DATABASE = re.compile(r'^database ".*" does not exist$')


def _secrets(config: DatabaseConfig) -> list[str]:
    found = [config.password or ""]
    found += [v for k, v in config.options.items() if k.lower() in SECRET_OPTIONS]
    # Longest first, so a secret that holds another is masked whole.
    return sorted({s for s in found if s}, key=len, reverse=True)


def _masked(text: str, config: DatabaseConfig) -> str:
    """Text from outside (the server, libpq) with any secret of the config as `***`: the
    server never echoes a password, but it quotes an `options=-c …` value back."""
    for secret in _secrets(config):
        text = text.replace(secret, "***")
    return text


def _refused(reason: str, config: DatabaseConfig) -> str:
    """The message for a server that answered and refused, in its own words."""
    if "authentication failed" in reason:
        return f"authentication failed for user {config.user or '(default)'!r} at {_where(config)}"
    if _NO_ROLE.match(reason):
        return f"role {config.user!r} does not exist on {_where(config)}"
    if _NO_DATABASE.match(reason):
        return f"database {config.dbname!r} does not exist on {_where(config)}"
    return f"PostgreSQL at {_where(config)} refused the connection: {_masked(reason, config)[:200]}"


def connect_failure(exc: BaseException, config: DatabaseConfig) -> DatabaseUnavailableError:
    """A one-line error for a failed connect, built from the config (never a secret of it)."""
    raw = str(exc)
    text = raw.lower()
    state = getattr(exc, "sqlstate", None)
    refusal = _SERVER_REFUSAL.search(raw)
    if refusal is not None:
        # The server answered: its reason is the cause, whatever words it contains.
        message = _refused(refusal["reason"].strip(), config)
    elif "ssl" in text or "certificate" in text:
        message = _tls_failure(exc, config)
    elif state in ("28P01", "28000") or "authentication failed" in text or "no password" in text:
        message = (
            f"authentication failed for user {config.user or '(default)'!r} at {_where(config)}"
        )
    elif state == "3D000":
        message = f"database {config.dbname!r} does not exist on {_where(config)}"
    elif "could not translate host name" in text or "name or service not known" in text:
        message = f"cannot resolve host {config.host!r}"
    else:
        reason = "connection refused" if "refused" in text else "no answer"
        if "timeout expired" in text or "timed out" in text:
            reason = "timed out"
        message = f"cannot reach PostgreSQL at {_where(config)} ({reason})"
    return DatabaseUnavailableError(message)


def connect(config: DatabaseConfig, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open one connection; a failure raises `DatabaseUnavailableError` naming host and port."""
    try:
        return psycopg.connect(**{**config.connect_kwargs(), **kwargs})
    except psycopg.Error as exc:
        raise connect_failure(exc, config) from None
