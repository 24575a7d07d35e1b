"""Outbox cursors: what `write_cursor` gives reads back; anything else a client sends is None,
never an error (the cursor is not signed)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import example, given
from hypothesis import strategies as st

from sastre.web.paging import MAX_ID, read_cursor, whole_number, write_cursor

ids = st.integers(min_value=1, max_value=MAX_ID - 1)
offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def _encoded(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@given(st.datetimes(timezones=st.just(UTC)), ids)
def test_a_cursor_reads_back_what_it_was_written_with(at: datetime, row_id: int) -> None:
    assert read_cursor(write_cursor(at, row_id)) == (at, row_id)


@given(st.datetimes(timezones=offsets), st.text(max_size=30))
@example(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), "1")
@example(datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14))), "1")
@example(datetime(2026, 1, 1, tzinfo=UTC), "9" * 5000)
def test_a_forged_cursor_is_none_or_a_time_in_utc(at: datetime, row_id: str) -> None:
    """Whatever the time's offset (one that leaves years 1-9999 once in UTC included) or the id
    (one too long for int() included)."""
    read = read_cursor(_encoded(f"{at.isoformat()}|{row_id}"))
    if read is not None:
        when, number = read
        assert when.tzinfo is UTC
        assert when == at
        assert 0 < number < MAX_ID


@given(st.text(max_size=60))
def test_any_text_is_none_or_a_cursor(cursor: str) -> None:
    read = read_cursor(cursor)
    assert read is None or read[0].tzinfo is UTC


@given(st.integers(min_value=0, max_value=10**25), st.integers(min_value=1, max_value=MAX_ID))
def test_a_whole_number_is_read_when_it_is_below_the_bound(number: int, below: int) -> None:
    expected = number if number < below else None
    assert whole_number(str(number), below=below) == expected
    assert whole_number("000" + str(number), below=below) == expected


@given(st.text(max_size=50))
@example("9" * 5000)
@example("٣")  # a digit int() reads, of another script
@example("")
@example("-1")
def test_anything_else_is_none_never_an_error(raw: str) -> None:
    if not (raw.isascii() and raw.isdecimal()):
        assert whole_number(raw, below=MAX_ID) is None
    else:
        digits = raw.lstrip("0") or "0"
        fits = len(digits) <= len(str(MAX_ID)) and int(digits) < MAX_ID
        assert whole_number(raw, below=MAX_ID) == (int(digits) if fits else None)
