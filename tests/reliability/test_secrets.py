"""Secrets: never in a log, an error, a repr, health output or the CLI; encrypted at rest.

The promises: the database password, users' password hashes and deployments'
db_connection_info appear in no log record (the whole session's records are checked by
tests/plugins/secrets.py), no exception text, no repr or str of any object, no health
report and no CLI output. With `CODERUNNER_SQL_ENCRYPTION_KEY` set, db_connection_info is
stored as an AES-GCM envelope (the column never holds the plaintext) and read back
transparently; a wrong or missing key is a clear `EncryptionError`; `secrets rotate`
re-encrypts every row under the newest key, in batches.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import uuid
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.pq import DiagnosticField

from coderunner_sql import (
    DatabaseConfig,
    DatabaseError,
    DatabaseService,
    NewDeployment,
    ValidationError,
    to_dict,
)
from coderunner_sql.cli import main
from coderunner_sql.encryption import KeyRing, is_envelope
from coderunner_sql.errors import ConfigError, EncryptionError, QueryError
from coderunner_sql.health import database_health
from tests.plugins.secrets import register_secret
from tests.reliability.conftest import Figures, admin_connection


def new_key(kid: str) -> str:
    return f"{kid}:{base64.b64encode(os.urandom(32)).decode()}"


def secret_info(marker: str) -> dict[str, Any]:
    """Connection info whose every value is a registered secret."""
    return {
        "host": register_secret(f"db-{marker}.internal"),
        "password": register_secret(f"pw-{marker}-{uuid.uuid4().hex}"),
        "url": register_secret(f"postgresql://sandbox:{uuid.uuid4().hex}@db-{marker}/app"),
    }


def texts_of(*objects: Any) -> str:
    return "\n".join(f"{o!r}\n{o!s}" for o in objects)


# -- nothing leaks ---------------------------------------------------------------------


def test_no_secret_in_errors_reprs_health_or_logs(
    db: Any, db_config: DatabaseConfig, caplog: pytest.LogCaptureFixture, figures: Figures
) -> None:
    caplog.set_level(logging.DEBUG)
    password_hash = register_secret(f"argon2id$v=19$m=65536${uuid.uuid4().hex}")
    info = secret_info("leak")
    user = db.create_user(email=f"leak-{uuid.uuid4().hex}@example.com", password_hash=password_hash)
    project = db.create_project(user_id=user.id, name="leak")
    deployment = db.create_deployment(
        project_id=project.id, runtime_type="python", db_connection_info=info
    )
    errors: list[BaseException] = []
    # PostgreSQL's DETAIL would show the failing row, secrets and all: never let it through.
    for bad in (
        lambda: db.create_user(email="not-an-email", password_hash=password_hash),
        lambda: db.create_user(email=user.email.upper(), password_hash=password_hash),
        lambda: db.create_deployment(
            project_id=project.id, runtime_type="NOT VALID", db_connection_info=info
        ),
        lambda: db.create_deployment(
            project_id=uuid.uuid4(), runtime_type="python", db_connection_info=info
        ),
        lambda: db.create_deployments(
            [
                {"project_id": project.id, "runtime_type": "go", "db_connection_info": info},
                {"project_id": project.id, "runtime_type": "BAD", "db_connection_info": info},
            ]
        ),
        lambda: db.update_deployment(deployment.id, public_url="ftp://x", db_connection_info=info),
        lambda: db.update_user(user.id, email="bad", password_hash=password_hash),
        lambda: db.query("SELECT %s::int", [info["password"]]),
        lambda: db.query(
            "INSERT INTO users (email, password_hash) VALUES (%s, %s)", ["x", password_hash]
        ),
    ):
        with pytest.raises(DatabaseError) as caught:
            bad()
        errors.append(caught.value)
    details = db.get_deployment_with_details(deployment.id)
    health = db.health_check()
    everything = texts_of(
        user,
        deployment,
        details,
        db.get_project_with_user(project.id),
        db.get_users(),
        NewDeployment(project_id=project.id, runtime_type="go", db_connection_info=info),
        health,
        to_dict(user),
        to_dict(details),
        to_dict(health),
        db,
        db.for_user(user.id),
        *errors,
        *(e.args for e in errors),
    )
    for secret in (password_hash, *info.values()):
        assert secret not in everything
        assert secret not in caplog.text
    figures.add("secrets", secret_checks=len(errors) + 12)


def test_no_password_in_configs_connect_errors_or_health(secret: str, figures: Figures) -> None:
    config = DatabaseConfig.from_url(
        f"postgresql://app:{secret}@127.0.0.1:9/nowhere", connection_timeout_ms=1000
    )
    found = [repr(config), str(config), config.describe()]
    for call in (
        DatabaseService(config).connect,
        lambda: DatabaseConfig.from_url(f"mysql://app:{secret}@h/db"),
    ):
        with pytest.raises(DatabaseError) as caught:
            call()
        found.append(str(caught.value))
    found.append(texts_of(database_health(config), to_dict(database_health(config))))
    assert secret not in "\n".join(found)
    assert "***" in DatabaseConfig.from_url(f"postgresql://app:{secret}@h/db").describe()
    figures.add("secrets", secret_checks=len(found))


def run_cli(args: list[str], env: dict[str, str | None]) -> Any:
    cleared: dict[str, str | None] = {
        key: None for key in os.environ if key.startswith(("DATABASE_", "DB_", "CODERUNNER_SQL_"))
    }
    return CliRunner().invoke(main, args, env={**cleared, **env}, prog_name="coderunner-sql")


def test_no_secret_in_cli_output(db_config: DatabaseConfig, figures: Figures) -> None:
    password = register_secret(f"cli-{uuid.uuid4().hex}")
    url = db_config.replace(password=password).url()  # trust auth ignores it
    ring = new_key("k1")
    register_secret(ring.split(":", 1)[1])
    info = secret_info("cli")
    with DatabaseService(db_config) as service:
        user = service.create_user(
            email=f"cli-{uuid.uuid4().hex}@example.com",
            password_hash=register_secret(f"hash-{uuid.uuid4().hex}"),
        )
        project = service.create_project(user_id=user.id, name="cli")
        service.create_deployment(project_id=project.id, runtime_type="go", db_connection_info=info)
    outputs = []
    for args in (
        ["--database", url, "db", "health"],
        ["--database", url, "db", "health", "--json"],
        ["--database", url, "db", "stats", "--json"],
        ["--database", url, "migrate", "status"],
        ["-vv", "--database", url, "secrets", "rotate"],
    ):
        result = run_cli(args, {"CODERUNNER_SQL_ENCRYPTION_KEY": ring})
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    text = "\n".join(outputs)
    for secret in (password, ring, *info.values()):
        assert secret not in text
    assert "re-encrypted 1 deployment(s) under key k1" in text
    figures.add("secrets", secret_checks=len(outputs))


# -- encryption at rest -----------------------------------------------------------------


@pytest.fixture
def keyed(db_config: DatabaseConfig) -> tuple[DatabaseConfig, str]:
    """(a config whose key ring is one key "k1", that ring)."""
    ring = new_key("k1")
    register_secret(ring.split(":", 1)[1])
    return db_config.replace(encryption_key=ring), ring


def raw_column(config: DatabaseConfig) -> list[Any]:
    with admin_connection(config) as conn:
        return [row[0] for row in conn.execute("SELECT db_connection_info FROM deployments")]


def test_connection_info_is_encrypted_at_rest_and_read_back_everywhere(
    open_service: Any, keyed: tuple[DatabaseConfig, str], figures: Figures
) -> None:
    config, _ = keyed
    db = open_service(config)
    info = secret_info("rest")
    user = db.create_user(email=f"rest-{uuid.uuid4().hex}@example.com", password_hash="h")
    project = db.create_project(user_id=user.id, name="rest")
    one = db.create_deployment(project_id=project.id, runtime_type="go", db_connection_info=info)
    many = db.create_deployments(
        [{"project_id": project.id, "runtime_type": "go", "db_connection_info": info}] * 3
    )
    other = {"host": "db-2", "password": register_secret(f"upd-{uuid.uuid4().hex}")}
    updated = db.update_deployment(many[0].id, db_connection_info=other)
    with db.transaction() as tx:
        in_tx = tx.create_deployment(
            project_id=project.id, runtime_type="go", db_connection_info=info
        )
        assert tx.get_deployment_by_id(in_tx.id).db_connection_info == info
    # What the caller sees is the plaintext, however the row is read.
    assert one.db_connection_info == info
    assert [d.db_connection_info for d in many] == [info] * 3
    assert updated.db_connection_info == other
    assert db.get_deployment_by_id(one.id).db_connection_info == info
    assert db.get_deployment_with_details(one.id).deployment.db_connection_info == info
    listed = db.get_deployments_by_project_id(project.id).items
    assert sorted(json.dumps(d.db_connection_info, sort_keys=True) for d in listed) == sorted(
        json.dumps(i, sort_keys=True) for i in [info, info, info, other, info]
    )
    streamed = list(db.iter_deployments_by_status("PENDING"))
    assert len(streamed) == 5
    assert all(d.db_connection_info in (info, other) for d in streamed)
    # What the column holds is an envelope: no plaintext value anywhere in it.
    stored = raw_column(config)
    assert len(stored) == 5
    assert all(is_envelope(value) for value in stored)
    column = json.dumps(stored)
    for secret in (*info.values(), *other.values()):
        assert secret not in column
    # query() is raw SQL: it shows the envelope, never the plaintext.
    assert all(
        is_envelope(r["db_connection_info"])
        for r in db.query("SELECT db_connection_info FROM deployments")
    )
    figures.add("secrets", rows_encrypted=len(stored), operations=12)


def test_a_wrong_or_missing_key_is_a_clear_error(
    open_service: Any, keyed: tuple[DatabaseConfig, str], figures: Figures
) -> None:
    config, ring = keyed
    db = open_service(config)
    user = db.create_user(email=f"key-{uuid.uuid4().hex}@example.com", password_hash="h")
    project = db.create_project(user_id=user.id, name="key")
    deployment = db.create_deployment(
        project_id=project.id, runtime_type="go", db_connection_info=secret_info("key")
    )
    wrong_material = new_key("k1")  # same key id, other key: GCM's tag check refuses it
    cases = {
        "no key": (config.replace(encryption_key=None), "is not set"),
        "wrong key": (config.replace(encryption_key=wrong_material), "key is wrong"),
        "unknown key id": (config.replace(encryption_key=new_key("k9")), "'k1'"),
    }
    for name, (other_config, message) in cases.items():
        other = open_service(other_config)
        for read in (
            lambda o=other: o.get_deployment_by_id(deployment.id),
            lambda o=other: o.get_deployments_by_project_id(project.id),
            lambda o=other: o.get_deployment_with_details(deployment.id),
        ):
            with pytest.raises(EncryptionError, match=message) as caught:
                read()
            assert "\n" not in str(caught.value), name
        # Rows without connection info still read fine.
        assert other.get_user_by_id(user.id) == user
    # Plaintext may not pose as an envelope, and a malformed ring fails at configuration.
    with pytest.raises(ValidationError, match="reserved key"):
        db.create_deployment(
            project_id=project.id, runtime_type="go", db_connection_info={"$encrypted": {}}
        )
    for bad_ring in ("k1", "k1:short", "bad id:" + ring.split(":")[1], f"{ring},{ring}"):
        with pytest.raises(ConfigError):
            config.replace(encryption_key=bad_ring)
    assert "key" not in repr(KeyRing.parse(ring)).replace("KeyRing", "")
    figures.add("secrets", wrong_key_reads_refused=9)


def test_rotation_re_encrypts_every_row_under_the_newest_key_in_batches(
    db_config: DatabaseConfig, figures: Figures
) -> None:
    old, new = new_key("2026-10"), new_key("2026-11")
    for entry in (old, new):
        register_secret(entry.split(":", 1)[1])
    info = secret_info("rotate")
    with DatabaseService(db_config) as plain:  # rows written before encryption was turned on
        user = plain.create_user(email=f"rot-{uuid.uuid4().hex}@example.com", password_hash="h")
        project = plain.create_project(user_id=user.id, name="rot")
        plain.create_deployments(
            [{"project_id": project.id, "runtime_type": "go", "db_connection_info": info}] * 10
        )
        plain.create_deployment(project_id=project.id, runtime_type="go")  # no info: untouched
    with DatabaseService(db_config.replace(encryption_key=old)) as first:
        first.create_deployments(
            [{"project_id": project.id, "runtime_type": "go", "db_connection_info": info}] * 20
        )
    both = db_config.replace(encryption_key=f"{old},{new}")
    with DatabaseService(both) as service:
        report = service.rotate_encryption_key(batch_size=7)
        assert (report.kid, report.rewritten, report.batches) == ("2026-11", 30, 5)
        again = service.rotate_encryption_key(batch_size=7)
        assert (again.rewritten, again.batches) == (0, 0)
    kids = [v["$encrypted"]["kid"] for v in raw_column(db_config) if v is not None]
    assert kids == ["2026-11"] * 30
    with DatabaseService(db_config.replace(encryption_key=new)) as newest_only:
        page = newest_only.get_deployments_by_project_id(project.id, limit=100)
        assert sum(d.db_connection_info == info for d in page.items) == 30
    with DatabaseService(db_config) as no_key, pytest.raises(EncryptionError):
        no_key.rotate_encryption_key()
    figures.add("secrets", rows_rotated=report.rewritten, rotation_batches=report.batches)


def test_rotation_stops_at_a_row_no_key_opens(db_config: DatabaseConfig, figures: Figures) -> None:
    lost, kept = new_key("lost"), new_key("kept")
    with DatabaseService(db_config.replace(encryption_key=lost)) as service:
        user = service.create_user(email=f"stop-{uuid.uuid4().hex}@example.com", password_hash="h")
        project = service.create_project(user_id=user.id, name="stop")
        service.create_deployment(
            project_id=project.id, runtime_type="go", db_connection_info=secret_info("stop")
        )
    before = raw_column(db_config)
    with (
        DatabaseService(db_config.replace(encryption_key=kept)) as service,
        pytest.raises(EncryptionError, match="'lost'"),
    ):
        service.rotate_encryption_key()
    assert raw_column(db_config) == before  # the batch rolled back: nothing half-rotated
    figures.add("secrets", rotation_refusals=1)


def test_psycopg_errors_keep_their_detail_away(db_config: DatabaseConfig) -> None:
    """The reason the library drops DETAIL: PostgreSQL really puts the row in it."""
    secret = register_secret(f"detail-{uuid.uuid4().hex}")
    with admin_connection(db_config) as conn, pytest.raises(psycopg.errors.CheckViolation) as raw:
        conn.execute("INSERT INTO users (email, password_hash) VALUES ('bad', %s)", [secret])
    assert secret in str(raw.value.diag.message_detail)


# -- connection info other clients wrote that is not an object ------------------------------

FOREIGN_INFOS = {
    "array": '[["host", "db-foreign"], ["password", "pw"]]',
    "empty array": "[]",
    "string": '"host=db-foreign password=pw"',
    "number": "5432",
    "boolean": "true",
}


def test_connection_info_that_is_not_an_object_is_never_passed_off_as_one(
    open_service: Any, keyed: tuple[DatabaseConfig, str], figures: Figures
) -> None:
    config, _ = keyed
    plain = open_service(config.replace(encryption_key=None))
    user = plain.create_user(email=f"foreign-{uuid.uuid4().hex}@example.com", password_hash="h")
    project = plain.create_project(user_id=user.id, name="foreign")
    info = secret_info("foreign")
    kept = plain.create_deployment(
        project_id=project.id, runtime_type="go", db_connection_info=info
    )

    def insert(value: str) -> uuid.UUID:
        row = plain.query(
            "INSERT INTO deployments (project_id, runtime_type, db_connection_info)"
            " VALUES (%s, 'go', %s::jsonb) RETURNING id",
            [project.id, value],
        )
        return uuid.UUID(str(row[0]["id"]))

    foreign = {kind: insert(value) for kind, value in FOREIGN_INFOS.items()}
    json_null = insert("null")

    def reads_refused(service: Any) -> None:
        for kind, did in foreign.items():
            for read in (
                lambda d=did: service.get_deployment_by_id(d),
                lambda d=did: service.get_deployment_with_details(d),
            ):
                with pytest.raises(QueryError, match="not a JSON object") as caught:
                    read()
                assert kind.split()[-1] in str(caught.value)
        # A listing holding such a row says so rather than hand out a made-up dict.
        with pytest.raises(QueryError, match="not a JSON object"):
            service.get_deployments_by_project_id(project.id)
        # JSON null is no connection info, as SQL NULL is.
        assert service.get_deployment_by_id(json_null).db_connection_info is None

    reads_refused(plain)

    def stored() -> dict[uuid.UUID, Any]:
        with admin_connection(config) as conn:
            return dict(conn.execute("SELECT id, db_connection_info FROM deployments").fetchall())

    before = stored()
    service = open_service(config)
    report = service.rotate_encryption_key(batch_size=2)
    # Rotation seals objects only; what is not one is left exactly as it was, and counted.
    assert (report.rewritten, report.skipped) == (1, len(foreign) + 1)
    after = stored()
    assert is_envelope(after[kept.id])
    assert {k: v for k, v in after.items() if k != kept.id} == {
        k: v for k, v in before.items() if k != kept.id
    }
    assert service.get_deployment_by_id(kept.id).db_connection_info == info
    reads_refused(service)
    again = service.rotate_encryption_key()
    assert (again.rewritten, again.skipped) == (0, len(foreign) + 1)
    figures.add("secrets", foreign_infos_left_alone=len(foreign) + 1)


# -- nothing reachable from an error holds a bound value or a DETAIL ---------------------------


def reachable(error: BaseException) -> list[str]:
    """Every text reachable from `error`: its chain (context and cause), each one's args,
    attributes, notes, diagnostics and result; the raised error's own frames are the caller's."""
    texts: list[str] = []
    seen: set[int] = set()
    todo: list[Any] = [error]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, str | bytes):
            texts.append(item if isinstance(item, str) else item.decode("utf-8", "replace"))
        elif isinstance(item, list | tuple | set | frozenset):
            todo.extend(item)
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, BaseException):
            texts += [str(item), repr(item)]
            todo += [item.__context__, item.__cause__, item.args, vars(item)]
            todo.append(getattr(item, "__notes__", None))
            if item is not error:
                # A chained error's frames are the driver's and the library's, with the
                # statement's parameters in their locals.
                assert item.__traceback__ is None, f"{type(item).__name__} keeps its frames"
            if isinstance(item, UnicodeError):
                todo.append(getattr(item, "object", None))
            if isinstance(item, psycopg.Error):
                todo += [getattr(item.diag, f.name.lower(), None) for f in DiagnosticField]
                result = item.pgresult
                if result is not None:
                    todo.append(result.error_message)
                    todo += [result.error_field(f) for f in DiagnosticField]
        elif hasattr(item, "__dict__") and type(item).__module__.startswith("psycopg"):
            todo.append(vars(item))
    return texts


def test_no_bound_value_or_detail_is_reachable_from_an_error(db: Any, figures: Figures) -> None:
    secret = register_secret(f"bound{uuid.uuid4().hex}")
    password_hash = register_secret(f"argon2id$detail-{uuid.uuid4().hex}")
    email = register_secret(f"taken-{uuid.uuid4().hex}@example.com")
    user = db.create_user(email=email, password_hash="h")
    project = db.create_project(user_id=user.id, name="reach")
    info = secret_info("reach")
    deployment = db.create_deployment(
        project_id=project.id, runtime_type="go", db_connection_info=info
    )
    calls = {
        # DETAIL: Key (lower(email))=(…) already exists.
        "unique violation": lambda: db.create_user(email=email.upper(), password_hash="h"),
        # DETAIL: Failing row contains (…, password_hash, …).
        "check violation": lambda: db.create_user(email="bad", password_hash=password_hash),
        "check violation, deployment": lambda: db.update_deployment(
            deployment.id, public_url="ftp://x", db_connection_info=info
        ),
        # The server quotes the value in its primary message.
        "regclass": lambda: db.query("SELECT %s::regclass", [secret]),
        "regrole": lambda: db.query("SELECT %s::regrole", [secret]),
        "nextval": lambda: db.query("SELECT nextval(%s)", [secret]),
        "current_setting": lambda: db.query("SELECT current_setting(%s)", [secret]),
        "set_config": lambda: db.query("SELECT set_config('work_mem', %s, true)", [secret]),
        "integer": lambda: db.query("SELECT %s::int", [secret]),
        "named": lambda: db.query("SELECT %(v)s::regproc", {"v": secret}),
        "in a transaction": lambda: db.execute_in_transaction(
            lambda tx: tx.query("SELECT %s::regtype", [secret])
        ),
        "not UTF-8": lambda: db.query("SELECT %s::text", [secret + "\ud800"]),
    }
    for name, call in calls.items():
        with pytest.raises(DatabaseError) as caught:
            call()
        texts = "\n".join(reachable(caught.value))
        for value in (secret, password_hash, email, email.upper(), *info.values()):
            assert value not in texts, f"{name}: {value} reachable from {caught.value!r}"
    figures.add("secrets", error_chains_walked=len(calls))


def test_rotation_seals_plaintext_of_any_depth(
    open_service: Any, keyed: tuple[DatabaseConfig, str]
) -> None:
    config, _ = keyed
    plain = open_service(config.replace(encryption_key=None))
    user = plain.create_user(email=f"depth-{uuid.uuid4().hex}@example.com", password_hash="h")
    project = plain.create_project(user_id=user.id, name="depth")
    password = register_secret(f"deep-{uuid.uuid4().hex}")
    rows = plain.query(
        "INSERT INTO deployments (project_id, runtime_type, db_connection_info)"
        " VALUES (%s, 'go', %s::jsonb) RETURNING id",
        [project.id, '{"a":' * 3000 + json.dumps({"password": password}) + "}" * 3000],
    )
    did = uuid.UUID(str(rows[0]["id"]))
    service = open_service(config)
    assert service.rotate_encryption_key().rewritten == 1
    assert password not in json.dumps(raw_column(config))
    found = service.get_deployment_by_id(did).db_connection_info
    for _ in range(3000):
        found = found["a"]
    assert found == {"password": password}
