"""Stream deployments through `iter_deployments_by_status` and report how much RSS grew.

Run as `python -m bench.scale_stream URL sync|async STATUS[,STATUS…]` by `bench.scale`, in
a fresh process so that nothing the benchmark allocated earlier hides (or adds to) the
growth. Prints one JSON object: rows streamed, seconds, resident memory (VmRSS) before the
first row, and the peak (VmHWM, reset just before streaming where the kernel allows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

BATCH_SIZE = 1000


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+).
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
        return True
    return False


def _baseline() -> dict[str, Any]:
    gc.collect()
    reset = _reset_peak()
    return {"rss_before_kb": _status_kb("VmRSS"), "peak_reset": reset}


def _finish(report: dict[str, Any], rows: int, started: float) -> dict[str, Any]:
    report["seconds"] = time.perf_counter() - started
    report["rows"] = rows
    report["rss_after_kb"] = _status_kb("VmRSS")
    report["peak_kb"] = _status_kb("VmHWM")
    report["growth_mb"] = (report["peak_kb"] - report["rss_before_kb"]) / 1024
    return report


def stream_sync(url: str, statuses: list[str]) -> dict[str, Any]:
    from coderunner_sql import DatabaseConfig, DatabaseService

    with DatabaseService(DatabaseConfig.from_url(url, pool_min=1, pool_max=1)) as service:
        # Everything but the stream itself is loaded and warm before the baseline.
        for row in service.iter_deployments_by_status(statuses[0], batch_size=BATCH_SIZE):
            del row
            break
        report = _baseline()
        rows = 0
        started = time.perf_counter()
        for status in statuses:
            for _ in service.iter_deployments_by_status(status, batch_size=BATCH_SIZE):
                rows += 1
        return _finish(report, rows, started)


async def stream_async(url: str, statuses: list[str]) -> dict[str, Any]:
    from coderunner_sql import AsyncDatabaseService, DatabaseConfig

    config = DatabaseConfig.from_url(url, pool_min=1, pool_max=1)
    async with AsyncDatabaseService(config) as service:
        stream = service.iter_deployments_by_status(statuses[0], batch_size=BATCH_SIZE)
        async for row in stream:
            del row
            break
        await stream.aclose()
        report = _baseline()
        rows = 0
        started = time.perf_counter()
        for status in statuses:
            async for _ in service.iter_deployments_by_status(status, batch_size=BATCH_SIZE):
                rows += 1
        return _finish(report, rows, started)


def main(argv: list[str]) -> int:
    url, mode, statuses = argv[0], argv[1], argv[2].split(",")
    if mode == "sync":
        report = stream_sync(url, statuses)
    else:
        report = asyncio.run(stream_async(url, statuses))
    report["mode"] = mode
    report["statuses"] = statuses
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
