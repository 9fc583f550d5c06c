"""Whether a query only reads, so a service may send it again after a lost connection.

Only a plain SELECT qualifies: no data-modifying WITH, no FOR UPDATE/SHARE, no SELECT INTO,
and no call to a volatile function (one may write: nextval, an application's own function)
except the few known to have no effect but their answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pglast import ast
from pglast.visitors import Visitor

__all__ = ["called_functions", "reads_only"]

# Volatile in pg_catalog, yet nothing but their result changes when sent twice.
_HARMLESS = frozenset(
    {"random", "random_normal", "gen_random_uuid", "clock_timestamp", "timeofday", "pg_sleep"}
)
_WRITES = (
    ast.InsertStmt,
    ast.UpdateStmt,
    ast.DeleteStmt,
    ast.MergeStmt,
    ast.LockingClause,
    ast.IntoClause,
)


class _Walk(Visitor):
    def __init__(self) -> None:
        self.writes = False
        self.functions: set[str] = set()

    def visit(self, ancestors: Any, node: Any) -> None:
        if isinstance(node, _WRITES):
            self.writes = True
        elif isinstance(node, ast.FuncCall):
            self.functions.update(part.sval for part in (node.funcname or ())[-1:])


def _walk(node: Any) -> _Walk:
    walk = _Walk()
    walk(node)
    return walk


def called_functions(nodes: Iterable[Any]) -> set[str]:
    """The names of the functions the statements call."""
    return set().union(*(_walk(node).functions for node in nodes))


def reads_only(nodes: Iterable[Any], volatile: frozenset[str]) -> bool:
    """True when the statements (pglast nodes) are one plain SELECT calling no function of
    `volatile` (names with a volatile overload) but the harmless ones."""
    found = list(nodes)
    if len(found) != 1 or not isinstance(found[0], ast.SelectStmt):
        return False
    walk = _walk(found[0])
    return not walk.writes and not (walk.functions & (volatile - _HARMLESS))
