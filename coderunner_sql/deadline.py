"""The bound on every wait for the server: a stalled network fails a call, it never hangs it.

Every round trip of a pooled connection — a statement, a fetch, COMMIT, the pool's own checks
and rollbacks — waits in psycopg's `Connection.wait`. The services' connection classes give
that wait a time limit (`DatabaseConfig.call_bound_s`). When a path stalls (a proxy that stops
forwarding, a dead peer whose kernel still acknowledges), the server's own timeout error can
never arrive, and without a limit the socket would wait for TCP keepalive, hours by default.

When the limit runs out the connection is dropped, not reused: the reply may still be on its
way, and the next call on that socket would read it as its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import psycopg

__all__ = ["NoAnswerError", "abandon", "limit", "within"]

_override: ContextVar[float | None] = ContextVar("coderunner_sql_wait_limit", default=None)


class NoAnswerError(psycopg.OperationalError):
    """The server did not answer within the bound; the connection has been dropped."""


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Bound every wait for the server in this block (this thread or task) by `seconds`."""
    token = _override.set(seconds)
    try:
        yield
    finally:
        _override.reset(token)


def limit(default: float | None) -> float | None:
    """The bound for one wait: the block's own (`within`) if tighter than the default."""
    override = _override.get()
    if override is None:
        return default
    return override if default is None else min(override, default)


def abandon(conn: Any, seconds: float) -> NoAnswerError:
    """Drop a connection whose answer did not come in time, and say so."""
    # Closing the socket is all that is safe: a cancel request would travel the same stalled
    # path. The server ends the statement itself (statement_timeout) or when it notices.
    conn.pgconn.finish()
    return NoAnswerError(
        f"no answer from the server within {seconds:g} s; the connection was dropped"
    )
