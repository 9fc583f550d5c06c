"""The operations, and the arguments each contender is given for them.

Every contender gets the same argument sequence for an operation (sample `i` reads the same
user for everyone), except for what must differ: each contender's new users get emails under
its own prefix, so writes never collide.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from bench.contenders import FLOOR
from bench.models import PLANS
from bench.profiles import Profile
from bench.seed import PASSWORD_HASH, RUNTIMES, STATUS_WEIGHTS, Dataset

Kind = Literal["latency", "throughput"]

Calls = list[tuple[Any, ...]]
"""The argument tuples of the calls that make up one timed sample."""


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    """The contender method it calls."""
    kind: Kind = "latency"
    writes: bool = False
    calls_per_sample: int = 1
    concurrency: int = 1
    """Workers (threads or tasks) sharing one throughput sample."""
    only: tuple[str, ...] | None = None
    """The contenders it runs for; None means all."""


BY_STATUS = "RUNNING"
PAGE_SIZE = 50

# 1,000 single creates answer "how much faster is the bulk call" and "how close is the
# library to raw psycopg per single-row write", which matter for the library and its two
# baselines (sync and async psycopg); for the others it would only add a minute to a run.
SINGLES_FOR = (FLOOR, "psycopg-async", "coderunner-sync", "coderunner-async")


def operations(profile: Profile) -> list[Operation]:
    """Every operation, in reporting order."""
    return [
        Operation("get_user_by_id", "get_user_by_id"),
        Operation("create_user", "create_user", writes=True),
        Operation("get_deployment_with_details", "get_deployment_with_details"),
        Operation("get_deployments_by_status", "get_deployments_by_status"),
        Operation("create_deployments", "create_deployments", writes=True),
        Operation(
            "create_deployment_x1000",
            "create_deployment",
            writes=True,
            calls_per_sample=profile.singles,
            only=SINGLES_FOR,
        ),
        Operation("get_system_stats", "get_system_stats"),
        Operation(
            "concurrent_get_user_by_id",
            "get_user_by_id",
            kind="throughput",
            concurrency=profile.concurrency,
            calls_per_sample=profile.concurrency * profile.calls_per_worker,
        ),
    ]


class Workload:
    """Argument sequences for every (operation, contender) pair."""

    def __init__(self, dataset: Dataset, profile: Profile, rng_seed: int = 7) -> None:
        rng = random.Random(rng_seed)
        self.profile = profile
        self.user_ids = rng.sample(dataset.user_ids, len(dataset.user_ids))
        self.deployment_ids = rng.sample(dataset.deployment_ids, len(dataset.deployment_ids))
        statuses = list(STATUS_WEIGHTS)
        weights = list(STATUS_WEIGHTS.values())
        self.bulk_batches = [
            [
                {
                    "project_id": rng.choice(dataset.project_ids),
                    "runtime_type": rng.choice(RUNTIMES),
                    "status": rng.choices(statuses, weights)[0],
                    "public_url": f"https://bench-{batch}-{n}.apps.example.com",
                    "app_sandbox_id": f"sbx-bench-{batch}-{n}",
                }
                for n in range(profile.bulk_rows)
            ]
            for batch in range(4)
        ]
        self.singles = [
            (rng.choice(dataset.project_ids), rng.choice(RUNTIMES)) for _ in range(profile.singles)
        ]
        self._emails: dict[str, Iterator[int]] = {}

    def _email(self, contender: str) -> str:
        counter = self._emails.setdefault(contender, itertools.count())
        return f"{contender}-{next(counter)}@bench.example"

    def calls(self, op: Operation, contender: str, sample: int) -> Calls:
        """The calls of sample number `sample` (they are timed together)."""
        match op.name:
            case "get_user_by_id":
                return [(self.user_ids[sample % len(self.user_ids)],)]
            case "create_user":
                return [(self._email(contender), PASSWORD_HASH, PLANS[sample % len(PLANS)])]
            case "get_deployment_with_details":
                return [(self.deployment_ids[sample % len(self.deployment_ids)],)]
            case "get_deployments_by_status":
                return [(BY_STATUS, PAGE_SIZE)]
            case "create_deployments":
                return [(self.bulk_batches[sample % len(self.bulk_batches)],)]
            case "create_deployment_x1000":
                return list(self.singles)
            case "get_system_stats":
                return [()]
            case "concurrent_get_user_by_id":
                start = sample * op.calls_per_sample
                return [
                    (self.user_ids[(start + n) % len(self.user_ids)],)
                    for n in range(op.calls_per_sample)
                ]
        raise ValueError(f"no arguments defined for operation {op.name!r}")

    def split(self, op: Operation, calls: Calls) -> list[Calls]:
        """A concurrent sample's calls dealt out to its workers."""
        return [calls[w :: op.concurrency] for w in range(op.concurrency)]
