"""What `coderunner-sql check` used to let through, each caught now (issue 15).

Like tests/test_check.py, each test edits a private copy of `queries/` and `migrations/`
and checks it on the test server.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from coderunner_sql import DatabaseConfig
from coderunner_sql.check import CheckReport, Problem, run_check
from coderunner_sql.check._records import Field, PgType, type_problem
from coderunner_sql.codegen import generate
from coderunner_sql.records import PlanType
from tests.test_check import Checkout, check, find, line_of, new_problems

USER_BY_ID = (
    "SELECT id, email, password_hash, plan_type, created_at, updated_at\n"
    "FROM users\nWHERE id = :id;"
)

SIGNUP_RECORDS = '''\
"""A record with a date field."""

from datetime import date
from uuid import UUID

import attrs


@attrs.frozen
class Signup:
    """The day a user signed up."""

    id: UUID
    day: date
'''


@pytest.fixture
def checkout(tmp_path: Path) -> Checkout:
    """Copies of the queries and migrations folders, for one edit."""
    return Checkout(tmp_path)


@pytest.fixture(scope="module")
def clean_report(pg_admin_config: DatabaseConfig) -> CheckReport:
    """The check of the tree as it is (its own problems, if any, are not these tests')."""
    return run_check(pg_admin_config)


@pytest.fixture
def generated(pg_admin_config: DatabaseConfig, checkout: Checkout) -> Path:
    """The module `generate` writes for the copies, where `check` looks by default."""
    module = checkout.queries.parent / "queries.py"
    report = generate(
        pg_admin_config, queries=checkout.queries, migrations=checkout.migrations, out=module
    )
    assert report.ok, "\n".join(map(str, report.problems))
    return module


def stale(problems: list[Problem], module: Path) -> list[Problem]:
    """The problems that say a query's code in `module` is out of date."""
    return [p for p in problems if p.kind == "generated-stale" and p.file == str(module)]


# -- (a) a column of a subclass or a superclass of the field's type ---------------------------


@pytest.mark.parametrize(
    ("pg", "annotation"),
    [
        ("date", datetime),  # date is not a datetime: no time, no zone
        ("timestamptz", date),  # a datetime is a date to Python, a different value to a reader
        ("timestamp", date),
    ],
)
def test_a_related_but_different_type_does_not_fit(pg: str, annotation: Any) -> None:
    field = Field(("x",), "Record", (annotation,), optional=False, required=True)
    problem = type_problem(PgType(0, pg, pg, "b"), field)
    assert problem is not None
    assert problem.startswith(f"is {pg}, but Record.x is {annotation.__name__}")


def test_an_enum_still_fits_its_enum_type_and_exact_types_still_fit() -> None:
    enum_type = PgType(0, "plan_type", "plan_type", "e", labels=tuple(p.value for p in PlanType))
    plan = Field(("plan",), "User", (PlanType,), optional=False, required=True)
    assert type_problem(enum_type, plan) is None
    for pg, annotation in (("timestamptz", datetime), ("date", date)):
        field = Field(("x",), "Record", (annotation,), optional=False, required=True)
        assert type_problem(PgType(0, pg, pg, "b"), field) is None


def test_a_date_column_filling_a_datetime_field(
    pg_admin_config: DatabaseConfig, checkout: Checkout, clean_report: CheckReport
) -> None:
    checkout.edit(
        "users.sql",
        USER_BY_ID,
        USER_BY_ID.replace(" created_at,", " created_at::date AS created_at,"),
    )
    problems = new_problems(check(pg_admin_config, checkout), clean_report)
    problem = find(
        problems,
        "get_user_by_id",
        "column-type",
        "result column created_at is date, but User.created_at is datetime",
    )
    assert problem.file == str(checkout.queries / "users.sql")
    # The generator shares the comparison: it refuses the record too, and writes nothing.
    module = checkout.queries.parent / "queries.py"
    report = generate(
        pg_admin_config, queries=checkout.queries, migrations=checkout.migrations, out=module
    )
    find(list(report.problems), "get_user_by_id", "column-type", "User.created_at is datetime")
    assert not module.exists()


def test_a_timestamptz_column_filling_a_date_field(
    pg_admin_config: DatabaseConfig,
    checkout: Checkout,
    clean_report: CheckReport,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "signup_records.py").write_text(SIGNUP_RECORDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    users = checkout.queries / "users.sql"
    users.write_text(
        users.read_text() + "\n-- name: list_signups()\n-- When each user signed up.\n"
        "-- record: signup_records:Signup\nSELECT id, created_at AS day FROM users;\n"
    )
    problems = new_problems(check(pg_admin_config, checkout), clean_report)
    problem = find(
        problems,
        "list_signups",
        "column-type",
        "result column day is timestamp with time zone, but Signup.day is date",
    )
    assert problem.line == line_of(users, "-- name: list_signups")


# -- (b), (c): the generated module no longer matches the SQL ---------------------------------


def test_a_value_query_whose_type_changed(
    pg_admin_config: DatabaseConfig,
    checkout: Checkout,
    generated: Path,
    clean_report: CheckReport,
) -> None:
    assert stale(list(check(pg_admin_config, checkout).problems), generated) == []
    checkout.edit(
        "users.sql",
        "SELECT coalesce(sum(n), 0)::bigint FROM row_counts WHERE counter = 'users';",
        "SELECT coalesce(sum(n), 0)::text FROM row_counts WHERE counter = 'users';",
    )
    report = check(pg_admin_config, checkout)
    assert report.module == str(generated)
    (problem,) = stale(new_problems(report, clean_report), generated)
    assert problem.subject == "count_users"
    assert problem.line == line_of(generated, "def count_users(")
    assert "run `coderunner-sql generate --out " in problem.message
    assert not report.ok


def test_a_query_whose_operation_suffix_changed(
    pg_admin_config: DatabaseConfig,
    checkout: Checkout,
    generated: Path,
    clean_report: CheckReport,
) -> None:
    checkout.edit("users.sql", "-- name: get_user_by_id(id)^", "-- name: get_user_by_id(id)")
    report = check(pg_admin_config, checkout)
    assert [p.subject for p in stale(new_problems(report, clean_report), generated)] == [
        "get_user_by_id"
    ]
    assert "generated module" in report.summary()


# -- (d) one name, two queries ----------------------------------------------------------------


def test_a_query_name_defined_twice_names_both_places(
    pg_admin_config: DatabaseConfig, checkout: Checkout, clean_report: CheckReport
) -> None:
    stats = checkout.queries / "stats.sql"
    stats.write_text(
        stats.read_text() + "\n-- name: count_users()$\n-- Defined twice.\nSELECT 1::bigint;\n"
    )
    users = checkout.queries / "users.sql"
    problems = new_problems(check(pg_admin_config, checkout), clean_report)
    places = {
        (str(stats), line_of(stats, "-- name: count_users()")),
        (str(users), line_of(users, "-- name: count_users()")),
    }
    problem = find(problems, "count_users", "query-file", "also defined at")
    (other,) = places - {(problem.file, problem.line)}
    assert f"also defined at {other[0]}:{other[1]}" in problem.message
