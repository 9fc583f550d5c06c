"""The exception tree: every error this library raises is a `DatabaseError`.

Driver errors are translated in one place, `translate()`. PostgreSQL puts the failing row
in an error's DETAIL ("Failing row contains (…)"), and that row can hold a password hash
or a sandbox's connection info, which must never reach a log or a traceback. So the
translated error is raised without the driver error as its cause, and the driver error
(which Python still links as `__context__`) is scrubbed first: no message, no diagnostics,
no frames. What is safe to keep — the SQLSTATE, the constraint name and the primary
message with any quoted value cut out — is kept on the new error.
"""

from __future__ import annotations

import re

__all__ = [
    "CHECK_MESSAGES",
    "AlreadyExistsError",
    "ConfigError",
    "ConflictError",
    "DatabaseError",
    "DatabaseTimeoutError",
    "DatabaseUnavailableError",
    "EmbeddedServerError",
    "EncryptionError",
    "MigrationError",
    "MigrationIntegrityError",
    "MigrationLockError",
    "NotFoundError",
    "PermissionDeniedError",
    "PoolExhaustedError",
    "QueryError",
    "SchemaNotReadyError",
    "ValidationError",
    "scrub",
    "translate",
]


class DatabaseError(Exception):
    """Root of every error raised by coderunner_sql."""

    sqlstate: str | None = None
    constraint: str | None = None


class ConfigError(DatabaseError, ValueError):
    """A configuration value is missing or malformed."""


class ValidationError(DatabaseError, ValueError):
    """An argument was rejected before or by the database (bad id, email, enum, limit…)."""


class NotFoundError(DatabaseError, LookupError):
    """The row to change does not exist, or a foreign key names a missing row."""


class AlreadyExistsError(DatabaseError):
    """A unique value (email, project name) is already taken."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ConflictError(DatabaseError):
    """The row changed under us: an expected state did not hold, or a serialization failure."""


class DatabaseUnavailableError(DatabaseError):
    """The server could not be reached, or the connection was lost mid-call.

    `outcome_unknown` is True when a write was sent but its commit was never confirmed:
    the change may or may not have been made.
    """

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


class DatabaseTimeoutError(DatabaseUnavailableError):
    """No answer came from the server within the call's time bound; the connection was dropped."""


class PoolExhaustedError(DatabaseUnavailableError):
    """No pooled connection became free within the acquire timeout."""


class PermissionDeniedError(DatabaseError):
    """The database refused: the role lacks a privilege, or row-level security forbids the row."""


class QueryError(DatabaseError):
    """The server rejected a statement for a reason no narrower error describes."""


class SchemaNotReadyError(DatabaseError):
    """The database lacks migrations this library needs; `pending` lists them."""

    def __init__(self, message: str, *, pending: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.pending = pending


class MigrationError(DatabaseError):
    """A migration could not be read, applied or rolled back."""

    def __init__(
        self, message: str, *, migration: str | None = None, statement: str | None = None
    ) -> None:
        super().__init__(message)
        self.migration = migration
        self.statement = statement


class MigrationIntegrityError(MigrationError):
    """An applied migration's file was edited or removed since it was applied."""

    def __init__(self, message: str, *, files: tuple[str, ...] = ()) -> None:
        super().__init__(message, migration=files[0] if files else None)
        self.files = files


class MigrationLockError(MigrationError):
    """Another migration run held the lock for longer than the lock timeout."""


class EmbeddedServerError(DatabaseError):
    """The embedded PostgreSQL server could not be initialised or started."""


class EncryptionError(DatabaseError):
    """Encrypted connection info could not be encrypted or decrypted (missing or wrong key)."""


# The server's errors are told apart by psycopg's class for their SQLSTATE
# (https://www.postgresql.org/docs/current/errcodes-appendix.html), in `_translated`.

# Constraint name -> the field a user sees in "… already exists". The names come from
# migrations/; a constraint not listed here is reported by its own name.
_UNIQUE_FIELDS = {
    "users_email_fold_key": "email",
    "projects_user_name_fold_key": "name",
}

# Check constraint name -> what the caller got wrong. Kept beside the migrations' names;
# a test checks every CHECK constraint in the schema is listed here.
CHECK_MESSAGES = {
    "users_email_shape": "email is not a valid email address (at most 254 characters)",
    "users_password_hash_length": "password_hash must be 1 to 1024 characters",
    "projects_name_length": "name must be 1 to 100 characters",
    "projects_description_length": "description must be at most 10000 characters",
    "deployments_public_url_shape": (
        "public_url must be an http:// or https:// URL of at most 2048 characters"
    ),
    "deployments_runtime_type_shape": (
        "runtime_type must be a lowercase identifier of at most 32 characters (a-z, 0-9, _ . -)"
    ),
    "deployments_sandbox_id_length": (
        "app_sandbox_id and db_sandbox_id must be at most 255 characters"
    ),
}


# A primary message quotes what the server could not use, and that may be a bound value:
# `relation "<value>" does not exist` for %s::regclass or nextval(%s), `unrecognized
# configuration parameter "<value>"`, `invalid input syntax for type integer: "<value>"`.
# The server does not escape quotes inside the value, so everything from the first quote
# to the last goes. Integrity errors (class 23) are the exception: their quotes hold the
# schema's own names (column, table, constraint), which say what was wrong.
_QUOTED = re.compile(r'".*"', re.DOTALL)


def _primary(exc: BaseException) -> str:
    # The primary message never holds row data; DETAIL and the query may.
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = str(primary) if primary else str(exc).split("\n", 1)[0]
    state = getattr(exc, "sqlstate", None) or ""
    return text if state.startswith("23") else _QUOTED.sub('"…"', text)


def scrub(exc: BaseException | None) -> None:
    """Strip `exc` and the errors chained to it of what may hold row data or bound values:
    message, diagnostics and result, frames (with their locals), notes."""
    import psycopg

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        following = exc.__context__ or exc.__cause__
        exc.args = (f"{type(exc).__name__} (details withheld by coderunner_sql)",)
        exc.__traceback__ = None
        exc.__context__ = exc.__cause__ = None
        if hasattr(exc, "__notes__"):
            del exc.__notes__
        if isinstance(exc, psycopg.Error):
            exc._info = None  # the failing result: DETAIL, the statement's position…
            exc._pgconn = None
        if isinstance(exc, UnicodeEncodeError | UnicodeDecodeError | UnicodeTranslateError):
            exc.object = exc.object[:0]  # the whole text or bytes being converted
        exc = following


def translate(exc: BaseException, *, operation: str, write: bool = False) -> DatabaseError:
    """Turn a driver or pool error raised by `operation` into this library's error, and
    scrub the driver error, which Python keeps as the new error's `__context__`."""
    if isinstance(exc, DatabaseError):
        return exc
    error = _translated(exc, operation=operation, write=write)
    scrub(exc)
    return error


def _translated(exc: BaseException, *, operation: str, write: bool) -> DatabaseError:
    import psycopg
    import psycopg_pool

    from coderunner_sql.deadline import NoAnswerError

    if isinstance(exc, psycopg_pool.PoolTimeout):
        return PoolExhaustedError(f"{operation}: no pooled connection became free in time")
    if isinstance(exc, psycopg_pool.PoolClosed):
        return DatabaseUnavailableError(f"{operation}: the service is disconnected")
    if not isinstance(exc, psycopg.Error):
        return QueryError(f"{operation}: {type(exc).__name__}")

    state = exc.sqlstate or ""
    constraint = exc.diag.constraint_name if exc.diag else None
    errors = psycopg.errors
    error: DatabaseError
    if isinstance(exc, errors.UniqueViolation):
        field = _UNIQUE_FIELDS.get(constraint or "", constraint)
        error = AlreadyExistsError(f"{operation}: {field} already exists", field=field)
    elif isinstance(exc, errors.ForeignKeyViolation):
        error = NotFoundError(f"{operation}: a referenced row does not exist ({constraint})")
    elif isinstance(
        exc, errors.SerializationFailure | errors.DeadlockDetected | errors.LockNotAvailable
    ):
        # Another transaction holds what this one needs: try again (not "server gone").
        error = ConflictError(f"{operation}: concurrent update, try again ({_primary(exc)})")
    elif isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
        # SQLSTATE classes 22 and 23, and what psycopg refuses itself (a NUL byte…).
        reason = CHECK_MESSAGES.get(constraint or "") or _primary(exc)
        error = ValidationError(f"{operation}: {reason}")
    elif isinstance(exc, errors.InsufficientPrivilege):
        # A missing grant, or a row outside the user's scope.
        error = PermissionDeniedError(f"{operation}: {_primary(exc)}")
    elif isinstance(exc, errors.QueryCanceled):
        # statement_timeout or pg_cancel_backend(): the server stopped the statement and the
        # connection is fine (psycopg files it under OperationalError all the same).
        error = QueryError(f"{operation}: {_primary(exc)}")
    elif isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        # After a failover the old primary comes back as a standby: a connection still on it
        # is as good as lost. Refused, so nothing was written.
        error = DatabaseUnavailableError(
            f"{operation}: the server is read-only (a primary demoted by a failover, a standby,"
            " or a read-only transaction); nothing was written"
        )
    elif isinstance(exc, NoAnswerError):
        error = DatabaseTimeoutError(f"{operation}: {exc}", outcome_unknown=write)
    elif isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        # Connection (08), shutdown (57P), resources (53), and the driver's own.
        error = DatabaseUnavailableError(
            f"{operation}: database unavailable ({_primary(exc)})", outcome_unknown=write
        )
    else:
        error = QueryError(f"{operation}: {_primary(exc)}")
    error.sqlstate = state or None
    error.constraint = constraint
    return error
