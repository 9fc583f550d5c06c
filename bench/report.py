"""Medians, ratios to the floor, the printed table and the JSON file."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from bench.contenders import FLOOR
from bench.runner import Measurement
from bench.workload import Operation

BULK_TARGET = 20.0

# The targets for the library. Each service is held to raw psycopg 3 of its own
# kind (the sync service to psycopg's ConnectionPool, the async one to AsyncConnectionPool):
# that is the code a user would otherwise write.
TWINS = {"coderunner-sync": FLOOR, "coderunner-async": "psycopg-async"}
ORM = "sqlalchemy-orm"
# Issue #16: every single-row operation within 8% of its twin, and 8 concurrent callers
# at least 95% of the twin's throughput (same pool size, threads or tasks).
SINGLE_ROW_TARGET = 1.08
THROUGHPUT_TARGET = 0.95
LISTING_TARGET = 1.3
SINGLE_ROW_OPERATIONS = (
    "get_user_by_id",
    "create_user",
    "get_deployment_with_details",
    "get_system_stats",
    "create_deployment_x1000",
)
THROUGHPUT_OPERATIONS = ("concurrent_get_user_by_id",)
LISTING_OPERATIONS = ("get_deployments_by_status", "create_deployments")


@dataclass(frozen=True)
class Verdict:
    target: str
    contender: str
    operation: str
    value: float
    limit: float
    met: bool


def verdicts(rows: Sequence[Row]) -> list[Verdict]:
    """Every target of the library, checked against this run's medians."""
    median = {(r.operation, r.contender): r.median for r in rows if r.median}
    kind = {r.operation: r.kind for r in rows}
    out: list[Verdict] = []
    for lib, twin in TWINS.items():
        for op in (*SINGLE_ROW_OPERATIONS, *THROUGHPUT_OPERATIONS, *LISTING_OPERATIONS):
            mine, theirs = median.get((op, lib)), median.get((op, twin))
            if mine is None or theirs is None:
                continue
            if kind[op] == "throughput":  # this service's calls per second ÷ the twin's
                ratio = mine / theirs
                out.append(
                    Verdict(
                        f">= {THROUGHPUT_TARGET}x {twin}",
                        lib,
                        op,
                        ratio,
                        THROUGHPUT_TARGET,
                        ratio >= THROUGHPUT_TARGET,
                    )
                )
                continue
            limit = SINGLE_ROW_TARGET if op in SINGLE_ROW_OPERATIONS else LISTING_TARGET
            ratio = mine / theirs
            out.append(Verdict(f"<= {limit}x {twin}", lib, op, ratio, limit, ratio <= limit))
        for op in sorted({o for o, _ in median}):
            mine, orm = median.get((op, lib)), median.get((op, ORM))
            if mine is None or orm is None:
                continue
            ratio = orm / mine if kind[op] == "throughput" else mine / orm
            out.append(Verdict(f"ahead of {ORM}", lib, op, ratio, 1.0, ratio < 1.0))
    for name, s in bulk_speedups(rows).items():
        if name in TWINS:
            speedup = s["speedup"]
            out.append(
                Verdict(
                    f">= {BULK_TARGET:.0f}x bulk speedup",
                    name,
                    "create_deployments",
                    speedup,
                    BULK_TARGET,
                    speedup >= BULK_TARGET,
                )
            )
    return out


def render(
    columns: Sequence[str],
    groups: Iterable[Sequence[Sequence[str]]],
    right: Sequence[int] = (),
) -> str:
    """Every table the benchmarks print: rich, plain text (no colour, no markup), as wide as
    its cells whatever the terminal, groups of rows set apart by a blank line."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for n, column in enumerate(columns):
        table.add_column(column, justify="right" if n in right else "left", no_wrap=True)
    for group in groups:
        for n, row in enumerate(group):
            table.add_row(*row, end_section=n == len(group) - 1)
    console = Console(width=1000, color_system=None, highlight=False, markup=False)
    with console.capture() as captured:
        console.print(table)
    return "\n".join(line.rstrip() for line in captured.get().rstrip().splitlines())


def verdict_text(found: Sequence[Verdict]) -> str:
    """The targets as a table: ratio (or speedup), limit, met or MISSED."""
    if not found:
        return ""
    body = [
        (
            v.target,
            v.contender,
            v.operation,
            f"{v.value:.1f}x" if v.target.startswith(">=") else f"{v.value:.2f}",
            "met" if v.met else "MISSED",
        )
        for v in found
    ]
    met = sum(v.met for v in found)
    return "\n".join(
        [
            "targets (latency: this service's median / its twin's; throughput: this "
            "service's ops/s / its twin's):",
            render(("target", "contender", "operation", "value", "result"), [body], right=(3,)),
            f"  {met} of {len(found)} met",
        ]
    )


@dataclass(frozen=True)
class Row:
    operation: str
    contender: str
    kind: str
    unit: str
    median: float | None
    p10: float | None
    p90: float | None
    samples: int
    round_spread_pct: float | None
    """Half the range of the per-round medians, as a percentage of the median."""
    ratio: float | None
    """Latency: median / floor median (lower is better). Throughput: ops/s / floor ops/s
    (higher is better)."""
    error: str | None
    round_medians: tuple[float, ...] = ()


def _summarise(m: Measurement, floor: Measurement | None) -> Row:
    latency = m.kind == "latency"
    values = [v / 1000 for v in m.samples] if latency else list(m.samples)
    unit = "µs" if latency else "ops/s"
    if not values:
        return Row(
            m.operation,
            m.contender,
            m.kind,
            unit,
            None,
            None,
            None,
            0,
            None,
            None,
            m.error or "no samples",
        )
    median = statistics.median(values)
    deciles = statistics.quantiles(values, n=10) if len(values) > 1 else [median] * 9
    rounds = [v / 1000 for v in m.round_medians] if latency else m.round_medians
    spread = (max(rounds) - min(rounds)) / 2 / median * 100 if rounds else None
    ratio = None
    if floor is not None and floor.samples:
        floor_median = statistics.median(floor.samples) / (1000 if latency else 1)
        ratio = median / floor_median
    return Row(
        m.operation,
        m.contender,
        m.kind,
        unit,
        median,
        deciles[0],
        deciles[-1],
        len(values),
        spread,
        ratio,
        m.error,
        tuple(rounds),
    )


def summarise(
    operations: Sequence[Operation], results: dict[str, list[Measurement]], order: Sequence[str]
) -> list[Row]:
    """One row per (operation, contender), operations in `operations` order, floor first."""
    rows: list[Row] = []
    rank = {name: n for n, name in enumerate(order)}
    for op in operations:
        measured = sorted(results.get(op.name, []), key=lambda m: rank.get(m.contender, 99))
        floor = next((m for m in measured if m.contender == FLOOR), None)
        rows.extend(_summarise(m, floor) for m in measured)
    return rows


def bulk_speedups(rows: Sequence[Row]) -> dict[str, dict[str, float]]:
    """Per contender: 1,000 single-row creates ÷ one 1,000-row create, both medians."""
    singles = {r.contender: r.median for r in rows if r.operation == "create_deployment_x1000"}
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        single = singles.get(r.contender)
        if r.operation == "create_deployments" and r.median and single:
            out[r.contender] = {
                "singles_us": single,
                "bulk_us": r.median,
                "speedup": single / r.median,
            }
    return out


def _fmt_value(row: Row) -> str:
    if row.median is None:
        return "-"
    if row.kind == "throughput":
        return f"{row.median:,.0f} ops/s"
    return f"{row.median:,.1f} µs" if row.median < 100 else f"{row.median:,.0f} µs"


def _reading(row: Row) -> str:
    if row.contender == FLOOR:
        return "floor"
    if row.ratio is None:
        return "-"
    better = row.ratio < 1 if row.kind == "latency" else row.ratio > 1
    factor = max(row.ratio, 1 / row.ratio)
    if abs(factor - 1) < 0.005:
        return "same"
    return f"{factor:.2f}x {'faster' if better else 'slower'}"


def _libpq(version: int) -> str:
    return f"{version // 10000}.{version % 100}"


def header(info: dict[str, Any]) -> str:
    m = info["machine"]
    p = info["profile"]
    packages = m["packages"]
    versions = ", ".join(f"{k} {v}" for k, v in packages.items() if v)
    settings = " ".join(f"{k}={v}" for k, v in m["server_settings"].items())
    seed = info["dataset"]
    fewer = "".join(f", {n}: {r}" for n, r in p["rounds_for"].items())
    return "\n".join(
        [
            f"coderunner-sql benchmark: {p['name']} profile, {p['rounds']} interleaved rounds"
            f"{fewer}",
            f"machine:    {m['cores']} cores ({m['usable_cores']} usable), {m['cpu']}",
            f"os:         {m['os']}",
            f"python:     {m['python']}; {versions}",
            f"            psycopg implementation {m['psycopg_impl']}, libpq {_libpq(m['libpq'])}",
            f"postgresql: {m['postgresql']} (private server on 127.0.0.1; {settings})",
            f"data:       {seed['users']:,} users, {seed['projects']:,} projects, "
            f"{seed['deployments']:,} deployments (COPY, {seed['seconds']:.1f} s)",
            *_load_lines(m),
        ]
    )


def _load_lines(m: dict[str, Any]) -> list[str]:
    start, end = m.get("load_average_at_start"), m.get("load_average_at_end")
    if start is None:
        return []
    lines = [f"load:       1-min load average {start} before timing, {end} after"]
    # The run itself keeps about one core busy; more than that at the start is other work.
    if start >= 0.5 * m["usable_cores"]:
        lines.append(
            "            WARNING: the machine was busy before timing started; expect noisy "
            "medians (see ±round)"
        )
    return lines


def _cells(r: Row) -> tuple[str, ...]:
    if r.error and r.median is None:
        status = "not timed" if r.error.startswith("not timed") else "failed"
        return (r.operation, r.contender, status, "", "see notes below", "")
    return (
        r.operation,
        r.contender,
        _fmt_value(r),
        f"{r.ratio:.2f}" if r.ratio is not None else "-",
        _reading(r) + (" (failed part-way, see notes)" if r.error else ""),
        f"±{r.round_spread_pct:.0f}%" if r.round_spread_pct is not None else "",
    )


def table(rows: Sequence[Row]) -> str:
    """Every (operation, contender) median and its ratio to the floor, one group per operation."""
    groups: dict[str, list[tuple[str, ...]]] = {}
    for r in rows:
        groups.setdefault(r.operation, []).append(_cells(r))
    return render(
        ("operation", "contender", "median", f"ratio vs {FLOOR}", "reading", "±round"),
        groups.values(),
        right=(2, 3, 5),
    )


LEGEND = (
    f"ratio: latency rows (µs) = contender median / {FLOOR} median, lower is better;\n"
    f"       concurrent_get_user_by_id (ops/s) = contender ops/s / {FLOOR} ops/s, higher is "
    "better.\n"
    "reading: the same ratio in words. ±round: half the range of the per-round medians "
    "(how far the median moves between rounds)."
)


def notes(rows: Sequence[Row], skipped: dict[str, str]) -> str:
    lines = [f"skipped {name}: {why}" for name, why in skipped.items()]
    lines += [f"{r.operation} / {r.contender}: {r.error}" for r in rows if r.error]
    return "\n".join(lines)


def bulk_text(speedups: dict[str, dict[str, float]]) -> str:
    if not speedups:
        return ""
    lines = [
        "bulk speedup: 1,000 single create_deployment calls vs one create_deployments call of "
        f"1,000 rows (target >= {BULK_TARGET:.0f}x)"
    ]
    width = max(map(len, speedups))
    for name, s in speedups.items():
        verdict = "meets target" if s["speedup"] >= BULK_TARGET else "BELOW target"
        lines.append(
            f"  {name.ljust(width)}  {s['singles_us'] / 1000:,.1f} ms vs "
            f"{s['bulk_us'] / 1000:,.1f} ms = {s['speedup']:.1f}x  {verdict}"
        )
    return "\n".join(lines)


def write_json(path: Path, info: dict[str, Any], rows: Sequence[Row]) -> None:
    document = {
        **info,
        "ratio_direction": {
            "latency": f"median / {FLOOR} median; lower is better",
            "throughput": f"ops/s / {FLOOR} ops/s; higher is better",
        },
        "results": [asdict(r) for r in rows],
        "bulk_speedup": bulk_speedups(rows),
        "targets": [asdict(v) for v in verdicts(rows)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
