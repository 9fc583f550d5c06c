"""The `--scale` dataset: 100,000 users, their projects and 1,000,000 deployments, by COPY.

Rows are written as COPY text, built from one seeded `random.Random` in chunks, so the
client formats the next chunk while the server parses the last. Two ways to load:

* `counters="triggers"`: COPY into the migrated schema as it is. COPY fires the
  statement-level counter triggers once per COPY, with every copied row in the transition
  table, so row_counts is right without any further step.
* `counters="recount"` (the default, measured faster): in one transaction, disable the
  counter triggers, COPY, enable them again and recompute row_counts with one
  `INSERT … SELECT count(*) … GROUP BY`. Other sessions never see the tables half loaded
  or the counters wrong: TRUNCATE and ALTER TABLE hold their locks until COMMIT.

Either way the load is one transaction that first truncates the tables, which lets COPY
FREEZE write the rows already frozen and visible to all (no hint-bit writes or vacuum
work later), and then `verify_counters` compares every counter with count(*).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg

from bench.models import PLANS, STATUSES
from bench.profiles import SeedSpec
from bench.seed import PASSWORD_HASH, RUNTIMES

Counters = Literal["triggers", "recount"]

# Most deployments of a long-lived platform are old and stopped; with these weights one
# status (STOPPED) holds more than the 500,000 rows that the 10,000th page needs.
SCALE_STATUS_WEIGHTS = {"PENDING": 5, "RUNNING": 25, "STOPPED": 60, "FAILED": 10}
HISTORY_S = 365 * 86_400
CHUNK = 20_000

# The statement-level triggers that keep row_counts (migrations/*_row_counts.sql).
COUNTER_TRIGGERS = {
    "users": ("users_count_insert", "users_count_delete"),
    "projects": ("projects_count_insert", "projects_count_delete"),
    "deployments": (
        "deployments_count_insert",
        "deployments_count_delete",
        "deployments_count_status",
    ),
}

RECOUNT = """
INSERT INTO row_counts (counter, shard, n)
SELECT 'users', 0, count(*) FROM users
UNION ALL
SELECT 'projects', 0, count(*) FROM projects
UNION ALL
SELECT 'deployments.' || status, 0, count(*) FROM deployments GROUP BY status
"""

COUNTS = """
SELECT 'users', count(*) FROM users
UNION ALL
SELECT 'projects', count(*) FROM projects
UNION ALL
SELECT 'deployments.' || status, count(*) FROM deployments GROUP BY status
"""

# uuid4: version nibble 4, variant bits 10.
_V4_BITS = (0x4000 << 64) | (0x8000 << 48)
_V4_MASK = ((1 << 128) - 1) & ~((0xF000 << 64) | (0xC000 << 48))


@dataclass
class ScaleDataset:
    """What was loaded, how long each step took, and ids the measurements draw from."""

    users: int
    projects: int
    deployments: int
    status_counts: dict[str, int]
    user_ids: list[str]
    project_ids: list[str]
    counters: Counters
    steps: dict[str, float] = field(default_factory=dict)
    """Seconds per step (copy of each table, recount, vacuum analyze)."""
    server_cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds the server backend spent per step (where /proc shows it): unlike wall
    time, hardly changed by other work on a shared machine."""

    @property
    def seconds(self) -> float:
        """Seconds from the first COPY to the end of VACUUM ANALYZE."""
        return sum(self.steps.values())


def _uuids(rng: random.Random, count: int) -> list[str]:
    bits = rng.getrandbits
    return [f"{(bits(128) & _V4_MASK) | _V4_BITS:032x}" for _ in range(count)]


def _stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()


def _chunks(lines: Iterator[str]) -> Iterator[bytes]:
    buffer = io.StringIO()
    for n, line in enumerate(lines, 1):
        buffer.write(line)
        if n % CHUNK == 0:
            yield buffer.getvalue().encode()
            buffer = io.StringIO()
    if buffer.tell():
        yield buffer.getvalue().encode()


def _copy(cur: psycopg.Cursor[Any], statement: str, lines: Iterator[str]) -> None:
    with cur.copy(statement) as copy:
        for chunk in _chunks(lines):
            copy.write(chunk)


def _created(rng: random.Random, now: float) -> tuple[str, str]:
    created = now - HISTORY_S * rng.random()
    updated = min(created + rng.expovariate(1 / 172_800), now)
    return _stamp(created), _stamp(updated)


def _user_lines(rng: random.Random, ids: Sequence[str], now: float) -> Iterator[str]:
    plans = rng.choices(PLANS, (80, 15, 5), k=len(ids))
    for n, (user_id, plan) in enumerate(zip(ids, plans, strict=True)):
        created, updated = _created(rng, now)
        yield f"{user_id}\tuser{n}@example.com\t{PASSWORD_HASH}\t{plan}\t{created}\t{updated}\n"


def _project_lines(
    rng: random.Random, ids: Sequence[str], owners: Sequence[str], now: float
) -> Iterator[str]:
    for n, (project_id, owner) in enumerate(zip(ids, owners, strict=True)):
        description = f"Project {n}: a small web app." if rng.random() < 0.6 else "\\N"
        created, updated = _created(rng, now)
        yield f"{project_id}\t{owner}\tproject-{n}\t{description}\t{created}\t{updated}\n"


def _deployment_lines(
    rng: random.Random,
    count: int,
    project_ids: Sequence[str],
    statuses: Sequence[str],
    now: float,
) -> Iterator[str]:
    ids = _uuids(rng, count)
    projects = rng.choices(project_ids, k=count)
    runtimes = rng.choices(RUNTIMES, k=count)
    for deployment_id, project_id, runtime, status in zip(
        ids, projects, runtimes, statuses, strict=True
    ):
        sandbox = f"sbx-{deployment_id[:12]}"
        if rng.random() < 0.3:
            db_sandbox = f"dbx-{deployment_id[:12]}"
            info = f'{{"host": "db-{sandbox}.internal", "port": 5432, "database": "app"}}'
        else:
            db_sandbox = info = "\\N"
        created, updated = _created(rng, now)
        yield (
            f"{deployment_id}\t{project_id}\t{sandbox}\thttps://{sandbox}.apps.example.com\t"
            f"{db_sandbox}\t{info}\t{status}\t{runtime}\t{created}\t{updated}\n"
        )


def backend_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by the server process `pid`, if readable."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


def _set_triggers(cur: psycopg.Cursor[Any], enabled: bool) -> None:
    action = "ENABLE" if enabled else "DISABLE"
    for table, triggers in COUNTER_TRIGGERS.items():
        for trigger in triggers:
            cur.execute(f"ALTER TABLE {table} {action} TRIGGER {trigger}")


def seed_scale(
    url: str,
    spec: SeedSpec,
    *,
    counters: Counters = "recount",
    rng_seed: int = 42,
    progress: Callable[[str], None] = lambda text: None,
) -> ScaleDataset:
    """Load `spec`'s rows into the migrated database at `url` (replacing any rows)."""
    rng = random.Random(rng_seed)
    now = time.time() - 60
    user_ids = _uuids(rng, spec.users)
    # 1 to 5 projects per user, 3 on average.
    owners = [u for u in user_ids for _ in range(rng.randint(1, 5))]
    rng.shuffle(owners)
    owners = owners[: spec.projects] if len(owners) > spec.projects else owners
    project_ids = _uuids(rng, len(owners))
    weights = [SCALE_STATUS_WEIGHTS[s] for s in STATUSES]
    statuses = rng.choices(STATUSES, weights, k=spec.deployments)
    steps: dict[str, float] = {}
    server_cpu: dict[str, float] = {}
    backend: int | None = None
    cpu_before: float | None = None

    def step(name: str, started: float) -> None:
        nonlocal cpu_before
        steps[name] = time.perf_counter() - started
        cpu = backend_cpu(backend) if backend is not None else None
        note = ""
        if cpu is not None and cpu_before is not None:
            server_cpu[name] = cpu - cpu_before
            note = f" (server CPU {server_cpu[name]:.1f}s)"
        cpu_before = cpu
        progress(f"seed: {name} {steps[name]:.1f}s{note}")

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        backend = conn.info.backend_pid
        cpu_before = backend_cpu(backend)
        started = time.perf_counter()
        cur.execute("TRUNCATE users, projects, deployments")
        if counters == "recount":
            _set_triggers(cur, enabled=False)
        step("truncate", started)
        started = time.perf_counter()
        _copy(
            cur,
            "COPY users (id, email, password_hash, plan_type, created_at, updated_at)"
            " FROM STDIN (FREEZE)",
            _user_lines(rng, user_ids, now),
        )
        step(f"copy {len(user_ids):,} users", started)
        started = time.perf_counter()
        _copy(
            cur,
            "COPY projects (id, user_id, name, description, created_at, updated_at)"
            " FROM STDIN (FREEZE)",
            _project_lines(rng, project_ids, owners, now),
        )
        step(f"copy {len(project_ids):,} projects", started)
        started = time.perf_counter()
        _copy(
            cur,
            "COPY deployments (id, project_id, app_sandbox_id, public_url, db_sandbox_id,"
            " db_connection_info, status, runtime_type, created_at, updated_at)"
            " FROM STDIN (FREEZE)",
            _deployment_lines(rng, spec.deployments, project_ids, statuses, now),
        )
        step(f"copy {spec.deployments:,} deployments", started)
        if counters == "recount":
            started = time.perf_counter()
            _set_triggers(cur, enabled=True)
            cur.execute("DELETE FROM row_counts")
            cur.execute(RECOUNT)
            step("recount row_counts", started)
        started = time.perf_counter()
        conn.commit()
        step("commit", started)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        backend = conn.info.backend_pid
        cpu_before = backend_cpu(backend)
        conn.execute("VACUUM ANALYZE users, projects, deployments, row_counts")
        step("vacuum analyze", started)
    return ScaleDataset(
        users=len(user_ids),
        projects=len(project_ids),
        deployments=spec.deployments,
        status_counts={s: statuses.count(s) for s in STATUSES},
        user_ids=user_ids,
        project_ids=project_ids,
        counters=counters,
        steps=steps,
        server_cpu=server_cpu,
    )


def verify_counters(url: str) -> dict[str, tuple[int, int]]:
    """Every counter that differs from count(*): name -> (counter sum, count(*))."""
    with psycopg.connect(url, autocommit=True) as conn:
        counted = {name: int(n) for name, n in conn.execute(COUNTS)}
        kept = {
            name: int(n)
            for name, n in conn.execute(
                "SELECT counter, sum(n) FROM row_counts GROUP BY counter HAVING sum(n) <> 0"
            )
        }
    names = set(counted) | set(kept)
    return {
        n: (kept.get(n, 0), counted.get(n, 0))
        for n in sorted(names)
        if kept.get(n, 0) != counted.get(n, 0)
    }


def recount(url: str) -> None:
    """Recompute row_counts from count(*) (after writes made with the triggers disabled)."""
    with psycopg.connect(url) as conn:
        conn.execute("LOCK users, projects, deployments IN SHARE MODE")
        conn.execute("DELETE FROM row_counts")
        conn.execute(RECOUNT)
