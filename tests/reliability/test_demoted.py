"""A connection whose server turned read-only (a primary demoted by a failover) is lost.

After a failover the old primary can come back as a standby while pooled connections still
point at it. Such a connection is discarded, never lent again, and the refused write is
reported as not applied. Here the session is made read-only by hand, which PostgreSQL answers
exactly as a standby does (SQLSTATE 25006).
"""

from __future__ import annotations

from typing import Any

import pytest

from coderunner_sql import DatabaseConfig, DatabaseUnavailableError
from tests.helpers import unique_email


def test_a_read_only_connection_is_discarded_and_the_next_call_works(
    open_service: Any, db_config: DatabaseConfig
) -> None:
    db = open_service(db_config.replace(pool_min=1, pool_max=1))
    db.query("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    with pytest.raises(DatabaseUnavailableError, match="read-only") as caught:
        db.create_user(email=unique_email("refused"), password_hash="h")
    assert caught.value.outcome_unknown is False  # refused: nothing was written
    # The pool's only connection was the read-only one: the next write gets a new one.
    user = db.create_user(email=unique_email("after"), password_hash="h")
    assert db.get_user_by_id(user.id) == user
    assert db.query("SELECT count(*) AS n FROM users WHERE email LIKE 'refused%'") == [{"n": 0}]
