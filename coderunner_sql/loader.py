"""Loading `queries/*.sql` through aiosql (a query's record is named in its SQL: `-- record:`).

Each query's SQL is loaded with a leading comment naming it (`/* get_user_by_id */ SELECT
…`), so `pg_stat_activity`, `pg_stat_statements` and the server log say which query a
statement is. The comment is constant, so prepared statements and pg_stat_statements
still group every call of a query as one statement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosql
from aiosql.query_loader import QueryLoader
from aiosql.types import QueryDatum

from coderunner_sql.resources import queries_dir
from coderunner_sql.telemetry import name_comment

__all__ = ["load_queries"]


class _NamedQueryLoader(QueryLoader):
    """aiosql's loader, putting each query's name in a comment at the head of its SQL."""

    def _make_query_datum(
        self, query: str, ns_parts: list[str], floc: tuple[Path | str, int]
    ) -> QueryDatum:
        datum = super()._make_query_datum(query, ns_parts, floc)
        # Once, at load: the text psycopg prepares is the same on every call.
        return datum._replace(sql=name_comment(datum.query_name) + datum.sql)


def load_queries(adapter: Any, directory: str | Path | None = None) -> Any:
    """aiosql's `Queries` for every `.sql` file in `directory` (default: `queries/`), each
    query's SQL headed by a comment naming it."""
    # aiosql calls a non-string adapter argument to build the adapter; hand it ours.
    return aiosql.from_path(queries_dir(directory), lambda: adapter, loader_cls=_NamedQueryLoader)
