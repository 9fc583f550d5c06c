"""Generate the sync modules from their async sources (psycopg's way of keeping one source).

    python tools/async_to_sync.py          # rewrite the generated files
    python tools/async_to_sync.py --check  # exit 1 if a generated file is out of date

A source is any `coderunner_sql/**/*_async.py` whose module docstring names this tool; its
twin is the same path without `_async`. The conversion works on the concrete syntax tree
(libcst, so comments and layout survive): `await x` becomes `x`, `async def`/`with`/`for`
and async comprehensions lose `async`, names are renamed wherever they are code (`RENAMES`,
plus each source's module name and the `Async*` names it defines), and the async-only
type wrappers (`Awaitable[X]`, `AsyncGenerator[X, None]`) are unwrapped. Text is touched
only where it talks about code: docstrings and comments get the same renames word by word
(with `a`/`an` fixed before a renamed word), and a string that is exactly a renamed name
(`__all__`, forward references) is renamed. A definition or statement under a comment line
starting `# async only` is left out of the twin. ruff then sorts the imports, drops the ones
left unused and formats the result.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import libcst as cst

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "coderunner_sql"
# A `*_async.py` module is a source only when its docstring says so, so that a module that
# merely has an async name is never overwritten by accident.
MARKER = "tools/async_to_sync.py"

# Identifier renames of names the sources import (psycopg's, contextlib's, `_compat`'s, the
# generated query module's): names, attributes and import aliases. The names the sources
# define themselves are derived (see `derived_renames`), so splitting a source needs no entry.
RENAMES = {
    "AbstractAsyncContextManager": "AbstractContextManager",
    "AsyncConnectionPool": "ConnectionPool",
    "AsyncQueries": "Queries",
    "AsyncConnection": "Connection",
    "AsyncGenerator": "Generator",
    "AsyncIterator": "Iterator",
    "AsyncIterable": "Iterable",
    "AsyncCursor": "Cursor",
    "asynccontextmanager": "contextmanager",
    "aclosing": "closing",
    "aclose": "close",
    "load_async": "load",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "to_thread": "run_blocking",
    "asleep": "sleep",
    "ALock": "Lock",
}
# A comment line starting with this, just above a definition or a statement, drops that
# definition or statement from the sync twin (code with no sync counterpart).
ASYNC_ONLY = "# async only"
# Phrases of prose (docstrings, comments) that name async syntax: `async with` -> `with`.
PROSE_RENAMES = {"async with": "with", "async for": "for", "async def": "def"}

HEADER = (
    "# Generated from {source} by tools/async_to_sync.py: do not edit.\n"
    "# Change the async source and run `python tools/async_to_sync.py`.\n"
)


class Renames:
    """One rename table: identifiers, and the same words in prose."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = dict(names)
        words = sorted({*self.names, *PROSE_RENAMES}, key=len, reverse=True)
        # Longest first, so a rename never takes part of a longer word.
        self._prose = re.compile(
            r"(?:\b(?P<article>[Aa]n?)(?P<gap>\s+`?))?\b(?P<word>"
            + "|".join(map(re.escape, words))
            + r")\b"
        )

    def prose(self, text: str) -> str:
        """Whole-word renames in prose, the article before a renamed word agreeing with it."""
        return self._prose.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        word = match["word"]
        new = self.names.get(word) or PROSE_RENAMES[word]
        article = match["article"]
        if article is None:
            return new
        wanted = "an" if new[:1].lower() in "aeiou" else "a"
        if article[0].isupper():
            wanted = wanted.capitalize()
        return wanted + match["gap"] + new


def _named(node: cst.BaseExpression, *names: str) -> bool:
    """Whether `node` is one of `names`, bare (`Awaitable`) or as an attribute (`abc.Awaitable`)."""
    if isinstance(node, cst.Name):
        return node.value in names
    return isinstance(node, cst.Attribute) and node.attr.value in names


def _is_docstring(node: cst.SimpleStatementLine) -> bool:
    """Whether a statement line is a bare string expression (a docstring where it stands)."""
    return (
        len(node.body) == 1
        and isinstance(node.body[0], cst.Expr)
        and isinstance(node.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


def _async_only(node: cst.FunctionDef | cst.SimpleStatementLine) -> bool:
    """Whether a comment line just above `node` starts with `# async only` (its code has no
    sync counterpart: the sync twin goes without it)."""
    return any(
        line.comment is not None and line.comment.value.startswith(ASYNC_ONLY)
        for line in node.leading_lines
    )


class AsyncToSync(cst.CSTTransformer):
    """The syntax-tree rewrite from an async module to its sync twin."""

    def __init__(self, renames: Renames) -> None:
        super().__init__()
        self.renames = renames
        self._prose_depth = 0  # inside a docstring or a string annotation

    # -- async syntax ----------------------------------------------------------------------

    def leave_Await(self, original_node: cst.Await, updated_node: cst.Await) -> cst.BaseExpression:
        """`await x` -> `x`; the parentheses written around the await stay unless `x` is a
        primary (`(await f()).y` -> `f().y`), where they would be noise."""
        inner = updated_node.expression
        if not updated_node.lpar or isinstance(
            inner, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)
        ):
            return inner
        return inner.with_changes(
            lpar=[*updated_node.lpar, *inner.lpar], rpar=[*inner.rpar, *updated_node.rpar]
        )

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.FunctionDef | cst.RemovalSentinel:
        """`async def` -> `def`; a definition marked `# async only` has no twin."""
        if _async_only(original_node):
            return cst.RemoveFromParent()
        return updated_node.with_changes(asynchronous=None)

    def leave_With(self, original_node: cst.With, updated_node: cst.With) -> cst.With:
        """`async with` -> `with`."""
        return updated_node.with_changes(asynchronous=None)

    def leave_For(self, original_node: cst.For, updated_node: cst.For) -> cst.For:
        """`async for` -> `for`."""
        return updated_node.with_changes(asynchronous=None)

    def leave_CompFor(self, original_node: cst.CompFor, updated_node: cst.CompFor) -> cst.CompFor:
        """`async for` inside a comprehension -> `for`."""
        return updated_node.with_changes(asynchronous=None)

    def leave_ListComp(
        self, original_node: cst.ListComp, updated_node: cst.ListComp
    ) -> cst.BaseExpression:
        """`[x async for x in it]` -> `list(it)`; any other comprehension stays one."""
        return self._identity(original_node, updated_node, "list")

    def leave_SetComp(
        self, original_node: cst.SetComp, updated_node: cst.SetComp
    ) -> cst.BaseExpression:
        """`{x async for x in it}` -> `set(it)`."""
        return self._identity(original_node, updated_node, "set")

    @staticmethod
    def _identity(
        original: cst.ListComp | cst.SetComp, updated: cst.ListComp | cst.SetComp, builder: str
    ) -> cst.BaseExpression:
        """The builder call for an async comprehension that only collects its items."""
        loop = original.for_in
        if (
            loop.asynchronous is None
            or loop.ifs
            or loop.inner_for_in is not None
            or not isinstance(original.elt, cst.Name)
            or not isinstance(loop.target, cst.Name)
            or original.elt.value != loop.target.value
        ):
            return updated
        return cst.Call(
            func=cst.Name(builder),
            args=[cst.Arg(updated.for_in.iter)],
            lpar=updated.lpar,
            rpar=updated.rpar,
        )

    # -- types -------------------------------------------------------------------------------

    def leave_Subscript(
        self, original_node: cst.Subscript, updated_node: cst.Subscript
    ) -> cst.BaseExpression:
        """`Awaitable[X]` -> `X`; `AsyncGenerator[X, None]` -> `Generator[X, None, None]`.

        Looks at the original node's name, the one written before any rename.
        """
        value = original_node.value
        slices = updated_node.slice
        if _named(value, "Awaitable", "Coroutine") and slices:
            inner = slices[-1].slice
            if isinstance(inner, cst.Index):
                return inner.value.with_changes(lpar=updated_node.lpar, rpar=updated_node.rpar)
        if _named(value, "AsyncGenerator") and len(slices) == 2:
            return updated_node.with_changes(
                slice=[
                    slices[0],
                    slices[1].with_changes(
                        comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
                    ),
                    cst.SubscriptElement(cst.Index(cst.Name("None")), comma=slices[1].comma),
                ]
            )
        return updated_node

    # -- names -------------------------------------------------------------------------------

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        """A name of the table renamed, wherever it is code."""
        new = self.renames.names.get(updated_node.value)
        return updated_node if new is None else updated_node.with_changes(value=new)

    # -- text --------------------------------------------------------------------------------

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        """Prose renames apply inside a docstring (a bare string statement)."""
        if _is_docstring(node):
            self._prose_depth += 1

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine | cst.RemovalSentinel:
        """Close the docstring scope opened on the way in; a statement marked
        `# async only` has no twin."""
        if _is_docstring(original_node):
            self._prose_depth -= 1
        if _async_only(original_node):
            return cst.RemoveFromParent()
        return updated_node

    def visit_Annotation(self, node: cst.Annotation) -> None:
        """A string annotation is code in a string: its names are renamed too."""
        self._prose_depth += 1

    def leave_Annotation(
        self, original_node: cst.Annotation, updated_node: cst.Annotation
    ) -> cst.Annotation:
        """Close the annotation scope opened on the way in."""
        self._prose_depth -= 1
        return updated_node

    def leave_SimpleString(
        self, original_node: cst.SimpleString, updated_node: cst.SimpleString
    ) -> cst.SimpleString:
        """Docstrings and string annotations get the prose renames; other strings only a
        whole-string rename (`"AsyncTransaction"` in `__all__`), never a partial one."""
        value = updated_node.value
        start, end = len(updated_node.prefix) + len(updated_node.quote), -len(updated_node.quote)
        body = value[start:end]
        names = self.renames.names
        new = self.renames.prose(body) if self._prose_depth else names.get(body, body)
        if new == body:
            return updated_node
        return updated_node.with_changes(value=value[:start] + new + value[end:])

    def leave_Comment(self, original_node: cst.Comment, updated_node: cst.Comment) -> cst.Comment:
        """Comments are prose about the code: the same renames as docstrings."""
        return updated_node.with_changes(value=self.renames.prose(updated_node.value))


def convert(text: str, source: str, renames: Renames | None = None) -> str:
    """The sync twin of async source `text` (before ruff tidies it).

    `renames` defaults to the table for the package's sources as they are on disk.
    """
    if renames is None:
        renames = Renames(
            derived_renames({path: (ROOT / path).read_text() for path, _ in sources()})
        )
    module = cst.parse_module(text)
    return HEADER.format(source=source) + module.visit(AsyncToSync(renames)).code


def tidy(text: str, target: Path) -> str:
    """Sort imports, drop the unused ones and format as the rest of the package is formatted."""
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


def is_source(path: Path) -> bool:
    """Whether `path` declares itself the one source of a generated sync twin."""
    try:
        docstring = cst.parse_module(path.read_text()).get_docstring(clean=False)
    except cst.ParserSyntaxError:
        return False
    return docstring is not None and MARKER in docstring


def sources(root: Path = ROOT) -> Iterator[tuple[str, str]]:
    """Every (async source, sync twin) pair under the package, as paths relative to `root`."""
    for path in sorted((root / PACKAGE).rglob("*_async.py")):
        if is_source(path):
            twin = path.with_name(path.name.removesuffix("_async.py") + ".py")
            yield path.relative_to(root).as_posix(), twin.relative_to(root).as_posix()


def _defined(module: cst.Module) -> Iterator[str]:
    """The names a module defines at its top level (classes, functions, assignments)."""
    for statement in module.body:
        if isinstance(statement, (cst.ClassDef, cst.FunctionDef)):
            yield statement.name.value
        elif isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                targets: list[cst.BaseExpression] = []
                if isinstance(small, cst.Assign):
                    targets = [target.target for target in small.targets]
                elif isinstance(small, cst.AnnAssign):
                    targets = [small.target]
                yield from (t.value for t in targets if isinstance(t, cst.Name))


def derived_renames(texts: Mapping[str, str]) -> dict[str, str]:
    """`RENAMES` plus the renames the sources imply: each source's module name (`service_async`
    -> `service`) and each `Async*` name a source defines (`AsyncTransaction` -> `Transaction`).
    """
    names = dict(RENAMES)
    for path, text in texts.items():
        stem = Path(path).stem
        names[stem] = stem.removesuffix("_async")
        for name in _defined(cst.parse_module(text)):
            if re.fullmatch(r"Async[A-Z]\w*", name):
                names[name] = name.removeprefix("Async")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with --check, compare) every generated module."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    options = parser.parse_args(argv)
    pairs = list(sources())
    texts = {source: (ROOT / source).read_text() for source, _ in pairs}
    renames = Renames(derived_renames(texts))
    stale = 0
    for source, target in pairs:
        out = ROOT / target
        wanted = tidy(convert(texts[source], source, renames), out)
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
