"""Users: create, read, partial update, delete (with cascade), pagination and every error.

Each test runs against `DatabaseService` and `AsyncDatabaseService` (the `db` fixture).
"""

from __future__ import annotations

import uuid

import pytest

from coderunner_sql import (
    AlreadyExistsError,
    NotFoundError,
    Page,
    PlanType,
    User,
    ValidationError,
)
from tests.helpers import (
    assert_library_error,
    count,
    make_deployment,
    make_project,
    make_user,
    unique_email,
)

# -- create and read --------------------------------------------------------------------


def test_create_user_returns_the_stored_row(db):
    user = db.create_user(
        email="Ada.Lovelace@Example.com", password_hash="argon2$abc", plan_type=PlanType.TEAM
    )

    assert isinstance(user, User)
    assert isinstance(user.id, uuid.UUID)
    assert user.email == "Ada.Lovelace@Example.com"  # stored as given, not lowered
    assert user.password_hash == "argon2$abc"
    assert user.plan_type is PlanType.TEAM
    assert user.created_at.tzinfo is not None
    assert user.updated_at == user.created_at
    stored = db.query(
        "SELECT email, password_hash, plan_type::text AS plan FROM users WHERE id = %s",
        [user.id],
    )
    assert stored == [
        {"email": "Ada.Lovelace@Example.com", "password_hash": "argon2$abc", "plan": "team"}
    ]


def test_create_user_defaults_to_free_and_accepts_plan_values(db):
    assert make_user(db).plan_type is PlanType.FREE
    assert make_user(db, plan_type="personal").plan_type is PlanType.PERSONAL
    assert make_user(db, plan_type=PlanType.TEAM).plan_type is PlanType.TEAM


def test_get_user_by_id_takes_a_uuid_or_its_text(db):
    user = make_user(db)
    other = make_user(db)

    assert db.get_user_by_id(user.id) == user
    assert db.get_user_by_id(str(user.id)) == user
    assert db.get_user_by_id(str(user.id).upper()) == user
    assert db.get_user_by_id(other.id) == other
    assert db.get_user_by_id(uuid.uuid4()) is None


def test_get_user_by_email_ignores_letter_case(db):
    user = make_user(db, email="Grace.Hopper@Navy.MIL")
    make_user(db, email="someone.else@navy.mil")

    assert db.get_user_by_email("grace.hopper@navy.mil") == user
    assert db.get_user_by_email("GRACE.HOPPER@NAVY.MIL") == user
    assert db.get_user_by_email("Grace.Hopper@Navy.MIL") == user
    assert db.get_user_by_email("grace@navy.mil") is None
    assert db.get_user_by_email("") is None


# -- update -----------------------------------------------------------------------------


def test_update_user_changes_only_the_given_fields(db):
    user = make_user(db, password_hash="old-hash", plan_type=PlanType.FREE)
    bystander = make_user(db)

    upgraded = db.update_user(user.id, plan_type=PlanType.TEAM)

    assert upgraded.plan_type is PlanType.TEAM
    assert upgraded.email == user.email
    assert upgraded.password_hash == "old-hash"
    assert upgraded.id == user.id
    assert upgraded.created_at == user.created_at
    assert upgraded.updated_at > user.updated_at
    assert db.get_user_by_id(user.id) == upgraded

    moved = db.update_user(str(user.id), email="moved@example.com", password_hash="new-hash")

    assert moved.email == "moved@example.com"
    assert moved.password_hash == "new-hash"
    assert moved.plan_type is PlanType.TEAM  # kept from the first update
    assert moved.updated_at > upgraded.updated_at
    assert db.get_user_by_email(user.email) is None
    assert db.get_user_by_id(bystander.id) == bystander


def test_update_user_with_no_fields_changes_nothing(db):
    user = make_user(db)

    assert db.update_user(user.id) == user
    assert db.get_user_by_id(user.id) == user  # updated_at did not move either


def test_update_user_to_a_taken_email_in_another_case_already_exists(db):
    make_user(db, email="taken@example.com")
    user = make_user(db)

    with pytest.raises(AlreadyExistsError) as caught:
        db.update_user(user.id, email="TAKEN@example.com")

    assert caught.value.field == "email"
    assert "already exists" in str(caught.value)
    assert db.get_user_by_id(user.id) == user


def test_update_missing_user_is_not_found(db):
    missing = uuid.uuid4()

    with pytest.raises(NotFoundError) as caught:
        db.update_user(missing, plan_type="team")

    assert str(missing) in str(caught.value)
    assert_library_error(caught)


def test_update_user_rejects_bad_values(db):
    user = make_user(db)

    with pytest.raises(ValidationError, match="plan_type"):
        db.update_user(user.id, plan_type="gold")
    with pytest.raises(ValidationError, match="email"):
        db.update_user(user.id, email="not-an-address")
    with pytest.raises(ValidationError, match="email"):
        db.update_user(user.id, email=None)

    assert db.get_user_by_id(user.id) == user


# -- delete -----------------------------------------------------------------------------


def test_delete_user_cascades_to_projects_and_deployments(db):
    user = make_user(db)
    projects = [make_project(db, user) for _ in range(2)]
    deployments = [make_deployment(db, project) for project in projects for _ in range(2)]
    keeper = make_deployment(db)  # someone else's, untouched

    db.delete_user(user.id)

    assert db.get_user_by_id(user.id) is None
    assert all(db.get_project_by_id(project.id) is None for project in projects)
    assert all(db.get_deployment_by_id(item.id) is None for item in deployments)
    assert db.get_deployment_by_id(keeper.id) == keeper
    assert (count(db, "users"), count(db, "projects"), count(db, "deployments")) == (1, 1, 1)


def test_delete_user_takes_text_ids_and_a_missing_user_is_not_found(db):
    user = make_user(db)

    db.delete_user(str(user.id))

    with pytest.raises(NotFoundError) as caught:
        db.delete_user(user.id)
    assert_library_error(caught)


# -- listing ----------------------------------------------------------------------------


def test_get_users_pages_newest_first_and_counts_every_row(db):
    created = [make_user(db) for _ in range(5)]
    newest_first = [user.id for user in reversed(created)]

    first = db.get_users(limit=2)
    assert isinstance(first, Page)
    assert [user.id for user in first.items] == newest_first[:2]
    assert (first.total, first.limit, first.offset) == (5, 2, 0)

    last = db.get_users(limit=2, offset=4)
    assert [user.id for user in last.items] == newest_first[4:]
    assert last.total == 5

    assert db.get_users().items == list(reversed(created))
    assert db.get_users(limit=1000).total == 5


@pytest.mark.parametrize("offset", [5, 6, 10_000])
def test_get_users_offset_past_the_end_is_empty_with_the_right_total(db, offset):
    for _ in range(5):
        make_user(db)

    page = db.get_users(limit=3, offset=offset)

    assert page.items == []
    assert page.total == 5
    assert page.offset == offset


def test_get_users_walks_tied_timestamps_exactly_once(db):
    # Rows made in one transaction share created_at; the id breaks the tie.
    def make_many(tx):
        return [make_user(tx) for _ in range(7)]

    made = db.execute_in_transaction(make_many)
    assert len({user.created_at for user in made}) == 1

    seen = []
    for offset in range(0, 9, 2):
        seen += [user.id for user in db.get_users(limit=2, offset=offset).items]

    assert seen == sorted((user.id for user in made), reverse=True)


def test_get_users_on_an_empty_table(db):
    page = db.get_users()

    assert page == Page(items=[], total=0, limit=50, offset=0)


@pytest.mark.parametrize("limit", [0, -1, 1001, 10**9, True, False, 2.0, "10", None])
def test_get_users_rejects_limits_outside_1_to_1000(db, limit):
    with pytest.raises(ValidationError, match="limit") as caught:
        db.get_users(limit=limit)
    assert_library_error(caught)


@pytest.mark.parametrize("offset", [-1, -100, True, 1.5, "0", None])
def test_get_users_rejects_bad_offsets(db, offset):
    with pytest.raises(ValidationError, match="offset"):
        db.get_users(offset=offset)


def test_get_users_accepts_the_limit_bounds(db):
    make_user(db)
    make_user(db)

    assert len(db.get_users(limit=1).items) == 1
    assert len(db.get_users(limit=1000).items) == 2


# -- duplicates and bad input -----------------------------------------------------------


def test_duplicate_email_in_another_case_already_exists(db):
    original = make_user(db, email="dup@example.com")

    with pytest.raises(AlreadyExistsError) as caught:
        db.create_user(email="DUP@Example.COM", password_hash="other")

    message = str(caught.value)
    assert "email" in message
    assert "already exists" in message
    assert caught.value.field == "email"
    assert caught.value.sqlstate == "23505"
    assert "other" not in message
    assert_library_error(caught)
    assert db.get_users().items == [original]


# Addresses one person could type either way: equal once case is folded (Unicode's full case
# folding, so ß is ss) and compatibility forms are normalised (NFKC: fullwidth letters are
# ASCII, é precomposed or as e + U+0301 is one é). The C locale's lower() folds only A-Z.
SAME_ADDRESS = [
    ("ÉLODIE@example.com", "élodie@example.com"),
    ("ΑΘΗΝΑ@example.com", "αθηνα@example.com"),
    ("ИВАН@example.com", "иван@example.com"),
    ("\uff21\uff22\uff23@example.com", "\uff41\uff42\uff43@example.com"),
    ("\uff21\uff22\uff23@example.com", "abc@example.com"),
    ("STRASSE@example.com", "straße@example.com"),
    ("élodie@example.com", "e\u0301lodie@example.com"),
    ("ΣΊΣΥΦΟΣ@example.com", "σίσυφος@example.com"),
]
# Different letters stay different: accents, the dotless i and other scripts are not folded away.
OTHER_ADDRESS = [
    ("elodie@example.com", "élodie@example.com"),
    ("ivan@example.com", "\u0131van@example.com"),
    ("ivan@example.com", "иван@example.com"),
    ("strase@example.com", "straße@example.com"),
]


@pytest.mark.parametrize("order", ["as listed", "reversed"])
@pytest.mark.parametrize(("first", "second"), SAME_ADDRESS)
def test_emails_equal_once_case_is_folded_are_one_user(db, first, second, order):
    if order == "reversed":
        first, second = second, first
    user = make_user(db, email=first)

    with pytest.raises(AlreadyExistsError) as caught:
        db.create_user(email=second, password_hash="other")

    assert caught.value.field == "email"
    assert_library_error(caught)
    for spelling in (first, second, second.upper(), second.lower(), first.casefold()):
        assert db.get_user_by_email(spelling) == user
    assert count(db, "users") == 1


@pytest.mark.parametrize(("first", "second"), SAME_ADDRESS)
def test_update_user_to_an_email_equal_once_folded_already_exists(db, first, second):
    make_user(db, email=first)
    user = make_user(db)

    with pytest.raises(AlreadyExistsError) as caught:
        db.update_user(user.id, email=second)

    assert caught.value.field == "email"
    assert db.get_user_by_id(user.id) == user


@pytest.mark.parametrize(("first", "second"), OTHER_ADDRESS)
def test_emails_with_different_letters_are_two_users(db, first, second):
    one, two = make_user(db, email=first), make_user(db, email=second)

    assert db.get_user_by_email(first) == one
    assert db.get_user_by_email(second) == two
    assert db.get_user_by_email(second.casefold()) == two


@pytest.mark.parametrize("bad", ["not-a-uuid", "", "1234", 42, None, object()])
def test_malformed_ids_are_validation_errors(db, bad):
    for call in (db.get_user_by_id, db.delete_user, db.update_user):
        with pytest.raises(ValidationError, match="id must be a UUID") as caught:
            call(bad)
        assert_library_error(caught)


@pytest.mark.parametrize(
    "email",
    [
        "no-at-sign",
        "two@@example.com",
        "no-dot@example",
        "spaces in@example.com",
        "@example.com",
        "a" * 250 + "@example.com",
    ],
)
def test_badly_shaped_email_is_a_validation_error(db, email):
    with pytest.raises(ValidationError) as caught:
        db.create_user(email=email, password_hash="secret-hash-value")

    assert "email" in str(caught.value)
    assert "secret-hash-value" not in str(caught.value)
    assert_library_error(caught)
    assert count(db, "users") == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"plan_type": "gold"}, "plan_type"),
        ({"plan_type": "FREE"}, "plan_type"),
        ({"email": 7}, "email"),
        ({"email": None}, "email"),
        ({"email": "nul\x00@example.com"}, "email"),
        ({"password_hash": ""}, "password_hash"),
        ({"password_hash": None}, "password_hash"),
        ({"password_hash": "x" * 1025}, "password_hash"),
    ],
)
def test_bad_user_fields_are_validation_errors(db, fields, field):
    with pytest.raises(ValidationError, match=field) as caught:
        db.create_user(**{"email": unique_email(), "password_hash": "h", **fields})

    assert_library_error(caught)
    assert count(db, "users") == 0


def test_unknown_plan_error_lists_the_allowed_plans(db):
    with pytest.raises(ValidationError) as caught:
        db.create_user(email=unique_email(), password_hash="h", plan_type="enterprise")

    assert "free, personal, team" in str(caught.value)
    assert "enterprise" in str(caught.value)


def test_get_user_by_email_rejects_non_text(db):
    with pytest.raises(ValidationError, match="email"):
        db.get_user_by_email(None)
