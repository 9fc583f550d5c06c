"""The private PostgreSQL server a run uses, and a description of the machine it runs on.

A run never touches a shared server: other work on it would be noise in the numbers, and
the benchmark writes tens of thousands of rows.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg

from coderunner_sql.embedded import EmbeddedServer
from coderunner_sql.migrations import Migrator

DATABASE = "bench"

# Client overhead is what is compared, so the server is tuned to add as little noise as it
# can: no WAL flushes (the disk is the noisiest thing on a CI runner), no autovacuum waking
# up mid-round, no JIT compiling a plan for one contender and not another.
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "autovacuum": "off",
    "jit": "off",
    "max_connections": "200",
}
DURABLE_SETTINGS = {"autovacuum": "off", "jit": "off", "max_connections": "200"}
# `--scale`: the million-row tables and their indexes (about 700 MB) fit in shared buffers,
# as they would on a server sized for them, and the load does not checkpoint half-way.
SCALE_SETTINGS = {
    **FAST_SETTINGS,
    "shared_buffers": "1GB",
    "max_wal_size": "8GB",
    "maintenance_work_mem": "256MB",
}


@contextlib.contextmanager
def private_server(
    *, durable: bool = False, settings: dict[str, str] | None = None
) -> Iterator[tuple[EmbeddedServer, str]]:
    """A started, migrated server in a temporary folder; yields it and the bench DB's URL."""
    folder = Path(tempfile.mkdtemp(prefix="coderunner-bench-"))
    if settings is None:
        settings = DURABLE_SETTINGS if durable else FAST_SETTINGS
    server = EmbeddedServer(folder / "pgdata", settings=settings)
    try:
        server.start()
        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        Migrator(server.config(DATABASE)).apply()
        yield server, server.url(DATABASE)
    finally:
        server.destroy()
        shutil.rmtree(folder, ignore_errors=True)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def machine(url: str, settings: dict[str, str]) -> dict[str, Any]:
    """Cores, CPU, Python, PostgreSQL and client library versions."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "load_average_at_start": load_average(),
        "postgresql": row[0] if row else "unknown",
        "server_settings": settings,
        "libpq": psycopg.pq.version(),
        "psycopg_impl": psycopg.pq.__impl__,
        "packages": {
            name: _version(name)
            for name in ("psycopg", "psycopg-pool", "asyncpg", "sqlalchemy", "coderunner-sql")
        },
    }
