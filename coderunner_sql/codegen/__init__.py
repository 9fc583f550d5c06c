"""`coderunner-sql generate`: typed query methods from the SQL files and the server.

The generator needs the [check] extra (PostgreSQL's parser); the module it writes needs only
`coderunner_sql.codegen.runtime`, which this package imports lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coderunner_sql.codegen._generate import GenerateReport, generate

__all__ = ["GenerateReport", "generate"]


def __getattr__(name: str) -> Any:
    # A generated module imports `runtime` from here at run time, without pglast.
    if name in __all__:
        from coderunner_sql.codegen import _generate

        return getattr(_generate, name)
    raise AttributeError(name)
