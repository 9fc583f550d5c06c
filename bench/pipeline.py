"""`python -m bench.pipeline`: what pipelining concurrent reads buys `AsyncDatabaseService`.

`AsyncDatabaseService` sends reads that are in flight together as one psycopg pipeline on
one pooled connection (coderunner_sql/pipelining.py). This measures, on one private
PostgreSQL server (bench/server.py), seeded with a small dataset (bench/seed.py):

* **Throughput** (calls/s) of `get_user_by_id` and `get_deployment_with_details` with 8, 32
  and 128 concurrent callers (tasks for async contenders, threads for sync ones), every
  contender on a pool of 8 connections: raw psycopg 3 async (the baseline of the ratios),
  asyncpg, the async service with pipelining on and off, raw psycopg 3 sync and the sync
  service (sync ratios are to raw psycopg sync), and node-postgres (plain parameterized
  queries and named prepared statements; bench/node/pg_bench.mjs) when node is on PATH.
  One sample is a burst of calls shared by the callers, timed from the first call to the
  last return. Rounds are interleaved (every contender runs one sample per operation and
  caller count per round, in an order rotated each round) and the table shows the median
  of the rounds.
* **Correctness**: every answer of every contender is checked against its key (the user's
  id; the deployment's id and its project's and user's ids as seeded). Any wrong answer or
  error makes the run exit 1.
* **Lone-call latency**: one caller making sequential `get_user_by_id` calls (median µs per
  call) on raw psycopg async and the async service with pipelining on and off: a read with
  nothing else in flight must wait for no batch.

Options: `--rounds N`, `--quick`, `--callers 8,32,128`, `--json PATH`, `--uvloop`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from rich.console import Console
from rich.table import Table

from bench.contenders import Contender, load, sql
from bench.contenders.base import POOL_SIZE
from bench.contenders.service import ServiceAsync
from bench.profiles import SeedSpec
from bench.runner import _burst_async, _burst_sync, _time_async, one_line
from bench.seed import seed
from bench.server import FAST_SETTINGS, load_average, machine, private_server

OPERATIONS = ("get_user_by_id", "get_deployment_with_details")
NODE_SQL = {
    "get_user_by_id": sql.GET_USER.replace("%(id)s", "$1"),
    "get_deployment_with_details": sql.GET_DEPLOYMENT_WITH_DETAILS.replace("%(id)s", "$1"),
}
ASYNC_BASE = "psycopg-async"
SYNC_BASE = "psycopg-sync"
PIPELINED = "coderunner-async"
UNPIPELINED = "coderunner-async-nopipe"
ASYNC_CONTENDERS = (ASYNC_BASE, "asyncpg", PIPELINED, UNPIPELINED)
SYNC_CONTENDERS = (SYNC_BASE, "coderunner-sync")
NODE_VARIANTS = {"node-postgres": False, "node-postgres-named": True}
"""node contender -> whether it sends named prepared statements."""
LONE_CONTENDERS = (ASYNC_BASE, PIPELINED, UNPIPELINED)
SPEC = SeedSpec(users=1_000, projects=2_000, deployments=5_000)
NODE_DIR = Path(__file__).parent / "node"
HANG_S = 120.0
"""A burst that takes longer than this is reported as a hang."""

# The targets printed as met or missed.
PIPELINE_TARGET = 1.8  # pipelined ÷ psycopg-async, get_user_by_id, 8 callers
SYNC_TARGET = 1.0  # coderunner-sync ÷ psycopg-sync, get_user_by_id, 8 threads
LONE_TARGET = 1.05  # lone call, pipeline on ÷ pipeline off

Key = tuple[UUID, ...]
"""(user id,) or (deployment id, project id, user id): a call's argument and its answer."""


@dataclass(frozen=True)
class Plan:
    """How much to run: rounds, calls per burst, and the caller counts."""

    rounds: int
    calls: int
    """Calls per throughput sample, shared by the callers."""
    warmup: int
    lone_calls: int
    """Sequential calls per lone-latency sample (one sample per contender per round)."""
    callers: tuple[int, ...]


class ServiceAsyncNoPipe(ServiceAsync):
    """`AsyncDatabaseService` with `pipeline=False`: every read on its own connection."""

    name = UNPIPELINED
    description = "coderunner_sql.AsyncDatabaseService(pipeline=False)"

    async def setup(self, url: str) -> None:
        from coderunner_sql import AsyncDatabaseService
        from coderunner_sql.config import DatabaseConfig

        config = DatabaseConfig.from_url(url, pool_min=POOL_SIZE, pool_max=POOL_SIZE)
        self.service = AsyncDatabaseService(config.replace(pipeline=False))
        await self.service.connect()


@dataclass
class Tally:
    """Wrong answers and errors per contender, with the first few examples."""

    wrong: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, contender: str, what: str, *, error: bool, count: int = 1) -> None:
        """Count `count` wrong answers (or errors) of `contender`; keep the first examples."""
        counts = self.errors if error else self.wrong
        counts[contender] = counts.get(contender, 0) + count
        examples = self.examples.setdefault(contender, [])
        if len(examples) < 5:
            examples.append(what)

    def judge(self, contender: str, op: str, key: Key, answer: Any) -> None:
        """Count one call's outcome: an exception is an error, an answer that does not
        match its key (`PROBLEMS[op]`) a wrong answer."""
        if isinstance(answer, BaseException):
            self.note(contender, f"{op}({key[0]}): {one_line(answer)}", error=True)
        elif (wrong := PROBLEMS[op](answer, key)) is not None:
            self.note(contender, f"{op}({key[0]}): {wrong}", error=False)

    def any(self) -> bool:
        """Whether any contender gave a wrong answer or an error."""
        return any(self.wrong.values()) or any(self.errors.values())


def _user_problem(user: Any, key: Key) -> str | None:
    if user is None:
        return "no user"
    return None if user.id == key[0] else f"got user {user.id}"


def _details_problem(details: Any, key: Key) -> str | None:
    if details is None:
        return "no deployment"
    got = (details.deployment.id, details.project.id, details.project.user_id, details.user.id)
    want = (key[0], key[1], key[2], key[2])
    return None if got == want else f"got deployment/project/owner/user {got}"


PROBLEMS: dict[str, Callable[[Any, Key], str | None]] = {
    "get_user_by_id": _user_problem,
    "get_deployment_with_details": _details_problem,
}


def checked_async(contender: Contender, op: str, tally: Tally) -> Callable[[Key], Awaitable[None]]:
    """`contender.op(key[0])` as a coroutine function that checks its answer."""
    method = getattr(contender, op)
    name = contender.name

    async def call(key: Key) -> None:
        try:
            answer = await method(key[0])
        except Exception as exc:
            tally.judge(name, op, key, exc)
        else:
            tally.judge(name, op, key, answer)

    return call


def checked_sync(contender: Contender, op: str, tally: Tally) -> Callable[[Key], None]:
    """`contender.op(key[0])` as a function that checks its answer."""
    method = getattr(contender, op)
    name = contender.name

    def call(key: Key) -> None:
        try:
            answer = method(key[0])
        except Exception as exc:
            tally.judge(name, op, key, exc)
        else:
            tally.judge(name, op, key, answer)

    return call


def seeded_keys(url: str, rng_seed: int) -> dict[str, list[Key]]:
    """Every seeded user and deployment (with its project and owner), in a shuffled order
    that every contender reads in."""
    with psycopg.connect(url) as conn:
        users = [(r[0],) for r in conn.execute("SELECT id FROM users ORDER BY id")]
        deployments = [
            (r[0], r[1], r[2])
            for r in conn.execute(
                "SELECT d.id, p.id, p.user_id FROM deployments AS d"
                " JOIN projects AS p ON p.id = d.project_id ORDER BY d.id"
            )
        ]
    rng = random.Random(rng_seed)
    rng.shuffle(users)
    rng.shuffle(deployments)
    return {"get_user_by_id": users, "get_deployment_with_details": deployments}


def _workers(keys: Sequence[Key], first: int, callers: int, calls: int) -> list[list[Any]]:
    # Each caller gets an equal share (at least one call), interleaved over the key list.
    share = max(1, calls // callers)
    return [
        [(keys[(first + caller + callers * n) % len(keys)],) for n in range(share)]
        for caller in range(callers)
    ]


class Node:
    """The node-postgres contenders: one `node pg_bench.mjs` process per sample."""

    def __init__(self, url: str, console: Console) -> None:
        self.url = url
        self.console = console
        self.reason: str | None = self._prepare()
        self.version: str | None = None

    def _prepare(self) -> str | None:
        node, npm = shutil.which("node"), shutil.which("npm")
        if node is None:
            return "node is not on PATH"
        if (NODE_DIR / "node_modules" / "pg").is_dir():
            return None
        if npm is None:
            return "node_modules is missing and npm is not on PATH"
        self.console.print(f"installing node-postgres: npm install --prefix {NODE_DIR}")
        try:
            done = subprocess.run(
                [npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"npm install failed: {one_line(exc)}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            return f"npm install failed ({done.returncode}): {' '.join(tail)}"
        return None

    def sample(
        self,
        op: str,
        named: bool,
        keys: Sequence[Key],
        first: int,
        callers: int,
        calls: int,
        warmup: int,
    ) -> dict[str, Any]:
        """One burst in a fresh node process (warm-up untimed): its JSON result."""
        warmup = max(warmup, 2 * callers)
        start = (first - warmup) % len(keys)
        rotated = [*keys[start:], *keys[:start]]
        job = {
            "url": self.url,
            "op": op,
            # The Python contenders' SQL, with node-postgres's placeholder.
            "sql": NODE_SQL[op],
            "callers": callers,
            "calls": max(1, calls // callers) * callers,
            "warmup": warmup,
            "named": named,
            "keys": [[str(part) for part in key] for key in rotated],
        }
        done = subprocess.run(
            ["node", str(NODE_DIR / "pg_bench.mjs")],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            timeout=HANG_S,
            check=False,
        )
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"node exited {done.returncode}: {tail[0][:200]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        self.version = result.get("node")
        return result


class Bench:
    """The contenders of one run, set up on one server, and their samples."""

    def __init__(self, url: str, plan: Plan, loop_factory: Any, console: Console) -> None:
        self.url = url
        self.plan = plan
        self.console = console
        self.runner = asyncio.Runner(loop_factory=loop_factory)
        self.threads = {
            n: ThreadPoolExecutor(n, thread_name_prefix=f"bench{n}") for n in plan.callers
        }
        self.contenders: dict[str, Contender] = {}
        self.skipped: dict[str, str] = {}
        self.tally = Tally()
        self.keys = seeded_keys(url, 7)
        self.node: Node | None = None
        # (op, callers) -> contender -> ops/s per round; lone: contender -> µs per round.
        self.throughput: dict[tuple[str, int], dict[str, list[float]]] = {}
        self.lone: dict[str, list[float]] = {}
        self.batching: dict[tuple[str, int], list[int]] = {}
        """(op, callers) -> [batches, reads] of the pipelined service while timed."""
        self.lone_batches = 0

    def loop_name(self) -> str:
        """The event loop's class, e.g. `uvloop.Loop` or `asyncio...._UnixSelectorEventLoop`."""
        loop = self.runner.get_loop()
        return f"{type(loop).__module__}.{type(loop).__qualname__}"

    def setup(self, with_node: bool) -> None:
        """Set up every contender; one that fails is skipped with its reason."""
        for name in (*ASYNC_CONTENDERS, *SYNC_CONTENDERS):
            contender: Contender | None = None
            try:
                contender = ServiceAsyncNoPipe() if name == UNPIPELINED else load(name)()
                self._call(contender.setup(self.url))
            except Exception as exc:
                self.skipped[name] = f"setup failed: {one_line(exc)}"
                continue
            self.contenders[name] = contender
        pipelined = self.contenders.get(PIPELINED)
        if pipelined is not None and self._pipeline(PIPELINED) is None:
            self.skipped[PIPELINED] = "its service has no read pipeline (pipelining is off)"
        if with_node:
            self.node = Node(self.url, self.console)
            if self.node.reason is not None:
                for name in NODE_VARIANTS:
                    self.skipped[name] = self.node.reason
                self.node = None

    def _call(self, value: Any) -> Any:
        return self.runner.run(value) if asyncio.iscoroutine(value) else value

    def _pipeline(self, name: str) -> Any:
        contender = self.contenders.get(name)
        return getattr(getattr(contender, "service", None), "_pipeline", None)

    def entrants(self) -> list[str]:
        """Every contender still in the run, in table order."""
        names = [*ASYNC_CONTENDERS, *SYNC_CONTENDERS]
        if self.node is not None:
            names += list(NODE_VARIANTS)
        return [n for n in names if n not in self.skipped]

    def burst(self, name: str, op: str, callers: int, first: int, calls: int) -> float:
        """One throughput sample of `name`: calls/s of `calls` calls shared by `callers`."""
        keys = self.keys[op]
        if name in NODE_VARIANTS:
            assert self.node is not None
            named = NODE_VARIANTS[name]
            result = self.node.sample(op, named, keys, first, callers, calls, self.plan.warmup)
            for what, error in (("wrong", False), ("errors", True)):
                if result[what]:
                    detail = "; ".join(result["examples"]) or what
                    self.tally.note(name, detail, error=error, count=int(result[what]))
            return float(result["ops_per_s"])
        contender = self.contenders[name]
        workers = _workers(keys, first, callers, calls)
        gc.collect()
        if contender.is_async:
            fn = checked_async(contender, op, self.tally)
            return float(self.runner.run(asyncio.wait_for(_burst_async(fn, workers), HANG_S)))
        return _burst_sync(checked_sync(contender, op, self.tally), workers, self.threads[callers])

    def lone_sample(self, name: str, first: int) -> float:
        """Median µs of `lone_calls` sequential `get_user_by_id` calls by one caller."""
        keys = self.keys["get_user_by_id"]
        fn = checked_async(self.contenders[name], "get_user_by_id", self.tally)
        samples = [[(keys[(first + n) % len(keys)],)] for n in range(self.plan.lone_calls)]
        gc.collect()
        timed = self.runner.run(asyncio.wait_for(_time_async(fn, samples), HANG_S))
        return float(statistics.median(timed)) / 1000

    def _try(self, name: str, run: Callable[[], float]) -> float | None:
        try:
            return run()
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                exc = TimeoutError(f"hang: a burst took more than {HANG_S:g} s")
            self.tally.note(name, f"sample failed: {one_line(exc)}", error=True)
            self.skipped[name] = f"dropped after a failed sample: {one_line(exc)}"
            return None

    def warm_up(self) -> None:
        """Untimed bursts at the largest caller count, and lone calls, for every contender."""
        most = max(self.plan.callers)
        for op in OPERATIONS:
            for name in self.entrants():
                if name not in NODE_VARIANTS:  # node warms up in each of its processes
                    self._try(name, partial(self.burst, name, op, most, 0, self.plan.warmup))
        for name in LONE_CONTENDERS:
            if name in self.contenders and name not in self.skipped:
                self._try(name, partial(self.lone_sample, name, 0))

    def run(self) -> None:
        """Every round: each operation and caller count for every contender (rotated
        order), then the lone calls."""
        plan = self.plan
        for number in range(plan.rounds):
            started = time.perf_counter()
            first = plan.warmup + number * plan.calls
            for op in OPERATIONS:
                for callers in plan.callers:
                    names = self.entrants()
                    shift = number % max(len(names), 1)
                    cell = self.throughput.setdefault((op, callers), {})
                    for name in names[shift:] + names[:shift]:
                        self._sample(cell, name, op, callers, first)
            lone = [n for n in LONE_CONTENDERS if n in self.contenders and n not in self.skipped]
            shift = number % max(len(lone), 1)
            for name in lone[shift:] + lone[:shift]:
                self._lone(name, first)
            self.console.print(
                f"round {number + 1}/{plan.rounds} done in {time.perf_counter() - started:.1f} s"
            )

    def _sample(
        self, cell: dict[str, list[float]], name: str, op: str, callers: int, first: int
    ) -> None:
        pipeline = self._pipeline(name) if name == PIPELINED else None
        before = (pipeline.batches, pipeline.reads) if pipeline is not None else (0, 0)
        value = self._try(name, partial(self.burst, name, op, callers, first, self.plan.calls))
        if value is None:
            return
        cell.setdefault(name, []).append(value)
        if pipeline is not None:
            counts = self.batching.setdefault((op, callers), [0, 0])
            counts[0] += pipeline.batches - before[0]
            counts[1] += pipeline.reads - before[1]

    def _lone(self, name: str, first: int) -> None:
        pipeline = self._pipeline(name) if name == PIPELINED else None
        before = pipeline.batches if pipeline is not None else 0
        value = self._try(name, partial(self.lone_sample, name, first))
        if value is not None:
            self.lone.setdefault(name, []).append(value)
        if pipeline is not None:
            self.lone_batches += pipeline.batches - before

    def close(self) -> None:
        """Close every contender's pool, the thread pools and the event loop."""
        for name, contender in self.contenders.items():
            try:
                self._call(contender.close())
            except Exception as exc:
                self.console.print(f"[yellow]{name}: close failed: {one_line(exc)}[/]")
        for pool in self.threads.values():
            pool.shutdown()
        self.runner.close()


# -- results ------------------------------------------------------------------------------


def _median(values: Sequence[float] | None) -> float | None:
    return statistics.median(values) if values else None


def base_of(name: str) -> str:
    """The contender `name`'s throughput is divided by: raw psycopg of its own kind."""
    return SYNC_BASE if name in SYNC_CONTENDERS else ASYNC_BASE


def summary(bench: Bench) -> dict[str, Any]:
    """Medians, ratios, round spread and pipeline batch sizes, as plain data."""
    throughput: dict[str, dict[str, dict[str, Any]]] = {}
    for (op, callers), cell in bench.throughput.items():
        for name, values in cell.items():
            median = statistics.median(values)
            base = _median(cell.get(base_of(name)))
            throughput.setdefault(op, {}).setdefault(name, {})[str(callers)] = {
                "ops_per_s": round(median, 1),
                "ratio": round(median / base, 3) if base else None,
                "spread_pct": round(50 * (max(values) - min(values)) / median, 1),
                "rounds": [round(v, 1) for v in values],
            }
    batching = {
        f"{op}@{callers}": round(reads / batches, 1) if batches else None
        for (op, callers), (batches, reads) in bench.batching.items()
    }
    lone = {
        name: {"median_us": round(statistics.median(v), 1), "rounds": [round(x, 1) for x in v]}
        for name, v in bench.lone.items()
    }
    return {
        "throughput": throughput,
        "reads_per_batch": batching,
        "lone_get_user_by_id": lone,
        "lone_batches_sent": bench.lone_batches,
    }


@dataclass(frozen=True)
class Target:
    """One printed target: its value against its limit."""

    text: str
    value: float | None
    limit: float
    higher_is_better: bool

    @property
    def met(self) -> bool | None:
        """None when not measured."""
        if self.value is None:
            return None
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit


def targets(results: dict[str, Any]) -> list[Target]:
    """The three targets of pipelining, checked against this run's medians."""
    users = results["throughput"].get("get_user_by_id", {})

    def ratio(name: str) -> float | None:
        return users.get(name, {}).get("8", {}).get("ratio")

    lone = results["lone_get_user_by_id"]
    on = lone.get(PIPELINED, {}).get("median_us")
    off = lone.get(UNPIPELINED, {}).get("median_us")
    return [
        Target(
            f"{PIPELINED} ÷ {ASYNC_BASE}, get_user_by_id, 8 callers ≥ {PIPELINE_TARGET}x",
            ratio(PIPELINED),
            PIPELINE_TARGET,
            True,
        ),
        Target(
            f"coderunner-sync ÷ {SYNC_BASE}, get_user_by_id, 8 threads ≥ {SYNC_TARGET}x",
            ratio("coderunner-sync"),
            SYNC_TARGET,
            True,
        ),
        Target(
            f"lone get_user_by_id: pipeline on ÷ off ≤ {LONE_TARGET}",
            on / off if on and off else None,
            LONE_TARGET,
            False,
        ),
    ]


def render(console: Console, results: dict[str, Any], order: Sequence[str], plan: Plan) -> None:
    """One table per operation, the lone-call latencies, the batch sizes and the targets."""
    for op in OPERATIONS:
        table = Table(
            title=f"{op}: calls/s (median of rounds, ±half-range) and ratio",
            caption=f"ratio: sync ÷ {SYNC_BASE}, every other ÷ {ASYNC_BASE}, same callers",
            box=None,
        )
        table.add_column("contender")
        for callers in plan.callers:
            table.add_column(f"{callers} ops/s", justify="right")
            table.add_column(f"{callers} ratio", justify="right")
        rows = results["throughput"].get(op, {})
        for name in order:
            cells: list[str] = []
            for callers in plan.callers:
                cell = rows.get(name, {}).get(str(callers))
                if cell is None:
                    cells += ["—", ""]
                    continue
                ratio = "" if cell["ratio"] is None else f"{cell['ratio']:.2f}"
                cells += [f"{cell['ops_per_s']:,.0f} ±{cell['spread_pct']:.0f}%", ratio]
            table.add_row(name, *cells)
        console.print(table)
        batch = [
            f"{callers}: {results['reads_per_batch'].get(f'{op}@{callers}')}"
            for callers in plan.callers
        ]
        console.print(f"  {PIPELINED} reads per pipelined batch by callers: {', '.join(batch)}")
        console.print()
    lone = results["lone_get_user_by_id"]
    console.print(f"lone caller, sequential get_user_by_id ({plan.lone_calls} calls per round):")
    for name in LONE_CONTENDERS:
        if name in lone:
            console.print(
                f"  {name:<26} {lone[name]['median_us']:8.1f} µs  rounds {lone[name]['rounds']}"
            )
    console.print(
        f"  batches the pipelined service sent during lone calls: {results['lone_batches_sent']}"
    )
    console.print()
    for target in targets(results):
        verdict = {True: "[green]met[/]", False: "[red]missed[/]", None: "not measured"}
        value = "—" if target.value is None else f"{target.value:.3f}"
        console.print(f"target {target.text}: {value} → {verdict[target.met]}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline",
        description="Throughput of concurrent reads with and without the async service's "
        "read pipeline, against raw psycopg 3, asyncpg and node-postgres.",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5; quick 2)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of fewer calls")
    parser.add_argument("--callers", default="8,32,128", help="concurrent callers, e.g. 8,32")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument("--uvloop", action="store_true", help="run async contenders on uvloop")
    parser.add_argument("--no-node", action="store_true", help="leave node-postgres out")
    return parser.parse_args(argv)


def _loop_factory(console: Console, wanted: bool) -> Any:
    if not wanted:
        return None
    try:
        import uvloop
    except ImportError:
        console.print("[yellow]--uvloop: uvloop is not installed; using asyncio's loop[/]")
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 1 when any contender answered wrongly or failed."""
    args = parse_args(argv)
    # Wide enough for three caller counts even when the output is piped to a file.
    console = Console(highlight=False, width=max(shutil.get_terminal_size().columns, 110))
    callers = tuple(int(n) for n in args.callers.split(",") if n.strip())
    if not callers or min(callers) < 1:
        raise SystemExit("--callers: positive integers, e.g. 8,32,128")
    plan = (
        Plan(rounds=2, calls=600, warmup=256, lone_calls=150, callers=callers)
        if args.quick
        else Plan(rounds=5, calls=2_000, warmup=512, lone_calls=400, callers=callers)
    )
    if args.rounds is not None:
        plan = Plan(args.rounds, plan.calls, plan.warmup, plan.lone_calls, plan.callers)
    loop_factory = _loop_factory(console, args.uvloop)
    started = time.perf_counter()
    order = [*ASYNC_CONTENDERS, *SYNC_CONTENDERS, *NODE_VARIANTS]
    with private_server() as (_server, url):
        dataset = seed(url, SPEC)
        info = machine(url, FAST_SETTINGS)
        bench = Bench(url, plan, loop_factory, console)
        try:
            bench.setup(with_node=not args.no_node)
            loop = bench.loop_name()
            console.print(
                f"pipeline benchmark: {plan.rounds} rounds, {plan.calls} calls per sample, "
                f"callers {list(plan.callers)}, pool {POOL_SIZE} each"
            )
            console.print(f"event loop: {loop}")
            console.print(
                f"machine: {info['cores']} cores, {info['cpu']}; {info['python']}; "
                f"PostgreSQL {info['postgresql']}; load {info['load_average_at_start']}"
            )
            console.print(
                f"data: {SPEC.users:,} users, {SPEC.projects:,} projects, "
                f"{SPEC.deployments:,} deployments ({dataset.seconds:.1f} s)"
            )
            for name, reason in bench.skipped.items():
                console.print(f"[yellow]skipped {name}: {reason}[/]")
            bench.warm_up()
            bench.run()
            results = summary(bench)
            info["load_average_at_end"] = load_average()
            console.print()
            render(console, results, order, plan)
        finally:
            bench.close()
    tally = bench.tally
    console.print()
    for name in order:
        wrong, errors = tally.wrong.get(name, 0), tally.errors.get(name, 0)
        console.print(f"wrong answers {name}: {wrong}, errors: {errors}")
        for example in tally.examples.get(name, []):
            console.print(f"    {example}")
    for name, reason in bench.skipped.items():
        console.print(f"[yellow]skipped {name}: {reason}[/]")
    console.print(f"total {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        document = {
            "machine": info,
            "loop": loop,
            "node": bench.node.version if bench.node is not None else None,
            "plan": asdict(plan),
            "seed": asdict(SPEC),
            **results,
            "targets": [
                {"target": t.text, "value": t.value, "limit": t.limit, "met": t.met}
                for t in targets(results)
            ],
            "wrong": tally.wrong,
            "errors": tally.errors,
            "examples": tally.examples,
            "skipped": bench.skipped,
        }
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
        console.print(f"wrote {args.json}")
    return 1 if tally.any() else 0


if __name__ == "__main__":
    sys.exit(main())
