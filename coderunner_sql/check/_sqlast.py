"""What PostgreSQL's own parser (libpg_query, through pglast) says about a statement:
tables and columns it uses, outer joins, INSERT targets, and schema changes.

Tables are named by relation name alone: the schema lives in `public` (the search path).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
from pglast import ast, parse_sql
from pglast.enums import AlterTableType, JoinType, ObjectType
from pglast.parser import ParseError
from pglast.visitors import Visitor

__all__ = ["ParseError"]


class Statement:
    """One statement of a SQL text: its tree, where it is (0-based characters), and what
    it names (worked out once, on first use)."""

    def __init__(self, node: Any, start: int, end: int) -> None:
        self.node = node
        self.start = start
        self.end = end

    @functools.cached_property
    def names(self) -> Names:
        """Tables, columns, joins and write targets the statement names."""
        return _collect(self.node)


def statements(sql: str) -> list[Statement]:
    """The statements of `sql`; raises pglast's `ParseError` (message, 0-based position)."""
    found = []
    for raw in parse_sql(sql):
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(sql)  # 0: up to the end
        found.append(Statement(raw.stmt, start, end))
    return found


def error_position(exc: ParseError) -> int:
    """The 0-based character position a parse error points at."""
    args = exc.args
    return int(args[1]) if len(args) > 1 and isinstance(args[1], int) else 0


def _name(node: Any) -> str | None:
    value = getattr(node, "sval", None)
    return value if isinstance(value, str) else None


class Names(Visitor):
    """What a statement names, gathered in one walk of its tree."""

    def __init__(self) -> None:
        self.relations: list[Any] = []
        self.columns: list[tuple[str, ...]] = []
        self.stars: list[tuple[str, ...]] = []
        self.joins: list[Any] = []
        self.targets: list[tuple[Any, str]] = []  # (relation, column) of INSERT / UPDATE SET

    def visit_RangeVar(self, ancestors: Any, node: Any) -> None:
        self.relations.append(node)

    def visit_ColumnRef(self, ancestors: Any, node: Any) -> None:
        parts = tuple(_name(f) for f in node.fields)
        if parts and parts[-1] is None:  # `*` or `t.*`
            self.stars.append(tuple(p for p in parts[:-1] if p is not None))
        else:
            self.columns.append(tuple(p for p in parts if p is not None))

    def visit_JoinExpr(self, ancestors: Any, node: Any) -> None:
        self.joins.append(node)

    def visit_InsertStmt(self, ancestors: Any, node: Any) -> None:
        for target in node.cols or ():
            self.targets.append((node.relation, target.name))

    def visit_UpdateStmt(self, ancestors: Any, node: Any) -> None:
        for target in node.targetList or ():
            if target.name:
                self.targets.append((node.relation, target.name))


def _collect(node: Any) -> Names:
    collector = Names()
    collector(node)
    return collector


def _aliases(collector: Names) -> dict[str, set[str]]:
    """Alias or name -> the tables it may stand for."""
    names: dict[str, set[str]] = {}
    for relation in collector.relations:
        names.setdefault(relation.relname, set()).add(relation.relname)
        if relation.alias is not None:
            names.setdefault(relation.alias.aliasname, set()).add(relation.relname)
    return names


def column_uses(statement: Statement, tables: Mapping[str, frozenset[str]]) -> set[tuple[str, str]]:
    """(table, column) pairs a statement reads or writes, given each table's columns.

    An unqualified name counts for every table of the statement that has such a column
    (a little too much, never too little); `*` counts every column.
    """
    collector = statement.names
    aliases = _aliases(collector)
    present = {r.relname for r in collector.relations if r.relname in tables}
    used: set[tuple[str, str]] = set()
    for parts in collector.columns:
        column = parts[-1]
        owners = aliases.get(parts[-2], set()) if len(parts) >= 2 else present
        used |= {(t, column) for t in owners if column in tables.get(t, frozenset())}
    for parts in collector.stars:
        owners = aliases.get(parts[-1], set()) if parts else present
        used |= {(t, c) for t in owners for c in tables.get(t, frozenset())}
    for relation, column in collector.targets:
        used.add((relation.relname, column))
    return used


def tables_used(statement: Statement) -> set[str]:
    """Every table name a statement mentions."""
    return {r.relname for r in statement.names.relations}


def _relnames(node: Any) -> set[str]:
    return {r.relname for r in _collect(node).relations} if node is not None else set()


def outer_nullable_tables(statement: Statement) -> set[str]:
    """Tables on the NULL-filled side of an outer join: their columns may come back NULL."""
    nullable: set[str] = set()
    for join in statement.names.joins:
        if join.jointype in (JoinType.JOIN_LEFT, JoinType.JOIN_FULL):
            nullable |= _relnames(join.rarg)
        if join.jointype in (JoinType.JOIN_RIGHT, JoinType.JOIN_FULL):
            nullable |= _relnames(join.larg)
    return nullable


def insert_columns(node: Any) -> tuple[str, tuple[str, ...]] | None:
    """(table, listed columns) of an INSERT with a column list, else None."""
    if not isinstance(node, ast.InsertStmt) or not node.cols or node.relation is None:
        return None
    return str(node.relation.relname), tuple(str(target.name) for target in node.cols)


@attrs.frozen
class SchemaChange:
    """A migration statement that drops or renames a table or column."""

    action: str  # "drops" or "renames"
    table: str
    column: str | None  # None: the whole table


def schema_changes(node: Any) -> Iterator[SchemaChange]:
    """Drops and renames of tables and columns in one statement."""
    table = target_table(node)
    if isinstance(node, ast.AlterTableStmt) and table is not None:
        for command in node.cmds or ():
            if command.subtype == AlterTableType.AT_DropColumn and command.name:
                yield SchemaChange("drops", table, command.name)
    elif isinstance(node, ast.RenameStmt) and table is not None:
        if node.renameType == ObjectType.OBJECT_COLUMN and node.subname:
            yield SchemaChange("renames", table, node.subname)
        elif node.renameType == ObjectType.OBJECT_TABLE:
            yield SchemaChange("renames", table, None)
    elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_TABLE:
        for names in node.objects or ():
            parts = [_name(n) for n in names]
            if parts and parts[-1]:
                yield SchemaChange("drops", parts[-1], None)


def target_table(node: Any) -> str | None:
    """The table a DDL statement changes or indexes, if it names one."""
    relation = getattr(node, "relation", None)
    name = getattr(relation, "relname", None)
    return name if isinstance(name, str) else None
