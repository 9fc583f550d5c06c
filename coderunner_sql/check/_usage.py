"""Which queries the package calls, from where, and which parameters each call binds.

Read from the package's source with `ast`, nothing hard-coded: a "query holder" is any
attribute or variable assigned aiosql's `Queries` (from `aiosql.from_path`, `from_str`,
`load_queries`, or a package function returning one of those), and every `holder.name`
is a use of query `name`. A call's parameters are its keyword names; `**args` is followed
to where `args` was built — a dict literal, or a function whose returned dict keys are
worked out by reading its code (loops over literal tuples, f-string keys and helpers that
fill the dict included).
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
import textwrap
import typing
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import aiosql.queries
import attrs

# Functions whose result is aiosql's Queries, before the package's own are found.
_PRODUCERS = frozenset({"from_path", "from_str", "load_queries"})
# Attributes of Queries that are not queries (driver_adapter, available_queries…).
_NOT_QUERIES = frozenset(dir(aiosql.queries.Queries)) | {"driver_adapter", "is_aio"}
_GENERATED = "# Generated from "
_MAX_DEPTH = 8


@attrs.frozen
class CallSite:
    """One use of a query in the package, and the parameters bound to it there."""

    query: str
    file: Path
    line: int
    caller: str
    params: frozenset[str] | None  # None when they cannot be told from the code
    exact: bool = True  # False: `params` is every name any path may bind (a superset)
    why_unknown: str | None = None
    positional: bool = False
    pattern: bool = False  # `query` is a regular expression (a name built at run time)


@attrs.define(eq=False)
class _Module:
    name: str
    path: Path
    text: str
    _tree: ast.Module | None = attrs.field(init=False, default=None)
    _nodes: list[ast.AST] | None = attrs.field(init=False, default=None)
    _parents: dict[ast.AST, ast.AST] | None = attrs.field(init=False, default=None)

    def mentions(self, names: Iterable[str]) -> bool:
        """Whether the source text holds any of `names` (a cheap filter before parsing)."""
        return any(name in self.text for name in names)

    @property
    def tree(self) -> ast.Module:
        if self._tree is None:
            self._tree = ast.parse(self.text, str(self.path))
        return self._tree

    @property
    def nodes(self) -> list[ast.AST]:
        if self._nodes is None:
            self._nodes = list(ast.walk(self.tree))
        return self._nodes

    @property
    def parents(self) -> dict[ast.AST, ast.AST]:
        if self._parents is None:
            self._parents = {
                child: node for node in self.nodes for child in ast.iter_child_nodes(node)
            }
        return self._parents


def _modules(package_dir: Path, package: str) -> Iterator[_Module]:
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir)
        if {"__pycache__", "queries", "migrations"} & set(relative.parts):
            continue  # a wheel's copies of the SQL folders are not package code
        text = path.read_text(encoding="utf-8")
        if text.startswith(_GENERATED):
            continue  # its source module is read instead
        parts = [package, *relative.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        yield _Module(".".join(parts), path, text)


def _terminal(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _assignments(module: _Module) -> Iterator[tuple[ast.expr, ast.expr]]:
    for node in module.nodes:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                yield target, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            yield node.target, node.value


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement in `body` and in the blocks inside it (no expressions: fast)."""
    for statement in body:
        yield statement
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue  # its own scope: the caller decides
        for name in ("body", "orelse", "finalbody"):
            inner = getattr(statement, name, None)
            if isinstance(inner, list):
                yield from _statements(inner)
        for handler in getattr(statement, "handlers", None) or ():
            yield from _statements(handler.body)
        for case in getattr(statement, "cases", None) or ():
            yield from _statements(case.body)


def _returned_calls(module: _Module) -> dict[str, set[str]]:
    """Function name -> names of the calls its own `return` statements make."""
    returns: dict[str, set[str]] = {}
    todo: list[tuple[str | None, list[ast.stmt]]] = [(None, module.tree.body)]
    while todo:
        owner, body = todo.pop()
        for statement in body:
            if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = None if isinstance(statement, ast.ClassDef) else statement.name
                todo.append((name, statement.body))
                continue
            for inner in _statements([statement]):
                if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    name = None if isinstance(inner, ast.ClassDef) else inner.name
                    todo.append((name, inner.body))
                elif (
                    owner is not None
                    and isinstance(inner, ast.Return)
                    and isinstance(inner.value, ast.Call)
                ):
                    called = _terminal(inner.value.func)
                    if called:
                        returns.setdefault(owner, set()).add(called)
    return returns


def _producers(modules: list[_Module]) -> frozenset[str]:
    """Names of functions that return aiosql's Queries (aiosql's own and the package's)."""
    producers = set(_PRODUCERS)
    read: set[str] = set()
    returns: dict[str, set[str]] = {}
    changed = True
    while changed:
        changed = False
        for module in modules:  # only modules naming a producer can define another
            if module.name not in read and module.mentions(producers):
                read.add(module.name)
                for name, called in _returned_calls(module).items():
                    returns.setdefault(name, set()).update(called)
        for name, called in returns.items():
            if name not in producers and called & producers:
                producers.add(name)
                changed = True
    return frozenset(producers)


def _holds_queries(value: ast.expr, producers: frozenset[str], attrs_: frozenset[str]) -> bool:
    if isinstance(value, ast.Call):
        return _terminal(value.func) in producers
    return isinstance(value, ast.Attribute) and value.attr in attrs_


def _holder_attributes(modules: list[_Module], producers: frozenset[str]) -> frozenset[str]:
    """Attribute names (`self._q`, `self._sql`) assigned aiosql's Queries anywhere."""
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for module in modules:
            if not module.mentions(producers | found):
                continue
            for target, value in _assignments(module):
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr not in found
                    and _holds_queries(value, producers, frozenset(found))
                ):
                    found.add(target.attr)
                    changed = True
    return frozenset(found)


def _scopes(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> list[ast.AST]:
    """Enclosing functions, lambdas and classes of `node`, innermost first."""
    found: list[ast.AST] = []
    current = parents.get(node)
    while current is not None:
        if isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            found.append(current)
        current = parents.get(current)
    return found


def _caller(scopes: list[ast.AST]) -> str:
    names = [s.name for s in scopes if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)]
    classes = [s.name for s in scopes if isinstance(s, ast.ClassDef)]
    method = names[-1] if names else "<module>"
    return f"{classes[-1]}.{method}" if classes else method


# -- working out dict keys ------------------------------------------------------------------


@attrs.define(eq=False)
class _Dict:
    """A dict being built: the keys seen, and whether they are all there is."""

    keys: set[str] = attrs.field(factory=set)
    exact: bool = True


@attrs.frozen
class _Const:
    value: Any


@attrs.frozen
class _ClassRef:
    cls: type[Any]


_Value = _Dict | _Const | _ClassRef | None


class _Interpreter:
    """Just enough of Python to tell which keys a function's returned dict has."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.depth = 0
        self.reading: set[tuple[type[Any], str]] = set()  # attributes being worked out

    # expressions

    def resolve(self, node: ast.expr, env: dict[str, _Value], space: dict[str, Any]) -> Any:
        """The runtime object an expression names (a function, module, class), if it can be."""
        if isinstance(node, ast.Name):
            if node.id in env:
                found = env[node.id]
                return found.cls if isinstance(found, _ClassRef) else inspect.Parameter.empty
            return space.get(node.id, inspect.Parameter.empty)
        if isinstance(node, ast.Attribute):
            owner = self.resolve(node.value, env, space)
            if owner is inspect.Parameter.empty or isinstance(owner, _Dict | _Const):
                return inspect.Parameter.empty
            return inspect.getattr_static(owner, node.attr, inspect.Parameter.empty)
        return inspect.Parameter.empty

    def value(self, node: ast.expr | None, env: dict[str, _Value], space: dict[str, Any]) -> _Value:
        if node is None:
            return None
        if isinstance(node, ast.Constant):
            return _Const(node.value)
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            found = space.get(node.id, inspect.Parameter.empty)
            if isinstance(found, str | int | float | bool | tuple) or found is None:
                return _Const(found)
            return None
        if isinstance(node, ast.Attribute):
            owner = self.value(node.value, env, space)
            if isinstance(owner, _ClassRef):
                return self.attribute(owner.cls, node.attr)
            return None
        if isinstance(node, ast.Dict):
            return self.dict_literal(node, env, space)
        if isinstance(node, ast.Tuple | ast.List):
            items = [self.value(item, env, space) for item in node.elts]
            if all(isinstance(item, _Const) for item in items):
                return _Const(tuple(item.value for item in items))  # type: ignore[union-attr]
            return None
        if isinstance(node, ast.JoinedStr):
            return self.fstring(node, env, space)
        if isinstance(node, ast.Call):
            return self.call(node, env, space)
        return None

    def attribute(self, cls: type[Any], name: str) -> _Value:
        """What `self.<name>` holds: every `self.<name> = …` in the class and its bases."""
        if (cls, name) in self.reading or self.depth >= _MAX_DEPTH:
            return None
        found: list[_Value] = []
        self.reading.add((cls, name))
        self.depth += 1
        try:
            for owner in cls.__mro__:
                if not owner.__module__.startswith(self.package):
                    continue
                for method, value in _self_assignments(owner, name):
                    env: dict[str, _Value] = {"self": _ClassRef(cls)}
                    found.append(self.value(value, env, _globals_of(method)))
        finally:
            self.reading.discard((cls, name))
            self.depth -= 1
        found = [f for f in found if not (isinstance(f, _Const) and f.value is None)]
        if not found or not all(isinstance(f, _Dict) for f in found):
            return None
        merged = _Dict()
        for item in found:
            assert isinstance(item, _Dict)
            merged.keys |= item.keys
            merged.exact &= item.exact
        return merged

    def dict_literal(self, node: ast.Dict, env: dict[str, _Value], space: dict[str, Any]) -> _Dict:
        result = _Dict()
        for key, item in zip(node.keys, node.values, strict=True):
            if key is None:  # {**other}
                spread = self.value(item, env, space)
                if isinstance(spread, _Dict):
                    result.keys |= spread.keys
                    result.exact &= spread.exact
                else:
                    result.exact = False
                continue
            name = self.value(key, env, space)
            if isinstance(name, _Const) and isinstance(name.value, str):
                result.keys.add(name.value)
            else:
                result.exact = False
        return result

    def fstring(self, node: ast.JoinedStr, env: dict[str, _Value], space: dict[str, Any]) -> _Value:
        text = ""
        for part in node.values:
            piece = part.value if isinstance(part, ast.FormattedValue) else part
            found = self.value(piece, env, space)
            plain = not isinstance(part, ast.FormattedValue) or (
                part.format_spec is None and part.conversion == -1
            )
            if not isinstance(found, _Const) or not plain:
                return None
            text += str(found.value)
        return _Const(text)

    def call(self, node: ast.Call, env: dict[str, _Value], space: dict[str, Any]) -> _Value:
        func = node.func
        args = [self.value(arg, env, space) for arg in node.args]
        kwargs: dict[str | None, _Value] = {
            kw.arg: self.value(kw.value, env, space) for kw in node.keywords if kw.arg
        }
        if isinstance(func, ast.Name) and func.id == "dict" and "dict" not in env:
            result = _Dict(keys={name for name in kwargs if name})
            result.exact = not node.args and all(kw.arg for kw in node.keywords)
            return result
        if isinstance(func, ast.Attribute):
            owner = self.value(func.value, env, space)
            if isinstance(owner, _Dict):
                self.dict_method(owner, func.attr, node, args, kwargs)
                return None
        target = self.resolve(func, env, space)
        if isinstance(target, staticmethod | classmethod):
            target = target.__func__
        if not inspect.isfunction(target):
            return None
        bound_self: _Value = None
        if isinstance(func, ast.Attribute):
            owner_value = self.value(func.value, env, space)
            if isinstance(owner_value, _ClassRef):
                bound_self = owner_value
        return self.function(target, args, kwargs, bound_self)

    def dict_method(
        self,
        target: _Dict,
        method: str,
        node: ast.Call,
        args: list[_Value],
        kwargs: dict[str | None, _Value],
    ) -> None:
        if method == "update":
            for arg in args:
                if isinstance(arg, _Dict):
                    target.keys |= arg.keys
                    target.exact &= arg.exact
                else:
                    target.exact = False
            target.keys |= {name for name in kwargs if name}
        elif method == "setdefault" and args:
            first = args[0]
            if isinstance(first, _Const) and isinstance(first.value, str):
                target.keys.add(first.value)
            else:
                target.exact = False
        elif method == "pop" and args:
            first = args[0]
            if isinstance(first, _Const) and isinstance(first.value, str):
                target.keys.discard(first.value)

    def function(
        self,
        fn: Any,
        args: list[_Value],
        kwargs: dict[str | None, _Value],
        bound_self: _Value = None,
    ) -> _Value:
        """What calling `fn` returns, as far as dict keys go."""
        module = getattr(fn, "__module__", "") or ""
        if self.depth >= _MAX_DEPTH or not module.startswith(self.package):
            return None  # only the package's own code is read
        definition = _definition(fn)
        if definition is None:
            return None
        env = self.bind(definition.args, args, kwargs, bound_self)
        for name, hint in _hints(fn).items():
            if env.get(name, 0) is None and isinstance(hint, type):
                env[name] = _ClassRef(hint)
        space = dict(fn.__globals__)
        returned: list[_Value] = []
        self.depth += 1
        try:
            self.block(definition.body, env, space, returned)
        finally:
            self.depth -= 1
        dicts = [r for r in returned if not (isinstance(r, _Const) and r.value is None)]
        if not dicts or not all(isinstance(item, _Dict) for item in dicts):
            return None  # returns no dict, or something other than a dict somewhere
        result = _Dict()
        for item in dicts:
            assert isinstance(item, _Dict)
            result.keys |= item.keys
            result.exact &= item.exact
        return result

    def bind(
        self,
        spec: ast.arguments,
        args: list[_Value],
        kwargs: dict[str | None, _Value],
        bound_self: _Value,
    ) -> dict[str, _Value]:
        positional = [a.arg for a in [*spec.posonlyargs, *spec.args]]
        env: dict[str, _Value] = {}
        if bound_self is not None and positional and positional[0] in ("self", "cls"):
            env[positional.pop(0)] = bound_self
        defaults = [None] * (len(positional) - len(spec.defaults)) + list(spec.defaults)
        for index, name in enumerate(positional):
            if index < len(args):
                env[name] = args[index]
            elif name in kwargs:
                env[name] = kwargs[name]
            else:
                env[name] = self.value(defaults[index], {}, {})
        for arg, default in zip(spec.kwonlyargs, spec.kw_defaults, strict=True):
            env[arg.arg] = kwargs.get(arg.arg, self.value(default, {}, {}))
        return env

    # statements

    def block(
        self,
        body: list[ast.stmt],
        env: dict[str, _Value],
        space: dict[str, Any],
        returned: list[_Value],
    ) -> None:
        for statement in body:
            self.statement(statement, env, space, returned)

    def assign(
        self, target: ast.expr, value: _Value, env: dict[str, _Value], space: dict[str, Any]
    ) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = value
        elif isinstance(target, ast.Tuple | ast.List):
            items = value.value if isinstance(value, _Const) else None
            for index, element in enumerate(target.elts):
                item = (
                    _Const(items[index])
                    if isinstance(items, tuple) and index < len(items)
                    else None
                )
                self.assign(element, item, env, space)
        elif isinstance(target, ast.Subscript):
            owner = self.value(target.value, env, space)
            if isinstance(owner, _Dict):
                key = self.value(target.slice, env, space)
                if isinstance(key, _Const) and isinstance(key.value, str):
                    owner.keys.add(key.value)
                else:
                    owner.exact = False

    def statement(
        self,
        node: ast.stmt,
        env: dict[str, _Value],
        space: dict[str, Any],
        returned: list[_Value],
    ) -> None:
        if isinstance(node, ast.Assign):
            value = self.value(node.value, env, space)
            for target in node.targets:
                self.assign(target, value, env, space)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            self.assign(node.target, self.value(node.value, env, space), env, space)
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.BitOr):
            owner = self.value(node.target, env, space)
            extra = self.value(node.value, env, space)
            if isinstance(owner, _Dict):
                if isinstance(extra, _Dict):
                    owner.keys |= extra.keys
                    owner.exact &= extra.exact
                else:
                    owner.exact = False
        elif isinstance(node, ast.Expr):
            self.value(node.value, env, space)
        elif isinstance(node, ast.Return):
            returned.append(self.value(node.value, env, space))
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                if isinstance(target, ast.Subscript):
                    owner = self.value(target.value, env, space)
                    key = self.value(target.slice, env, space)
                    if isinstance(owner, _Dict) and isinstance(key, _Const):
                        owner.keys.discard(str(key.value))
        elif isinstance(node, ast.For | ast.AsyncFor):
            items = self.value(node.iter, env, space)
            if isinstance(items, _Const) and isinstance(items.value, tuple):
                for item in items.value:
                    self.assign(node.target, _Const(item), env, space)
                    self.block(node.body, env, space, returned)
            else:
                self.assign(node.target, None, env, space)
                self.block(node.body, env, space, returned)
            self.block(node.orelse, env, space, returned)
        elif isinstance(node, ast.If | ast.While):
            self.block(node.body, env, space, returned)
            self.block(node.orelse, env, space, returned)
        elif isinstance(node, ast.With | ast.AsyncWith):
            self.block(node.body, env, space, returned)
        elif isinstance(node, ast.Try | ast.TryStar):
            self.block(node.body, env, space, returned)
            for handler in node.handlers:
                self.block(handler.body, env, space, returned)
            self.block(node.orelse, env, space, returned)
            self.block(node.finalbody, env, space, returned)


@functools.cache
def _definition(fn: Any) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The parsed `def` of a function, read from its source file."""
    try:
        definition = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    except (OSError, TypeError, SyntaxError):
        return None
    return definition if isinstance(definition, ast.FunctionDef | ast.AsyncFunctionDef) else None


@functools.cache
def _self_assignments(cls: type[Any], name: str) -> list[tuple[Any, ast.expr]]:
    """(method, value) of each `self.<name> = value` written in the body of `cls` itself."""
    found: list[tuple[Any, ast.expr]] = []
    for method in vars(cls).values():
        definition = _definition(method) if inspect.isfunction(method) else None
        if definition is None:
            continue
        for node in ast.walk(definition):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign) and node.value is not None
                else []
            )
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr == name
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
                    if value is not None:
                        found.append((method, value))
    return found


def _globals_of(fn: Any) -> dict[str, Any]:
    return dict(getattr(fn, "__globals__", {}))


@functools.cache
def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # a name only imported for type checkers: no hints, then
        return {}


_ASSIGNED: weakref.WeakKeyDictionary[ast.AST, dict[str, list[ast.expr]]] = (
    weakref.WeakKeyDictionary()
)


def _local_assignments(scope: ast.AST, name: str) -> list[ast.expr]:
    """Values assigned to `name` directly in `scope` (not in functions nested in it)."""
    table = _ASSIGNED.get(scope)
    if table is None:
        table = {}
        todo: list[ast.AST] = list(ast.iter_child_nodes(scope))
        while todo:
            node = todo.pop()
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                continue
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        table.setdefault(target.id, []).append(node.value)
            elif (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.value is not None
            ):
                table.setdefault(node.target.id, []).append(node.value)
            todo.extend(ast.iter_child_nodes(node))
        _ASSIGNED[scope] = table
    return table.get(name, [])


def _names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


@attrs.define
class _Context:
    """Where an expression is evaluated: a module's globals, enclosing scopes, known names."""

    interpreter: _Interpreter
    space: dict[str, Any]
    scopes: list[ast.AST]  # enclosing functions and lambdas, innermost first
    env: dict[str, _Value] = attrs.field(factory=dict)

    def value(self, node: ast.expr) -> _Value:
        if isinstance(node, ast.Name) and node.id not in self.env:
            for index, scope in enumerate(self.scopes):
                values = _local_assignments(scope, node.id)
                if not values:
                    continue
                inner = _Context(self.interpreter, self.space, self.scopes[index:], self.env)
                merged = _Dict()
                for value in values:
                    found = inner.value(value)
                    if not isinstance(found, _Dict):
                        return found if len(values) == 1 else None
                    merged.keys |= found.keys
                    merged.exact &= found.exact
                return merged
        return self.interpreter.value(node, self.env, self.space)

    def keys(self, node: ast.expr) -> frozenset[str] | None:
        found = self.value(node)
        if isinstance(found, _Dict) and found.exact:
            return frozenset(found.keys)
        return None

    def callee(self, node: ast.expr) -> Any:
        target = self.interpreter.resolve(node, self.env, self.space)
        if isinstance(target, staticmethod | classmethod):
            target = target.__func__
        return target if inspect.isfunction(target) else None


@attrs.frozen
class _Bound:
    names: frozenset[str] | None
    why: str | None = None
    positional: bool = False
    exact: bool = True  # False: every name any path may bind


def _call_params(call: ast.Call, context: _Context) -> _Bound:
    """The parameter names a query call binds: keywords, and the keys of each `**dict`."""
    names: set[str] = set()
    for keyword in call.keywords:
        if keyword.arg is not None:
            names.add(keyword.arg)
            continue
        keys = context.keys(keyword.value)
        if keys is None:
            return _Bound(None, f"cannot tell which names **{ast.unparse(keyword.value)} holds")
        names |= keys
    positional = len(call.args) > 1 or any(isinstance(a, ast.Starred) for a in call.args)
    return _Bound(frozenset(names), positional=positional)


def _adapter_params(call: ast.Call, alias: str, context: _Context) -> _Bound | None:
    """`adapter.method(conn, q.__name__, q.sql, parameters, …)`: aiosql's adapter protocol
    puts the parameters right after the SQL."""
    for index, arg in enumerate(call.args):
        if (
            isinstance(arg, ast.Attribute)
            and arg.attr == "sql"
            and isinstance(arg.value, ast.Name)
            and arg.value.id == alias
        ):
            if index + 1 >= len(call.args):
                return _Bound(frozenset())
            keys = context.keys(call.args[index + 1])
            if keys is None:
                return _Bound(None, "cannot tell which names its parameters hold")
            return _Bound(keys)
    return None


class _Finder:
    """Finds every use of a query in one module and what it binds."""

    def __init__(
        self, module: _Module, package: str, producers: frozenset[str], holders: frozenset[str]
    ) -> None:
        self.module = module
        self.package = package
        self.producers = producers
        self.holders = holders
        self._space: dict[str, Any] | None = None
        # Variables assigned aiosql's Queries somewhere in this module (checked per scope later).
        self.names: set[str] = set()
        if module.mentions(producers | holders):
            self.names = {
                target.id
                for target, value in _assignments(module)
                if isinstance(target, ast.Name) and _holds_queries(value, producers, holders)
            }

    @property
    def parents(self) -> dict[ast.AST, ast.AST]:
        return self.module.parents

    def relevant(self) -> bool:
        """False when the module cannot use a query (most modules): skip the slow walk."""
        return bool(self.names) or any(f".{h}." in self.module.text for h in self.holders)

    @property
    def space(self) -> dict[str, Any]:
        if self._space is None:
            self._space = vars(importlib.import_module(self.module.name))
        return self._space

    def context(self, scopes: list[ast.AST]) -> _Context:
        env: dict[str, _Value] = {}
        classes = [s for s in scopes if isinstance(s, ast.ClassDef)]
        if classes:
            owner = self.space.get(classes[0].name)
            if isinstance(owner, type):
                env["self"] = env["cls"] = _ClassRef(owner)
        functions = [s for s in scopes if not isinstance(s, ast.ClassDef)]
        return _Context(_Interpreter(self.package), self.space, [*functions, self.module.tree], env)

    def is_holder(self, holder: ast.expr, scopes: list[ast.AST]) -> bool:
        """Whether an expression evaluates to aiosql's Queries."""
        if isinstance(holder, ast.Attribute):
            return holder.attr in self.holders
        if not isinstance(holder, ast.Name) or holder.id not in self.names:
            return False
        for scope in [*scopes, self.module.tree]:
            if isinstance(scope, ast.ClassDef):
                continue
            values = _local_assignments(scope, holder.id)
            if values:
                return any(_holds_queries(v, self.producers, self.holders) for v in values)
        return False

    def sites(self) -> Iterator[CallSite]:
        for node in self.module.nodes:
            if isinstance(node, ast.Call):
                found = self.dynamic(node)
                if found is not None:
                    yield found
                continue
            if not isinstance(node, ast.Attribute) or node.attr in _NOT_QUERIES:
                continue
            scopes = _scopes(node, self.parents)
            if not self.is_holder(node.value, scopes):
                continue
            bound = self.bound(node, scopes)
            yield CallSite(
                node.attr,
                self.module.path,
                node.lineno,
                _caller(scopes),
                bound.names,
                exact=bound.exact,
                why_unknown=bound.why,
                positional=bound.positional,
            )

    def dynamic(self, node: ast.Call) -> CallSite | None:
        """`getattr(holder, "name")` or `getattr(holder, f"{x}_suffix")`: a use of every
        query the name can be (its parameters are not followed)."""
        if not (
            isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) >= 2
        ):
            return None
        scopes = _scopes(node, self.parents)
        if not self.is_holder(node.args[0], scopes):
            return None
        name = node.args[1]
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            pattern = re.escape(name.value)
        elif isinstance(name, ast.JoinedStr):
            pattern = "".join(
                re.escape(str(part.value)) if isinstance(part, ast.Constant) else r"\w+"
                for part in name.values
            )
        else:
            pattern = r"\w+"
        return CallSite(
            pattern,
            self.module.path,
            node.lineno,
            _caller(scopes),
            None,
            why_unknown="looked up by a name built at run time",
            pattern=True,
        )

    def bound(self, node: ast.Attribute, scopes: list[ast.AST]) -> _Bound:
        """What the code binds where it uses the query `node` names."""
        context = self.context(scopes)
        parent = self.parents.get(node)
        if isinstance(parent, ast.Call) and parent.func is node:
            return _call_params(parent, context)
        # `q = holder.name`, then q(...) or adapter.method(conn, q.__name__, q.sql, params).
        if isinstance(parent, ast.Assign) and len(parent.targets) == 1:
            target = parent.targets[0]
            scope = next((s for s in scopes if not isinstance(s, ast.ClassDef)), None)
            if isinstance(target, ast.Name) and scope is not None:
                found = self.alias_uses(scope, {target.id}, context)
                if found is not None:
                    return found
        # Passed to a function of the package, which calls it.
        argument: ast.AST = node
        while isinstance(self.parents.get(argument), ast.IfExp | ast.BoolOp):
            argument = self.parents[argument]
        call = self.parents.get(argument)
        if isinstance(call, ast.keyword):
            call = self.parents.get(call)
        if isinstance(call, ast.Call) and argument is not call.func:
            found = self.through_call(call, argument, context)
            if found is not None:
                return attrs.evolve(found, exact=False)
        return _Bound(None, "its parameters are bound where the code cannot follow")

    def alias_uses(self, scope: ast.AST, aliases: set[str], context: _Context) -> _Bound | None:
        """What calls of an alias (or adapter calls on its `.sql`) in `scope` bind."""
        names: set[str] = set()
        seen = False
        for node in ast.walk(scope):
            if not isinstance(node, ast.Call):
                continue
            found: _Bound | None
            if isinstance(node.func, ast.Name) and node.func.id in aliases:
                found = _call_params(node, context)
            else:
                hits = [_adapter_params(node, alias, context) for alias in aliases]
                found = next((h for h in hits if h is not None), None)
            if found is None:
                continue
            if found.names is None:
                return found
            seen = True
            names |= found.names
        return _Bound(frozenset(names)) if seen else None

    def through_call(self, call: ast.Call, argument: ast.AST, context: _Context) -> _Bound | None:
        fn = context.callee(call.func)
        if fn is None or not str(getattr(fn, "__module__", "")).startswith(self.package):
            return None
        definition = _definition(fn)
        if definition is None:
            return None
        spec = definition.args
        positional = [a.arg for a in [*spec.posonlyargs, *spec.args]]
        if isinstance(call.func, ast.Attribute) and positional[:1] in (["self"], ["cls"]):
            positional = positional[1:]
        # The callee's parameters, as far as the call site tells them.
        env: dict[str, _Value] = {}
        parameter: str | None = None
        for index, arg in enumerate(call.args):
            if index < len(positional):
                env[positional[index]] = context.value(arg)
                if arg is argument:
                    parameter = positional[index]
        for keyword in call.keywords:
            if keyword.arg is not None:
                env[keyword.arg] = context.value(keyword.value)
                if keyword.value is argument:
                    parameter = keyword.arg
        if parameter is None:
            return None
        hints = _hints(fn)
        for name in [*positional, *(a.arg for a in spec.kwonlyargs)]:
            hint = hints.get(name)
            if env.get(name) is None and isinstance(hint, type):
                env[name] = _ClassRef(hint)
        if isinstance(call.func, ast.Attribute) and "self" in context.env:
            env["self"] = context.env["self"]
        # Names the parameter flows into (`query = listing if … else listing_after`).
        aliases = {parameter}
        for node in ast.walk(definition):
            if isinstance(node, ast.Assign) and _names_in(node.value) & aliases:
                aliases |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        inner = _Context(context.interpreter, dict(fn.__globals__), [definition], env)
        return self.alias_uses(definition, aliases, inner)


_FOUND: dict[tuple[Any, ...], list[CallSite]] = {}


def find_call_sites(package_dir: Path, package: str) -> list[CallSite]:
    """Every use of a query in the package's modules (generated twins skipped).

    Remembered for the life of the process until a module file changes.
    """
    files = sorted(package_dir.rglob("*.py"))
    key = (package_dir, package, *((f, f.stat().st_mtime_ns, f.stat().st_size) for f in files))
    if key not in _FOUND:
        _FOUND.clear()
        _FOUND[key] = _find(package_dir, package)
    return list(_FOUND[key])


def _find(package_dir: Path, package: str) -> list[CallSite]:
    modules = list(_modules(package_dir, package))
    producers = _producers(modules)
    holders = _holder_attributes(modules, producers)
    sites: list[CallSite] = []
    for module in modules:
        finder = _Finder(module, package, producers, holders)
        if finder.relevant():
            sites.extend(finder.sites())
    return sites
