"""How much data to seed and how many samples to take, per run mode.

A profile is the only thing a new mode needs: a later `--scale` mode is a `Profile` with a
1,000,000-deployment `SeedSpec` (and smaller batches for the operations that scan).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SeedSpec:
    users: int = 1_000
    projects: int = 3_000
    deployments: int = 20_000


@dataclass(frozen=True)
class Profile:
    name: str
    seed: SeedSpec
    rounds: int
    """Measured rounds per operation; every contender runs one batch per round."""
    rounds_for: Mapping[str, int]
    """Fewer rounds for the operations whose one sample takes seconds."""
    batches: Mapping[str, int]
    """Samples per contender per round, by operation."""
    warmup: Mapping[str, int]
    """Unrecorded samples per contender before the first round, by operation."""
    concurrency: int = 8
    calls_per_worker: int = 25
    """Calls each of the `concurrency` workers makes in one concurrent sample."""
    bulk_rows: int = 1_000
    singles: int = 1_000

    def with_rounds(self, rounds: int | None) -> Profile:
        """This profile with every operation measured for `rounds` rounds."""
        return self if rounds is None else replace(self, rounds=rounds, rounds_for={})

    def rounds_of(self, operation: str) -> int:
        return self.rounds_for.get(operation, self.rounds)


QUICK = Profile(
    name="quick",
    seed=SeedSpec(),
    rounds=5,
    rounds_for={"create_deployment_x1000": 3},
    batches={
        "get_user_by_id": 40,
        "create_user": 40,
        "get_deployment_with_details": 40,
        "get_deployments_by_status": 20,
        "create_deployments": 1,
        "create_deployment_x1000": 1,
        "get_system_stats": 10,
        "concurrent_get_user_by_id": 1,
    },
    # Enough calls for every pooled connection to have prepared the statement.
    warmup={
        "get_user_by_id": 20,
        "create_user": 20,
        "get_deployment_with_details": 20,
        "get_deployments_by_status": 16,
        "create_deployments": 1,
        "create_deployment_x1000": 0,
        "get_system_stats": 10,
        "concurrent_get_user_by_id": 1,
    },
)

DEFAULT = Profile(
    name="default",
    seed=SeedSpec(),
    # On a shared 2-core machine 15 rounds left medians moving by 10-20% between runs.
    rounds=30,
    rounds_for={"create_deployment_x1000": 12},
    batches={
        "get_user_by_id": 100,
        "create_user": 100,
        "get_deployment_with_details": 100,
        "get_deployments_by_status": 30,
        "create_deployments": 2,
        "create_deployment_x1000": 1,
        "get_system_stats": 15,
        "concurrent_get_user_by_id": 1,
    },
    warmup={**QUICK.warmup, "create_deployments": 2},
    calls_per_worker=50,
)

PROFILES = {p.name: p for p in (QUICK, DEFAULT)}


@dataclass(frozen=True)
class ScaleProfile:
    """The `--scale` mode: the library alone, on a million deployments."""

    name: str
    seed: SeedSpec
    deep_page: int
    """The keyset page fetched deep in the STOPPED listing (and the offset page at the
    same depth)."""
    rounds: int
    """Interleaved rounds of every latency figure; each service runs one batch per round."""
    batch: int
    """Samples per service per round (the offset page takes `slow_batch`)."""
    slow_batch: int
    slow_rounds: int
    writers: int = 8
    write_seconds: float = 5.0
    """Length of one throughput sample."""
    write_rounds: int = 3
    """Throughput samples with the counter triggers, and as many without, alternating."""


SCALE = ScaleProfile(
    name="scale",
    seed=SeedSpec(users=100_000, projects=300_000, deployments=1_000_000),
    deep_page=10_000,
    rounds=10,
    batch=30,
    slow_batch=1,
    slow_rounds=7,
)

SCALE_QUICK = ScaleProfile(
    name="scale-quick",
    seed=SeedSpec(users=10_000, projects=30_000, deployments=100_000),
    deep_page=1_000,
    rounds=4,
    batch=15,
    slow_batch=1,
    slow_rounds=3,
    write_seconds=2.0,
    write_rounds=2,
)
