"""The documentation is part of the product: its examples run, its references are complete.

- every ```python block of docs/examples.md runs against a database of its own;
- docs/cli.md is what tools/cli_reference.py generates from the commands' --help;
- every public name has a docstring, and every public service method is in docs/api.md;
- every environment variable the package reads is in docs/configuration.md.
"""

from __future__ import annotations

import ast
import inspect
import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import click
import pytest

import coderunner_sql
from coderunner_sql import AsyncDatabaseService, DatabaseConfig, DatabaseService

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent>[ ]*)```python[ ]*$")
TAB = re.compile(r'^[ ]*=== "(?P<label>[^"]+)"')


@attrs.frozen
class Block:
    """One ```python block of a page: where it starts, its tab label, its dedented code."""

    line: int
    tab: str | None
    code: str


def python_blocks(page: Path) -> list[Block]:
    """Every ```python block of `page` (also those indented inside content tabs)."""
    lines = page.read_text().splitlines()
    blocks: list[Block] = []
    tab: str | None = None
    number = 0
    while number < len(lines):
        line = lines[number]
        if (found := TAB.match(line)) is not None:
            tab = found["label"]
        elif line.startswith("#"):
            tab = None
        opening = FENCE.match(line)
        if opening is None:
            number += 1
            continue
        indent = opening["indent"]
        end = number + 1
        while end < len(lines) and lines[end].rstrip() != f"{indent}```":
            end += 1
        if end == len(lines):
            raise AssertionError(f"{page.name}:{number + 1}: unclosed ```python block")
        body = textwrap.dedent("\n".join(lines[number + 1 : end]))
        blocks.append(Block(number + 1, tab if indent else None, body + "\n"))
        number = end + 1
    return blocks


EXAMPLES = python_blocks(DOCS / "examples.md")


def test_examples_come_in_sync_and_async_pairs() -> None:
    assert len(EXAMPLES) >= 20
    labels = [block.tab for block in EXAMPLES]
    assert labels == ["Sync", "Async"] * (len(EXAMPLES) // 2), (
        "each example: a Sync then an Async tab"
    )
    for block in EXAMPLES:
        where = f"examples.md:{block.line}"
        if block.tab == "Async":
            assert "AsyncDatabaseService" in block.code, where
            assert block.code.rstrip().endswith("asyncio.run(main())"), where
        else:
            assert "async " not in block.code, where


@pytest.fixture
def quiet_root_logger() -> Any:
    """Undo an example's `logging.basicConfig`, so later tests keep pytest's logging."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("fresh_instances", "quiet_root_logger")
@pytest.mark.parametrize(
    "block", EXAMPLES, ids=[f"L{b.line}-{(b.tab or 'block').lower()}" for b in EXAMPLES]
)
def test_example_runs(block: Block, db_config: DatabaseConfig) -> None:
    # Async blocks end in asyncio.run(main()) themselves, as a reader's program would.
    code = compile(block.code, f"docs/examples.md:{block.line}", "exec")
    exec(code, {"__name__": "docs_example", "config": db_config})  # noqa: S102


def test_cli_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "cli_reference.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_every_command_has_help() -> None:
    from coderunner_sql.cli import main

    def walk(command: click.Command, path: str) -> list[tuple[str, click.Command]]:
        found = [(path, command)]
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                found += walk(sub, f"{path} {name}")
        return found

    missing = [path for path, command in walk(main, "coderunner-sql") if not command.help]
    assert not missing, f"commands without help text: {missing}"


def _module_docstrings(module_name: str) -> dict[str, str]:
    """Docstrings of a module's top-level assignments (the string right after them)."""
    module = sys.modules[module_name]
    tree = ast.parse(Path(inspect.getfile(module)).read_text())
    found: dict[str, str] = {}
    for node, after in zip(tree.body, tree.body[1:], strict=False):
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            for target in targets:
                if isinstance(target, ast.Name) and isinstance(after.value.value, str):
                    found[target.id] = after.value.value
    return found


def _defining_modules() -> dict[str, str]:
    """Public name -> the module `coderunner_sql/__init__.py` imports it from."""
    tree = ast.parse(Path(coderunner_sql.__file__).read_text())
    return {
        alias.asname or alias.name: node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


def test_every_public_name_has_a_docstring() -> None:
    modules = _defining_modules()
    missing = []
    for name in coderunner_sql.__all__:
        obj = getattr(coderunner_sql, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
        else:  # a value: its docstring is the string under its assignment
            doc = _module_docstrings(modules[name]).get(name)
        if not (doc or "").strip():
            missing.append(name)
    assert not missing, f"public names without a docstring: {missing}"


def _public_methods(cls: type) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (callable(member) or isinstance(member, property))
    }


@pytest.mark.parametrize("cls", [DatabaseService, AsyncDatabaseService], ids=lambda c: c.__name__)
def test_every_service_method_is_documented(cls: type) -> None:
    api = (DOCS / "api.md").read_text()
    methods = _public_methods(cls)
    assert {"connect", "create_user", "execute_in_transaction"} <= methods
    undocumented = sorted(m for m in methods if not re.search(rf"\b{m}\b", api))
    assert not undocumented, f"{cls.__name__} methods missing from docs/api.md: {undocumented}"
    no_docstring = sorted(m for m in methods if not inspect.getdoc(getattr(cls, m)))
    assert not no_docstring, f"{cls.__name__} methods without a docstring: {no_docstring}"


def test_every_environment_variable_is_documented() -> None:
    variable = re.compile(r"^(DATABASE_[A-Z_]+|DB_[A-Z_]+|CODERUNNER_SQL_[A-Z_]+)$")
    read: set[str] = set()
    for path in (ROOT / "coderunner_sql").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and variable.match(str(node.value)):
                read.add(node.value)
    assert {"DATABASE_URL", "DB_POOL_MAX", "CODERUNNER_SQL_DATA_DIR"} <= read
    page = (DOCS / "configuration.md").read_text()
    missing = sorted(name for name in read if f"`{name}`" not in page)
    assert not missing, f"environment variables missing from docs/configuration.md: {missing}"
