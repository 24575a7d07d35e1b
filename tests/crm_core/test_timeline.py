"""The customer's timeline: interactions are added one by one and read back newest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy.ext.asyncio import AsyncSession

from crm_core import Customer, add_interaction, timeline
from crm_core.models import InteractionKind
from crm_core.timeline import interaction_view
from sastre.db import SessionMaker

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


async def new_customer(session: AsyncSession) -> Customer:
    customer = Customer()
    session.add(customer)
    await session.flush()
    return customer


async def test_add_interaction_stores_every_field(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        customer = await new_customer(session)
        added = await add_interaction(
            session,
            customer.id,
            InteractionKind.MESSAGE_IN,
            "Where is my order?",
            channel="sms",
            actor="customer",
            data={"message_sid": "SM123"},
            occurred_at=T0,
        )
    async with sessionmaker() as session:
        (stored,) = await timeline(session, customer.id)
    assert interaction_view(stored) == {
        "id": added.id,
        "kind": "message_in",
        "channel": "sms",
        "summary": "Where is my order?",
        "actor": "customer",
        "data": {"message_sid": "SM123"},
        "occurred_at": "2026-01-01T09:00:00+00:00",
    }


async def test_interaction_defaults_to_now_and_no_data(sessionmaker: SessionMaker) -> None:
    before = datetime.now(UTC)
    async with sessionmaker.begin() as session:
        customer = await new_customer(session)
        await add_interaction(session, customer.id, InteractionKind.NOTE, "called back")
    async with sessionmaker() as session:
        (stored,) = await timeline(session, customer.id)
    assert before <= stored.occurred_at <= datetime.now(UTC)
    assert (stored.channel, stored.actor, stored.data) == (None, None, {})


async def test_occurred_at_in_another_zone_is_stored_as_utc(sessionmaker: SessionMaker) -> None:
    madrid_winter = timezone(timedelta(hours=1))
    async with sessionmaker.begin() as session:
        customer = await new_customer(session)
        await add_interaction(
            session,
            customer.id,
            InteractionKind.PURCHASE,
            "shoes",
            occurred_at=datetime(2026, 1, 1, 10, 0, tzinfo=madrid_winter),
        )
    async with sessionmaker() as session:
        (stored,) = await timeline(session, customer.id)
    assert stored.occurred_at == T0
    assert stored.occurred_at.tzinfo == UTC


async def test_timeline_is_newest_first_whatever_the_insertion_order(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        customer = await new_customer(session)
        for hours, summary in [(2, "second"), (0, "first"), (5, "third")]:
            await add_interaction(
                session,
                customer.id,
                InteractionKind.NOTE,
                summary,
                occurred_at=T0 + timedelta(hours=hours),
            )
    async with sessionmaker() as session:
        summaries = [i.summary for i in await timeline(session, customer.id)]
    assert summaries == ["third", "second", "first"]


async def test_interactions_at_the_same_moment_are_newest_added_first(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        customer = await new_customer(session)
        for summary in ("a", "b", "c"):
            await add_interaction(
                session, customer.id, InteractionKind.NOTE, summary, occurred_at=T0
            )
    async with sessionmaker() as session:
        summaries = [i.summary for i in await timeline(session, customer.id)]
    assert summaries == ["c", "b", "a"]


async def test_timeline_limit_keeps_the_newest(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        customer = await new_customer(session)
        for minute in range(10):
            await add_interaction(
                session,
                customer.id,
                InteractionKind.MESSAGE_OUT,
                f"message {minute}",
                occurred_at=T0 + timedelta(minutes=minute),
            )
    async with sessionmaker() as session:
        summaries = [i.summary for i in await timeline(session, customer.id, limit=3)]
    assert summaries == ["message 9", "message 8", "message 7"]


async def test_timeline_defaults_to_50_entries(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        customer = await new_customer(session)
        for minute in range(52):
            await add_interaction(
                session,
                customer.id,
                InteractionKind.NOTE,
                f"note {minute}",
                occurred_at=T0 + timedelta(minutes=minute),
            )
    async with sessionmaker() as session:
        entries = await timeline(session, customer.id)
    assert len(entries) == 50
    assert entries[-1].summary == "note 2"


async def test_timeline_holds_only_the_customers_own_interactions(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        ana, bob = await new_customer(session), await new_customer(session)
        await add_interaction(session, ana.id, InteractionKind.NOTE, "about ana", occurred_at=T0)
        await add_interaction(session, bob.id, InteractionKind.NOTE, "about bob", occurred_at=T0)
    async with sessionmaker() as session:
        assert [i.summary for i in await timeline(session, ana.id)] == ["about ana"]


async def test_empty_timeline(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        customer = await new_customer(session)
    async with sessionmaker() as session:
        assert await timeline(session, customer.id) == []
