"""Deployments: create (one and in bulk, all or nothing), listings, status changes with an
expected status, partial updates, delete, the joined read and the running count.

Each test runs against `DatabaseService` and `AsyncDatabaseService` (the `db` fixture).
"""

from __future__ import annotations

import uuid

import pytest

from coderunner_sql import (
    ConflictError,
    Deployment,
    DeploymentDetails,
    DeploymentStatus,
    NewDeployment,
    NotFoundError,
    Page,
    ValidationError,
)
from tests.helpers import assert_library_error, count, make_deployment, make_project, make_user

INFO = {"host": "10.0.0.7", "port": 5432, "user": "app", "password": "s3cr3t", "opts": [1, 2]}


def newest_first(items):
    """`items` in the order the listings promise: created_at, then id, both descending."""
    return sorted(items, key=lambda d: (d.created_at, d.id), reverse=True)


# -- create -----------------------------------------------------------------------------


def test_create_deployment_with_every_field(db):
    project = make_project(db)

    made = db.create_deployment(
        project_id=str(project.id),
        runtime_type="python3.12",
        app_sandbox_id="sbx-app-1",
        public_url="https://app-1.example.dev/path?q=1",
        db_sandbox_id="sbx-db-1",
        db_connection_info=INFO,
        status=DeploymentStatus.RUNNING,
    )

    assert isinstance(made, Deployment)
    assert isinstance(made.id, uuid.UUID)
    assert made.project_id == project.id
    assert made.runtime_type == "python3.12"
    assert made.app_sandbox_id == "sbx-app-1"
    assert made.public_url == "https://app-1.example.dev/path?q=1"
    assert made.db_sandbox_id == "sbx-db-1"
    assert made.db_connection_info == INFO
    assert made.status is DeploymentStatus.RUNNING
    assert made.created_at == made.updated_at
    assert db.get_deployment_by_id(made.id) == made
    assert db.get_deployment_by_id(str(made.id)) == made
    stored = db.query(
        "SELECT db_connection_info->>'password' AS pw, status::text AS status"
        " FROM deployments WHERE id = %s",
        [made.id],
    )
    assert stored == [{"pw": "s3cr3t", "status": "RUNNING"}]


def test_create_deployment_defaults(db):
    made = make_deployment(db, runtime_type="node")

    assert made.status is DeploymentStatus.PENDING
    assert made.app_sandbox_id is None
    assert made.public_url is None
    assert made.db_sandbox_id is None
    assert made.db_connection_info is None
    assert db.get_deployment_by_id(made.id) == made


def test_create_deployment_takes_status_as_text(db):
    assert make_deployment(db, status="FAILED").status is DeploymentStatus.FAILED


def test_create_deployment_for_a_missing_project_is_not_found(db):
    with pytest.raises(NotFoundError) as caught:
        db.create_deployment(project_id=uuid.uuid4(), runtime_type="python")

    assert_library_error(caught)
    assert count(db, "deployments") == 0


def test_get_missing_deployment_is_none(db):
    make_deployment(db)

    assert db.get_deployment_by_id(uuid.uuid4()) is None
    assert db.get_deployment_with_details(uuid.uuid4()) is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"runtime_type": "Python"}, "runtime_type"),
        ({"runtime_type": "has space"}, "runtime_type"),
        ({"runtime_type": ""}, "runtime_type"),
        ({"runtime_type": "x" * 33}, "runtime_type"),
        ({"runtime_type": None}, "runtime_type"),
        ({"status": "running"}, "status"),
        ({"status": "DELETED"}, "status"),
        ({"status": None}, "status"),
        ({"public_url": "ftp://files.example.com"}, "public_url"),
        ({"public_url": "https://" + "a" * 2050}, "public_url"),
        ({"public_url": "not a url"}, "public_url"),
        ({"app_sandbox_id": "s" * 256}, "sandbox_id"),
        ({"db_sandbox_id": "s" * 256}, "sandbox_id"),
        ({"db_connection_info": ["a", "list"]}, "db_connection_info"),
        ({"db_connection_info": {"when": object()}}, "db_connection_info"),
        ({"db_connection_info": {"x": float("nan")}}, "db_connection_info"),
        ({"db_connection_info": {"x": "nul\x00"}}, "db_connection_info"),
        ({"project_id": "not-a-uuid"}, "project_id"),
    ],
)
def test_bad_deployment_fields_are_validation_errors(db, fields, field):
    project = make_project(db)

    with pytest.raises(ValidationError, match=field) as caught:
        db.create_deployment(**{"project_id": project.id, "runtime_type": "python", **fields})

    assert_library_error(caught)
    assert "s3cr3t" not in str(caught.value)
    assert count(db, "deployments") == 0


# -- bulk create ------------------------------------------------------------------------


def test_create_deployments_takes_dicts_and_records(db):
    project = make_project(db)
    other = make_project(db)

    made = db.create_deployments(
        [
            {"project_id": project.id, "runtime_type": "python"},
            NewDeployment(
                project_id=str(other.id),
                runtime_type="node",
                app_sandbox_id="app-2",
                public_url="http://two.example.com",
                db_sandbox_id="db-2",
                db_connection_info=INFO,
                status=DeploymentStatus.RUNNING,
            ),
            {"project_id": str(project.id), "runtime_type": "go", "status": "STOPPED"},
        ]
    )

    assert [d.runtime_type for d in made] == ["python", "node", "go"]
    assert [d.project_id for d in made] == [project.id, other.id, project.id]
    assert [d.status for d in made] == [
        DeploymentStatus.PENDING,
        DeploymentStatus.RUNNING,
        DeploymentStatus.STOPPED,
    ]
    second = made[1]
    assert (second.app_sandbox_id, second.public_url, second.db_sandbox_id) == (
        "app-2",
        "http://two.example.com",
        "db-2",
    )
    assert second.db_connection_info == INFO
    assert made[0].db_connection_info is None
    assert len({d.id for d in made}) == 3
    for item in made:
        assert db.get_deployment_by_id(item.id) == item
    assert count(db, "deployments") == 3


def test_create_deployments_of_nothing_is_an_empty_list(db):
    assert db.create_deployments([]) == []
    assert db.create_deployments(iter(())) == []
    assert count(db, "deployments") == 0


@pytest.mark.parametrize(
    "sandbox_id",
    ['a"b', "back\\slash", "com,ma", "{braces}", "NULL", "", " padded ", "é ü 漢字", None],
)
def test_create_deployments_stores_text_exactly(db, sandbox_id):
    # The columns travel as binary arrays: nothing is quoted, escaped or read as NULL.
    project = make_project(db)
    items = [
        {"project_id": project.id, "runtime_type": "python", "app_sandbox_id": sandbox_id},
        {"project_id": project.id, "runtime_type": "go", "db_sandbox_id": sandbox_id},
    ]

    made = db.create_deployments(items)

    assert [d.app_sandbox_id for d in made] == [sandbox_id, None]
    assert [d.db_sandbox_id for d in made] == [None, sandbox_id]
    stored = db.query(
        "SELECT app_sandbox_id FROM deployments WHERE id = %(id)s", {"id": made[0].id}
    )
    assert stored == [{"app_sandbox_id": sandbox_id}]


def test_create_deployments_takes_any_iterable(db):
    project = make_project(db)

    made = db.create_deployments(
        {"project_id": project.id, "runtime_type": f"rt{i}"} for i in range(4)
    )

    assert [d.runtime_type for d in made] == ["rt0", "rt1", "rt2", "rt3"]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"runtime_type": "Bad Runtime"}, ValidationError),  # rejected by the database
        ({"public_url": "mailto:x@example.com"}, ValidationError),  # rejected by the database
        ({"project_id": "missing"}, NotFoundError),  # well-formed id of no project
        ({"project_id": "not-a-uuid"}, ValidationError),
        ({"status": "EXPLODED"}, ValidationError),
        ({"surprise": 1}, ValidationError),
        ({"runtime_type": None}, ValidationError),
    ],
)
def test_create_deployments_is_all_or_nothing(db, bad, error):
    project = make_project(db)
    good = {"project_id": project.id, "runtime_type": "python"}
    if bad.get("project_id") == "missing":
        bad = {"project_id": uuid.uuid4()}

    with pytest.raises(error) as caught:
        db.create_deployments([good, good, {**good, **bad}, good])

    assert_library_error(caught)
    assert count(db, "deployments") == 0
    assert db.get_deployments_by_project_id(project.id).total == 0


def test_create_deployments_names_the_bad_item(db):
    project = make_project(db)
    good = {"project_id": project.id, "runtime_type": "python"}

    with pytest.raises(ValidationError, match="deployment 2"):
        db.create_deployments([good, good, {"project_id": project.id}])
    with pytest.raises(ValidationError, match="deployment 1"):
        db.create_deployments([good, "not a deployment"])


@pytest.mark.parametrize("items", [{"project_id": "x", "runtime_type": "y"}, "text", b"bytes"])
def test_create_deployments_wants_a_list(db, items):
    with pytest.raises(ValidationError, match="list"):
        db.create_deployments(items)


# -- listings ---------------------------------------------------------------------------


def test_get_deployments_by_project_id_pages_with_the_total(db):
    project = make_project(db)
    other = make_project(db)
    made = [make_deployment(db, project) for _ in range(5)]
    make_deployment(db, other)

    first = db.get_deployments_by_project_id(project.id, limit=2)
    assert isinstance(first, Page)
    assert first.items == list(reversed(made))[:2]  # newest first
    assert (first.total, first.limit, first.offset) == (5, 2, 0)

    whole = db.get_deployments_by_project_id(str(project.id))
    assert whole.items == list(reversed(made))

    past = db.get_deployments_by_project_id(project.id, offset=5)
    assert past.items == []
    assert past.total == 5
    assert db.get_deployments_by_project_id(other.id).total == 1
    assert db.get_deployments_by_project_id(uuid.uuid4()) == Page([], 0, 50, 0)


def test_get_deployments_by_status_takes_the_member_or_its_value(db):
    project = make_project(db)
    running = [make_deployment(db, project, status="RUNNING") for _ in range(3)]
    make_deployment(db, project, status="FAILED")
    make_deployment(db, project)

    by_member = db.get_deployments_by_status(DeploymentStatus.RUNNING)
    by_value = db.get_deployments_by_status("RUNNING")

    assert by_member == by_value
    assert by_member.items == list(reversed(running))
    assert by_member.total == 3
    assert db.get_deployments_by_status("FAILED").total == 1
    assert db.get_deployments_by_status(DeploymentStatus.PENDING).total == 1
    assert db.get_deployments_by_status(DeploymentStatus.STOPPED) == Page([], 0, 50, 0)
    page = db.get_deployments_by_status("RUNNING", limit=1, offset=2)
    assert page.items == [running[0]]
    assert page.total == 3


@pytest.mark.parametrize("status", ["running", "DELETED", "", None, 1])
def test_get_deployments_by_unknown_status_is_a_validation_error(db, status):
    with pytest.raises(ValidationError, match="status must be one of") as caught:
        db.get_deployments_by_status(status)
    assert_library_error(caught)


def test_listings_validate_their_arguments(db):
    project = make_project(db)

    with pytest.raises(ValidationError, match="project_id"):
        db.get_deployments_by_project_id("nope")
    for call, first in (
        (db.get_deployments_by_project_id, project.id),
        (db.get_deployments_by_status, "PENDING"),
    ):
        with pytest.raises(ValidationError, match="limit"):
            call(first, limit=0)
        with pytest.raises(ValidationError, match="limit"):
            call(first, limit=1001)
        with pytest.raises(ValidationError, match="limit"):
            call(first, limit=True)
        with pytest.raises(ValidationError, match="offset"):
            call(first, offset=-1)


def test_listings_break_created_at_ties_by_id_so_pages_are_stable(db):
    project = make_project(db)
    # One statement: every row shares created_at; then a few later, distinct ones.
    tied = db.create_deployments(
        [{"project_id": project.id, "runtime_type": "python", "status": "RUNNING"}] * 7
    )
    assert len({d.created_at for d in tied}) == 1
    later = [make_deployment(db, project, status="RUNNING") for _ in range(3)]
    expected = newest_first(tied + later)
    assert expected[:3] == list(reversed(later))

    for listing in (
        lambda limit, offset: db.get_deployments_by_project_id(project.id, limit, offset),
        lambda limit, offset: db.get_deployments_by_status("RUNNING", limit, offset),
    ):
        walked = []
        for offset in range(0, 12, 3):
            page = listing(3, offset)
            assert page.total == 10
            walked += page.items
        assert [d.id for d in walked] == [d.id for d in expected]
        assert listing(1000, 0).items == expected


def test_keyset_pages_walk_every_row_exactly_once(db):
    project = make_project(db)
    tied = db.create_deployments(
        [{"project_id": project.id, "runtime_type": "python", "status": "STOPPED"}] * 5
    )
    later = [make_deployment(db, project, status="STOPPED") for _ in range(4)]
    make_deployment(db, project)  # PENDING: in the project listing only
    expected = newest_first(tied + later)

    for listing, total in (
        (lambda **kw: db.get_deployments_by_status("STOPPED", **kw), 9),
        (lambda **kw: db.get_deployments_by_project_id(project.id, **kw), 10),
    ):
        walked, cursor, pages = [], None, 0
        while True:
            page = listing(limit=2, after=cursor)
            pages += 1
            assert page.total == total
            walked += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        stopped = [d.id for d in walked if d.status is DeploymentStatus.STOPPED]
        assert stopped == [d.id for d in expected]
        assert len(walked) == total
        assert len({d.id for d in walked}) == total
        assert pages == total // 2 + 1


def test_page_cursor_continues_an_offset_page(db):
    project = make_project(db)
    made = [make_deployment(db, project) for _ in range(5)]

    first = db.get_deployments_by_project_id(project.id, limit=2, offset=1)
    rest = db.get_deployments_by_project_id(project.id, limit=10, after=first.next_cursor)

    assert first.items + rest.items == list(reversed(made))[1:]
    assert rest.next_cursor is None  # a short page is the last


def test_with_total_false_leaves_the_total_out(db):
    project = make_project(db)
    made = [make_deployment(db, project, status="RUNNING") for _ in range(3)]

    page = db.get_deployments_by_project_id(project.id, with_total=False)
    by_status = db.get_deployments_by_status("RUNNING", limit=2, with_total=False)

    assert page.total is None
    assert page.items == list(reversed(made))
    assert by_status.total is None
    assert by_status.items == list(reversed(made))[:2]


def test_bad_cursors_are_validation_errors(db):
    project = make_project(db)
    make_deployment(db, project)
    cursor = db.get_deployments_by_project_id(project.id, limit=1).next_cursor
    assert cursor is not None

    with pytest.raises(ValidationError, match="offset or after"):
        db.get_deployments_by_project_id(project.id, offset=1, after=cursor)
    for bad in ("garbage!", "", "x" * 300, 12, "bm90IGEgY3Vyc29y"):
        with pytest.raises(ValidationError, match="after") as caught:
            db.get_deployments_by_status("PENDING", after=bad)
        assert_library_error(caught)


def test_iter_deployments_by_status_streams_every_row_newest_first(db):
    project = make_project(db)
    tied = db.create_deployments(
        [{"project_id": project.id, "runtime_type": "python", "status": "FAILED"}] * 5
    )
    later = [make_deployment(db, project, status="FAILED") for _ in range(2)]
    make_deployment(db, project)  # PENDING: not streamed
    expected = newest_first(tied + later)

    assert list(db.iter_deployments_by_status("FAILED", batch_size=2)) == expected
    assert list(db.iter_deployments_by_status(DeploymentStatus.FAILED)) == expected
    assert list(db.iter_deployments_by_status("STOPPED", batch_size=1)) == []
    assert db.get_pool_info().connected_clients == 0


def test_iter_deployments_by_status_stopped_early_gives_its_connection_back(db):
    project = make_project(db)
    made = db.create_deployments([{"project_id": project.id, "runtime_type": "go"}] * 4)

    stream = db.iter_deployments_by_status("PENDING", batch_size=1)
    first = next(stream)
    assert db.get_pool_info().connected_clients == 1
    stream.close()

    assert first.id in {d.id for d in made}
    assert db.get_pool_info().connected_clients == 0
    assert db.get_deployments_by_status("PENDING").total == 4


def test_iter_deployments_by_status_validates_its_arguments(db):
    for status, batch_size, field in (
        ("pending", 10, "status"),
        ("PENDING", 0, "batch_size"),
        ("PENDING", 1001, "batch_size"),
        ("PENDING", True, "batch_size"),
    ):
        with pytest.raises(ValidationError, match=field) as caught:
            list(db.iter_deployments_by_status(status, batch_size=batch_size))
        assert_library_error(caught)


# -- status changes ---------------------------------------------------------------------


def test_update_deployment_status(db):
    made = make_deployment(db)

    running = db.update_deployment_status(made.id, DeploymentStatus.RUNNING)

    assert running.status is DeploymentStatus.RUNNING
    assert running.updated_at > made.updated_at
    assert running.runtime_type == made.runtime_type
    assert db.get_deployment_by_id(made.id) == running
    assert db.update_deployment_status(str(made.id), "STOPPED").status is DeploymentStatus.STOPPED


def test_update_deployment_status_with_the_expected_status(db):
    made = make_deployment(db)

    moved = db.update_deployment_status(made.id, "RUNNING", expected=DeploymentStatus.PENDING)

    assert moved.status is DeploymentStatus.RUNNING
    again = db.update_deployment_status(made.id, "STOPPED", expected="RUNNING")
    assert again.status is DeploymentStatus.STOPPED


def test_update_deployment_status_conflicts_when_the_current_status_differs(db):
    made = make_deployment(db, status="RUNNING")

    with pytest.raises(ConflictError) as caught:
        db.update_deployment_status(made.id, "STOPPED", expected="PENDING")

    assert "RUNNING" in str(caught.value)
    assert "PENDING" in str(caught.value)
    assert_library_error(caught)
    assert db.get_deployment_by_id(made.id) == made


def test_update_deployment_status_of_a_missing_deployment_is_not_found(db):
    make_deployment(db)
    missing = uuid.uuid4()

    with pytest.raises(NotFoundError, match=str(missing)):
        db.update_deployment_status(missing, "RUNNING")
    with pytest.raises(NotFoundError, match=str(missing)):
        db.update_deployment_status(missing, "RUNNING", expected="PENDING")


def test_update_deployment_status_validates_before_writing(db):
    made = make_deployment(db)

    with pytest.raises(ValidationError, match="status"):
        db.update_deployment_status(made.id, "running")
    with pytest.raises(ValidationError, match="expected"):
        db.update_deployment_status(made.id, "RUNNING", expected="SOMETIMES")
    with pytest.raises(ValidationError, match="id must be a UUID"):
        db.update_deployment_status("nope", "RUNNING")

    assert db.get_deployment_by_id(made.id) == made


# -- partial update ---------------------------------------------------------------------


def test_update_deployment_changes_only_the_given_fields(db):
    made = make_deployment(
        db,
        app_sandbox_id="app",
        public_url="https://old.example.com",
        db_sandbox_id="db",
        db_connection_info=INFO,
    )

    moved = db.update_deployment(made.id, public_url="https://new.example.com")

    assert moved.public_url == "https://new.example.com"
    assert (moved.app_sandbox_id, moved.db_sandbox_id) == ("app", "db")
    assert moved.db_connection_info == INFO
    assert moved.status is made.status
    assert moved.runtime_type == made.runtime_type
    assert moved.created_at == made.created_at
    assert moved.updated_at > made.updated_at
    assert db.get_deployment_by_id(made.id) == moved

    changed = db.update_deployment(
        str(made.id),
        status=DeploymentStatus.FAILED,
        runtime_type="ruby",
        db_connection_info={"rotated": True},
    )
    assert changed.status is DeploymentStatus.FAILED
    assert changed.runtime_type == "ruby"
    assert changed.db_connection_info == {"rotated": True}
    assert changed.public_url == "https://new.example.com"


def test_update_deployment_sets_nullable_fields_to_none(db):
    made = make_deployment(
        db,
        app_sandbox_id="app",
        public_url="https://x.example.com",
        db_sandbox_id="db",
        db_connection_info=INFO,
    )

    cleared = db.update_deployment(
        made.id, app_sandbox_id=None, public_url=None, db_sandbox_id=None, db_connection_info=None
    )

    assert cleared.app_sandbox_id is None
    assert cleared.public_url is None
    assert cleared.db_sandbox_id is None
    assert cleared.db_connection_info is None
    rows = db.query(
        "SELECT app_sandbox_id, public_url, db_sandbox_id, db_connection_info"
        " FROM deployments WHERE id = %s",
        [made.id],
    )
    assert rows == [
        {"app_sandbox_id": None, "public_url": None, "db_sandbox_id": None,
         "db_connection_info": None}
    ]  # fmt: skip


def test_update_deployment_with_no_fields_changes_nothing(db):
    made = make_deployment(db, db_connection_info=INFO)

    assert db.update_deployment(made.id) == made


def test_update_deployment_rejects_bad_values(db):
    made = make_deployment(db)

    with pytest.raises(ValidationError, match="runtime_type"):
        db.update_deployment(made.id, runtime_type=None)
    with pytest.raises(ValidationError, match="runtime_type"):
        db.update_deployment(made.id, runtime_type="UPPER")
    with pytest.raises(ValidationError, match="status"):
        db.update_deployment(made.id, status=None)
    with pytest.raises(ValidationError, match="public_url"):
        db.update_deployment(made.id, public_url="nope")
    with pytest.raises(ValidationError, match="db_connection_info"):
        db.update_deployment(made.id, db_connection_info="text")

    assert db.get_deployment_by_id(made.id) == made


def test_update_or_delete_a_missing_deployment_is_not_found(db):
    missing = uuid.uuid4()

    with pytest.raises(NotFoundError, match=str(missing)) as caught:
        db.update_deployment(missing, status="RUNNING")
    assert_library_error(caught)
    with pytest.raises(NotFoundError, match=str(missing)):
        db.delete_deployment(missing)
    with pytest.raises(ValidationError, match="id must be a UUID"):
        db.delete_deployment("nope")


# -- delete, joined read, running count -------------------------------------------------


def test_delete_deployment_removes_only_that_row(db):
    project = make_project(db)
    doomed = make_deployment(db, project)
    kept = make_deployment(db, project)

    db.delete_deployment(str(doomed.id))

    assert db.get_deployment_by_id(doomed.id) is None
    assert db.get_deployments_by_project_id(project.id).items == [kept]
    assert db.get_project_by_id(project.id) == project
    with pytest.raises(NotFoundError):
        db.delete_deployment(doomed.id)


def test_get_deployment_with_details(db):
    user = make_user(db)
    project = make_project(db, user, description="details")
    made = make_deployment(db, project, db_connection_info=INFO, public_url="https://d.example")
    make_deployment(db)  # unrelated

    found = db.get_deployment_with_details(made.id)

    assert isinstance(found, DeploymentDetails)
    assert found.deployment == made
    assert found.project == project
    assert found.user == user
    assert found.deployment.db_connection_info == INFO
    assert db.get_deployment_with_details(str(made.id)) == found


def test_get_running_deployment_count_by_user(db):
    user = make_user(db)
    first = make_project(db, user)
    second = make_project(db, user)
    for project, status in (
        (first, "RUNNING"),
        (first, "RUNNING"),
        (second, "RUNNING"),
        (first, "STOPPED"),
        (second, "PENDING"),
        (second, "FAILED"),
    ):
        make_deployment(db, project, status=status)
    someone_else = make_project(db)
    make_deployment(db, someone_else, status="RUNNING")

    assert db.get_running_deployment_count_by_user(user.id) == 3
    assert db.get_running_deployment_count_by_user(str(user.id)) == 3
    assert db.get_running_deployment_count_by_user(someone_else.user_id) == 1
    assert db.get_running_deployment_count_by_user(make_user(db).id) == 0
    assert db.get_running_deployment_count_by_user(uuid.uuid4()) == 0
    with pytest.raises(ValidationError, match="user_id"):
        db.get_running_deployment_count_by_user("nope")

    stopped = db.get_deployments_by_status("RUNNING").items[0]
    db.update_deployment_status(stopped.id, "STOPPED")
    total = sum(db.get_running_deployment_count_by_user(u) for u in (user.id, someone_else.user_id))
    assert total == 3
