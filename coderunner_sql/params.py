"""Method arguments to bound query parameters (I/O-free, shared by sync and async).

Each function validates what the caller passed and returns the dict of named parameters
its query in `queries/` declares.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

import attrs
import psycopg
from psycopg.types.array import ListBinaryDumper
from psycopg.types.json import Jsonb

from coderunner_sql.encryption import ENVELOPE_KEY
from coderunner_sql.errors import ValidationError
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


def user_create(email: object, password_hash: object, plan_type: object) -> dict[str, Any]:
    """Parameters of `create_user`."""
    return {
        "email": as_text(email, "email"),
        "password_hash": as_text(password_hash, "password_hash"),
        "plan_type": as_enum(plan_type, PlanType, "plan_type").value,
    }


def _flag(params: dict[str, Any], name: str, value: object, convert: Any) -> None:
    given = value is not UNSET
    params[f"set_{name}"] = given
    params[name] = convert(value) if given else None


def user_update(
    id: object, email: object, password_hash: object, plan_type: object
) -> dict[str, Any]:
    """Parameters of `update_user`: a set_* flag and a value per field."""
    params: dict[str, Any] = {"id": as_uuid(id)}
    _flag(params, "email", email, lambda v: as_text(v, "email"))
    _flag(params, "password_hash", password_hash, lambda v: as_text(v, "password_hash"))
    _flag(params, "plan_type", plan_type, lambda v: as_enum(v, PlanType, "plan_type").value)
    return params


def project_create(user_id: object, name: object, description: object) -> dict[str, Any]:
    """Parameters of `create_project`."""
    return {
        "user_id": as_uuid(user_id, "user_id"),
        "name": as_text(name, "name"),
        "description": as_text(description, "description", nullable=True),
    }


def project_update(id: object, name: object, description: object) -> dict[str, Any]:
    """Parameters of `update_project`; `description=None` sets NULL."""
    params: dict[str, Any] = {"id": as_uuid(id)}
    _flag(params, "name", name, lambda v: as_text(v, "name"))
    _flag(params, "description", description, lambda v: as_text(v, "description", nullable=True))
    return params


def _connection_info(value: object, keys: KeyRing | None) -> Jsonb | None:
    # With a key ring the object is stored as an encrypted envelope (coderunner_sql.encryption).
    checked = as_json_object(value, "db_connection_info")
    if checked is None:
        return None
    if ENVELOPE_KEY in checked:
        raise ValidationError(f"db_connection_info must not use the reserved key {ENVELOPE_KEY!r}")
    return Jsonb(checked if keys is None else keys.seal(checked))


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
) -> dict[str, Any]:
    """Parameters of `create_deployment`; `keys` encrypts db_connection_info."""
    return {
        "project_id": as_uuid(project_id, "project_id"),
        "runtime_type": as_text(runtime_type, "runtime_type"),
        "app_sandbox_id": as_text(app_sandbox_id, "app_sandbox_id", nullable=True),
        "public_url": as_text(public_url, "public_url", nullable=True),
        "db_sandbox_id": as_text(db_sandbox_id, "db_sandbox_id", nullable=True),
        "db_connection_info": _connection_info(db_connection_info, keys),
        "status": as_enum(status, DeploymentStatus, "status").value,
    }


_NEW_DEPLOYMENT_FIELDS = frozenset(field.name for field in attrs.fields(NewDeployment))


# create_deployments' array parameters and the deployment_create key each one collects.
_BULK_COLUMNS: Final = (
    ("project_ids", "project_id"),
    ("runtime_types", "runtime_type"),
    ("app_sandbox_ids", "app_sandbox_id"),
    ("public_urls", "public_url"),
    ("db_sandbox_ids", "db_sandbox_id"),
    ("db_connection_infos", "db_connection_info"),
    ("statuses", "status"),
)
_bulk_row = operator.itemgetter(*(key for _, key in _BULK_COLUMNS))


def deployments_create(
    items: Iterable[Mapping[str, Any] | NewDeployment], *, keys: KeyRing | None = None
) -> dict[str, ColumnArray]:
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
    columns = list(zip(*rows, strict=True)) or [()] * len(_BULK_COLUMNS)
    return {
        name: ColumnArray(values) for (name, _), values in zip(_BULK_COLUMNS, columns, strict=True)
    }


def deployment_update(
    id: object, fields: Mapping[str, object], *, keys: KeyRing | None = None
) -> dict[str, Any]:
    """Parameters of `update_deployment`; nullable fields may be set to None."""
    params: dict[str, Any] = {"id": as_uuid(id)}
    for name in ("app_sandbox_id", "public_url", "db_sandbox_id"):
        _flag(params, name, fields.get(name, UNSET), lambda v, n=name: as_text(v, n, nullable=True))
    _flag(
        params,
        "db_connection_info",
        fields.get("db_connection_info", UNSET),
        lambda v: _connection_info(v, keys),
    )
    _flag(
        params,
        "status",
        fields.get("status", UNSET),
        lambda v: as_enum(v, DeploymentStatus, "status").value,
    )
    _flag(
        params,
        "runtime_type",
        fields.get("runtime_type", UNSET),
        lambda v: as_text(v, "runtime_type"),
    )
    return params


def connection_infos_resealed(
    rows: Iterable[tuple[Any, Any]], keys: KeyRing
) -> dict[str, ColumnArray]:
    """Parameters of `update_connection_infos`: each (id, stored value) under the newest key.

    Only objects are sealed (envelopes under an older key, and plaintext): a value another
    client stored that is not an object (an array, a string, JSON null…) is left out, as it
    is, since an envelope of it could never be read back as connection info.
    """
    ids, infos = ColumnArray(), ColumnArray()
    for row_id, stored in rows:
        if isinstance(stored, dict):
            ids.append(row_id)
            infos.append(Jsonb(keys.reseal(stored)))
    return {"ids": ids, "infos": infos}
