"""`python -m bench --scale`: the library on 1,000,000 deployments, against fixed targets.

One private server (`SCALE_SETTINGS`), loaded by `bench.scale_seed` (COPY; counters
checked against count(*)), then VACUUM ANALYZE. Every figure is taken on the library's
`DatabaseService` and, where it is cheap, `AsyncDatabaseService`:

* latency figures: interleaved rounds (the order of figures and of the two services
  rotates each round), the median of every sample;
* insert throughput: 8 threads of single-row `create_deployment` for a few seconds, with
  the counter triggers and with them disabled, alternating; the ratio of the medians;
* streaming: `iter_deployments_by_status` over every status (every row, the seeded million
  and those the insert runs added) in a fresh
  subprocess (`bench.scale_stream`), peak RSS minus RSS before the first row.

Before anything is timed, answers are checked: every counter equals count(*), the deep
keyset page is the same 50 rows as the offset page at that depth, totals and stats are
exact. The application-login rows show the same reads under row-level security.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench.models import STATUSES
from bench.profiles import ScaleProfile
from bench.report import render
from bench.runner import _time_async as time_async
from bench.runner import _time_sync as time_sync
from bench.scale_seed import Counters, ScaleDataset, recount, seed_scale, verify_counters
from bench.seed import RUNTIMES
from bench.server import SCALE_SETTINGS, load_average, machine, private_server

DEEP_STATUS = "STOPPED"
PAGE = 50
POOL = 8
APP_LOGIN = "bench_app"
APP_PASSWORD = "bench-app-password"

Call = Callable[[Any, int], Any]
"""(service, sample number) -> the call's result (sync) or awaitable (async)."""


@dataclass(frozen=True)
class Probe:
    key: str
    label: str
    call: Call
    slow: bool = False
    """Takes the offset page's few samples, not a full batch."""
    services: tuple[str, ...] = ("sync", "async")


@dataclass
class Figure:
    key: str
    label: str
    values: dict[str, float | None]
    """Per service ("sync", "async") or "value" for figures of the run."""
    unit: str
    target: str
    passed: bool | None
    """None: shown for contrast, no target."""
    note: str = ""


@dataclass
class ScaleRun:
    figures: list[Figure] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def _progress(started: float, text: str) -> None:
    print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)


def _ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) / 1e6


class Services:
    """The sync and async services (and the application login's), on one event loop."""

    def __init__(self, url: str, app_url: str) -> None:
        from coderunner_sql import AsyncDatabaseService, DatabaseConfig, DatabaseService

        self.loop = asyncio.new_event_loop()
        config = DatabaseConfig.from_url(url, pool_min=POOL, pool_max=POOL)
        app = DatabaseConfig.from_url(app_url, pool_min=2, pool_max=2)
        self.by_name: dict[str, Any] = {
            "sync": DatabaseService(config),
            "async": AsyncDatabaseService(config),
            "app": DatabaseService(app),
        }
        for name in self.by_name:
            self.run(name, lambda s: s.connect())

    def run(self, name: str, call: Callable[[Any], Any]) -> Any:
        result = call(self.by_name[name])
        if asyncio.iscoroutine(result):
            return self.loop.run_until_complete(result)
        return result

    def time(self, name: str, call: Call, first: int, count: int) -> list[float]:
        # One call per sample, timed by the comparison benchmark's own timers.
        samples = [[(self.by_name[name], n)] for n in range(first, first + count)]
        if name == "async":
            return self.loop.run_until_complete(time_async(call, samples))
        return time_sync(call, samples)

    def close(self) -> None:
        for name in self.by_name:
            with contextlib.suppress(Exception):
                self.run(name, lambda s: s.disconnect())
        self.loop.close()


def _app_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{APP_LOGIN}:{APP_PASSWORD}@{host}"))


def _create_app_login(url: str) -> str:
    # The login an application should use: a member of coderunner_app, so row-level
    # security applies to it (the benchmark's own role owns the tables and bypasses it).
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE ROLE {APP_LOGIN} LOGIN PASSWORD '{APP_PASSWORD}' IN ROLE coderunner_app"
        )
    return _app_url(url)


def _sample(values: Sequence[Any], n: int) -> Any:
    return values[(n * 7919) % len(values)]


def _probes(data: ScaleDataset, deep_cursor: str, deep_offset: int) -> list[Probe]:
    users, projects = data.user_ids, data.project_ids
    return [
        Probe(
            "first_page_running",
            "first page by status (RUNNING), 50 rows + exact total",
            lambda s, n: s.get_deployments_by_status("RUNNING", PAGE),
        ),
        Probe(
            "first_page_stopped",
            f"first page by status ({DEEP_STATUS}), 50 rows + exact total",
            lambda s, n: s.get_deployments_by_status(DEEP_STATUS, PAGE),
        ),
        Probe(
            "first_page_project",
            "first page by project (a different project each call)",
            lambda s, n: s.get_deployments_by_project_id(_sample(projects, n), PAGE),
        ),
        Probe(
            "deep_keyset_page",
            f"page {deep_offset // PAGE + 1:,} of {DEEP_STATUS} by keyset (after=)",
            lambda s, n: s.get_deployments_by_status(DEEP_STATUS, PAGE, after=deep_cursor),
        ),
        Probe(
            "deep_offset_page",
            f"page {deep_offset // PAGE + 1:,} of {DEEP_STATUS} by offset={deep_offset:,}",
            lambda s, n: s.get_deployments_by_status(DEEP_STATUS, PAGE, deep_offset),
            slow=True,
        ),
        Probe(
            "system_stats",
            "get_system_stats (all counts, exact)",
            lambda s, n: s.get_system_stats(),
        ),
        Probe(
            "status_total",
            f"exact total of a status listing ({DEEP_STATUS}, 1-row page + total)",
            lambda s, n: s.get_deployments_by_status(DEEP_STATUS, 1),
        ),
        Probe(
            "running_by_user",
            "get_running_deployment_count_by_user (a different user each call)",
            lambda s, n: s.get_running_deployment_count_by_user(_sample(users, n)),
        ),
        Probe(
            "app_first_page_running",
            "first page by status (RUNNING) as an application login",
            lambda s, n: s.get_deployments_by_status("RUNNING", PAGE),
            slow=True,
            services=("app",),
        ),
        Probe(
            "app_scoped_first_page_running",
            "the same inside for_user(a user)",
            lambda s, n: s.for_user(_sample(users, n)).get_deployments_by_status("RUNNING", PAGE),
            slow=True,
            services=("app",),
        ),
        Probe(
            "app_user_by_email",
            "get_user_by_email as an application login",
            lambda s, n: s.get_user_by_email(f"user{(n * 7919) % len(users)}@example.com"),
            slow=True,
            services=("app",),
        ),
    ]


def measure_latency(
    services: Services, probes: list[Probe], profile: ScaleProfile
) -> dict[str, dict[str, list[float]]]:
    """Samples (ns) per probe and service, interleaved round by round."""
    samples: dict[str, dict[str, list[float]]] = {p.key: {} for p in probes}
    for probe in probes:
        for name in probe.services:
            services.time(name, probe.call, 0, 2 if probe.slow else 2 * POOL)
            samples[probe.key][name] = []
    next_sample = 10_000
    for round_number in range(profile.rounds):
        shift = round_number % len(probes)
        for probe in probes[shift:] + probes[:shift]:
            if probe.slow and round_number >= profile.slow_rounds:
                continue
            count = profile.slow_batch if probe.slow else profile.batch
            names = list(probe.services)
            if round_number % 2:
                names.reverse()
            for name in names:
                samples[probe.key][name] += services.time(name, probe.call, next_sample, count)
                next_sample += count
    return samples


def _count_star_ms(url: str, rounds: int) -> float:
    # What the counters save: an exact count of the status by counting its rows.
    with psycopg.connect(url, autocommit=True) as conn:
        query = "SELECT count(*) FROM deployments WHERE status = %s"
        conn.execute(query, (DEEP_STATUS,), prepare=True)
        times = []
        for _ in range(rounds):
            start = time.perf_counter_ns()
            conn.execute(query, (DEEP_STATUS,), prepare=True).fetchone()
            times.append(time.perf_counter_ns() - start)
    return _ms(times)


def _set_count_triggers(url: str, enabled: bool) -> None:
    action = "ENABLE" if enabled else "DISABLE"
    with psycopg.connect(url) as conn:
        for trigger in ("deployments_count_insert", "deployments_count_delete"):
            conn.execute(f"ALTER TABLE deployments {action} TRIGGER {trigger}")


def _writers(service: Any, projects: list[str], writers: int, seconds: float) -> float:
    """Single-row creates per second by `writers` threads sharing `service` for `seconds`."""
    barrier = threading.Barrier(writers + 1)
    counts = [0] * writers
    errors: list[BaseException] = []
    stop = threading.Event()

    def work(index: int) -> None:
        barrier.wait()
        n = index
        try:
            while not stop.is_set():
                service.create_deployment(
                    project_id=projects[(n * 7919) % len(projects)],
                    runtime_type=RUNTIMES[n % len(RUNTIMES)],
                )
                counts[index] += 1
                n += writers
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return sum(counts) / elapsed


def measure_inserts(url: str, data: ScaleDataset, profile: ScaleProfile) -> dict[str, list[float]]:
    """Inserts/s with the deployment counter triggers and with them disabled, alternating
    (the same table, indexes and cache either way); the counters are recomputed after."""
    from coderunner_sql import DatabaseConfig, DatabaseService

    config = DatabaseConfig.from_url(url, pool_min=profile.writers, pool_max=profile.writers)
    rates: dict[str, list[float]] = {"with": [], "without": []}
    service = DatabaseService(config)
    service.connect()
    try:
        _writers(service, data.project_ids, profile.writers, 1.0)  # warm-up, prepares
        for round_number in range(profile.write_rounds):
            order = ("with", "without") if round_number % 2 == 0 else ("without", "with")
            for variant in order:
                _set_count_triggers(url, enabled=variant == "with")
                try:
                    rate = _writers(
                        service, data.project_ids, profile.writers, profile.write_seconds
                    )
                finally:
                    _set_count_triggers(url, enabled=True)
                rates[variant].append(rate)
    finally:
        service.disconnect()
        recount(url)
    return rates


def measure_stream(url: str) -> dict[str, dict[str, Any]]:
    """`bench.scale_stream` in a fresh process per service: RSS growth over every status."""
    root = Path(__file__).resolve().parent.parent
    # The insert-throughput runs before this add rows: every row there now must stream.
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM deployments").fetchone()
    expected = int(row[0]) if row else 0
    out: dict[str, dict[str, Any]] = {}
    for mode in ("sync", "async"):
        done = subprocess.run(
            [sys.executable, "-m", "bench.scale_stream", url, mode, ",".join(STATUSES)],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        out[mode] = {**json.loads(done.stdout.strip().splitlines()[-1]), "expected": expected}
    return out


def _check_answers(
    services: Services, url: str, data: ScaleDataset, deep_offset: int
) -> tuple[str, list[str]]:
    """The deep page's cursor, and what is wrong with the answers (empty when all right)."""
    problems: list[str] = []
    sync = services.by_name["sync"]
    with psycopg.connect(url, autocommit=True) as conn:
        counts = dict(conn.execute("SELECT status::text, count(*) FROM deployments GROUP BY 1"))
        users, projects = conn.execute(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM projects)"
        ).fetchone() or (0, 0)
        deep_ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM deployments WHERE status = %s"
                " ORDER BY created_at DESC, id DESC OFFSET %s LIMIT %s",
                (DEEP_STATUS, deep_offset, PAGE),
            )
        ]
    for name in ("sync", "async"):
        for status in STATUSES:
            total = services.run(name, lambda s, st=status: s.get_deployments_by_status(st, 1))
            if total.total != counts.get(status, 0):
                problems.append(
                    f"{name}: total of {status} is {total.total}, count(*) {counts.get(status)}"
                )
        stats = services.run(name, lambda s: s.get_system_stats())
        expected = (users, projects, sum(counts.values()), counts.get("RUNNING", 0))
        got = (
            stats.total_users,
            stats.total_projects,
            stats.total_deployments,
            stats.running_deployments,
        )
        if got != expected:
            problems.append(f"{name}: get_system_stats {got}, count(*) {expected}")
    # The cursor a client would hold after page deep_page - 1, taken from that page.
    before = sync.get_deployments_by_status(DEEP_STATUS, PAGE, deep_offset - PAGE)
    cursor = before.next_cursor
    for name in ("sync", "async"):
        keyset = services.run(
            name, lambda s: s.get_deployments_by_status(DEEP_STATUS, PAGE, after=cursor)
        )
        offset = services.run(
            name, lambda s: s.get_deployments_by_status(DEEP_STATUS, PAGE, deep_offset)
        )
        if [d.id for d in keyset.items] != deep_ids or [d.id for d in offset.items] != deep_ids:
            problems.append(f"{name}: the deep keyset or offset page is not rows {deep_offset:,}+")
    return cursor, problems


@dataclass(frozen=True)
class Measured:
    """Everything a run measured, as `figures` reads it."""

    data: ScaleDataset
    counter_problems: dict[str, tuple[int, int]]
    answer_problems: list[str]
    latency_ms: dict[str, dict[str, float | None]]
    """Median per probe and service."""
    count_star_ms: float
    inserts: dict[str, float]
    """Median inserts/s "with" and "without" the counter triggers."""
    after_inserts: dict[str, tuple[int, int]]
    stream: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Spec:
    """One figure: where its values come from, and the target they are held to."""

    key: str
    label: str
    """Formatted with the dataset as `d`."""
    unit: str
    target: str
    check: Callable[[float], bool] | None
    values: Callable[[Measured], dict[str, float | None]]
    note: Callable[[Measured], str] = lambda m: ""
    holds: Callable[[Measured], bool] = lambda m: True
    """What must hold besides the values' target (a check of the answer, say)."""


def _latency(key: str) -> Callable[[Measured], dict[str, float | None]]:
    return lambda m: m.latency_ms[key]


def _deep_ratio(m: Measured) -> dict[str, float | None]:
    first, deep = m.latency_ms["first_page_stopped"], m.latency_ms["deep_keyset_page"]
    return {n: v / f for n, v in deep.items() if v is not None and (f := first.get(n))}


def _problems(m: Measured) -> dict[str, tuple[int, int]]:
    return {**m.counter_problems, **m.after_inserts}


def _stream_note(mode: str) -> Callable[[Measured], str]:
    def note(m: Measured) -> str:
        s = m.stream[mode]
        rate = s["rows"] / s["seconds"]
        text = f"{s['rows']:,} rows in {s['seconds']:.1f} s ({rate:,.0f} rows/s)"
        return text if s["rows"] == s["expected"] else f"{text}; expected {s['expected']:,} rows"

    return note


def _stream_growth(mode: str) -> Callable[[Measured], dict[str, float | None]]:
    return lambda m: {mode: m.stream[mode]["growth_mb"]}


def _stream_complete(mode: str) -> Callable[[Measured], bool]:
    return lambda m: bool(m.stream[mode]["rows"] == m.stream[mode]["expected"])


MS5, MS20 = ("<= 5 ms", lambda v: v <= 5), ("<= 20 ms", lambda v: v <= 20)
NO_TARGET: tuple[str, None] = ("-", None)
RLS = "row-level security applies"

# Every figure of the run, in the printed order.
SPECS: tuple[Spec, ...] = (
    Spec(
        "seed_seconds",
        "seed {d.deployments:,} deployments, {d.projects:,} projects, {d.users:,} users"
        " (COPY; counters by {d.counters})",
        "s",
        "< 120 s",
        lambda v: v < 120,
        lambda m: {"value": m.data.seconds},
    ),
    Spec(
        "counters_after_seed",
        "row_counts = count(*) after the seed, after the insert runs",
        "differences",
        "0",
        lambda v: v == 0,
        lambda m: {"value": float(len(m.counter_problems) + len(m.after_inserts))},
        lambda m: "; ".join(f"{k}: {a} vs {b}" for k, (a, b) in _problems(m).items()),
    ),
    Spec(
        "answers",
        "totals and stats equal count(*); deep keyset page = offset page",
        "differences",
        "0",
        lambda v: v == 0,
        lambda m: {"value": float(len(m.answer_problems))},
        lambda m: "; ".join(m.answer_problems),
    ),
    Spec(
        "first_page_running",
        "first page by status (RUNNING), 50 rows + exact total",
        "ms",
        *MS5,
        _latency("first_page_running"),
    ),
    Spec(
        "first_page_stopped",
        f"first page by status ({DEEP_STATUS}), 50 rows + total",
        "ms",
        *MS5,
        _latency("first_page_stopped"),
    ),
    Spec(
        "first_page_project",
        "first page by project (random projects)",
        "ms",
        *MS5,
        _latency("first_page_project"),
    ),
    Spec(
        "deep_keyset_page",
        "deep page by keyset (after=)",
        "ms",
        *NO_TARGET,
        _latency("deep_keyset_page"),
    ),
    Spec(
        "deep_keyset_ratio",
        f"  deep keyset page / first page of {DEEP_STATUS}",
        "x",
        "<= 2.0x",
        lambda v: v <= 2.0,
        _deep_ratio,
    ),
    Spec(
        "deep_offset_page",
        "the same page by offset (for contrast)",
        "ms",
        *NO_TARGET,
        _latency("deep_offset_page"),
    ),
    Spec("system_stats", "get_system_stats (exact)", "ms", *MS20, _latency("system_stats")),
    Spec(
        "status_total",
        f"exact total of a status listing ({DEEP_STATUS}, 1-row page)",
        "ms",
        *MS20,
        _latency("status_total"),
    ),
    Spec(
        "count_star",
        f"  count(*) of {DEEP_STATUS} (what the counters save; raw SQL)",
        "ms",
        *NO_TARGET,
        lambda m: {"value": m.count_star_ms},
    ),
    Spec(
        "running_by_user",
        "get_running_deployment_count_by_user (random users)",
        "ms",
        *MS5,
        _latency("running_by_user"),
    ),
    Spec(
        "inserts_with_triggers",
        "8 writers, single-row create_deployment, with counter triggers",
        "rows/s",
        *NO_TARGET,
        lambda m: {"sync": m.inserts["with"]},
    ),
    Spec(
        "inserts_without_triggers",
        "  the same with the counter triggers disabled",
        "rows/s",
        *NO_TARGET,
        lambda m: {"sync": m.inserts["without"]},
    ),
    Spec(
        "inserts_ratio",
        "  with / without",
        "x",
        ">= 0.9x",
        lambda v: v >= 0.9,
        lambda m: {"sync": m.inserts["with"] / m.inserts["without"]},
    ),
    *(
        Spec(
            f"stream_{mode}",
            f"iter_deployments_by_status over every status ({mode}): RSS growth",
            "MB",
            "<= 50 MB",
            lambda v: v <= 50,
            _stream_growth(mode),
            _stream_note(mode),
            _stream_complete(mode),
        )
        for mode in ("sync", "async")
    ),
    Spec(
        "app_first_page_running",
        "first page by status (RUNNING), application login",
        "ms",
        *MS5,
        _latency("app_first_page_running"),
        lambda m: RLS,
    ),
    Spec(
        "app_scoped_first_page_running",
        "  the same inside for_user()",
        "ms",
        *MS5,
        _latency("app_scoped_first_page_running"),
        lambda m: RLS,
    ),
    Spec(
        "app_user_by_email",
        "get_user_by_email, application login",
        "ms",
        *NO_TARGET,
        _latency("app_user_by_email"),
        lambda m: RLS,
    ),
)


def figures(m: Measured) -> list[Figure]:
    """Every figure of the run, with its target and verdict."""
    out: list[Figure] = []
    for spec in SPECS:
        values = spec.values(m)
        present = [v for v in values.values() if v is not None]
        passed = None
        if spec.check is not None:
            passed = bool(present) and all(map(spec.check, present)) and spec.holds(m)
        label = spec.label.format(d=m.data)
        out.append(Figure(spec.key, label, values, spec.unit, spec.target, passed, spec.note(m)))
    return out


def _value(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "ms":
        return f"{v:,.2f} ms" if v < 100 else f"{v:,.0f} ms"
    if unit == "x":
        return f"{v:.2f}x"
    if unit == "rows/s":
        return f"{v:,.0f}/s"
    if unit == "MB":
        return f"{v:,.1f} MB"
    if unit == "s":
        return f"{v:,.1f} s"
    return f"{v:,.0f}"


def table(rows: list[Figure]) -> str:
    """The scale figures: value per service, target, PASS/MISS."""
    body = []
    for f in rows:
        if "value" in f.values:
            sync, other = _value(f.values["value"], f.unit), ""
        else:
            sync = _value(f.values.get("sync", f.values.get("app")), f.unit)
            other = _value(f.values["async"], f.unit) if "async" in f.values else ""
        result = "" if f.passed is None else ("PASS" if f.passed else "MISS")
        body.append((f.label, sync, other, f.target, result))
    notes = [f"{f.key}: {f.note}" for f in rows if f.note]
    text = render(("figure", "sync", "async", "target", "result"), [body], right=(1, 2))
    return "\n".join([text, *(["", *notes] if notes else [])])


def run(profile: ScaleProfile, *, rng_seed: int, counters: Counters, json_path: Path | None) -> int:
    """Seed, check, measure and print; returns the exit status (0 even when a target is
    missed: missing one is a result, not a failure of the run)."""
    started = time.monotonic()
    # The offset page logs itself as a slow query on every call; that is its point here.
    logging.getLogger("coderunner_sql.queries").setLevel(logging.ERROR)
    deep_offset = (profile.deep_page - 1) * PAGE
    info: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "profile": asdict(profile),
    }
    with private_server(settings=SCALE_SETTINGS) as (_server, url):
        info["machine"] = machine(url, SCALE_SETTINGS)
        _progress(started, f"server up and migrated; seeding {profile.seed.deployments:,} rows")
        data = seed_scale(
            url,
            profile.seed,
            counters=counters,
            rng_seed=rng_seed,
            progress=lambda text: _progress(started, text),
        )
        counter_problems = verify_counters(url)
        info["seed"] = {
            "steps_s": data.steps,
            "server_cpu_s": data.server_cpu,
            "status_counts": data.status_counts,
        }
        app_url = _create_app_login(url)
        services = Services(url, app_url)
        try:
            cursor, answer_problems = _check_answers(services, url, data, deep_offset)
            _progress(started, f"answers checked ({len(answer_problems)} problems); timing")
            probes = _probes(data, cursor, deep_offset)
            latency = measure_latency(services, probes, profile)
        finally:
            services.close()
        count_star = _count_star_ms(url, max(profile.slow_rounds, 3))
        _progress(started, "latency done; insert throughput")
        inserts = measure_inserts(url, data, profile)
        after_inserts = verify_counters(url)
        _progress(started, "inserts done; streaming in subprocesses")
        stream = measure_stream(url)
        info["machine"]["load_average_at_end"] = load_average()
    rows = figures(
        Measured(
            data,
            counter_problems,
            answer_problems,
            {k: {n: _ms(v) for n, v in by.items()} for k, by in latency.items()},
            count_star,
            {variant: statistics.median(rates) for variant, rates in inserts.items()},
            after_inserts,
            stream,
        )
    )
    info["seconds"] = round(time.monotonic() - started, 1)
    print(header(info, data))
    print()
    print(table(rows))
    missed = [f.label.strip() for f in rows if f.passed is False]
    print()
    print("missed: " + ("; ".join(missed) if missed else "none"))
    print(f"\ntotal time {info['seconds']:.0f}s")
    if json_path:
        document = {
            **info,
            "figures": [asdict(f) for f in rows],
            "latency_samples": {k: {n: len(v) for n, v in by.items()} for k, by in latency.items()},
            "inserts_per_s": inserts,
            "stream": stream,
        }
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(document, indent=2, default=str) + "\n")
        print(f"results written to {json_path}")
    return 0


def header(info: dict[str, Any], data: ScaleDataset) -> str:
    m = info["machine"]
    p = info["profile"]
    settings = " ".join(f"{k}={v}" for k, v in m["server_settings"].items())
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in data.steps.items())
    cpu = ", ".join(f"{k} {v:.1f}s" for k, v in data.server_cpu.items() if v >= 0.05)
    return "\n".join(
        [
            f"coderunner-sql scale benchmark ({p['name']}): {p['rounds']} interleaved rounds of "
            f"{p['batch']} samples per figure and service (offset and application-login pages: "
            f"{p['slow_rounds']} x {p['slow_batch']})",
            f"machine:    {m['cores']} cores ({m['usable_cores']} usable), {m['cpu']}",
            f"python:     {m['python']}; psycopg {m['packages']['psycopg']} ({m['psycopg_impl']})",
            f"postgresql: {m['postgresql']} (private server; {settings})",
            f"data:       {data.users:,} users, {data.projects:,} projects, "
            f"{data.deployments:,} deployments: "
            + ", ".join(f"{s} {n:,}" for s, n in data.status_counts.items()),
            f"seed steps: {steps}",
            f"server CPU: {cpu}",
            f"load:       1-min load average {m['load_average_at_start']} at start, "
            f"{m.get('load_average_at_end')} at end",
        ]
    )
