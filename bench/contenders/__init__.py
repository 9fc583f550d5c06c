"""The contenders, by name. Each is imported only when asked for, so a missing optional
dependency (or the library's service not existing yet) skips one contender, not the run."""

from __future__ import annotations

import importlib

from bench.contenders.base import AsyncContender, Contender, SyncContender

__all__ = ["FLOOR", "REGISTRY", "AsyncContender", "Contender", "SyncContender", "load"]

FLOOR = "psycopg-sync"

REGISTRY: dict[str, str] = {
    "psycopg-sync": "bench.contenders.psycopg_contenders:PsycopgSync",
    "psycopg-async": "bench.contenders.psycopg_contenders:PsycopgAsync",
    "asyncpg": "bench.contenders.asyncpg_contender:Asyncpg",
    "sqlalchemy-core": "bench.contenders.sqlalchemy_contenders:SqlalchemyCore",
    "sqlalchemy-orm": "bench.contenders.sqlalchemy_contenders:SqlalchemyOrm",
    "coderunner-sync": "bench.contenders.service:ServiceSync",
    "coderunner-async": "bench.contenders.service:ServiceAsync",
}


def load(name: str) -> type[Contender]:
    """The contender class registered as `name`; raises whatever its import raises."""
    module_name, _, class_name = REGISTRY[name].partition(":")
    cls: type[Contender] = getattr(importlib.import_module(module_name), class_name)
    return cls
