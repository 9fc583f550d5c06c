"""Reads sent together: a read that arrives while others are in flight joins the next batch,
and a batch is one pipeline (psycopg's pipeline mode) on one pooled connection, ended by one
Sync — one round trip for many callers. Each caller gets exactly its own result or its own
error. Async only: what is batched is what one event loop has in flight.

Why each promise holds:

- *One failing read fails only itself.* In a pipeline, the server skips every statement
  after a failed one until the Sync (psycopg: `PipelineAborted`). The failed read gets its
  error; the skipped ones were reads, so they are sent again in the next batch.
- *A lost connection* fails no read that got its result; the others are sent once more on
  another connection (the rule of every read: once more after a lost connection), then fail.
- *Bounded*: every wait of the batch is bounded like any call's (`deadline.py`), and each
  caller waits at most the call bound (`DatabaseConfig.call_bound_s`) for its own result.
- *A cancelled caller* is dropped from a batch not yet sent; a result that comes for it
  anyway is thrown away.
- *Prepared statements*: psycopg notes a statement as prepared when it queues the Parse and
  forgets it again when the server's answer says it failed or was skipped. A batch that does
  not run to its Sync (cancelled, an unexpected error) leaves answers unread, so its
  connection is closed rather than lent again with a belief the server may not share.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg.abc import PQGen
from psycopg.errors import PipelineAborted
from psycopg.pq.abc import PGresult
from psycopg.rows import AsyncRowFactory, tuple_row

from coderunner_sql.codegen._plans import Plan, Watch, converter, row_factory
from coderunner_sql.connections_async import AsyncConnections
from coderunner_sql.deadline import NoAnswerError
from coderunner_sql.errors import DatabaseError, DatabaseUnavailableError

__all__ = ["ReadPipeline"]

_log = logging.getLogger("coderunner_sql.pipelining")
Conn = AsyncConnection[Any]
_MAX_BATCH = 256  # reads per round trip; more wait for the next batch
_SENDS = 2  # a read is sent at most twice after a lost connection, like any read
_SYNC_ROUNDS = 4


class _Read:
    """One caller's read, from the queue to its result."""

    __slots__ = ("cursor", "future", "params", "plan", "rows", "sends", "sql")

    def __init__(
        self,
        plan: Plan,
        sql: str,
        params: Mapping[str, Any],
        rows: AsyncRowFactory[Any],
        future: asyncio.Future[tuple[Any, int]],
    ) -> None:
        self.plan = plan
        self.sql = sql
        self.params = params
        self.rows = rows
        self.future = future
        self.sends = 0
        self.cursor: _BatchCursor | None = None


class _Shape:
    """What every read of one query shares: how its parameters are sent and its rows built."""

    __slots__ = ("convert", "plan", "rows")

    def __init__(self, plan: Plan, watch: Watch) -> None:
        self.plan = plan
        self.convert: Callable[[Mapping[str, Any]], Mapping[str, Any]] = converter(plan)
        self.rows: AsyncRowFactory[Any] = row_factory(plan, watch) or tuple_row


def _answer(future: asyncio.Future[tuple[Any, int]], value: tuple[Any, int]) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[tuple[Any, int]], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _expire(future: asyncio.Future[tuple[Any, int]], seconds: float) -> None:
    _fail(future, NoAnswerError(f"no answer from the server within {seconds:g} s"))


def _queue_gen(
    cursor: AsyncCursor[Any], sql: str, params: Mapping[str, Any], prepare: bool | None
) -> PQGen[None]:
    # psycopg's `execute()` but for its last step: in pipeline mode `execute()` also talks to
    # the server (sends what is queued, reads what arrived), a turn of the event loop per
    # read; here the batch's one Sync does that once. Nothing in these steps waits in
    # pipeline mode (they queue commands), so the generator ends without yielding.
    # psycopg's private steps (and _BatchCursor's hook): pyproject pins psycopg 3.3, and the
    # tests of pipelined reads run every path through them.
    yield from cursor._start_query(sql)
    pgq = cursor._convert_query(sql, params)
    yield from cursor._maybe_prepare_gen(pgq, prepare=prepare)
    cursor._last_query = sql
    yield from cursor._conn._prepared.maintain_gen(cursor._conn)


class _BatchCursor(AsyncCursor[Any]):
    """A cursor that keeps its own error: psycopg raises a pipeline's errors in whoever reads
    the answers, so which read failed is known only here."""

    failure: psycopg.Error | None = None

    def _check_results(self, results: list[PGresult]) -> None:
        try:
            super()._check_results(results)
        except psycopg.Error as exc:
            self.failure = exc
            raise


class _Pipeline(psycopg.AsyncPipeline):
    """psycopg's pipeline, left without one more Sync when every answer was read already.

    psycopg ends pipeline mode by sending a Sync and waiting for it: a round trip per busy
    spell, during which callers that already have their answers could see the connection
    still lent. After a batch's own Sync nothing is pending, and libpq leaves pipeline mode
    at once (it refuses when something is, and the connection is then closed).
    """

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is None and not self.command_queue and not self.result_queue:
            self._exit(None)
            return
        await super().__aexit__(exc_type, exc_val, exc_tb)


class ReadPipeline:
    """The batches of one pool: reads queued while others are in flight, sent together."""

    def __init__(self, connections: AsyncConnections, watch: Watch, bound: float | None) -> None:
        self._connections = connections
        self._watch = watch
        self._prepare = watch.prepare
        self._bound = bound
        self._queue: deque[_Read] = deque()
        self._runner: asyncio.Task[None] | None = None
        # By the plan's identity: hashing a frozen Plan would cost more than the lookup saves.
        self._shapes: dict[int, _Shape] = {}
        self._waiting: deque[tuple[float, asyncio.Future[tuple[Any, int]]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.active = 0
        """Reads of the service in flight, batched or not: a read that finds none goes alone."""
        self.batches = 0
        """Batches sent (round trips)."""
        self.reads = 0
        """Reads answered in a batch."""
        self.resent = 0
        """Reads sent again: skipped after another read's error, or on a lost connection."""

    async def read(self, plan: Plan, sql: str, given: Mapping[str, Any]) -> tuple[Any, int]:
        """Send one read with the next batch: its rows (a list, or the first row for `^` and
        `$`) and its row count; psycopg's error for its own failure."""
        shape = self._shapes.get(id(plan))
        if shape is None or shape.plan is not plan:
            shape = self._shapes[id(plan)] = _Shape(plan, self._watch)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Any, int]] = loop.create_future()
        self._queue.append(_Read(plan, sql, shape.convert(given), shape.rows, future))
        if self._runner is None:
            self._runner = loop.create_task(self._drain())
        if self._bound is not None:
            self._watch_deadline(loop, future, self._bound)
        return await future

    def _watch_deadline(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[tuple[Any, int]], bound: float
    ) -> None:
        # One timer for every waiting read, not one each (a timer per read cost about a
        # tenth of a batched read): reads wait in arrival order and share one bound, so
        # the oldest unanswered one is always the next to expire.
        waiting = self._waiting
        while waiting and waiting[0][1].done():
            waiting.popleft()
        waiting.append((loop.time() + bound, future))
        if self._timer is None:
            self._timer = loop.call_at(waiting[0][0], self._expire_due, loop, bound)

    def _expire_due(self, loop: asyncio.AbstractEventLoop, bound: float) -> None:
        self._timer = None
        waiting, now = self._waiting, loop.time()
        while waiting and (waiting[0][1].done() or waiting[0][0] <= now):
            _expire(waiting.popleft()[1], bound)
        if waiting:
            self._timer = loop.call_at(waiting[0][0], self._expire_due, loop, bound)

    def close(self, exc: DatabaseError) -> None:
        """Fail every read still queued with `exc` (the pool is closing)."""
        while self._queue:
            _fail(self._queue.popleft().future, exc)

    # -- the runner: one task while reads are queued ------------------------------------------

    async def _drain(self) -> None:
        try:
            while self._queue and not self._connections.closed:
                try:
                    conn = await self._connections.acquire("pipelined reads")
                except DatabaseError as exc:
                    self.close(exc)
                    return
                await self._batches(conn)
        finally:
            self._runner = None
        if self._connections.closed:
            self.close(DatabaseUnavailableError("pipelined reads: the service disconnected"))

    async def _batches(self, conn: Conn) -> None:
        # Batch after batch on one connection while reads keep coming; then back to the pool.
        batch: list[_Read] = []
        sound = False
        # Cursors answered on this connection, by query, to run the same query again: psycopg
        # keeps a cursor's adapters while its query stays the same (the SQL is one object).
        spare: dict[int, list[_BatchCursor]] = {}
        try:
            # What `conn.pipeline()` does, with the pipeline above (psycopg 3.3's attribute).
            pipeline = conn._pipeline = _Pipeline(conn)
            async with pipeline:
                while self._queue and not conn.broken:
                    batch = self._take()
                    if batch:
                        await self._send(conn, pipeline, batch, spare)
                        batch = []
                    if not self._queue:
                        # The callers just answered may read again at once: one turn of the
                        # loop lets their reads join this connection's next batch.
                        await asyncio.sleep(0)
            sound = not conn.broken
        except psycopg.Error:
            pass  # lost at the pipeline's end, after every read sent had its answer
        except Exception:
            _log.exception("pipelined reads: a batch failed unexpectedly")
        finally:
            conn._pipeline = None
            # Reached with reads of a batch unanswered only when the batch was interrupted
            # (this task cancelled, an unexpected error): their answers will never be read.
            interrupted = DatabaseUnavailableError("pipelined reads: the batch was interrupted")
            for read in batch:
                _fail(read.future, interrupted)
            if not sound:
                await conn.close()
            await self._connections.pool.putconn(conn)

    def _take(self) -> list[_Read]:
        queue = self._queue
        batch: list[_Read] = []
        while queue and len(batch) < _MAX_BATCH:
            read = queue.popleft()
            if not read.future.done():  # a caller cancelled or timed out before it was sent
                batch.append(read)
        return batch

    async def _send(
        self,
        conn: Conn,
        pipeline: psycopg.AsyncPipeline,
        batch: list[_Read],
        spare: dict[int, list[_BatchCursor]],
    ) -> None:
        sent: list[_Read] = []
        for read in batch:
            read.sends += 1
            free = spare.get(id(read.plan))
            cursor = free.pop() if free else _BatchCursor(conn, row_factory=read.rows)
            try:
                await conn.wait(_queue_gen(cursor, read.sql, read.params, self._prepare))
            except (psycopg.Error, TypeError, ValueError) as exc:
                _fail(read.future, exc)  # its own parameters: never sent
                continue
            read.cursor = cursor
            sent.append(read)
        if not sent:
            return
        # psycopg stops reading a batch's answers at the first error it meets while sending
        # (the rest stay queued); another Sync reads on from there. Each round reads at least
        # up to the next Sync, so a batch needs at most a few.
        met: list[psycopg.Error] = []
        for _ in range(_SYNC_ROUNDS):
            try:
                await pipeline.sync()
                break
            except psycopg.Error as exc:
                met.append(exc)
                if conn.broken or conn.closed:
                    break
        self.batches += 1
        await self._answer(conn, sent, met, spare)

    async def _answer(
        self,
        conn: Conn,
        sent: list[_Read],
        met: list[psycopg.Error],
        spare: dict[int, list[_BatchCursor]],
    ) -> None:
        # Each cursor holds its own answer: rows, the server's error (`failure`), or
        # PipelineAborted (skipped after another statement's error). A server error no
        # cursor holds came from a statement's Parse, which precedes its execution: it is
        # the error of the first read skipped after it.
        parse_error = None
        if met:  # only a batch that met an error has one to place
            held = {id(read.cursor.failure) for read in sent if read.cursor is not None}
            parse_error = next(
                (e for e in met if e.sqlstate is not None and id(e) not in held), None
            )
        lost = conn.broken or conn.closed
        again: list[_Read] = []
        for read in sent:
            cursor = read.cursor
            read.cursor = None
            assert cursor is not None
            failure = cursor.failure
            if cursor.pgresult is not None:
                self.reads += 1
                try:
                    rows = (
                        await cursor.fetchall()
                        if read.plan.suffix == ""
                        else await cursor.fetchone()
                    )
                    _answer(read.future, (rows, cursor.rowcount))
                except Exception as exc:  # building the record (a value that does not fit)
                    _fail(read.future, exc)
                spare.setdefault(id(read.plan), []).append(cursor)
            elif failure is not None and not isinstance(failure, PipelineAborted):
                _fail(read.future, failure)
            elif failure is not None and parse_error is not None:
                _fail(read.future, parse_error)
                parse_error = None
            elif failure is None and lost and read.sends >= _SENDS:
                _fail(read.future, next(iter(met), psycopg.OperationalError("connection lost")))
            elif failure is None and not lost:
                # No answer read on a sound connection: the pipeline's bookkeeping and the
                # server's disagree, so this connection is not lent again.
                await conn.close()
                lost = True
                again.append(read)
            elif not read.future.done():
                again.append(read)
        if again:
            self.resent += len(again)
            self._queue.extendleft(reversed(again))
