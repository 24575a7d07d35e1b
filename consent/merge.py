"""Two customer records of one person merged: their contact preferences become one.

The consent ledger's own merge (the most restrictive state wins) is `consent.ledger.
merge_consents`; this is the rest of what consent keeps per customer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from consent.models import Preferences

__all__ = ["merge_preferences"]

_FIELDS = (
    "channels",
    "window_days",
    "window_start",
    "window_end",
    "language",
    "timezone",
    "topics",
)


async def merge_preferences(
    session: AsyncSession, survivor_id: int, other_id: int
) -> dict[str, Any]:
    """The survivor's stated preferences win; what only the other record stated fills the gaps
    (a window stays whole: days, start and end come from one record). The other's row is
    removed once folded in; the audit entry returned keeps it."""
    other = await session.get(Preferences, other_id)
    if other is None:
        return {"merged": None}
    before = {name: getattr(other, name) for name in _FIELDS}
    survivor = await session.get(Preferences, survivor_id)
    if survivor is None:
        survivor = Preferences(customer_id=survivor_id, **before)
        session.add(survivor)
    else:
        for name in ("channels", "topics", "language", "timezone"):
            if not getattr(survivor, name):
                setattr(survivor, name, getattr(other, name))
        if survivor.window_start is None and other.window_start is not None:
            survivor.window_days = other.window_days
            survivor.window_start, survivor.window_end = other.window_start, other.window_end
    await session.delete(other)
    await session.flush()
    return {"merged": before}
