"""docs/architecture.md is the map of the package: every module it names exists, and no
module imports from a layer above its own (the arrows of the map point down)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "coderunner_sql"

# The layers of docs/architecture.md, top first; a module's sync twin sits with its source.
LAYERS: list[set[str]] = [
    {"cli", "demo", "tables", "testing", "__main__", "__init__", "health"},
    {"service"},
    {"data_api", "transaction", "tenants", "replicas", "pipelining", "connections"},
    {"routing", "params", "pagination", "validation", "service_base"},
    {"query_methods", "codegen", "query_watch", "loader"},
    {"telemetry", "deadline", "encryption", "connection"},
    {"errors", "records", "converter", "config", "resources", "_compat"},
]
# Tools stand beside the service stack: they may use the layers below the service.
TOOLS = {"check", "migrations", "migration_plan", "baseline", "embedded", "target", "generate"}
# The generator's own modules are a tool; the rest of codegen/ is what generated code runs on.
GENERATOR = {"_generate.py", "_model.py", "_types.py", "_render.py", "_reads.py"}


def _concept(path: Path) -> str:
    """The module's concept: its top-level name, a sync twin's named as its async source."""
    parts = path.relative_to(PACKAGE).parts
    if parts[0] == "codegen" and parts[-1] in GENERATOR:
        return "generate"
    return parts[0].removesuffix(".py").removesuffix("_async")


def _rank(concept: str) -> int | None:
    for rank, layer in enumerate(LAYERS):
        if concept in layer:
            return rank
    return None


def _imports(path: Path) -> set[str]:
    """Concepts of the package that `path` imports at module level (lazy imports inside
    functions are how tools reach up on purpose, and are left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports are for annotations
            continue
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "coderunner_sql":
                names = [f"coderunner_sql.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "coderunner_sql" and len(parts) > 1:
                found.add(parts[1].removesuffix("_async"))
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_named_on_the_map_exists() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\b([a-z][a-z_]*\.py)\b", text)) - {"async_to_sync.py"}
    missing = sorted(n for n in named if not n.startswith("test_") and not list(PACKAGE.rglob(n)))
    assert missing == []


def test_every_module_has_a_place_on_the_map() -> None:
    concepts = {_concept(p) for p in _modules()}
    placed = set().union(*LAYERS) | TOOLS
    assert sorted(concepts - placed) == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_up_the_layers(path: Path) -> None:
    concept = _concept(path)
    rank = _rank(concept)
    if rank is None:  # a tool: anything but the commands and the service stack
        rank = 2
    upward = sorted(
        other
        for other in _imports(path) - {concept}
        if ((other_rank := _rank(other)) is not None and other_rank < rank)
        or (other in TOOLS and concept not in TOOLS and _rank(concept) not in (0, None))
    )
    assert upward == [], f"{path.name} imports from above its layer: {upward}"
