"""What happens around every statement a service sends, sync or async: timing, slow-query
log, telemetry, error translation, and opening encrypted values before a record holds them
(the `Watch` a generated query method runs under, `coderunner_sql.codegen._plans`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import cattrs
import psycopg

from coderunner_sql.encryption import KeyRing, UnfitValue, openers
from coderunner_sql.errors import DatabaseError, QueryError, ValidationError, scrub, translate
from coderunner_sql.telemetry import Call, Telemetry

__all__ = ["QueryWatch", "Statement"]

log = logging.getLogger("coderunner_sql.queries")


# What cattrs raises for a row its record cannot hold (a field type it cannot build).
_CATTRS_ERRORS = cattrs.errors.CattrsError


class Statement:
    """One statement being sent, timed from `with` to its end; the runner fills in how many
    rows it returned or touched. (A class, not a generator: it runs on every statement.)"""

    __slots__ = ("_call", "_name", "_sql", "_started", "_watch", "rows")

    def __init__(self, watch: QueryWatch, name: str, sql: str | None, call: Call | None) -> None:
        self._watch = watch
        self._name = name
        self._sql = sql
        self._call = call
        self.rows: int | None = None

    def __enter__(self) -> Statement:
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        seconds = time.perf_counter() - self._started
        watch = self._watch
        error = None if exc is None else watch._failed(self._name, exc)
        failure = exc if error is None else error
        watch._done(self._name, self._sql, seconds, self.rows, failure, self._call)
        if error is not None:
            raise error from None


class QueryWatch:
    """Shared by the sync and async adapters: everything a query needs that is not I/O."""

    def __init__(
        self,
        *,
        slow_query_ms: float,
        prepare: bool | None,
        keys: KeyRing | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.telemetry = telemetry
        self.keys = keys
        self.slow_query_ms = slow_query_ms
        self.prepare = prepare

    def __call__(
        self, query_name: str, sql: str | None = None, call: Call | None = None
    ) -> Statement:
        """The context around one statement: it times it and raises this library's errors."""
        return Statement(self, query_name, sql, call)

    def _failed(self, query_name: str, exc: BaseException) -> DatabaseError | None:
        # The error a statement's failure becomes (None: it leaves as it is).
        if isinstance(exc, psycopg.Error):
            return translate(exc, operation=query_name)
        if isinstance(exc, DatabaseError):
            return None
        if isinstance(exc, RecursionError):
            # A parameter nested deeper than the call stack allows (rows are read without
            # recursion, coderunner_sql.converter.load_json).
            scrub(exc)
            return ValidationError(f"{query_name}: a value is nested too deeply to send")
        if isinstance(exc, KeyError | ValueError | TypeError | _CATTRS_ERRORS):
            # The row did not fit its record: the query's columns and the record disagree
            # (`coderunner-sql check` catches this before deploy), or a stored value is not
            # what the record holds. Values stay out of the text.
            if isinstance(exc, UnfitValue):
                detail = str(exc)
            elif isinstance(exc, KeyError):
                detail = f"the result does not fit its record (missing column {exc.args[0]!r})"
            else:
                detail = f"the result does not fit its record ({type(exc).__name__})"
            scrub(exc)  # its frames hold the row
            return QueryError(f"{query_name}: {detail}")
        return None  # cancelled, interrupted: timed and named all the same

    def _done(
        self,
        query_name: str,
        sql: str | None,
        seconds: float,
        rows: int | None,
        failure: BaseException | None,
        call: Call | None,
    ) -> None:
        if self.telemetry is not None:
            self.telemetry.statement(query_name, sql, seconds, rows, failure, call)
        if self.slow_query_ms and seconds * 1000 >= self.slow_query_ms:
            self._log_slow(query_name, seconds * 1000, rows, failure)

    @staticmethod
    def _log_slow(
        query_name: str, elapsed_ms: float, rows: int | None, failure: BaseException | None
    ) -> None:
        # Structured for log pipelines (`extra=`): the name, never the parameters.
        outcome = "ok" if failure is None else type(failure).__name__
        log.warning(
            "slow query %s took %.0f ms",
            query_name,
            elapsed_ms,
            extra={
                "query_name": query_name,
                "duration_ms": round(elapsed_ms, 3),
                "rows": rows,
                "outcome": outcome,
            },
        )

    def openers(self, names: Sequence[str]) -> dict[int, Callable[[Any], Any]]:
        """Column index -> what opens that column's stored (maybe encrypted) value."""
        return openers(self.keys, names)
