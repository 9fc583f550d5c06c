"""`python -m bench.testing_overhead`: what a fresh database per test costs with the pytest
plugin (`coderunner_sql.testing`), against creating and migrating one per test.

One private server with the plugin's settings (`FAST_SETTINGS`), one migrated template made
as the plugin makes it. Each round, in alternating order, times one test's database both
ways, from nothing to dropped:

* `clone`: `CREATE DATABASE … TEMPLATE` + `DROP` (what `coderunner_database_url` costs);
* `clone + service`: the same plus connecting and closing a `DatabaseService` on it (what
  `coderunner_db` costs);
* `create + migrate`: `CREATE DATABASE` + every migration applied by `Migrator` + `DROP`.

The ratio is the medians', in the same run. Pass `--rounds N` (default 30) and `--json PATH`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from coderunner_sql import DatabaseService
from coderunner_sql.embedded import EmbeddedServer
from coderunner_sql.migrations import Migrator
from coderunner_sql.testing.databases import FAST_SETTINGS, ScratchServer


def _timed(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def measure(rounds: int) -> dict[str, list[float]]:
    """Seconds per sample of each way, `rounds` samples each, on a private server."""
    folder = Path(tempfile.mkdtemp(prefix="coderunner-bench-testing-"))
    embedded = EmbeddedServer(folder / "pgdata", settings=FAST_SETTINGS)
    embedded.start()
    try:
        with ScratchServer(embedded.config("postgres")) as server:
            template = server.make_template()

            def clone() -> None:
                server.drop(server.create(template=template))

            def clone_and_service() -> None:
                name = server.create(template=template)
                service = DatabaseService(server.config(name, pool_min=1))
                service.connect()
                service.disconnect()
                server.drop(name)

            def create_and_migrate() -> None:
                name = server.create()
                Migrator(server.config(name)).apply()
                server.drop(name)

            ways = {
                "clone": clone,
                "clone + service": clone_and_service,
                "create + migrate": create_and_migrate,
            }
            for work in ways.values():  # warm-up, unrecorded
                work()
            samples: dict[str, list[float]] = {name: [] for name in ways}
            order = list(ways)
            for _ in range(rounds):
                for name in order:
                    samples[name].append(_timed(ways[name]))
                order = order[1:] + order[:1]
            return samples
    finally:
        embedded.destroy()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement and print a table (milliseconds, medians)."""
    parser = argparse.ArgumentParser(prog="python -m bench.testing_overhead")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    samples = measure(args.rounds)
    baseline = statistics.median(samples["create + migrate"])
    print(f"per-test database, {args.rounds} rounds (median ms; ratio to create + migrate)")
    result = {}
    for name, values in samples.items():
        median = statistics.median(values)
        result[name] = {"median_ms": round(median * 1000, 2), "ratio": round(median / baseline, 3)}
        print(f"  {name:<18} {median * 1000:8.1f} ms   {median / baseline:5.2f}x")
    if args.json is not None:
        args.json.write_text(json.dumps({"rounds": args.rounds, "results": result}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
