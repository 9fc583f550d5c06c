"""Pages: offset or keyset (`after=` a cursor), with or without the total (I/O-free)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import attrs

from coderunner_sql.errors import ValidationError
from coderunner_sql.records import Page
from coderunner_sql.validation import check_page

__all__ = ["PageRequest", "decode_cursor", "encode_cursor", "page_request"]

T = TypeVar("T")


def encode_cursor(created_at: datetime, id: UUID) -> str:
    """An opaque cursor naming a row's place in a newest-first listing."""
    raw = f"{created_at.isoformat()}|{id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: object) -> tuple[datetime, UUID]:
    """(created_at, id) from `encode_cursor`'s output, else `ValidationError`."""
    if not isinstance(cursor, str) or len(cursor) > 200:
        raise ValidationError("after must be a cursor string from a previous page's next_cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, ident = raw.partition("|")
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return moment, UUID(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("after is not a valid cursor (use a page's next_cursor)") from None


@attrs.frozen
class PageRequest:
    """A validated page request."""

    limit: int
    offset: int
    after: tuple[datetime, UUID] | None

    def params(self) -> dict[str, Any]:
        """The paging parameters of the list query (offset or keyset form)."""
        if self.after is None:
            return {"limit": self.limit, "offset": self.offset}
        created_at, id = self.after
        return {"limit": self.limit, "after_created_at": created_at, "after_id": id}

    def page(self, items: Sequence[T], total: int | None) -> Page[T]:
        """The page, with the cursor of its last row when the listing may go on."""
        rows = list(items)
        cursor = None
        if len(rows) == self.limit and rows:
            last = rows[-1]
            cursor = encode_cursor(last.created_at, last.id)  # type: ignore[attr-defined]
        return Page(rows, total, self.limit, self.offset, cursor)


def page_request(limit: object, offset: object, after: object) -> PageRequest:
    """Validate paging arguments: `after` and a non-zero `offset` exclude each other."""
    size, skip = check_page(limit, offset)
    if after is None:
        return PageRequest(size, skip, None)
    if skip:
        raise ValidationError("give either offset or after, not both")
    return PageRequest(size, 0, decode_cursor(after))
