"""What happens around every query, sync or async: timing, slow-query log, error translation,
and the row factory that builds each query's record."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from coderunner_sql.converter import row_maker
from coderunner_sql.encryption import KeyRing, open_value
from coderunner_sql.errors import DatabaseError, QueryError, ValidationError, scrub, translate

__all__ = ["QueryWatch"]

log = logging.getLogger("coderunner_sql.queries")

# Result columns that may hold an encrypted envelope (coderunner_sql.encryption).
_ENCRYPTED_COLUMNS = frozenset({"db_connection_info", "deployment__db_connection_info"})


_JSON_KINDS = {list: "an array", str: "a string", bool: "a boolean", int: "a number"}


class _UnfitValue(ValueError):
    # A stored value the record cannot hold as it is (reported as a QueryError).
    pass


def _connection_info(keys: KeyRing | None, value: Any) -> Any:
    # Rows other clients wrote may hold any JSON in the jsonb column. Turning an array of
    # pairs into a dict would hand out connection info nobody stored: such a row is refused
    # by name instead (JSON null reads as None, as SQL NULL does).
    if value is None:
        return None
    if type(value) is not dict:
        kind = next((k for t, k in _JSON_KINDS.items() if isinstance(value, t)), "a number")
        raise _UnfitValue(
            f"db_connection_info is {kind}, not a JSON object (written by another client?)"
        )
    return open_value(keys, value)


class QueryWatch:
    """Shared by the sync and async adapters: everything a query needs that is not I/O."""

    def __init__(
        self,
        result_types: Mapping[str, type[Any]],
        *,
        slow_query_ms: float,
        prepare: bool | None,
        keys: KeyRing | None = None,
    ) -> None:
        self.result_types = dict(result_types)
        self.keys = keys
        self.slow_query_ms = slow_query_ms
        self.prepare = prepare
        self._factories: dict[str, Callable[[Any], Callable[[Sequence[Any]], Any]]] = {}

    @contextmanager
    def __call__(self, query_name: str) -> Iterator[None]:
        started = time.perf_counter()
        error: DatabaseError | None = None
        try:
            yield
        except psycopg.Error as exc:
            error = translate(exc, operation=query_name)
        except DatabaseError:
            raise
        except RecursionError as exc:
            # A parameter nested deeper than the call stack allows (rows are read without
            # recursion, coderunner_sql.converter.load_json).
            scrub(exc)
            error = ValidationError(f"{query_name}: a value is nested too deeply to send")
        except (KeyError, ValueError, TypeError) as exc:
            # The row did not fit its record: the query's columns and the record disagree
            # (`coderunner-sql check` catches this before deploy), or a stored value is not
            # what the record holds. Values stay out of the text.
            if isinstance(exc, _UnfitValue):
                detail = str(exc)
            elif isinstance(exc, KeyError):
                detail = f"the result does not fit its record (missing column {exc.args[0]!r})"
            else:
                detail = f"the result does not fit its record ({type(exc).__name__})"
            scrub(exc)  # its frames hold the row
            error = QueryError(f"{query_name}: {detail}")
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            if self.slow_query_ms and elapsed_ms >= self.slow_query_ms:
                log.warning("slow query %s took %.0f ms", query_name, elapsed_ms)
        if error is not None:
            raise error from None

    def row_factory(
        self, query_name: str
    ) -> Callable[[Any], Callable[[Sequence[Any]], Any]] | None:
        """A psycopg row factory building the query's record, or None for plain tuples."""
        known = self._factories.get(query_name)
        if known is not None:
            return known
        record = self.result_types.get(query_name)
        if record is None:
            return None
        makers: dict[int, Callable[[Sequence[Any]], Any]] = {}

        def factory(cursor: Any) -> Callable[[Sequence[Any]], Any]:
            # A query's SQL is fixed for the life of the service, and so are its column
            # names: decode them once per shape, not on every call.
            result = cursor.pgresult
            width = 0 if result is None else result.nfields
            maker = makers.get(width)
            if maker is None:
                names = [(result.fname(i) or b"").decode() for i in range(width)]
                maker = makers[width] = row_maker(record, names, self._openers(names))
            return maker

        self._factories[query_name] = factory
        return factory

    def _openers(self, names: Sequence[str]) -> dict[int, Callable[[Any], Any]]:
        # Envelopes are opened before the record is built, so records only hold plaintext;
        # an envelope without its key raises EncryptionError rather than leaking ciphertext.
        keys = self.keys

        def opener(value: Any) -> Any:
            # Most rows have no connection info: skip every other test for them.
            return None if value is None else _connection_info(keys, value)

        return {i: opener for i, name in enumerate(names) if name in _ENCRYPTED_COLUMNS}
