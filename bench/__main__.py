"""`python -m bench`: seed a private server, check and time every contender, print the table.

Run it from the repository root. `--quick` takes about a minute; the default run takes a few
minutes and gives stable medians. See bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench import report
from bench.contenders import FLOOR, REGISTRY
from bench.profiles import PROFILES, Profile
from bench.runner import Measurement, Runner
from bench.seed import reset, seed
from bench.server import (
    DURABLE_SETTINGS,
    FAST_SETTINGS,
    load_average,
    machine,
    private_server,
)
from bench.workload import Operation, Workload, operations


def _names(text: str | None, known: Sequence[str], what: str) -> list[str]:
    if text is None:
        return list(known)
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return [n for n in known if n in chosen]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Time coderunner-sql's operations against raw psycopg 3 (the floor), asyncpg and "
            "SQLAlchemy, interleaved round by round on one private PostgreSQL server."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    parser.add_argument(
        "--scale",
        action="store_true",
        help=(
            "the library alone on 1,000,000 deployments against the scale targets (a few "
            "minutes; with --quick, 100,000)"
        ),
    )
    parser.add_argument(
        "--seed-counters",
        choices=("triggers", "recount"),
        default="triggers",
        help=(
            "--scale: keep row_counts by the counter triggers during COPY (default), or "
            "disable them and recount in one statement"
        ),
    )
    parser.add_argument("--rounds", type=int, help="measured rounds per operation")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--contenders",
        metavar="A,B",
        help=f"contenders to run (default: all; {FLOOR} always runs, ratios need it)",
    )
    parser.add_argument("--operations", metavar="A,B", help="operations to run (default: all)")
    parser.add_argument(
        "--durable",
        action="store_true",
        help="keep fsync and synchronous_commit on (writes then include WAL flushes)",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed of the dataset")
    parser.add_argument("--list", action="store_true", help="list contenders and operations")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def _progress(started: float, text: str) -> None:
    print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)


def run(profile: Profile, args: argparse.Namespace) -> int:
    contenders = _names(args.contenders, list(REGISTRY), "contenders")
    if FLOOR not in contenders:
        contenders.insert(0, FLOOR)
    all_ops = operations(profile)
    wanted = _names(args.operations, [op.name for op in all_ops], "operations")
    ops = [op for op in all_ops if op.name in wanted]
    settings = DURABLE_SETTINGS if args.durable else FAST_SETTINGS
    started = time.monotonic()
    results: dict[str, list[Measurement]] = {}

    with private_server(durable=args.durable) as (_server, url):
        _progress(started, "server up and migrated; seeding")
        dataset = seed(url, profile.seed, args.seed)
        workload = Workload(dataset, profile)
        info: dict[str, Any] = {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python -m bench", *sys.argv[1:]]),
            "machine": machine(url, settings),
            "profile": {
                "name": profile.name,
                "rounds": profile.rounds,
                "rounds_for": dict(profile.rounds_for),
                "batches": dict(profile.batches),
                "warmup": dict(profile.warmup),
                "concurrency": profile.concurrency,
            },
            "dataset": {
                "users": len(dataset.user_ids),
                "projects": len(dataset.project_ids),
                "deployments": len(dataset.deployment_ids),
                "status_counts": dataset.status_counts,
                "seconds": dataset.seconds,
            },
        }
        runner = Runner(url, profile, workload)
        try:
            runner.load(contenders)
            for name, why in runner.skipped.items():
                _progress(started, f"skipping {name}: {why}")
            runner.verify(ops)
            if FLOOR not in {c.name for c in runner.contenders}:
                raise SystemExit(f"{FLOOR} (the floor) is unavailable: {runner.skipped[FLOOR]}")
            reset(url, dataset)
            ready = ", ".join(c.name for c in runner.contenders)
            _progress(started, f"results checked; timing {ready}")
            gc.collect()
            gc.freeze()
            # Reads first, so they all see the seeded data and nothing the writes added; each
            # round of a write starts from the seeded data too.
            restore = partial(reset, url, dataset)
            for op in sorted(ops, key=lambda o: o.writes):
                op_started = time.monotonic()
                results[op.name] = runner.measure(op, restore if op.writes else None)
                _progress(started, f"{op.name}: {time.monotonic() - op_started:.1f}s")
        finally:
            runner.close()
        info["machine"]["load_average_at_end"] = load_average()

    rows = report.summarise(ops, results, list(REGISTRY))
    info["seconds"] = round(time.monotonic() - started, 1)
    info["skipped"] = runner.skipped
    print(report.header(info))
    print()
    print(report.table(rows))
    print()
    print(report.LEGEND)
    for section in (
        report.bulk_text(report.bulk_speedups(rows)),
        report.verdict_text(report.verdicts(rows)),
        report.notes(rows, runner.skipped),
    ):
        if section:
            print()
            print(section)
    print(f"\ntotal time {info['seconds']:.0f}s")
    if args.json:
        report.write_json(args.json, info, rows)
        print(f"results written to {args.json}")
    return 0


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    # A CI timeout sends SIGTERM; exiting through the `finally` blocks stops and deletes the
    # private server instead of leaving it running.
    signal.signal(signal.SIGTERM, _exit)
    args = parse_args(argv)
    if args.scale:
        from bench import scale
        from bench.profiles import SCALE, SCALE_QUICK

        return scale.run(
            SCALE_QUICK if args.quick else SCALE,
            rng_seed=args.seed,
            counters=args.seed_counters,
            json_path=args.json,
        )
    profile = PROFILES["quick" if args.quick else "default"].with_rounds(args.rounds)
    if args.list:
        for name, target in REGISTRY.items():
            print(f"contender  {name:18} {target}")
        op: Operation
        for op in operations(profile):
            notes = [op.kind, *(["writes"] if op.writes else [])]
            if op.only:
                notes.append("only " + ", ".join(op.only))
            print(f"operation  {op.name:28} {'; '.join(notes)}")
        return 0
    return run(profile, args)


if __name__ == "__main__":
    sys.exit(main())
