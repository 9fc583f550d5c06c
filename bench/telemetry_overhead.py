"""`python -m bench.telemetry_overhead`: what OpenTelemetry costs a single-row call.

One private server, one user, and three worker processes that differ only in OpenTelemetry:

* `absent`: `opentelemetry` cannot be imported (as without the `otel` extra);
* `api`: `opentelemetry-api` installed, no SDK configured (the target: at most 2% slower);
* `sdk`: the SDK configured globally, every span to an in-memory exporter through a
  `SimpleSpanProcessor` and the metrics to an `InMemoryMetricReader` (the cost is reported).

Each round, in a shuffled order, every worker times one batch of `get_user_by_id` calls, sync
and async. The figure per worker is the median batch; ratios are against `absent` in the same
run. Pass `--rounds N` (default 15), `--calls N` (per batch, default 2000), `--json PATH`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
from typing import Any

MODES = ("absent", "api", "sdk")
KINDS = ("sync", "async")


def _configure(mode: str) -> Any:
    """Set the worker's OpenTelemetry up for `mode`; the exporter to empty, if any."""
    if mode == "absent":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
        return None
    if mode == "api":
        return None
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    return exporter


def worker(mode: str, url: str, user_id: str) -> None:
    """Answer `sync N` / `async N` lines on stdin with the seconds N calls took."""
    exporter = _configure(mode)
    import asyncio
    import time

    from coderunner_sql import AsyncDatabaseService, DatabaseConfig, DatabaseService

    config = DatabaseConfig.from_url(url, pool_min=1, pool_max=2)
    sync_db = DatabaseService(config)
    sync_db.connect()
    async_db = AsyncDatabaseService(config)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(async_db.connect())

    async def run_async(calls: int) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await async_db.get_user_by_id(user_id)
        return time.perf_counter() - started

    def run_sync(calls: int) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            sync_db.get_user_by_id(user_id)
        return time.perf_counter() - started

    print("ready", flush=True)
    for line in sys.stdin:
        kind, count = line.split()
        calls = int(count)
        seconds = run_sync(calls) if kind == "sync" else loop.run_until_complete(run_async(calls))
        if exporter is not None:
            exporter.clear()  # outside the timing: memory stays flat
        print(json.dumps({"seconds": seconds}), flush=True)
    sync_db.disconnect()
    loop.run_until_complete(async_db.disconnect())


def _spawn(mode: str, url: str, user_id: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.telemetry_overhead", "--worker", mode, url, user_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the {mode} worker did not start")
    return process


def _batch(process: subprocess.Popen[str], kind: str, calls: int) -> float:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(f"{kind} {calls}\n")
    process.stdin.flush()
    return float(json.loads(process.stdout.readline())["seconds"])


def measure(url: str, user_id: str, rounds: int, calls: int) -> dict[str, Any]:
    """Median microseconds per call for every mode and kind, and the ratios to `absent`."""
    workers = {mode: _spawn(mode, url, user_id) for mode in MODES}
    samples: dict[tuple[str, str], list[float]] = {(m, k): [] for m in MODES for k in KINDS}
    try:
        for mode in MODES:  # warm-up: prepared statements, pools, caches
            for kind in KINDS:
                _batch(workers[mode], kind, calls)
        rng = random.Random(7)
        for _ in range(rounds):
            order = [(m, k) for m in MODES for k in KINDS]
            rng.shuffle(order)
            for mode, kind in order:
                seconds = _batch(workers[mode], kind, calls)
                samples[mode, kind].append(seconds / calls * 1e6)
    finally:
        for process in workers.values():
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=30)
    result: dict[str, Any] = {"rounds": rounds, "calls_per_batch": calls, "us_per_call": {}}
    for kind in KINDS:
        base = statistics.median(samples["absent", kind])
        for mode in MODES:
            median = statistics.median(samples[mode, kind])
            result["us_per_call"][f"{kind}/{mode}"] = round(median, 2)
            result[f"{kind}/{mode}/ratio"] = round(median / base, 4)
    return result


def hook_cost(calls: int = 200_000) -> float:
    """Microseconds the hooks add to one single-statement call with the API and no SDK,
    timed in this process: the call's span hook, one statement, one connection wait.

    Separate worker processes differ by a few percent on their own (memory layout, the CPU
    they land on), more than the 2% target; the hooks' own cost is measured here directly."""
    import timeit

    from coderunner_sql.config import DatabaseConfig
    from coderunner_sql.telemetry import OTEL, Telemetry

    assert OTEL, "opentelemetry-api is not installed"
    telemetry = Telemetry(DatabaseConfig(host="bench", dbname="bench"))

    def one() -> None:
        with telemetry.call("get_user_by_id"):
            telemetry.statement("get_user_by_id", "SELECT …", 1e-4, 1, None)
            telemetry.waited(1e-4)

    def nothing() -> None:
        return None

    best = min(timeit.repeat(one, number=calls, repeat=5))
    empty = min(timeit.repeat(nothing, number=calls, repeat=5))
    return (best - empty) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    """Run the comparison on a private server and print (or save) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--worker", nargs=3, metavar=("MODE", "URL", "USER_ID"))
    options = parser.parse_args(argv)
    if options.worker:
        worker(*options.worker)
        return 0

    import psycopg

    from bench.server import FAST_SETTINGS, machine, private_server

    with private_server() as (_server, url):
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO users (email, password_hash) VALUES ('otel@bench.example', 'h')"
                " RETURNING id"
            ).fetchone()
        assert row is not None
        result = measure(url, str(row[0]), options.rounds, options.calls)
        added = hook_cost()
        result["api_hook_us_per_call"] = round(added, 3)
        for kind in KINDS:
            base = result["us_per_call"][f"{kind}/absent"]
            result[f"{kind}/api_hook_share"] = round(added / base, 4)
        result["machine"] = machine(url, FAST_SETTINGS)
    text = json.dumps(result, indent=2)
    if options.json_path:
        with open(options.json_path, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
