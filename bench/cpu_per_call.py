"""`python -m bench.cpu_per_call URL [N]`: the client's user CPU per call of a few service
operations (least of three runs of N calls), as JSON.

Wall-clock ratios move with the server and the machine's other work; the CPU the client
spends per call is what the library's own code costs. To compare two versions, run it from
each checkout against the same migrated database (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from coderunner_sql import AsyncDatabaseService, DatabaseConfig, DatabaseService

RUNS = 3


def _user_cpu() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


def _sync(config: DatabaseConfig, n: int) -> tuple[dict[str, float], str, str]:
    out: dict[str, float] = {}
    with DatabaseService(config) as db:
        user = db.get_user_by_email("cpu@example.com") or db.create_user(
            email="cpu@example.com", password_hash="h"
        )
        project = db.create_project(user_id=user.id, name=f"cpu-{_user_cpu()}")
        deployment = db.create_deployment(project_id=project.id, runtime_type="python")
        calls: dict[str, Callable[[], Any]] = {
            "get_user_by_id": lambda: db.get_user_by_id(user.id),
            "get_deployment_with_details": lambda: db.get_deployment_with_details(deployment.id),
            "get_system_stats": db.get_system_stats,
        }
        for name, call in calls.items():
            for _ in range(500):  # warm: statements prepared, row makers built
                call()
            best = float("inf")
            for _ in range(RUNS):
                started = _user_cpu()
                for _ in range(n):
                    call()
                best = min(best, _user_cpu() - started)
            out[f"sync {name}"] = round(best / n * 1e6, 1)
        return out, str(user.id), str(deployment.id)


async def _async(config: DatabaseConfig, n: int, user: str, deployment: str) -> dict[str, float]:
    out: dict[str, float] = {}
    async with AsyncDatabaseService(config) as db:
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "get_user_by_id": lambda: db.get_user_by_id(user),
            "get_deployment_with_details": lambda: db.get_deployment_with_details(deployment),
            "get_system_stats": db.get_system_stats,
        }
        for name, call in calls.items():
            for _ in range(500):
                await call()
            best = float("inf")
            for _ in range(RUNS):
                started = _user_cpu()
                for _ in range(n):
                    await call()
                best = min(best, _user_cpu() - started)
            out[f"async {name}"] = round(best / n * 1e6, 1)
    return out


def main(argv: list[str]) -> None:
    """Print the user CPU per call (µs) of each operation, sync and async, as JSON."""
    if not argv:
        raise SystemExit(__doc__)
    config = DatabaseConfig.from_url(argv[0])
    n = int(argv[1]) if len(argv) > 1 else 3000
    found, user, deployment = _sync(config, n)
    found |= asyncio.run(_async(config, n, user, deployment))
    print(json.dumps(found, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
