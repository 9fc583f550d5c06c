"""Emails and project names are compared by `coderunner_fold()`, the same on every server.

The rule (migrations/20261206155132_locale_independent_case_folding.sql) is Python's
`NFKC(casefold(NFKD(s)))` with the Unicode 14.0 tables of Python 3.11, computed in SQL by
fixed tables, so neither the server's locale nor ICU (the embedded server has none) changes
an answer. These tests hold the SQL to the Python rule character by character, check that
the lookups still use the unique indexes, and run the migration over rows it must refuse.
"""

from __future__ import annotations

import random
import shutil
import sys
import unicodedata
from pathlib import Path
from typing import Any

import aiosql
import psycopg
import pytest

from coderunner_sql import DatabaseConfig, MigrationError
from coderunner_sql.migrations import Migrator
from coderunner_sql.resources import queries_dir
from tests.plugins.postgres import create_database, drop_database

FOLDING = "20261206155132_locale_independent_case_folding"
# The Unicode version the migration's tables were generated from (Python 3.11's).
TABLE_UNICODE = "14.0.0"


def reference_fold(text: str) -> str:
    """The rule, in Python: what `coderunner_fold(text)` must return."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKD", text).casefold())


def _assigned(char: str) -> bool:
    # Under another Python's Unicode, letters added since 14.0 may fold there and not in the
    # tables; characters already in Unicode 3.2 fold and normalise the same in every version.
    if unicodedata.unidata_version == TABLE_UNICODE:
        return unicodedata.category(char) != "Cn"
    return unicodedata.ucd_3_2_0.category(char) != "Cn"


def _interesting() -> list[str]:
    """Every assigned character the rule changes, what it changes them into, and ASCII."""
    chars: set[str] = {chr(cp) for cp in range(1, 128)}
    for cp in range(128, sys.maxunicode + 1):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        char = chr(cp)
        if _assigned(char) and reference_fold(char) != char:
            chars.add(char)
            chars.update(c for c in reference_fold(char) if _assigned(c))
    return sorted(chars)


@pytest.fixture(scope="module")
def folding_db(pg_admin_url: str, pg_admin_config: DatabaseConfig, template_db: str) -> Any:
    """One migrated database for this module's read-only checks."""
    name = create_database(pg_admin_url, template=template_db)
    try:
        yield pg_admin_config.replace(dbname=name)
    finally:
        drop_database(pg_admin_url, name)


def fold_all(config: DatabaseConfig, texts: list[str]) -> list[str]:
    with psycopg.connect(config.conninfo()) as conn:
        rows = conn.execute(
            "SELECT coderunner_fold(t.text) FROM unnest(%s::text[]) WITH ORDINALITY AS t(text, n) "
            "ORDER BY t.n",
            (texts,),
        ).fetchall()
    return [row[0] for row in rows]


def test_every_character_folds_as_python_does(folding_db: DatabaseConfig) -> None:
    chars = _interesting()
    assert len(chars) > 5000  # every case pair and compatibility form, not a sample
    folded = fold_all(folding_db, chars)
    wrong = [
        (f"U+{ord(c):04X}", got, reference_fold(c))
        for c, got in zip(chars, folded, strict=True)
        if got != reference_fold(c)
    ]
    assert wrong == []


def test_mixed_strings_fold_as_python_does(folding_db: DatabaseConfig) -> None:
    # Composition across characters (e + U+0301 is é) and the order of the steps show only
    # in strings: letters, accents, fullwidth and Greek forms with their iota subscripts.
    pool = (
        [chr(cp) for cp in range(0x20, 0x7F)]
        + [chr(cp) for cp in range(0xC0, 0x250)]
        + [chr(cp) for cp in range(0x300, 0x370)]
        + [chr(cp) for cp in range(0x370, 0x530)]
        + [chr(cp) for cp in range(0x1E00, 0x2000)]
        + [chr(cp) for cp in range(0xFF01, 0xFF5F)]
        # ß, capital ß, dotted and dotless i, the fi ligature, final sigma, the iota
        # subscript, the Kelvin and Ångström signs.
        + ["ß", "ẞ", "İ", "\u0131", "\ufb01", "ς", "\u0345", "\u212a", "\u212b"]
    )
    pool = [c for c in pool if _assigned(c)]
    rng = random.Random(14)
    texts = ["".join(rng.choices(pool, k=rng.randint(1, 24))) for _ in range(5000)]
    folded = fold_all(folding_db, texts)
    wrong = [
        (text, got, reference_fold(text))
        for text, got in zip(texts, folded, strict=True)
        if got != reference_fold(text)
    ]
    assert wrong == []


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Ada.Lovelace@Example.COM", "ada.lovelace@example.com"),
        ("ÉLODIE", "élodie"),
        ("E\u0301LODIE", "élodie"),
        ("ΑΘΗΝΑ", "αθηνα"),
        ("ΣΊΣΥΦΟΣ", "σίσυφοσ"),
        ("ИВАН", "иван"),
        ("\uff21\uff22\uff23", "abc"),
        ("STRASSE", "strasse"),
        ("straße", "strasse"),
        ("\u0131", "\u0131"),
        ("", ""),
    ],
)
def test_examples(folding_db: DatabaseConfig, text: str, folded: str) -> None:
    assert fold_all(folding_db, [text]) == [folded]
    assert reference_fold(text) == folded


# -- the lookups use the indexes ----------------------------------------------------------------


QUERIES = aiosql.from_path(queries_dir(), "psycopg")


def _index_names(plan: dict[str, Any]) -> set[str]:
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= _index_names(child)
    return found


@pytest.mark.parametrize("email", ["ada@example.com", "ÉLODIE@example.com", "straße@example.com"])
def test_get_user_by_email_uses_the_fold_index(folding_db: DatabaseConfig, email: str) -> None:
    with psycopg.connect(folding_db.conninfo()) as conn:
        conn.execute(
            "INSERT INTO users (email, password_hash) "
            "SELECT 'u' || i || '@example.com', 'h' FROM generate_series(1, 2000) AS i"
        )
        conn.execute("ANALYZE users")
        sql = QUERIES.get_user_by_email.sql
        plan = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", {"email": email}).fetchone()
        assert plan is not None
        assert _index_names(plan[0][0]["Plan"]) == {"users_email_fold_key"}
        if conn.info.server_version >= 160000:
            generic = sql.replace("%(email)s", "$1")
            plan = conn.execute(f"EXPLAIN (FORMAT JSON, GENERIC_PLAN) {generic}").fetchone()
            assert plan is not None
            assert _index_names(plan[0][0]["Plan"]) == {"users_email_fold_key"}
        conn.rollback()


# -- the migration over existing rows ------------------------------------------------------------


@pytest.fixture
def before_folding(
    migrations_copy: Path, empty_db_config: DatabaseConfig, tmp_path: Path
) -> tuple[Migrator, Path]:
    """A database migrated up to the migration before this one; the folder holds it again."""
    held = tmp_path / "held"
    held.mkdir()
    for path in migrations_copy.glob(f"{FOLDING}*.sql"):
        shutil.move(path, held / path.name)
    Migrator(empty_db_config, migrations_copy).apply()
    for path in held.iterdir():
        shutil.move(path, migrations_copy / path.name)
    return Migrator(empty_db_config, migrations_copy), migrations_copy


def _run(config: DatabaseConfig, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(config.conninfo(), autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def _indexes(config: DatabaseConfig) -> set[str]:
    rows = _run(
        config,
        "SELECT indexname FROM pg_indexes WHERE tablename IN ('users', 'projects') "
        "AND indexname LIKE '%%\\_key'",
    )
    return {name for (name,) in rows}


def test_migration_refuses_rows_the_rule_makes_duplicates(
    before_folding: tuple[Migrator, Path], empty_db_config: DatabaseConfig
) -> None:
    migrator, _folder = before_folding
    config = empty_db_config
    # Addresses lower() tells apart on every server: the C locale and C.UTF-8 alike keep ß.
    _run(
        config,
        "INSERT INTO users (email, password_hash) VALUES "
        "('STRASSE@example.com', 'h'), ('straße@example.com', 'h'), ('ada@example.com', 'h')",
    )

    with pytest.raises(MigrationError) as caught:
        migrator.apply()

    message = str(caught.value)
    assert "1 email(s) belong to more than one user once letter case is folded" in message
    assert "SELECT coderunner_fold(email), array_agg(email) FROM users" in message
    assert _indexes(config) == {"users_email_lower_key", "projects_user_name_lower_key"}

    # Resolved by a person; the rerun builds the new indexes and drops the old ones.
    _run(
        config,
        "UPDATE users SET email = 'strasse.2@example.com' WHERE email = 'STRASSE@example.com'",
    )
    user_id = _run(config, "SELECT id FROM users WHERE email = 'ada@example.com'")[0][0]
    _run(
        config,
        "INSERT INTO projects (user_id, name) VALUES (%s, 'STRASSE'), (%s, 'straße')",
        (user_id, user_id),
    )
    with pytest.raises(MigrationError, match=r"1 project name\(s\) are used twice by one user"):
        migrator.apply()
    _run(config, "DELETE FROM projects WHERE name = 'straße'")

    assert migrator.apply().applied == (FOLDING,)
    assert _indexes(config) == {"users_email_fold_key", "projects_user_name_fold_key"}


def test_migration_rebuilds_an_index_a_failed_run_left_invalid(
    before_folding: tuple[Migrator, Path], empty_db_config: DatabaseConfig
) -> None:
    migrator, folder = before_folding
    config = empty_db_config
    # What a run that failed while building the index leaves: the index, INVALID. (A
    # CONCURRENTLY build that meets a duplicate is the real way; this is the same state.)
    _run(config, (folder / f"{FOLDING}.sql").read_text().split("\n\n-- Rows that")[0])
    _run(
        config, "INSERT INTO users (email, password_hash) VALUES ('ß@b.co', 'h'), ('SS@b.co', 'h')"
    )
    with pytest.raises(psycopg.errors.UniqueViolation):
        _run(
            config,
            "CREATE UNIQUE INDEX CONCURRENTLY users_email_fold_key "
            "ON users (coderunner_fold(email))",
        )
    _run(config, "DELETE FROM users WHERE email = 'SS@b.co'")
    invalid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email_fold_key'::regclass"
    assert _run(config, invalid) == [(False,)]

    migrator.apply()

    assert _run(config, invalid) == [(True,)]
    with pytest.raises(psycopg.errors.UniqueViolation):
        _run(config, "INSERT INTO users (email, password_hash) VALUES ('Ss@B.CO', 'h')")


def test_rollback_restores_the_lower_indexes(
    before_folding: tuple[Migrator, Path], empty_db_config: DatabaseConfig
) -> None:
    migrator, _folder = before_folding
    migrator.apply()

    assert migrator.rollback().rolled_back == (FOLDING,)

    assert _indexes(empty_db_config) == {"users_email_lower_key", "projects_user_name_lower_key"}
    assert _run(empty_db_config, "SELECT to_regprocedure('coderunner_fold(text)')") == [(None,)]
    assert migrator.apply().applied == (FOLDING,)
