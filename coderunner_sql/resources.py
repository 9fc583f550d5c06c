"""Where the SQL lives: the `queries/` and `migrations/` folders."""

from __future__ import annotations

import os
from pathlib import Path

from coderunner_sql.errors import ConfigError

__all__ = [
    "MIGRATIONS_ENV",
    "QUERIES_ENV",
    "internal_queries_dir",
    "migrations_dir",
    "own_queries_dir",
    "queries_dir",
]

QUERIES_ENV = "CODERUNNER_SQL_QUERIES"
MIGRATIONS_ENV = "CODERUNNER_SQL_MIGRATIONS"

_PACKAGE = Path(__file__).resolve().parent


def _locate(name: str, env_var: str, override: str | os.PathLike[str] | None) -> Path:
    chosen = override if override is not None else os.environ.get(env_var) or None
    if chosen is not None:
        path = Path(chosen).expanduser()
        if not path.is_dir():
            source = "argument" if override is not None else env_var
            raise ConfigError(f"{name} folder not found: {path} (from {source})")
        return path.resolve()
    return _bundled(name, env_var)


def _bundled(name: str, env_var: str) -> Path:
    # A wheel carries a copy inside the package; a checkout (or editable install) has the
    # top-level folder that DBAs edit.
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"{name} folder not found beside {_PACKAGE}; set {env_var}")


def queries_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The folder of named `.sql` query files (`CODERUNNER_SQL_QUERIES` overrides it)."""
    return _locate("queries", QUERIES_ENV, override)


def migrations_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The folder of yoyo migrations (`CODERUNNER_SQL_MIGRATIONS` overrides it)."""
    return _locate("migrations", MIGRATIONS_ENV, override)


def own_queries_dir() -> Path:
    """This package's own `queries/` folder (its catalog and bookkeeping SQL), whatever
    `CODERUNNER_SQL_QUERIES` says: the folder an application generates from may be its own."""
    return _bundled("queries", QUERIES_ENV)


def internal_queries_dir() -> Path:
    """The SQL of the package's own machinery (migrator, checker, test databases):
    `queries/internal/`, loaded by each of them, never into a service's query object."""
    return own_queries_dir() / "internal"
