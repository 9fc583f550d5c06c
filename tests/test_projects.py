"""Projects: create, read, partial update, delete, per-user listing, names unique per user.

Each test runs against `DatabaseService` and `AsyncDatabaseService` (the `db` fixture).
"""

from __future__ import annotations

import uuid

import pytest

from coderunner_sql import (
    AlreadyExistsError,
    NotFoundError,
    Page,
    Project,
    ProjectWithUser,
    ValidationError,
)
from tests.helpers import assert_library_error, count, make_deployment, make_project, make_user


def test_create_project_returns_the_stored_row(db):
    user = make_user(db)

    project = db.create_project(user_id=user.id, name="Web Shop", description="sells things")

    assert isinstance(project, Project)
    assert isinstance(project.id, uuid.UUID)
    assert project.user_id == user.id
    assert project.name == "Web Shop"
    assert project.description == "sells things"
    assert project.created_at == project.updated_at
    assert db.get_project_by_id(project.id) == project
    assert db.get_project_by_id(str(project.id)) == project


def test_create_project_without_description_stores_null(db):
    user = make_user(db)

    project = db.create_project(user_id=str(user.id), name="bare")

    assert project.description is None
    rows = db.query("SELECT description FROM projects WHERE id = %s", [project.id])
    assert rows == [{"description": None}]


def test_get_missing_project_is_none(db):
    make_project(db)

    assert db.get_project_by_id(uuid.uuid4()) is None
    assert db.get_project_with_user(uuid.uuid4()) is None


def test_create_project_for_a_missing_user_is_not_found(db):
    with pytest.raises(NotFoundError) as caught:
        db.create_project(user_id=uuid.uuid4(), name="orphan")

    assert_library_error(caught)
    assert count(db, "projects") == 0


# -- names are unique per user, ignoring case -------------------------------------------


def test_duplicate_name_in_another_case_for_the_same_user_already_exists(db):
    user = make_user(db)
    original = db.create_project(user_id=user.id, name="My App")

    with pytest.raises(AlreadyExistsError) as caught:
        db.create_project(user_id=user.id, name="MY app", description="second")

    message = str(caught.value)
    assert "already exists" in message
    assert "name" in message
    assert caught.value.field == "name"
    assert_library_error(caught)
    assert db.get_projects_by_user_id(user.id).items == [original]


def test_same_name_for_another_user_is_fine(db):
    first = make_project(db, name="shared-name")
    second = make_project(db, name="shared-name")
    third = make_project(db, name="SHARED-NAME")

    assert len({first.user_id, second.user_id, third.user_id}) == 3
    assert {first.name, second.name, third.name} == {"shared-name", "SHARED-NAME"}
    assert count(db, "projects") == 3


def test_renaming_to_a_taken_name_already_exists(db):
    user = make_user(db)
    make_project(db, user, name="alpha")
    beta = make_project(db, user, name="beta")

    with pytest.raises(AlreadyExistsError, match="name already exists"):
        db.update_project(beta.id, name="Alpha")

    assert db.get_project_by_id(beta.id) == beta


def test_renaming_to_the_same_name_in_another_case_is_fine(db):
    project = make_project(db, name="case")

    assert db.update_project(project.id, name="CASE").name == "CASE"


# Equal once case is folded and compatibility forms are normalised (the rule emails follow).
SAME_NAME = [
    ("ÉLODIE", "élodie"),
    ("ΑΘΗΝΑ", "αθηνα"),
    ("ИВАН", "иван"),
    ("\uff21\uff22\uff23", "\uff41\uff42\uff43"),
    ("\uff21\uff22\uff23", "abc"),
    ("STRASSE", "straße"),
    ("Café", "CAFE\u0301"),
]


@pytest.mark.parametrize(("first", "second"), SAME_NAME)
def test_names_equal_once_case_is_folded_are_one_project(db, first, second):
    user = make_user(db)
    original = db.create_project(user_id=user.id, name=first)

    with pytest.raises(AlreadyExistsError) as caught:
        db.create_project(user_id=user.id, name=second)

    assert caught.value.field == "name"
    assert_library_error(caught)
    other = make_project(db, user, name="other")
    with pytest.raises(AlreadyExistsError, match="name already exists"):
        db.update_project(other.id, name=second)
    assert db.update_project(original.id, name=second).name == second
    assert count(db, "projects") == 2


def test_names_with_different_letters_are_two_projects(db):
    user = make_user(db)
    names = ["cafe", "café", "ivan", "\u0131van", "иван", "strase", "straße"]

    for name in names:
        db.create_project(user_id=user.id, name=name)

    assert count(db, "projects") == len(names)


# -- update -----------------------------------------------------------------------------


def test_update_project_changes_only_the_given_fields(db):
    project = make_project(db, name="before", description="keep me")

    renamed = db.update_project(project.id, name="after")

    assert renamed.name == "after"
    assert renamed.description == "keep me"  # omitted: kept
    assert renamed.user_id == project.user_id
    assert renamed.created_at == project.created_at
    assert renamed.updated_at > project.updated_at
    assert db.get_project_by_id(project.id) == renamed

    described = db.update_project(str(project.id), description="new words")

    assert described.name == "after"
    assert described.description == "new words"


def test_update_project_description_none_sets_null(db):
    project = make_project(db, name="clear", description="to be cleared")

    cleared = db.update_project(project.id, description=None)

    assert cleared.description is None
    assert cleared.name == "clear"
    assert db.query("SELECT description FROM projects WHERE id = %s", [project.id]) == [
        {"description": None}
    ]
    # Omitting it afterwards keeps the NULL, and setting it again works.
    assert db.update_project(project.id, name="still-clear").description is None
    assert db.update_project(project.id, description="back").description == "back"


def test_update_project_with_no_fields_changes_nothing(db):
    project = make_project(db, description="same")

    assert db.update_project(project.id) == project


def test_update_or_delete_a_missing_project_is_not_found(db):
    missing = uuid.uuid4()

    with pytest.raises(NotFoundError, match=str(missing)) as caught:
        db.update_project(missing, name="x")
    assert_library_error(caught)
    with pytest.raises(NotFoundError, match=str(missing)):
        db.delete_project(missing)


# -- delete -----------------------------------------------------------------------------


def test_delete_project_cascades_to_deployments_and_keeps_the_user(db):
    user = make_user(db)
    doomed = make_project(db, user)
    kept = make_project(db, user)
    gone = [make_deployment(db, doomed) for _ in range(3)]
    survivor = make_deployment(db, kept)

    db.delete_project(str(doomed.id))

    assert db.get_project_by_id(doomed.id) is None
    assert all(db.get_deployment_by_id(item.id) is None for item in gone)
    assert db.get_deployment_by_id(survivor.id) == survivor
    assert db.get_user_by_id(user.id) == user
    assert db.get_projects_by_user_id(user.id).items == [kept]
    with pytest.raises(NotFoundError):
        db.delete_project(doomed.id)


# -- joined read ------------------------------------------------------------------------


def test_get_project_with_user(db):
    user = make_user(db)
    project = make_project(db, user, description="joined")
    make_project(db)  # another user's, must not be picked

    found = db.get_project_with_user(project.id)

    assert isinstance(found, ProjectWithUser)
    assert found.project == project
    assert found.user == user
    assert found.user.password_hash == user.password_hash
    assert db.get_project_with_user(str(project.id)) == found


# -- listing ----------------------------------------------------------------------------


def test_get_projects_by_user_id_pages_newest_first_with_the_total(db):
    user = make_user(db)
    other = make_user(db)
    made = [make_project(db, user) for _ in range(5)]
    make_project(db, other)
    newest_first = list(reversed(made))

    first = db.get_projects_by_user_id(user.id, limit=2)
    assert isinstance(first, Page)
    assert first.items == newest_first[:2]
    assert (first.total, first.limit, first.offset) == (5, 2, 0)

    walked = []
    for offset in (0, 2, 4):
        page = db.get_projects_by_user_id(str(user.id), limit=2, offset=offset)
        assert page.total == 5
        walked += page.items
    assert walked == newest_first

    past = db.get_projects_by_user_id(user.id, limit=2, offset=5)
    assert past.items == []
    assert past.total == 5

    assert db.get_projects_by_user_id(other.id).total == 1


def test_get_projects_by_user_id_for_an_unknown_user_is_empty(db):
    make_project(db)

    page = db.get_projects_by_user_id(uuid.uuid4())

    assert page.items == []
    assert page.total == 0


def test_get_projects_by_user_id_validates_its_arguments(db):
    user = make_user(db)

    with pytest.raises(ValidationError, match="user_id must be a UUID"):
        db.get_projects_by_user_id("nope")
    with pytest.raises(ValidationError, match="limit"):
        db.get_projects_by_user_id(user.id, limit=0)
    with pytest.raises(ValidationError, match="limit"):
        db.get_projects_by_user_id(user.id, limit=1001)
    with pytest.raises(ValidationError, match="offset"):
        db.get_projects_by_user_id(user.id, offset=-1)


# -- bad input --------------------------------------------------------------------------


def test_name_of_101_characters_is_a_validation_error(db):
    user = make_user(db)

    with pytest.raises(ValidationError) as caught:
        db.create_project(user_id=user.id, name="n" * 101)

    assert "name" in str(caught.value)
    assert "100" in str(caught.value)
    assert_library_error(caught)
    assert count(db, "projects") == 0
    assert db.create_project(user_id=user.id, name="n" * 100).name == "n" * 100


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"name": 5}, "name"),
        ({"name": "nul\x00byte"}, "name"),
        ({"description": "d" * 10_001}, "description"),
        ({"description": 3}, "description"),
        ({"user_id": "not-a-uuid"}, "user_id"),
        ({"user_id": 17}, "user_id"),
    ],
)
def test_bad_project_fields_are_validation_errors(db, fields, field):
    user = make_user(db)

    with pytest.raises(ValidationError, match=field) as caught:
        db.create_project(**{"user_id": user.id, "name": "ok", **fields})

    assert_library_error(caught)
    assert count(db, "projects") == 0


def test_update_project_rejects_bad_values_and_ids(db):
    project = make_project(db)

    with pytest.raises(ValidationError, match="name"):
        db.update_project(project.id, name="x" * 101)
    with pytest.raises(ValidationError, match="name"):
        db.update_project(project.id, name=None)
    with pytest.raises(ValidationError, match="id must be a UUID"):
        db.update_project("nope", name="x")
    with pytest.raises(ValidationError, match="id must be a UUID"):
        db.delete_project("nope")
    with pytest.raises(ValidationError, match="id must be a UUID"):
        db.get_project_by_id(12)
    with pytest.raises(ValidationError, match="id must be a UUID"):
        db.get_project_with_user("nope")

    assert db.get_project_by_id(project.id) == project
