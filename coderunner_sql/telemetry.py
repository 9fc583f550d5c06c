"""Traces and metrics through OpenTelemetry, when `opentelemetry-api` is installed.

Install the `otel` extra (`opentelemetry-api` only) and configure an SDK in the application:
every service call becomes one CLIENT span named after it, following the database semantic
conventions, and every statement is timed in `db.client.operation.duration`; the pools are
read through observable instruments. Without the package nothing is imported and nothing
happens. The services call this module through `Telemetry.call()` and `current()`; the span
of a call is not made the current OpenTelemetry span, so no context is attached per call.

What never goes into a span or a metric: parameters, the SQL of `query()` (it is the
caller's and may hold literals), the user name, passwords and connection info.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NamedTuple

from coderunner_sql.errors import DatabaseError

try:
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the `otel` extra is not installed: telemetry stays off
    OTEL = False
else:
    OTEL = True

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from coderunner_sql.config import DatabaseConfig

__all__ = ["OTEL", "Call", "PoolSample", "Telemetry", "current", "name_comment", "note_batch"]

_SCOPE = "coderunner_sql"
_VERSION = "0.1.0"
# How often a service with no tracer provider yet looks for one the application set later.
_RECHECK_S = 1.0
# The semantic conventions' advice for db.client.operation.duration, in seconds.
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
_NOT_NAME = re.compile(r"[^\w.]")
# Statements recorded on one call's span: a call runs a handful; a stream's fetches repeat.
_MAX_STATEMENTS = 8


def name_comment(query_name: str) -> str:
    """The constant comment that names a query on the server: `/* get_user_by_id */ `."""
    return f"/* {_NOT_NAME.sub('_', query_name)} */ "


class PoolSample(NamedTuple):
    """One pool's figures at one moment, as the pool metrics report them."""

    pool: str
    idle: int
    used: int
    pending: int
    max: int
    timeouts: int


class Call:
    """One service call as telemetry sees it; this one records nothing (no tracer provider,
    not sampled, or OpenTelemetry not installed), so every hook does nothing."""

    __slots__ = ()

    def __enter__(self) -> Call:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def statement(self, name: str, sql: str | None, rows: int | None) -> None:
        """Nothing to record."""

    def retry(self, error: BaseException) -> None:
        """Nothing to record."""

    def replica(self, event: str, index: int, error: BaseException | None = None) -> None:
        """Nothing to record."""

    def served_by(self, host: str | None, port: int | None, index: int) -> None:
        """Nothing to record."""

    def batch(self, size: int) -> None:
        """Nothing to record."""

    def fail(self, error: BaseException) -> None:
        """Nothing to record."""


_NO_CALL = Call()
_current: ContextVar[Call] = ContextVar("coderunner_sql_call", default=_NO_CALL)


def current() -> Call:
    """The service call the running code is part of (a do-nothing one when none records)."""
    return _current.get()


def note_batch(size: int) -> None:
    """Record `db.operation.batch.size` on the running call's span."""
    _current.get().batch(size)


def _error_type(error: BaseException) -> str:
    kind = type(error)
    return f"{kind.__module__}.{kind.__qualname__}"


def _mark_failed(span: Span, error: BaseException) -> None:
    span.set_attribute("error.type", _error_type(error))
    state = getattr(error, "sqlstate", None)
    if state:
        span.set_attribute("db.response.status_code", state)
    if getattr(error, "outcome_unknown", False):
        span.set_attribute("coderunner_sql.outcome_unknown", True)
    # Only the library's own messages: they are written to hold no value or secret.
    text = str(error) if isinstance(error, DatabaseError) else type(error).__name__
    span.set_status(Status(StatusCode.ERROR, text))


class _RecordingCall(Call):
    """A service call with a recording span: the span, and the statements it sent."""

    __slots__ = ("_names", "_previous", "_rows", "_texts", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self._names: list[str] = []
        self._texts: list[str] = []
        self._rows: int | None = None
        self._previous: Call = _NO_CALL

    def __enter__(self) -> _RecordingCall:
        self._previous = _current.get()
        _current.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        # Not a token reset: a stream's generator may be closed from another context.
        _current.set(self._previous)
        span = self.span
        if self._names:
            span.set_attribute("db.query.summary", "; ".join(self._names))
        if self._texts:
            span.set_attribute("db.query.text", ";\n".join(self._texts))
        if self._rows is not None:
            span.set_attribute("db.response.returned_rows", self._rows)
        error = exc[1]
        if isinstance(error, BaseException):
            _mark_failed(span, error)
        span.end()

    def statement(self, name: str, sql: str | None, rows: int | None) -> None:
        """Add one statement's query name and SQL text (never its parameters)."""
        if rows is not None:
            self._rows = (self._rows or 0) + rows
        if (self._names and self._names[-1] == name) or len(self._names) >= _MAX_STATEMENTS:
            return
        self._names.append(name)
        if sql is not None:
            self._texts.append(sql)

    def retry(self, error: BaseException) -> None:
        """The call is sent once more after `error`."""
        self.span.add_event("retry", {"error.type": _error_type(error)})

    def replica(self, event: str, index: int, error: BaseException | None = None) -> None:
        """A read replica passed the call on (`replica.skipped`: behind; `replica.failed`)."""
        attributes: dict[str, Any] = {"coderunner_sql.replica": index}
        if error is not None:
            attributes["error.type"] = _error_type(error)
        self.span.add_event(event, attributes)

    def served_by(self, host: str | None, port: int | None, index: int) -> None:
        """A read replica answered the call, not the primary."""
        span = self.span
        span.set_attribute("coderunner_sql.replica", index)
        if host:
            span.set_attribute("server.address", host)
        span.set_attribute("server.port", port or 5432)

    def batch(self, size: int) -> None:
        """The call sends `size` rows in one statement."""
        self.span.set_attribute("db.operation.batch.size", size)

    def fail(self, error: BaseException) -> None:
        """The call failed with an error it handled itself (the health check's)."""
        _mark_failed(self.span, error)


class _Instruments:
    """The instruments of one meter provider, created once however many services use it.

    The SDK keeps the first instrument of a name and ignores a second one's callbacks, so
    the pool instruments read every live service through one callback each.
    """

    def __init__(self, meter: Any) -> None:
        self.sources: weakref.WeakSet[Telemetry] = weakref.WeakSet()
        self.duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations (one per statement).",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        )
        self.wait_time = meter.create_histogram(
            "db.client.connection.wait_time",
            unit="s",
            description="The time it took to obtain a connection from the pool.",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            callbacks=[self._count],
            unit="{connection}",
            description="Connections in the pool, by state (idle or used).",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.max",
            callbacks=[self._field("max")],
            unit="{connection}",
            description="The most connections the pool may open.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests",
            callbacks=[self._field("pending")],
            unit="{request}",
            description="Callers waiting for a connection from the pool.",
        )
        meter.create_observable_counter(
            "db.client.connection.timeouts",
            callbacks=[self._field("timeouts")],
            unit="{timeout}",
            description="Callers that gave up waiting for a connection from the pool.",
        )

    def _samples(self) -> Iterable[PoolSample]:
        for source in list(self.sources):
            yield from source.pool_samples()

    def _count(self, options: CallbackOptions) -> Iterable[Observation]:
        for sample in self._samples():
            yield metrics.Observation(sample.idle, _pool_attributes(sample.pool, "idle"))
            yield metrics.Observation(sample.used, _pool_attributes(sample.pool, "used"))

    def _field(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for sample in self._samples():
                yield metrics.Observation(getattr(sample, field), _pool_attributes(sample.pool))

        return observe


def _pool_attributes(pool: str, state: str | None = None) -> dict[str, str]:
    attributes = {"db.client.connection.pool.name": pool}
    if state is not None:
        attributes["db.client.connection.state"] = state
    return attributes


_instruments: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()
_global_instruments: list[_Instruments] = []
_instruments_lock = threading.Lock()


def _instruments_for(meter_provider: MeterProvider | None) -> _Instruments:
    # One set per provider; the global one is a proxy until the application sets it.
    with _instruments_lock:
        if meter_provider is None:
            if not _global_instruments:
                _global_instruments.append(_Instruments(metrics.get_meter(_SCOPE, _VERSION)))
            return _global_instruments[0]
        found = _instruments.get(meter_provider)
        if found is None:
            meter = meter_provider.get_meter(_SCOPE, _VERSION)
            found = _instruments[meter_provider] = _Instruments(meter)
        return found


class Telemetry:
    """One service's tracer and instruments; every hook does nothing when OpenTelemetry is
    not installed or (spans) no tracer provider is set."""

    def __init__(
        self,
        config: DatabaseConfig,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        pools: Callable[[], Iterable[PoolSample]] | None = None,
    ) -> None:
        self.enabled = OTEL
        self._tracer: Tracer | None = None
        self._recheck = 0.0
        self._pools = None if pools is None else weakref.WeakMethod(pools)
        self._attributes: dict[str, Any] = {"db.system.name": "postgresql"}
        if config.dbname:
            self._attributes["db.namespace"] = config.dbname
        if config.host:
            self._attributes["server.address"] = config.host
            self._attributes["server.port"] = config.port or 5432
        self._statement_attributes: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}
        self._ok_attributes: dict[str, dict[str, Any]] = {}
        self._pool_name = {"db.client.connection.pool.name": config.application_name}
        self._duration: Any = None
        self._wait_time: Any = None
        if not OTEL:
            return
        self._provider = tracer_provider
        if tracer_provider is not None:
            self._tracer = tracer_provider.get_tracer(_SCOPE, _VERSION)
        else:
            self._resolve()
        instruments = _instruments_for(meter_provider)
        instruments.sources.add(self)
        self._duration = instruments.duration
        self._wait_time = instruments.wait_time

    def _resolve(self) -> Tracer | None:
        # Resolved once a provider is set: until then a call costs a clock read, not a
        # no-op span (the API's no-op tracer costs more than the 2% this may add).
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            self._recheck = time.monotonic() + _RECHECK_S
            return None
        self._tracer = provider.get_tracer(_SCOPE, _VERSION)
        return self._tracer

    def _start(self, name: str, kind: Any, parent: Span | None) -> Span | None:
        tracer = self._tracer
        if tracer is None:
            if not self.enabled or time.monotonic() < self._recheck:
                return None
            tracer = self._resolve()
            if tracer is None:
                return None
        context = None if parent is None else trace.set_span_in_context(parent)
        span = tracer.start_span(name, context, kind, self._attributes)
        if not span.is_recording():
            return None
        return span

    def call(self, name: str, parent: Span | None = None) -> Call:
        """The span of one service call named `name` (a `with` block around it)."""
        if self._tracer is None and (not self.enabled or time.monotonic() < self._recheck):
            return _NO_CALL
        span = self._start(name, SpanKind.CLIENT, parent)
        if span is None:
            return _NO_CALL
        span.set_attribute("db.operation.name", name)
        return _RecordingCall(span)

    def begin_transaction(self) -> Span | None:
        """The span of a transaction, the parent of its calls' spans; None when not recording."""
        if not self.enabled:
            return None
        return self._start("transaction", SpanKind.INTERNAL, None)

    def end_transaction(
        self, span: Span | None, outcome: str, error: BaseException | None = None
    ) -> None:
        """End a transaction's span: committed, rolled back, or failed with `error`."""
        if span is None:
            return
        span.set_attribute("coderunner_sql.transaction.outcome", outcome)
        if error is not None:
            _mark_failed(span, error)
        span.end()

    def statement(
        self,
        name: str,
        sql: str | None,
        seconds: float,
        rows: int | None,
        error: BaseException | None,
        call: Call | None = None,
    ) -> None:
        """One statement was sent: its duration metric, and its name on the span of `call`
        (default: the running call)."""
        duration = self._duration
        if duration is not None:
            duration.record(seconds, self._attributes_of(name, error))
        (_current.get() if call is None else call).statement(name, sql, rows)

    def _attributes_of(self, name: str, error: BaseException | None) -> dict[str, Any]:
        # Built once per query and outcome: recording a statement builds no dict.
        if error is None:
            ok = self._ok_attributes.get(name)
            if ok is not None:
                return ok
        kind = None if error is None else _error_type(error)
        state = None if error is None else getattr(error, "sqlstate", None)
        key = (name, kind, state)
        found = self._statement_attributes.get(key)
        if found is None:
            found = {**self._attributes, "db.query.summary": name}
            if kind is not None:
                found["error.type"] = kind
            if state:
                found["db.response.status_code"] = state
            self._statement_attributes[key] = found
            if error is None:
                self._ok_attributes[name] = found
        return found

    def waited(self, seconds: float) -> None:
        """A caller waited `seconds` for a pooled connection."""
        wait_time = self._wait_time
        if wait_time is not None:
            wait_time.record(seconds, self._pool_name)

    def pool_samples(self) -> Iterable[PoolSample]:
        """The service's pools right now (none when it is gone or not connected)."""
        pools = None if self._pools is None else self._pools()
        return () if pools is None else pools()
