"""Merging two records' contact preferences: the survivor's choices win, the other's fill gaps."""

from __future__ import annotations

from consent.merge import merge_preferences
from consent.models import Preferences
from crm_core.models import Customer, CustomerStatus
from sastre.db import SessionMaker


async def _customers(
    sessionmaker: SessionMaker, *preferences: dict[str, object] | None
) -> list[int]:
    async with sessionmaker.begin() as session:
        ids = []
        for chosen in preferences:
            customer = Customer(status=CustomerStatus.CUSTOMER.value)
            session.add(customer)
            await session.flush()
            if chosen is not None:
                session.add(Preferences(customer_id=customer.id, **chosen))
            ids.append(customer.id)
        return ids


async def test_the_others_preferences_move_when_the_survivor_has_none(
    sessionmaker: SessionMaker,
) -> None:
    survivor, other = await _customers(sessionmaker, None, {"channels": ["sms"], "language": "es"})
    async with sessionmaker.begin() as session:
        facts = await merge_preferences(session, survivor, other)
    async with sessionmaker() as session:
        moved = await session.get_one(Preferences, survivor)
        assert await session.get(Preferences, other) is None
    assert (moved.channels, moved.language) == (["sms"], "es")
    assert facts["merged"]["channels"] == ["sms"]


async def test_the_survivors_choices_win_and_gaps_are_filled(sessionmaker: SessionMaker) -> None:
    survivor, other = await _customers(
        sessionmaker,
        {"channels": ["email"]},
        {
            "channels": ["sms"],
            "language": "es",
            "window_days": [0, 1],
            "window_start": "18:00",
            "window_end": "20:00",
        },
    )
    async with sessionmaker.begin() as session:
        await merge_preferences(session, survivor, other)
    async with sessionmaker() as session:
        kept = await session.get_one(Preferences, survivor)
    assert (kept.channels, kept.language) == (["email"], "es")
    assert (kept.window_days, kept.window_start, kept.window_end) == ([0, 1], "18:00", "20:00")


async def test_nothing_to_merge_changes_nothing(sessionmaker: SessionMaker) -> None:
    survivor, other = await _customers(sessionmaker, {"channels": ["email"]}, None)
    async with sessionmaker.begin() as session:
        assert await merge_preferences(session, survivor, other) == {"merged": None}
