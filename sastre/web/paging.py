"""Keyset paging for lists ordered newest first by (a time, an id): the cursor a page ends
with says where the next one starts, so rows that change meanwhile neither repeat nor vanish
the way they would with an offset. The cursor is opaque to clients (URL-safe base64)."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from crm_core.sqltypes import MAX_ID, whole_number

__all__ = ["MAX_ID", "read_cursor", "whole_number", "write_cursor"]


def write_cursor(at: datetime, row_id: int) -> str:
    raw = f"{at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_cursor(cursor: str) -> tuple[datetime, int] | None:
    """The (time, id) a cursor from `write_cursor` holds, the time in UTC; None for anything
    else. The cursor is not signed, so a client may send any text: a time with an offset that
    puts it outside years 1-9999 once in UTC (0001-01-01T00:00+14:00) is refused here, not an
    OverflowError when the database query converts it."""
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, row_id = decoded.partition("|")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            return None
        when = when.astimezone(UTC)
        number = int(row_id) if row_id.isascii() and row_id.isdecimal() else 0
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        return None  # ValueError includes an id too long for int() to read
    if not 0 < number < MAX_ID:
        return None
    return when, number
