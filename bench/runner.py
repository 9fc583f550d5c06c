"""Loads the contenders and times them, interleaved round by round.

For each operation: every contender first runs its unrecorded warm-up samples, then in each
round every contender runs one batch, in an order rotated by one each round, so a slow
moment of the machine (or the server) lands on all contenders alike rather than on whoever
happened to run then. Each latency sample is timed alone with `perf_counter_ns`; a
throughput sample times a burst of calls shared by `concurrency` threads (sync contenders)
or tasks (async contenders) from the first call to the last return.

Async contenders all live on one event loop, which the runner enters once per batch; the
timer runs inside the loop, so entering it is not part of any sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bench import verify
from bench.contenders import Contender, load
from bench.profiles import Profile
from bench.workload import Calls, Kind, Operation, Workload


@dataclass
class Measurement:
    operation: str
    contender: str
    kind: Kind
    samples: list[float] = field(default_factory=list)
    """Nanoseconds per sample (latency) or calls per second per sample (throughput)."""
    round_medians: list[float] = field(default_factory=list)
    error: str | None = None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def _time_sync(fn: Callable[..., Any], samples: Sequence[Calls]) -> list[float]:
    clock = time.perf_counter_ns
    out: list[float] = []
    for calls in samples:
        start = clock()
        for args in calls:
            fn(*args)
        out.append(clock() - start)
    return out


async def _time_async(fn: Callable[..., Any], samples: Sequence[Calls]) -> list[float]:
    clock = time.perf_counter_ns
    out: list[float] = []
    for calls in samples:
        start = clock()
        for args in calls:
            await fn(*args)
        out.append(clock() - start)
    return out


def _burst_sync(fn: Callable[..., Any], workers: list[Calls], pool: ThreadPoolExecutor) -> float:
    # Threads wait at the barrier so that thread start-up is not timed.
    barrier = threading.Barrier(len(workers) + 1)

    def work(calls: Calls) -> None:
        barrier.wait()
        for args in calls:
            fn(*args)

    futures = [pool.submit(work, calls) for calls in workers]
    barrier.wait()
    start = time.perf_counter_ns()
    for future in futures:
        future.result()
    elapsed = time.perf_counter_ns() - start
    return sum(map(len, workers)) / (elapsed / 1e9)


async def _burst_async(fn: Callable[..., Any], workers: list[Calls]) -> float:
    async def work(calls: Calls) -> None:
        for args in calls:
            await fn(*args)

    start = time.perf_counter_ns()
    await asyncio.gather(*(work(calls) for calls in workers))
    elapsed = time.perf_counter_ns() - start
    return sum(map(len, workers)) / (elapsed / 1e9)


class Runner:
    def __init__(self, url: str, profile: Profile, workload: Workload) -> None:
        self.url = url
        self.profile = profile
        self.workload = workload
        self.loop = asyncio.new_event_loop()
        self.threads = ThreadPoolExecutor(profile.concurrency, thread_name_prefix="bench")
        self.contenders: list[Contender] = []
        self.skipped: dict[str, str] = {}
        self.wrong: dict[str, dict[str, str]] = {}
        """Contender name -> method -> what was wrong with its answer."""

    def _run(self, coroutine_or_value: Any) -> Any:
        if isinstance(coroutine_or_value, Coroutine):
            return self.loop.run_until_complete(coroutine_or_value)
        return coroutine_or_value

    def call(self, contender: Contender, method: str, *args: Any) -> Any:
        """One call of `contender.method(*args)`, awaited on the loop when it is async."""
        return self._run(getattr(contender, method)(*args))

    def load(self, names: Sequence[str]) -> None:
        """Import and set up each named contender; one that fails is skipped with a note."""
        for name in names:
            contender: Contender | None = None
            try:
                contender = load(name)()
                self._run(contender.setup(self.url))
            except Exception as exc:
                self.skipped[name] = f"setup failed: {one_line(exc)}"
                if contender is not None:
                    # A half set-up contender may hold a pool; it may also lack one.
                    with contextlib.suppress(Exception):
                        self._run(contender.close())
            else:
                self.contenders.append(contender)

    def verify(self, operations: list[Operation]) -> None:
        """Check every contender's answers; a wrong one is not timed for that method's
        operations, and a contender with nothing right is dropped."""
        for contender in list(self.contenders):
            problems = verify.check(
                partial(self.call, contender), operations, self.workload, contender.name, self.url
            )
            if len(problems) == len({op.method for op in operations}):
                self.skipped[contender.name] = "every operation gave wrong results"
                self._drop(contender)
            elif problems:
                self.wrong[contender.name] = problems

    def _drop(self, contender: Contender) -> None:
        self.contenders.remove(contender)
        try:
            self._run(contender.close())
        except Exception as exc:
            self.skipped[contender.name] += f" (and close failed: {one_line(exc)})"

    def _batch(self, contender: Contender, op: Operation, first: int, count: int) -> list[float]:
        samples = [self.workload.calls(op, contender.name, first + n) for n in range(count)]
        fn = getattr(contender, op.method)
        gc.collect()
        if op.kind == "latency":
            if contender.is_async:
                return self.loop.run_until_complete(_time_async(fn, samples))
            return _time_sync(fn, samples)
        if contender.is_async:
            return [
                self.loop.run_until_complete(_burst_async(fn, self.workload.split(op, calls)))
                for calls in samples
            ]
        return [_burst_sync(fn, self.workload.split(op, calls), self.threads) for calls in samples]

    def measure(
        self, op: Operation, before_round: Callable[[], None] | None = None
    ) -> list[Measurement]:
        """Time `op` for every contender, interleaved round by round.

        `before_round` runs (untimed) before the warm-up and before every round; the write
        operations use it to put the tables back to the seeded state.
        """
        batch = self.profile.batches[op.name]
        warmup = self.profile.warmup[op.name]
        chosen = [c for c in self.contenders if op.only is None or c.name in op.only]
        results = {c.name: Measurement(op.name, c.name, op.kind) for c in chosen}
        for c in chosen:
            wrong = self.wrong.get(c.name, {}).get(op.method)
            if wrong:
                results[c.name].error = f"not timed, wrong result: {wrong}"
        active = [c for c in chosen if results[c.name].error is None]

        def run(contender: Contender, first: int, count: int) -> list[float] | None:
            try:
                return self._batch(contender, op, first, count)
            except Exception as exc:
                results[contender.name].error = one_line(exc)
                active.remove(contender)
                return None

        if before_round is not None:
            before_round()
        for contender in list(active):
            if warmup:
                run(contender, 0, warmup)
        for round_number in range(self.profile.rounds_of(op.name)):
            if before_round is not None:
                before_round()
            shift = round_number % max(len(active), 1)
            for contender in active[shift:] + active[:shift]:
                values = run(contender, warmup + round_number * batch, batch)
                if values:
                    results[contender.name].samples.extend(values)
                    results[contender.name].round_medians.append(statistics.median(values))
        return list(results.values())

    def close(self) -> None:
        for contender in self.contenders:
            try:
                self._run(contender.close())
            except Exception as exc:
                self.skipped.setdefault(contender.name, f"close failed: {one_line(exc)}")
        self.threads.shutdown()
        self.loop.close()
