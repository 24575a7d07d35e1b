"""Purging idle web chat leads: a lead that is only a cookie and old messages goes, with every
row about it; anything that makes it somebody keeps it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from consent.ledger import record_consent
from consent.types import Action, Channel, Purpose, Source
from crm_core.models import (
    AuditEntry,
    Customer,
    CustomerStatus,
    Identity,
    IdentityKind,
    Interaction,
    InteractionKind,
)
from dialog.models import Conversation, ConversationState, LabelledExample, Message
from sastre.db import SessionMaker
from sastre.operations.owned import OWNED_TABLES
from sastre.operations.purge import TREATMENT, do_purge_idle_leads
from sastre.schema import metadata

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=31)
IDLE = timedelta(days=30)
ACTOR = "system:purge"


async def add_lead(session: AsyncSession, visitor: str, *, at: datetime = T0) -> int:
    """A lead as the web chat makes one: a visitor id, a conversation, a message and its reply."""
    lead = Customer(status=CustomerStatus.LEAD.value, created_at=at, updated_at=at)
    session.add(lead)
    await session.flush()
    session.add(Identity(kind=IdentityKind.WEBCHAT.value, value=visitor, customer_id=lead.id))
    conversation = Conversation(customer_id=lead.id, channel="webchat", address=visitor)
    session.add(conversation)
    await session.flush()
    for direction, author in (("in", "customer"), ("out", "bot")):
        session.add(
            Message(
                conversation_id=conversation.id,
                customer_id=lead.id,
                channel="webchat",
                direction=direction,
                provider_id=f"{visitor}:{direction}",
                address=visitor,
                text="hola",
                author=author,
                created_at=at,
            )
        )
        kind = InteractionKind.MESSAGE_IN if direction == "in" else InteractionKind.MESSAGE_OUT
        session.add(Interaction(customer_id=lead.id, kind=kind.value, occurred_at=at))
    await session.flush()
    return lead.id


async def rows_about(session: AsyncSession, customer_id: int) -> dict[str, int]:
    """Rows in every table with a `customer_id` (but the audit log) about this customer."""
    counts = {}
    for table in metadata.tables.values():
        if "customer_id" in table.c and table.name != "audit_log":
            query = select(func.count()).select_from(table)
            count = await session.scalar(query.where(table.c.customer_id == customer_id))
            counts[table.name] = int(count or 0)
    return {name: n for name, n in counts.items() if n}


def test_every_table_about_a_customer_has_a_treatment() -> None:
    assert {owned.name for owned in OWNED_TABLES} <= set(TREATMENT)


async def test_an_idle_lead_is_purged_with_every_row_about_it(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        lead = await add_lead(session, "visitor-idle-0000000001")
    purged = await do_purge_idle_leads(sessionmaker, IDLE, actor=ACTOR, now=LATER)
    assert purged == [lead]
    async with sessionmaker() as session:
        assert await session.get(Customer, lead) is None
        assert await rows_about(session, lead) == {}
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "lead.purge"))
        assert entry is not None
        assert (entry.actor, entry.data["customers"]) == (ACTOR, [lead])


async def test_a_lead_who_picked_an_offered_option_is_purged_with_their_words(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        lead = await add_lead(session, "visitor-picked-00000001")
        asked = await session.scalar(
            select(Message).where(Message.customer_id == lead, Message.direction == "in")
        )
        assert asked is not None
        session.add(
            LabelledExample(
                text=asked.text,
                language="es",
                label="faq:opening-hours",
                source="choice",
                conversation_id=asked.conversation_id,
                message_id=asked.id,
                created_at=T0,
            )
        )
    assert await do_purge_idle_leads(sessionmaker, IDLE, actor=ACTOR, now=LATER) == [lead]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(LabelledExample)) == 0


async def test_nothing_is_purged_before_the_idle_time(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        await add_lead(session, "visitor-young-000000001")
    assert await do_purge_idle_leads(sessionmaker, IDLE, actor=ACTOR, now=T0 + IDLE) == []


Keeper = Callable[[AsyncSession, int], Awaitable[None]]


async def wrote_recently(session: AsyncSession, lead: int) -> None:
    await session.execute(
        update(Message).where(Message.customer_id == lead).values(created_at=LATER - IDLE / 2)
    )


async def gave_an_email(session: AsyncSession, lead: int) -> None:
    session.add(Identity(kind=IdentityKind.EMAIL.value, value="ana@example.com", customer_id=lead))


async def was_verified(session: AsyncSession, lead: int) -> None:
    await session.execute(
        update(Identity).where(Identity.customer_id == lead).values(verified=True)
    )


async def has_a_staff_note(session: AsyncSession, lead: int) -> None:
    session.add(Interaction(customer_id=lead, kind=InteractionKind.NOTE.value, occurred_at=T0))


async def waits_for_a_person(session: AsyncSession, lead: int) -> None:
    await session.execute(
        update(Conversation)
        .where(Conversation.customer_id == lead)
        .values(state=ConversationState.QUEUED.value, waiting_since=T0)
    )


async def stated_consent(session: AsyncSession, lead: int) -> None:
    await record_consent(
        session, lead, Channel.EMAIL, Purpose.MARKETING, Action.GRANT, Source.API, actor=ACTOR
    )


async def absorbed_another_record(session: AsyncSession, lead: int) -> None:
    session.add(Customer(status=CustomerStatus.MERGED.value, merged_into_id=lead, created_at=T0))


@pytest.mark.parametrize(
    "keeper",
    [
        wrote_recently,
        gave_an_email,
        was_verified,
        has_a_staff_note,
        waits_for_a_person,
        stated_consent,
        absorbed_another_record,
    ],
)
async def test_a_lead_that_is_somebody_is_kept(sessionmaker: SessionMaker, keeper: Keeper) -> None:
    async with sessionmaker.begin() as session:
        lead = await add_lead(session, "visitor-keeper-00000001")
        await keeper(session, lead)
    assert await do_purge_idle_leads(sessionmaker, IDLE, actor=ACTOR, now=LATER) == []
    async with sessionmaker() as session:
        assert await session.get(Customer, lead) is not None


async def test_leads_are_purged_in_batches(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        leads = [await add_lead(session, f"visitor-batch-{n:010d}") for n in range(5)]
    purged = await do_purge_idle_leads(sessionmaker, IDLE, actor=ACTOR, now=LATER, batch=2)
    assert purged == leads
    async with sessionmaker() as session:
        entries = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "lead.purge")
        )
        assert entries == 3
