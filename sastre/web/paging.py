"""Keyset paging for lists ordered newest first by (a time, an id): the cursor a page ends
with says where the next one starts, so rows that change meanwhile neither repeat nor vanish
the way they would with an offset. The cursor is opaque to clients (URL-safe base64)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

__all__ = ["read_cursor", "write_cursor"]

MAX_ID = 2**63


def write_cursor(at: datetime, row_id: int) -> str:
    raw = f"{at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_cursor(cursor: str) -> tuple[datetime, int] | None:
    """The (time, id) a cursor from `write_cursor` holds; None for anything else."""
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, row_id = decoded.partition("|")
        when = datetime.fromisoformat(at)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if when.tzinfo is None or not row_id.isdecimal() or not 0 < int(row_id) < MAX_ID:
        return None
    return when, int(row_id)
