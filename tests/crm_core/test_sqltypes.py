"""`UTCDateTime`: aware UTC datetimes in and out, stored on SQLite as SQLAlchemy stores them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite import DATETIME

from crm_core.sqltypes import UTCDateTime

_ZONES = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
_AWARE = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_ZONES
)


@given(_AWARE)
def test_sqlite_stores_the_text_sqlalchemys_datetime_would(value: datetime) -> None:
    dialect = sqlite.dialect()
    ours = UTCDateTime().bind_processor(dialect)
    generic = DATETIME().bind_processor(dialect)  # type: ignore[no-untyped-call]
    assert ours is not None
    assert generic is not None
    assert ours(value) == generic(value.astimezone(UTC).replace(tzinfo=None))


def test_a_naive_datetime_is_refused_on_both_databases() -> None:
    for dialect in (sqlite.dialect(), postgresql.dialect()):  # type: ignore[no-untyped-call]
        with pytest.raises(ValueError, match="naive datetime"):
            UTCDateTime().process_bind_param(datetime(2026, 1, 5, 12), dialect)
    process = UTCDateTime().bind_processor(sqlite.dialect())
    assert process is not None
    with pytest.raises(ValueError, match="naive datetime"):
        process(datetime(2026, 1, 5, 12))


def test_none_stays_none_on_sqlite() -> None:
    process = UTCDateTime().bind_processor(sqlite.dialect())
    assert process is not None
    assert process(None) is None
