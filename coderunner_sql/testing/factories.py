"""Records for tests, with unique defaults: `make_user()`, `make_project()`, `make_deployment()`.

Every default that a unique constraint covers (email, a user's project name) carries a
fresh suffix, so a test may call a factory as often as it likes; any field can be given.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from coderunner_sql.params import IdLike
from coderunner_sql.records import Deployment, PlanType, Project, User
from coderunner_sql.service import DatabaseService

__all__ = ["RecordFactory"]

# Not a hash of any password: the column only has to hold some string.
DEFAULT_PASSWORD_HASH = "$test$not-a-real-hash"  # noqa: S105  # a placeholder, no secret
_serial = itertools.count(1)


def _unique() -> str:
    return f"{next(_serial)}-{uuid.uuid4().hex[:8]}"


class RecordFactory:
    """Makes users, projects and deployments through one `DatabaseService`."""

    def __init__(self, service: DatabaseService) -> None:
        self.service = service

    def user(
        self,
        *,
        email: str | None = None,
        password_hash: str = DEFAULT_PASSWORD_HASH,
        plan_type: PlanType | str = PlanType.FREE,
    ) -> User:
        """A new user; the email defaults to a unique `user-…@example.test`."""
        return self.service.create_user(
            email=email or f"user-{_unique()}@example.test",
            password_hash=password_hash,
            plan_type=plan_type,
        )

    def project(
        self,
        *,
        user_id: IdLike | None = None,
        name: str | None = None,
        description: str | None = None,
    ) -> Project:
        """A new project (of a new user unless `user_id` is given), named `project-…`."""
        owner = user_id if user_id is not None else self.user().id
        return self.service.create_project(
            user_id=owner, name=name or f"project-{_unique()}", description=description
        )

    def deployment(
        self, *, project_id: IdLike | None = None, runtime_type: str = "python", **fields: Any
    ) -> Deployment:
        """A new deployment (of a new project unless `project_id` is given); other fields
        as `DatabaseService.create_deployment` takes them."""
        project = project_id if project_id is not None else self.project().id
        return self.service.create_deployment(
            project_id=project, runtime_type=runtime_type, **fields
        )
