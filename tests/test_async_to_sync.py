"""tools/async_to_sync.py turns an async source into its sync twin on the syntax tree: the
rewrites it promises, on a made-up source (no database)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent

SOURCE = '''\
"""`AsyncThing` on an `AsyncConnectionPool`; tools/async_to_sync.py writes its twin."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any

from coderunner_sql._compat import asleep
from coderunner_sql.service_async import AsyncDatabaseService


class AsyncThing:
    """Made on an `AsyncConnection` (or `async with`)."""

    async def one(self, run: Callable[[int], Awaitable[list[int]]]) -> list[int]:
        # Waits on an AsyncConnection.
        await asleep(0.1)
        rows = [row async for row in self.rows()]
        evens = [row * 2 async for row in self.rows() if row]
        return (await run(1)) + rows + evens

    async def rows(self) -> AsyncIterator[int]:
        yield 1

    @asynccontextmanager
    async def block(self) -> AsyncIterator[None]:
        async with aclosing(self.rows()) as rows:
            async for _ in rows:
                yield

    def label(self) -> str:
        return "AsyncThing stays in an f-string: " + f"{AsyncDatabaseService.__name__}"

    # async only: an event loop's batching has no sync counterpart.
    async def batched(self) -> int:
        return 1

    def setup(self) -> None:
        # async only
        self.loop_bound = True
        self.kept = True


__all__ = ["AsyncThing"]
'''


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "async_to_sync", ROOT / "tools" / "async_to_sync.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["async_to_sync"] = module
    spec.loader.exec_module(module)
    return module


def test_the_sync_twin_of_a_made_up_source() -> None:
    tool = _tool()
    texts = {source: (ROOT / source).read_text() for source, _ in tool.sources()}
    names = tool.derived_renames({**texts, "coderunner_sql/thing_async.py": SOURCE})
    out = tool.convert(SOURCE, "coderunner_sql/thing_async.py", tool.Renames(names))
    code = out.split("\n", 2)[2]
    assert "async " not in code.replace("`async with`", "")
    assert "await" not in code
    assert '"""`Thing` on a `ConnectionPool`; tools/async_to_sync.py writes its twin."""' in code
    assert '"""Made on a `Connection` (or `with`)."""' in code
    assert "# Waits on a Connection." in code
    assert "def one(self, run: Callable[[int], list[int]]) -> list[int]:" in code
    assert "sleep(0.1)" in code
    assert "rows = list(self.rows())" in code
    assert "evens = [row * 2 for row in self.rows() if row]" in code
    assert "return run(1) + rows + evens" in code
    assert "def rows(self) -> Iterator[int]:" in code
    assert "@contextmanager" in code
    assert "with closing(self.rows()) as rows:" in code
    assert "from coderunner_sql.service import DatabaseService" in code
    # A string that is a renamed name (`__all__`) follows it; other text is left alone.
    assert '__all__ = ["Thing"]' in code
    assert '"AsyncThing stays in an f-string: "' in code
    # Marked `# async only`: left out of the twin, the rest of their block kept.
    assert "batched" not in code
    assert "loop_bound" not in code
    assert "self.kept = True" in code
    compile(code, "thing.py", "exec")


def test_every_generated_twin_is_current() -> None:
    tool = _tool()
    assert tool.main(["--check"]) == 0
