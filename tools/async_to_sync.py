"""Generate the sync modules from their async sources (psycopg's way of keeping one source).

    python tools/async_to_sync.py          # rewrite the generated files
    python tools/async_to_sync.py --check  # exit 1 if a generated file is out of date

The async code is written so that a handful of word-level rewrites turn it into correct
sync code: drop `await`/`async`, rename the async types, and swap the few `_compat` calls.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    "coderunner_sql/service_async.py": "coderunner_sql/service.py",
    "coderunner_sql/codegen/_run_async.py": "coderunner_sql/codegen/_run.py",
}

# Longest names first, so a rename never hits part of a longer one.
RENAMES = {
    "AbstractAsyncContextManager": "AbstractContextManager",
    "AsyncDatabaseService": "DatabaseService",
    "AsyncScopedService": "ScopedService",
    "AsyncConnectionPool": "ConnectionPool",
    "AsyncQueries": "Queries",
    "AsyncTransaction": "Transaction",
    "AsyncConnection": "Connection",
    "AsyncDataAPI": "DataAPI",
    "AsyncGenerator": "Generator",
    "AsyncIterator": "Iterator",
    "AsyncIterable": "Iterable",
    "AsyncCursor": "Cursor",
    "asynccontextmanager": "contextmanager",
    "aclosing": "closing",
    "aclose": "close",
    "load_async": "load",
    "_run_async": "_run",
    "service_async": "service",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "to_thread": "run_blocking",
    "asleep": "sleep",
    "ALock": "Lock",
    "async with": "with",
    "async for": "for",
    "async def": "def",
}

HEADER = (
    "# Generated from {source} by tools/async_to_sync.py: do not edit.\n"
    "# Change the async source and run `python tools/async_to_sync.py`.\n"
)


def convert(text: str, source: str) -> str:
    """The sync twin of async source `text`."""
    text = re.sub(r"\bawait\s+", "", text)
    text = re.sub(r"\[(\w+) async for \1 in ([^\[\]]+)\]", r"list(\2)", text)
    # One level of nested brackets: Awaitable[list[T]] -> list[T].
    text = re.sub(r"Awaitable\[((?:[^\[\]]|\[[^\[\]]*\])+)\]", r"\1", text)
    text = re.sub(r"AsyncGenerator\[([^\[\]]+), None\]", r"Generator[\1, None, None]", text)
    for old, new in RENAMES.items():
        text = re.sub(rf"\b{re.escape(old)}\b", new, text)
    # Docstrings that name the async flavour.
    text = text.replace("on an `ConnectionPool`", "on a `ConnectionPool`")
    return HEADER.format(source=source) + text


def tidy(text: str, target: Path) -> str:
    """Sort imports and format as the rest of the package is formatted."""
    for args in (
        [
            "check",
            "--select",
            "I,F401,SIM117,UP028,C416",
            "--fix-only",
            "--unsafe-fixes",
            "--quiet",
        ],
        ["format", "--quiet"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(target), "-"],
            input=text,
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        text = result.stdout
    return text


def main() -> int:
    """Write (or with --check, compare) every generated module."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    options = parser.parse_args()
    stale = 0
    for source, target in SOURCES.items():
        out = ROOT / target
        wanted = tidy(convert((ROOT / source).read_text(), source), out)
        current = out.read_text() if out.exists() else ""
        if current == wanted:
            continue
        if options.check:
            stale += 1
            sys.stdout.writelines(
                difflib.unified_diff(
                    current.splitlines(True), wanted.splitlines(True), target, "regenerated"
                )
            )
        else:
            out.write_text(wanted)
            print(f"wrote {target}")
    if stale:
        print(
            f"{stale} generated file(s) out of date: run python tools/async_to_sync.py",
            file=sys.stderr,
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
