"""A realistic small dataset, loaded with COPY, and the ids the operations draw from.

Everything is generated from one seeded `random.Random`, so two runs with the same seed
load the same data. Ids are generated here rather than by the server so the workload knows
them without reading them back. Every seeded timestamp lies before `Dataset.seeded_before`,
which is how `reset()` tells rows written by verification apart from the seed.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from bench.models import PLANS, STATUSES
from bench.profiles import SeedSpec

STATUS_WEIGHTS = {"PENDING": 10, "RUNNING": 35, "STOPPED": 45, "FAILED": 10}
RUNTIMES = ("python3.12", "python3.11", "node22", "node20", "go1.23", "ruby3.3", "deno2")
PASSWORD_HASH = "$2b$12$" + "x" * 53
HISTORY = timedelta(days=365)

COPY_USERS = "COPY users (id, email, password_hash, plan_type, created_at, updated_at) FROM STDIN"
COPY_PROJECTS = "COPY projects (id, user_id, name, description, created_at, updated_at) FROM STDIN"
COPY_DEPLOYMENTS = (
    "COPY deployments (id, project_id, app_sandbox_id, public_url, db_sandbox_id,"
    " db_connection_info, status, runtime_type, created_at, updated_at) FROM STDIN"
)


@dataclass(frozen=True)
class Dataset:
    user_ids: list[uuid.UUID]
    project_ids: list[uuid.UUID]
    deployment_ids: list[uuid.UUID]
    status_counts: dict[str, int]
    seeded_before: datetime
    seconds: float


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _stamps(rng: random.Random, now: datetime) -> tuple[datetime, datetime]:
    created = now - HISTORY * rng.random()
    return created, min(created + timedelta(hours=rng.expovariate(1 / 48)), now)


def seed(url: str, spec: SeedSpec, rng_seed: int = 42) -> Dataset:
    """Load `spec`'s rows into the (empty, migrated) database at `url`."""
    started = time.perf_counter()
    rng = random.Random(rng_seed)
    now = datetime.now(UTC) - timedelta(minutes=1)
    user_ids = [_uuid(rng) for _ in range(spec.users)]
    project_ids = [_uuid(rng) for _ in range(spec.projects)]
    deployment_ids = [_uuid(rng) for _ in range(spec.deployments)]
    statuses = rng.choices(STATUSES, [STATUS_WEIGHTS[s] for s in STATUSES], k=spec.deployments)

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        copy_users = (
            "COPY users (id, email, password_hash, plan_type, created_at, updated_at) FROM STDIN"
        )
        with cur.copy(copy_users) as copy:
            for n, user_id in enumerate(user_ids):
                plan = rng.choices(PLANS, (80, 15, 5))[0]
                copy.write_row(
                    (user_id, f"user{n}@example.com", PASSWORD_HASH, plan, *_stamps(rng, now))
                )

        copy_projects = (
            "COPY projects (id, user_id, name, description, created_at, updated_at) FROM STDIN"
        )
        with cur.copy(copy_projects) as copy:
            for n, project_id in enumerate(project_ids):
                description = f"Project {n}: a small web app." if rng.random() < 0.6 else None
                owner = rng.choice(user_ids)
                copy.write_row((project_id, owner, f"project-{n}", description, *_stamps(rng, now)))

        with cur.copy(COPY_DEPLOYMENTS) as copy:
            for deployment_id, status in zip(deployment_ids, statuses, strict=True):
                sandbox = f"sbx-{deployment_id.hex[:12]}"
                has_db = rng.random() < 0.3
                db_info = (
                    json.dumps({"host": f"db-{sandbox}.internal", "port": 5432, "database": "app"})
                    if has_db
                    else None
                )
                copy.write_row(
                    (
                        deployment_id,
                        rng.choice(project_ids),
                        sandbox,
                        f"https://{sandbox}.apps.example.com",
                        f"dbx-{deployment_id.hex[:12]}" if has_db else None,
                        db_info,
                        status,
                        rng.choice(RUNTIMES),
                        *_stamps(rng, now),
                    )
                )
    vacuum(url)
    counts = {s: statuses.count(s) for s in STATUSES}
    return Dataset(
        user_ids, project_ids, deployment_ids, counts, now, time.perf_counter() - started
    )


def vacuum(url: str) -> None:
    """VACUUM ANALYZE: fresh statistics, and a visibility map so counts scan only the index."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def reset(url: str, dataset: Dataset) -> None:
    """Delete every user and deployment written after seeding, and vacuum those tables
    (not ANALYZE: the data is back to what the statistics describe)."""
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM deployments WHERE created_at > %s", (dataset.seeded_before,))
        conn.execute("DELETE FROM users WHERE created_at > %s", (dataset.seeded_before,))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM deployments, users")
