"""Method arguments to bound query parameters (I/O-free, shared by sync and async).

Each function validates what the caller passed and returns the parameters of its query,
typed by the TypedDict the generator wrote from the query's SQL (`query_methods`), so
mypy checks every name and type against the SQL.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar
from uuid import UUID

import attrs
import psycopg
from psycopg.types.array import ListBinaryDumper
from psycopg.types.json import Jsonb

from coderunner_sql.encryption import ENVELOPE_KEY
from coderunner_sql.errors import ValidationError
from coderunner_sql.query_methods import (
    CreateDeploymentParams,
    CreateDeploymentsParams,
    CreateProjectParams,
    CreateUserParams,
    ListConnectionInfosToRotateRow,
    UpdateConnectionInfosParams,
    UpdateDeploymentParams,
    UpdateProjectParams,
    UpdateUserParams,
)
from coderunner_sql.records import DeploymentStatus, NewDeployment, PlanType
from coderunner_sql.validation import as_enum, as_json_object, as_text, as_uuid

if TYPE_CHECKING:
    from coderunner_sql.encryption import KeyRing

__all__ = ["UNSET", "Unset"]


class Unset(enum.Enum):
    """The type of `UNSET`."""

    UNSET = "UNSET"


UNSET: Final = Unset.UNSET
"""Marks an update argument that was not given: the field keeps its value."""

IdLike = UUID | str
T = TypeVar("T")


class ColumnArray(list[Any]):
    """One column of a bulk write, sent to the server as a binary array."""


# psycopg dumps a plain list as a text array literal in Python, quoting and escaping
# every element (about 7 ms for the seven columns of 1,000 deployments); the binary
# format needs neither (about 1 ms). Only this private type is affected: lists passed to
# query() keep psycopg's default, whose untyped text arrays let the server infer
# their element type. Every query that takes a ColumnArray casts it explicitly.
psycopg.adapters.register_dumper(ColumnArray, ListBinaryDumper)


def query_params(params: object) -> Mapping[str, Any] | list[Any] | None:
    """Parameters of `query()`: a mapping for `%(name)s`, any other iterable (a list,
    tuple, generator…) for `%s`, or None; text, bytes and scalars raise `ValidationError`."""
    if params is None or isinstance(params, Mapping):
        return params
    if isinstance(params, str | bytes | bytearray) or not isinstance(params, Iterable):
        raise ValidationError(
            f"query params must be a list, tuple or dict (or None), got {type(params).__name__}"
        )
    return list(params)


def user_create(email: object, password_hash: object, plan_type: object) -> CreateUserParams:
    """Parameters of `create_user`."""
    return {
        "email": as_text(email, "email"),
        "password_hash": as_text(password_hash, "password_hash"),
        "plan_type": as_enum(plan_type, PlanType, "plan_type"),
    }


def _given(value: object, convert: Callable[[object], T]) -> tuple[bool, T | None]:
    # An update's field: (whether it was given, its checked value or None).
    if value is UNSET:
        return False, None
    return True, convert(value)


def user_update(
    id: object, email: object, password_hash: object, plan_type: object
) -> UpdateUserParams:
    """Parameters of `update_user`: a set_* flag and a value per field."""
    set_email, email_value = _given(email, lambda v: as_text(v, "email"))
    set_hash, hash_value = _given(password_hash, lambda v: as_text(v, "password_hash"))
    set_plan, plan_value = _given(plan_type, lambda v: as_enum(v, PlanType, "plan_type"))
    return {
        "id": as_uuid(id),
        "set_email": set_email,
        "email": email_value,
        "set_password_hash": set_hash,
        "password_hash": hash_value,
        "set_plan_type": set_plan,
        "plan_type": plan_value,
    }


def project_create(user_id: object, name: object, description: object) -> CreateProjectParams:
    """Parameters of `create_project`."""
    return {
        "user_id": as_uuid(user_id, "user_id"),
        "name": as_text(name, "name"),
        "description": as_text(description, "description", nullable=True),
    }


def project_update(id: object, name: object, description: object) -> UpdateProjectParams:
    """Parameters of `update_project`; `description=None` sets NULL."""
    set_name, name_value = _given(name, lambda v: as_text(v, "name"))
    set_description, description_value = _given(
        description, lambda v: as_text(v, "description", nullable=True)
    )
    return {
        "id": as_uuid(id),
        "set_name": set_name,
        "name": name_value,
        "set_description": set_description,
        "description": description_value,
    }


def _connection_info(value: object, keys: KeyRing | None) -> dict[str, Any] | None:
    # With a key ring the object is stored as an encrypted envelope (coderunner_sql.encryption).
    checked = as_json_object(value, "db_connection_info")
    if checked is None:
        return None
    if ENVELOPE_KEY in checked:
        raise ValidationError(f"db_connection_info must not use the reserved key {ENVELOPE_KEY!r}")
    return checked if keys is None else keys.seal(checked)


def deployment_create(
    project_id: object,
    runtime_type: object,
    app_sandbox_id: object = None,
    public_url: object = None,
    db_sandbox_id: object = None,
    db_connection_info: object = None,
    status: object = DeploymentStatus.PENDING,
    *,
    keys: KeyRing | None = None,
) -> CreateDeploymentParams:
    """Parameters of `create_deployment`; `keys` encrypts db_connection_info."""
    return {
        "project_id": as_uuid(project_id, "project_id"),
        "runtime_type": as_text(runtime_type, "runtime_type"),
        "app_sandbox_id": as_text(app_sandbox_id, "app_sandbox_id", nullable=True),
        "public_url": as_text(public_url, "public_url", nullable=True),
        "db_sandbox_id": as_text(db_sandbox_id, "db_sandbox_id", nullable=True),
        "db_connection_info": _connection_info(db_connection_info, keys),
        "status": as_enum(status, DeploymentStatus, "status"),
    }


_NEW_DEPLOYMENT_FIELDS = frozenset(field.name for field in attrs.fields(NewDeployment))


def _bulk_row(row: CreateDeploymentParams) -> tuple[Any, ...]:
    # One deployment's values in the order of create_deployments' array parameters; the
    # arrays are sent as they are, so JSON and enums are turned into what the server takes.
    info = row["db_connection_info"]
    return (
        row["project_id"],
        row["runtime_type"],
        row["app_sandbox_id"],
        row["public_url"],
        row["db_sandbox_id"],
        None if info is None else Jsonb(info),
        row["status"].value,
    )


def deployments_create(
    items: Iterable[Mapping[str, Any] | NewDeployment], *, keys: KeyRing | None = None
) -> CreateDeploymentsParams:
    """Parameters of `create_deployments`: one array per column."""
    if isinstance(items, Mapping | NewDeployment | str | bytes) or not isinstance(items, Iterable):
        raise ValidationError(
            f"create_deployments takes a list of deployments, got {type(items).__name__}"
        )
    rows: list[tuple[Any, ...]] = []
    for index, item in enumerate(items):
        fields: Mapping[str, Any]
        if isinstance(item, NewDeployment):
            fields = attrs.asdict(item, recurse=False)
        elif isinstance(item, Mapping):
            if not _NEW_DEPLOYMENT_FIELDS.issuperset(item):
                unknown = sorted(map(str, set(item) - _NEW_DEPLOYMENT_FIELDS))
                raise ValidationError(f"deployment {index}: unknown field(s) {', '.join(unknown)}")
            fields = item
        else:
            raise ValidationError(f"deployment {index} must be a dict or NewDeployment")
        try:
            row = deployment_create(**fields, keys=keys)
        except TypeError:
            raise ValidationError(f"deployment {index} needs project_id and runtime_type") from None
        except ValidationError as exc:
            raise ValidationError(f"deployment {index}: {exc}") from None
        rows.append(_bulk_row(row))
    # Rows to columns in C (zip) rather than seven appends per row.
    columns = [ColumnArray(values) for values in zip(*rows, strict=True)] or [
        ColumnArray() for _ in range(7)
    ]
    ids, runtimes, app_ids, urls, db_ids, infos, statuses = columns
    return {
        "project_ids": ids,
        "runtime_types": runtimes,
        "app_sandbox_ids": app_ids,
        "public_urls": urls,
        "db_sandbox_ids": db_ids,
        "db_connection_infos": infos,
        "statuses": statuses,
    }


def deployment_update(
    id: object, fields: Mapping[str, object], *, keys: KeyRing | None = None
) -> UpdateDeploymentParams:
    """Parameters of `update_deployment`; nullable fields may be set to None."""

    def text(name: str, nullable: bool = True) -> tuple[bool, str | None]:
        return _given(fields.get(name, UNSET), lambda v: as_text(v, name, nullable=nullable))

    set_app, app = text("app_sandbox_id")
    set_url, url = text("public_url")
    set_db, db = text("db_sandbox_id")
    set_runtime, runtime_type = text("runtime_type", nullable=False)
    set_info, info = _given(
        fields.get("db_connection_info", UNSET), lambda v: _connection_info(v, keys)
    )
    set_status, status = _given(
        fields.get("status", UNSET), lambda v: as_enum(v, DeploymentStatus, "status")
    )
    return {
        "id": as_uuid(id),
        "set_app_sandbox_id": set_app,
        "app_sandbox_id": app,
        "set_public_url": set_url,
        "public_url": url,
        "set_db_sandbox_id": set_db,
        "db_sandbox_id": db,
        "set_db_connection_info": set_info,
        "db_connection_info": info,
        "set_status": set_status,
        "status": status,
        "set_runtime_type": set_runtime,
        "runtime_type": runtime_type,
    }


def connection_infos_resealed(
    rows: Iterable[ListConnectionInfosToRotateRow], keys: KeyRing
) -> UpdateConnectionInfosParams:
    """Parameters of `update_connection_infos`: each row's stored value under the newest key.

    Only objects are sealed (envelopes under an older key, and plaintext): a value another
    client stored that is not an object (an array, a string, JSON null…) is left out, as it
    is, since an envelope of it could never be read back as connection info.
    """
    ids, infos = ColumnArray(), ColumnArray()
    for row in rows:
        stored = row.db_connection_info
        if isinstance(stored, dict):
            ids.append(row.id)
            infos.append(Jsonb(keys.reseal(stored)))
    return {"ids": ids, "infos": infos}
