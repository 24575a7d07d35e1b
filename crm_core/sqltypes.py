"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from typing_extensions import override

__all__ = ["MAX_ID", "IdType", "JsonType", "UTCDateTime", "utcnow", "whole_number"]

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias), PostgreSQL wants BIGINT.
IdType = BigInteger().with_variant(Integer(), "sqlite")
MAX_ID = 2**63  # ids are 64-bit on both databases: every id is below this


def whole_number(raw: str, *, below: int) -> int | None:
    """`raw` (a path part, a query value, a signed link's id) as a whole number under `below`;
    None for anything else. ASCII digits only, and no more of them than `below` has: int() reads
    other scripts' digits, and refuses past 4,300 of them with a ValueError that would be a 500."""
    if not (raw.isascii() and raw.isdecimal()):
        return None
    digits = raw.lstrip("0") or "0"
    if len(digits) > len(str(below)):
        return None
    number = int(digits)
    return number if number < below else None


# JSONB on PostgreSQL, so an import merges attributes with `||` inside the database.
JsonType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in and out, on both databases.

    SQLite has no timezone-aware type: values are stored as naive UTC and made aware on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @override
    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: Sastre stores aware UTC datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    @override
    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # On SQLite the value ends as text in SQLAlchemy's DATETIME storage format
        # ("2026-01-05 12:00:00.000000"); `isoformat` writes exactly that in one C call, where
        # the generic path converts, then formats field by field (a batch binds hundreds).
        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime: Sastre stores aware UTC datetimes only")
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

        return process

    @override
    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
