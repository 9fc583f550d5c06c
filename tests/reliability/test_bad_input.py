"""Bad input, property-based: every public method, fed what it must refuse.

The promise: NUL bytes, over-long strings, malformed UUIDs, unknown enum values, negative
and huge limits, garbage cursors, non-JSON connection info and wrongly typed arguments
each raise `ValidationError` (or another clear `DatabaseError`): never a raw driver or
Python error, never a traceback into psycopg, and never a half-written row. And values
that are merely nasty (SQL injection, quotes, backslashes, any Unicode) are stored and read
back byte for byte, with the schema intact afterwards.

Hypothesis draws a method and one bad argument at a time; the other arguments are valid,
so the bad one is what must be refused. One database per test function, not per example.
"""

from __future__ import annotations

import base64
import inspect
import json
import math
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coderunner_sql import (
    DatabaseConfig,
    DatabaseError,
    DeploymentStatus,
    PlanType,
    ValidationError,
    to_dict,
)
from coderunner_sql.validation import MAX_JSON_DEPTH
from tests.reliability.conftest import Figures

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples every run: CI is not a lottery
    database=None,  # no .hypothesis folder in the tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def nested(depth: int, leaf: Any = 1) -> dict[str, Any]:
    """A JSON object `depth` levels deep: {"a": {"a": … leaf}}, built without recursion."""
    value: Any = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def depth_of(value: Any) -> tuple[int, Any]:
    """(how many objects deep `value` is along key "a", the leaf), without recursion."""
    depth = 0
    while isinstance(value, dict):
        depth, value = depth + 1, value["a"]
    return depth, value


def _not_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        return True
    return False


# -- strategies of values each kind of argument must refuse ---------------------------------

with_nul = st.text(max_size=12).map(lambda t: t[:4] + "\x00" + t[4:])
# A lone surrogate is a Python str but no UTF-8: nothing PostgreSQL can store.
with_surrogate = st.sampled_from(["\ud800", "a\udfffb", "\udc80@example.com"])
not_text = st.one_of(
    st.integers(),
    st.floats(allow_nan=True),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.booleans(),
    st.just(object()),
)
bad_id = st.one_of(
    st.text(max_size=40).filter(_not_uuid),
    st.just(str(uuid.uuid4()) + "0"),
    st.just("{" + str(uuid.uuid4())[:-1]),
    st.integers(),
    st.binary(max_size=16),
    st.none(),
    st.floats(allow_nan=True),
)
bad_limit = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=1001),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=4),
    st.none(),
)
bad_offset = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=2**62 + 1),
    st.floats(allow_nan=True),
    st.text(max_size=4),
)
bad_cursor = st.one_of(st.text(max_size=60), st.integers(), st.binary(max_size=20)).filter(
    lambda c: c != ""
)


def bad_enum(enum: type[Any]) -> st.SearchStrategy[Any]:
    values = {member.value for member in enum}
    return st.one_of(
        st.text(max_size=12).filter(lambda t: t not in values),
        st.sampled_from([v.upper() if v.islower() else v.lower() for v in values]),
        st.integers(),
        st.none(),
    )


def too_long(limit: int, alphabet: str = "abc") -> st.SearchStrategy[str]:
    return st.integers(min_value=limit + 1, max_value=limit + 300).map(
        lambda n: (alphabet * (n // len(alphabet) + 1))[:n]
    )


bad_email = st.one_of(
    with_nul,
    with_surrogate,
    not_text,
    too_long(250).map(lambda local: f"{local}@example.com"),
    st.text(max_size=30).filter(lambda t: "@" not in t),
    st.sampled_from(["a@b", "@example.com", "a b@example.com", "a@@b.com", "a@b .com"]),
)
bad_password_hash = st.one_of(with_nul, with_surrogate, not_text, st.just(""), too_long(1024))
bad_name = st.one_of(with_nul, with_surrogate, not_text, st.just(""), too_long(100))
bad_description = st.one_of(
    with_nul, with_surrogate, not_text.filter(lambda v: v is not None), too_long(10_000)
)
bad_runtime = st.one_of(
    with_nul,
    with_surrogate,
    not_text,
    st.just(""),
    too_long(32),
    st.sampled_from(["Python", "1node", "py thon", "py;DROP TABLE users", "-x", "ruby!"]),
)
bad_url = st.one_of(
    with_nul,
    with_surrogate,
    not_text,
    st.sampled_from(["ftp://x.io", "javascript:alert(1)", "http://", "https://a b.io", "x"]),
    too_long(2048).map(lambda path: f"https://example.com/{path}"),
)
bad_sandbox = st.one_of(with_nul, with_surrogate, not_text, too_long(255))
bad_connection_info = st.one_of(
    st.just({"host": object()}),
    st.just({"port": float("nan")}),
    st.just({"port": float("inf")}),
    st.just({"tags": {1, 2}}),
    st.just({"raw": b"bytes"}),
    st.just({"when": datetime.now(UTC)}),
    st.just({"nested": {"deep": [1, object()]}}),
    st.just({"password": "a\x00b"}),
    st.just({"$encrypted": {"kid": "k1", "ct": "forged"}}),
    st.just({"password": "a\ud800b"}),
    st.integers(min_value=65, max_value=3000).map(lambda depth: nested(depth)),
    st.lists(st.integers(), max_size=3),
    st.text(max_size=10),
    st.integers(),
)


# -- the calls: method name -> (valid arguments, {argument: strategy of bad values}) --------


def calls(seed: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Each public method with valid arguments, and what each argument must refuse."""
    uid, pid, did = seed["user"].id, seed["project"].id, seed["deployment"].id
    paging = {"limit": bad_limit, "offset": bad_offset, "after": bad_cursor}
    return {
        "create_user": (
            {"email": f"new-{uuid.uuid4().hex}@example.com", "password_hash": "h"},
            {
                "email": bad_email,
                "password_hash": bad_password_hash,
                "plan_type": bad_enum(PlanType),
            },
        ),
        "get_user_by_id": ({"id": uid}, {"id": bad_id}),
        "get_user_by_email": (
            {"email": "a@example.com"},
            {"email": st.one_of(with_nul, with_surrogate, not_text)},
        ),
        "update_user": (
            {"id": uid},
            {
                "id": bad_id,
                "email": bad_email,
                "password_hash": bad_password_hash,
                "plan_type": bad_enum(PlanType),
            },
        ),
        "delete_user": ({"id": uid}, {"id": bad_id}),
        "get_users": ({}, paging),
        "create_project": (
            {"user_id": uid, "name": f"p-{uuid.uuid4().hex}"},
            {"user_id": bad_id, "name": bad_name, "description": bad_description},
        ),
        "get_project_by_id": ({"id": pid}, {"id": bad_id}),
        "get_projects_by_user_id": ({"user_id": uid}, {"user_id": bad_id, **paging}),
        "update_project": (
            {"id": pid},
            {"id": bad_id, "name": bad_name, "description": bad_description},
        ),
        "delete_project": ({"id": pid}, {"id": bad_id}),
        "get_project_with_user": ({"id": pid}, {"id": bad_id}),
        "create_deployment": (
            {"project_id": pid, "runtime_type": "python"},
            {
                "project_id": bad_id,
                "runtime_type": bad_runtime,
                "app_sandbox_id": bad_sandbox,
                "public_url": bad_url,
                "db_sandbox_id": bad_sandbox,
                "db_connection_info": bad_connection_info,
                "status": bad_enum(DeploymentStatus),
            },
        ),
        "get_deployment_by_id": ({"id": did}, {"id": bad_id}),
        "get_deployments_by_project_id": ({"project_id": pid}, {"project_id": bad_id, **paging}),
        "get_deployments_by_status": (
            {"status": "PENDING"},
            {"status": bad_enum(DeploymentStatus), **paging},
        ),
        "iter_deployments_by_status": (
            {"status": "PENDING"},
            {"status": bad_enum(DeploymentStatus), "batch_size": bad_limit},
        ),
        "update_deployment_status": (
            {"id": did, "status": "RUNNING"},
            {
                "id": bad_id,
                "status": bad_enum(DeploymentStatus),
                "expected": bad_enum(DeploymentStatus).filter(lambda v: v is not None),
            },
        ),
        "update_deployment": (
            {"id": did},
            {
                "id": bad_id,
                "runtime_type": bad_runtime,
                "app_sandbox_id": bad_sandbox,
                "public_url": bad_url,
                "db_sandbox_id": bad_sandbox,
                "db_connection_info": bad_connection_info,
                "status": bad_enum(DeploymentStatus),
            },
        ),
        "delete_deployment": ({"id": did}, {"id": bad_id}),
        "get_deployment_with_details": ({"id": did}, {"id": bad_id}),
        "get_running_deployment_count_by_user": ({"user_id": uid}, {"user_id": bad_id}),
        "create_deployments": (
            {"items": [{"project_id": pid, "runtime_type": "python"}]},
            {
                "items": st.one_of(
                    st.just({"project_id": pid, "runtime_type": "python"}),
                    st.just("not a list"),
                    st.none(),
                    st.integers(),
                    st.just(object()),
                    st.just([1, 2]),
                    st.just([{"project_id": pid}]),
                    st.just([{"project_id": pid, "runtime_type": "python", "colour": "red"}]),
                    bad_runtime.map(
                        lambda r: [
                            {"project_id": pid, "runtime_type": "go"},
                            {"project_id": pid, "runtime_type": r},
                        ]
                    ),
                    bad_connection_info.map(
                        lambda i: [
                            {"project_id": pid, "runtime_type": "go"},
                            {"project_id": pid, "runtime_type": "go", "db_connection_info": i},
                        ]
                    ),
                )
            },
        ),
        "query": (
            {"sql": "SELECT %s::text AS x", "params": ["ok"]},
            {
                "sql": st.one_of(with_nul, with_surrogate, not_text, st.just("SELEC nonsense")),
                "params": st.one_of(
                    st.just("a string"),
                    st.just(b"bytes"),
                    st.integers(),
                    st.just(["a\x00b"]),
                    st.just(["a\ud800b"]),
                    st.just([object()]),
                    st.just({"unused": 1}),
                ),
            },
        ),
        "for_user": ({"user_id": uid}, {"user_id": bad_id}),
    }


def invoke(db: Any, method: str, args: dict[str, Any]) -> Any:
    fn = getattr(db, method)
    if method == "iter_deployments_by_status":
        return list(fn(**args))
    if method == "for_user":
        return fn(**args).get_user_by_id(args["user_id"])
    return fn(**args)


def counts(db: Any) -> tuple[int, ...]:
    row = db.query(
        "SELECT (SELECT count(*) FROM users) AS u, (SELECT count(*) FROM projects) AS p,"
        " (SELECT count(*) FROM deployments) AS d"
    )[0]
    return (row["u"], row["p"], row["d"])


def seed_rows(db: Any) -> dict[str, Any]:
    user = db.create_user(email=f"seed-{uuid.uuid4().hex}@example.com", password_hash="h")
    project = db.create_project(user_id=user.id, name="seed")
    deployment = db.create_deployment(project_id=project.id, runtime_type="python")
    return {"user": user, "project": project, "deployment": deployment}


def assert_clear_error(exc: BaseException) -> None:
    assert isinstance(exc, DatabaseError), f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    assert not isinstance(exc, psycopg.Error)
    assert exc.__cause__ is None
    assert exc.__suppress_context__ or exc.__context__ is None
    text = str(exc)
    assert text
    assert "\n" not in text.strip(), "one line"
    assert "Traceback" not in text


@st.composite
def one_bad_call(draw: Callable[..., Any], table: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    method = draw(st.sampled_from(sorted(table)))
    valid, bad = table[method]
    name = draw(st.sampled_from(sorted(bad)))
    args = dict(valid)
    args[name] = draw(bad[name])
    return method, args


def test_every_public_method_refuses_bad_input_cleanly(db: Any, figures: Figures) -> None:
    seed = seed_rows(db)
    table = calls(seed)
    before = counts(db)
    tried: list[str] = []

    @settings(SETTINGS, max_examples=400)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        method, args = data.draw(one_bad_call(table))
        tried.append(method)
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the checks follow
            invoke(db, method, args)
        assert_clear_error(caught.value)
        assert counts(db) == before, f"{method} wrote a row before refusing"

    check()
    # Every method was fed something bad; and the seeded rows are untouched.
    assert set(tried) == set(table)
    assert db.get_user_by_id(seed["user"].id) == seed["user"]
    figures.add("bad_input", bad_inputs=len(tried), operations=len(tried), rows_lost=0)


# -- nasty but valid: stored and read back byte for byte --------------------------------

INJECTIONS = [
    "'; DROP TABLE users; --",
    "\"; DELETE FROM projects WHERE '1'='1",
    "Robert'); DROP TABLE deployments;--",
    "1 OR 1=1",
    "$$; SELECT pg_sleep(10); $$",
    "%s %(name)s %%",
    ":name ::uuid",
    "\\x00 \\' \\\\",
    "\\u0000 is not a NUL",
    "\u202eevil\u202c",
    "💥🐘 ünïcödé",
    "--",
    "/* comment */",
]
nasty_text = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(
        alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=60,
    ),
)
email_local = st.one_of(
    st.sampled_from(["o'brien", "x'--", "a;drop", "%s", "a\\b", "ü", "1=1", '"q"']),
    st.text(
        alphabet=st.characters(
            blacklist_characters="\x00@", blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")
        ),
        min_size=1,
        max_size=20,
    ),
)
json_value = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**53), max_value=2**53),
        nasty_text,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(nasty_text, inner, max_size=3)
    ),
    max_leaves=8,
)


def test_nasty_values_are_stored_and_read_back_byte_for_byte(db: Any, figures: Figures) -> None:
    stored = 0

    @SETTINGS
    @given(
        local=email_local,
        password_hash=nasty_text,
        name=nasty_text.map(lambda t: t[:100]),
        description=nasty_text,
        sandbox=nasty_text,
        info=st.dictionaries(nasty_text, json_value, max_size=4),
        query_text=nasty_text,
    )
    def check(
        local: str,
        password_hash: str,
        name: str,
        description: str,
        sandbox: str,
        info: dict[str, Any],
        query_text: str,
    ) -> None:
        nonlocal stored
        email = f"{local}-{uuid.uuid4().hex[:6]}@example.com"
        user = db.create_user(email=email, password_hash=password_hash)
        project = db.create_project(user_id=user.id, name=name, description=description)
        deployment = db.create_deployment(
            project_id=project.id,
            runtime_type="python",
            app_sandbox_id=sandbox,
            db_connection_info=info,
        )
        found = db.get_deployment_with_details(deployment.id)
        assert found.user.email == email
        assert found.user.password_hash == password_hash
        assert found.project.name == name
        assert found.project.description == description
        assert found.deployment.app_sandbox_id == sandbox
        assert found.deployment.db_connection_info == info
        assert db.get_user_by_email(email) == user
        assert db.query("SELECT %s::text AS t", [query_text]) == [{"t": query_text}]
        stored += 1

    check()
    # The schema is as the migrations left it: every table there, every row counted.
    tables = db.query(
        "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'"
        " AND tablename IN ('users', 'projects', 'deployments')"
    )
    assert tables == [{"n": 3}]
    assert counts(db) == (stored, stored, stored)
    figures.add("bad_input", nasty_values_round_tripped=stored * 8, operations=stored * 10)


def test_non_finite_numbers_never_reach_json() -> None:
    # Python's json writes NaN and Infinity, which are not JSON: refused before the server.
    from coderunner_sql.validation import as_json_object

    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(DatabaseError):
            as_json_object({"x": value}, "db_connection_info")


# -- values too deep, or not UTF-8: refused as the caller's mistake ---------------------------


def refused_calls(db: Any, seed: dict[str, Any]) -> list[Callable[[], Any]]:
    """Calls with a value too deep, not UTF-8, or no list at all: each a `ValidationError`."""
    uid, pid, did = seed["user"].id, seed["project"].id, seed["deployment"].id
    calls: list[Callable[[], Any]] = []
    for info in (
        nested(MAX_JSON_DEPTH + 1),
        nested(1000),
        nested(5000),
        {"password": "pw-\ud800"},
        {"\udfff": "key"},
        {"list": [nested(MAX_JSON_DEPTH)]},
    ):
        calls += [
            lambda i=info: db.create_deployment(
                project_id=pid, runtime_type="go", db_connection_info=i
            ),
            lambda i=info: db.update_deployment(did, db_connection_info=i),
            lambda i=info: db.create_deployments(
                [{"project_id": pid, "runtime_type": "go", "db_connection_info": i}]
            ),
        ]
    for text in ("\ud800", "a\udfffb@example.com"):
        calls += [
            lambda t=text: db.create_user(email=t, password_hash="h"),
            lambda t=text: db.create_user(email="s@example.com", password_hash=t),
            lambda t=text: db.get_user_by_email(t),
            lambda t=text: db.create_project(user_id=uid, name=t),
            lambda t=text: db.update_deployment(did, public_url=t),
            lambda t=text: db.create_deployment(project_id=pid, runtime_type=t),
            lambda t=text: db.query("SELECT %s::text AS x", [t]),
            lambda t=text: db.query(f"SELECT '{t}' AS x"),
        ]
    return [*calls, lambda: db.create_deployments(None), lambda: db.create_deployments(5)]


def test_too_deep_or_non_utf8_values_are_validation_errors(
    open_service: Any, db_config: DatabaseConfig, figures: Figures
) -> None:
    ring = "k1:" + base64.b64encode(bytes(range(32))).decode()
    refused = 0
    for config in (db_config, db_config.replace(encryption_key=ring)):
        db = open_service(config)
        seed = seed_rows(db)
        before = counts(db)
        for call in refused_calls(db, seed):
            with pytest.raises(DatabaseError) as caught:
                call()
            assert_clear_error(caught.value)
            assert isinstance(caught.value, ValidationError), repr(caught.value)
            refused += 1
        assert counts(db) == before
        # The limit itself is fine, and reads back as written.
        deep = db.create_deployment(
            project_id=seed["project"].id,
            runtime_type="go",
            db_connection_info=nested(MAX_JSON_DEPTH),
        )
        found = db.get_deployment_by_id(deep.id).db_connection_info
        assert depth_of(found) == (MAX_JSON_DEPTH, 1)
    figures.add("bad_input", bad_inputs=refused, operations=refused)


def insert_raw_deployment(db: Any, project_id: Any, info_json: str) -> uuid.UUID:
    """A deployment row written as another client would, by raw SQL; its id."""
    rows = db.query(
        "INSERT INTO deployments (project_id, runtime_type, db_connection_info)"
        " VALUES (%s, 'go', %s::jsonb) RETURNING id",
        [project_id, info_json],
    )
    return uuid.UUID(str(rows[0]["id"]))


def every_read(db: Any, seed: dict[str, Any], did: uuid.UUID) -> list[Any]:
    """The db_connection_info of row `did` through every read that returns it."""
    pid = seed["project"].id
    listed = db.get_deployments_by_project_id(pid).items
    by_status = db.get_deployments_by_status("PENDING", limit=1000).items
    streamed = list(db.iter_deployments_by_status("PENDING", batch_size=1))
    with db.transaction() as tx:
        in_tx = tx.get_deployment_by_id(did)
    raw = db.query("SELECT * FROM deployments WHERE id = %s", [did])
    scoped = db.for_user(seed["user"].id).get_deployment_by_id(did)
    return [
        db.get_deployment_by_id(did).db_connection_info,
        db.get_deployment_with_details(did).deployment.db_connection_info,
        next(d for d in listed if d.id == did).db_connection_info,
        next(d for d in by_status if d.id == did).db_connection_info,
        next(d for d in streamed if d.id == did).db_connection_info,
        in_tx.db_connection_info,
        raw[0]["db_connection_info"],
        scoped.db_connection_info if scoped is not None else nested(3000),
    ]


def test_rows_stored_deep_by_other_clients_read_everywhere(db: Any, figures: Figures) -> None:
    seed = seed_rows(db)
    did = insert_raw_deployment(db, seed["project"].id, '{"a":' * 3000 + "1" + "}" * 3000)
    values = every_read(db, seed, did)
    assert [depth_of(v) for v in values] == [(3000, 1)] * len(values)
    # The other rows of the listing are there too: one deep row breaks nobody's page.
    assert len(db.get_deployments_by_project_id(seed["project"].id).items) == 2
    # And to_dict, which walks the value, copes with it.
    plain = to_dict(db.get_deployment_by_id(did), secrets=True)
    assert depth_of(plain["db_connection_info"]) == (3000, 1)
    figures.add("bad_input", deep_rows_read=len(values), operations=len(values))


def test_values_read_from_a_deep_call_stack(db: Any) -> None:
    # 900 levels were accepted before the write limit existed: such rows are still read.
    seed = seed_rows(db)
    limit = db.create_deployment(
        project_id=seed["project"].id,
        runtime_type="go",
        db_connection_info=nested(MAX_JSON_DEPTH),
    )
    older = insert_raw_deployment(db, seed["project"].id, '{"a":' * 900 + "1" + "}" * 900)
    headroom = 150  # frames the read itself needs, through the service and psycopg

    def at_depth(left: int, did: uuid.UUID) -> Any:
        if left > 0:
            return at_depth(left - 1, did)
        return db.get_deployment_by_id(did).db_connection_info

    used = len(inspect.stack(0))
    for did, depth in ((limit.id, MAX_JSON_DEPTH), (older, 900)):
        found = at_depth(sys.getrecursionlimit() - used - headroom, did)
        assert depth_of(found) == (depth, 1)


def test_deep_rows_of_any_content_read_back_exactly(db: Any, figures: Figures) -> None:
    # Deeper than the call stack: every value is read by the parser that does not recurse.
    seed = seed_rows(db)
    read = 0

    @settings(SETTINGS, max_examples=60)
    @given(inner=st.dictionaries(nasty_text, json_value, max_size=4))
    def check(inner: dict[str, Any]) -> None:
        nonlocal read
        text = '{"a":' * 1500 + json.dumps(inner) + "}" * 1500
        did = insert_raw_deployment(db, seed["project"].id, text)
        found = db.get_deployment_by_id(did).db_connection_info
        for _ in range(1500):
            found = found["a"]
        assert found == inner
        read += 1

    check()
    figures.add("bad_input", deep_rows_read=read, operations=read)
