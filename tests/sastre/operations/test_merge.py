"""Merging two records of one person: everything either holds becomes the survivor's, in one
transaction with one audit entry, the conversation and its place in the queue included."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import ChannelName, InboundMessage
from consent.models import ContactMade, Undeliverable
from consent.replies import Brand
from crm_core.customers import IdentityConflict, find_customer, upsert_customer
from crm_core.models import AuditEntry, Customer, Identity, Interaction, InteractionKind
from crm_core.records import parse_customer
from crm_core.timeline import add_interaction
from dialog.inbound import InboundProcessor
from dialog.models import Conversation, Message
from dialog.turns import BotTurn, Turn
from sastre.db import SessionMaker
from sastre.operations import Event, do_merge_customers, do_upsert_customer, listening

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ACTOR = "supervisor:luis"


class Brain:
    """Hands off when asked for a human; echoes otherwise; remembers every turn it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn:
        self.asked.append(turn.text)
        if turn.text == "human":
            return BotTurn(["Passing you to a colleague."], handoff="customer_asked")
        return BotTurn([f"echo: {turn.text}"])


def processor(sessionmaker: SessionMaker, brain: Brain) -> InboundProcessor:
    return InboundProcessor(
        sessionmaker,
        brain,
        default_region="US",
        default_language="en",
        default_timezone="UTC",
        brand=Brand("Sastre", "support@example.com"),
    )


def sms(text: str, provider_id: str) -> InboundMessage:
    return InboundMessage(ChannelName.SMS, "+14155552671", text, provider_id)


async def customer(sessionmaker: SessionMaker, **fields: str) -> int:
    async with sessionmaker.begin() as session:
        created, _ = await upsert_customer(session, parse_customer(fields, "US"))
        return created.id


async def test_a_queued_customer_merged_away_stays_queued_and_the_bot_stays_silent(
    sessionmaker: SessionMaker,
) -> None:
    """The bug: the queued conversation stayed on the merged-away record and the next message
    opened a new one with the bot."""
    brain = Brain()
    inbound = processor(sessionmaker, brain)
    handed = await inbound.handle(sms("human", "SM1"))  # a lead asks for a human
    assert handed.handed_off
    known = await customer(sessionmaker, external_id="SHOP-1", email="ana@example.com")
    await do_merge_customers(sessionmaker, known, handed.customer_id or 0, actor=ACTOR)
    again = await inbound.handle(sms("hello? anyone?", "SM2"))
    assert again.customer_id == known
    assert again.conversation_id == handed.conversation_id
    assert again.replies == ()
    assert brain.asked == ["human"]
    async with sessionmaker() as session:
        queued = await session.get_one(Conversation, handed.conversation_id)
    assert (queued.customer_id, queued.state) == (known, "queued")


async def test_a_queued_lead_merged_into_a_cmv_customer_waits_as_cmv(
    sessionmaker: SessionMaker,
) -> None:
    """The bug: the conversation kept the lead's STANDARD priority, which the queue reads."""
    inbound = processor(sessionmaker, Brain())
    handed = await inbound.handle(sms("human", "SM1"))
    known = await customer(sessionmaker, external_id="SHOP-1", email="ana@example.com")
    async with sessionmaker.begin() as session:
        (await session.get_one(Customer, known)).tier = "CMV"
    await do_merge_customers(sessionmaker, known, handed.customer_id or 0, actor=ACTOR)
    async with sessionmaker() as session:
        queued = await session.get_one(Conversation, handed.conversation_id)
    assert (queued.customer_id, queued.state, queued.priority_tier) == (known, "queued", "CMV")


async def test_the_survivors_bot_conversation_gives_way_to_the_queued_one(
    sessionmaker: SessionMaker,
) -> None:
    brain = Brain()
    inbound = processor(sessionmaker, brain)
    known = await customer(sessionmaker, external_id="SHOP-1", email="ana@example.com")
    by_mail = await inbound.handle(
        InboundMessage(ChannelName.EMAIL, "ana@example.com", "where is my order?", "<m1@x>")
    )
    handed = await inbound.handle(sms("human", "SM1"))
    await do_merge_customers(sessionmaker, known, handed.customer_id or 0, actor=ACTOR)
    async with sessionmaker() as session:
        bot = await session.get_one(Conversation, by_mail.conversation_id)
        queued = await session.get_one(Conversation, handed.conversation_id)
        texts = set(
            await session.scalars(select(Message.text).where(Message.conversation_id == queued.id))
        )
    assert (bot.state, queued.state, queued.customer_id) == ("resolved", "queued", known)
    assert {"where is my order?", "human"} <= texts


async def test_merge_keeps_every_identity_and_interaction_and_notes_itself(
    sessionmaker: SessionMaker,
) -> None:
    survivor = await customer(sessionmaker, external_id="SHOP-1", email="ana@example.com")
    other = await customer(sessionmaker, external_id="CALL-7", phone="(415) 555-2671")
    async with sessionmaker.begin() as session:
        await add_interaction(session, other, InteractionKind.CALLBACK, "call 1")
    view = await do_merge_customers(sessionmaker, survivor, other, actor=ACTOR)
    assert {(i["kind"], i["value"]) for i in view["identities"]} == {
        ("email", "ana@example.com"),
        ("external", "CALL-7"),
        ("external", "SHOP-1"),
        ("phone", "+14155552671"),
    }
    assert [i["summary"] for i in view["interactions"]] == [
        f"Customer {other} merged into this one",
        "call 1",
    ]
    async with sessionmaker() as session:
        found = await find_customer(session, "external", "CALL-7", "US")
        left = await session.scalar(
            select(func.count()).select_from(Identity).where(Identity.customer_id == other)
        )
    assert (found.id, left) == (survivor, 0)


async def test_one_audit_entry_tells_what_every_table_did(sessionmaker: SessionMaker) -> None:
    survivor = await customer(sessionmaker, external_id="SHOP-1", email="ana@example.com")
    other = await customer(sessionmaker, external_id="CALL-7", phone="+14155552671")
    async with sessionmaker.begin() as session:
        session.add(ContactMade(customer_id=other, channel="sms", purpose="marketing", at=T0))
        for owner in (survivor, other):  # the same bounce on both records
            session.add(
                Undeliverable(customer_id=owner, channel="sms", address="+1415", reason="x", at=T0)
            )
    await do_merge_customers(sessionmaker, survivor, other, actor=ACTOR)
    async with sessionmaker() as session:
        [entry] = list(
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "customer.merge"))
        )
        contacts = await session.scalar(
            select(func.count()).select_from(ContactMade).where(ContactMade.customer_id == survivor)
        )
        bounces = list(await session.scalars(select(Undeliverable.customer_id)))
    data: dict[str, Any] = entry.data
    assert (entry.actor, entry.customer_id) == (ACTOR, survivor)
    assert (data["survivor_id"], data["merged_id"], data["forced"]) == (survivor, other, False)
    assert data["merged_snapshot"]["id"] == other
    assert data["tables"]["identities"] == 2
    assert data["tables"]["contacts_made"] == 1
    assert data["tables"]["undeliverable_addresses"]["moved"] == 0
    assert len(data["tables"]["undeliverable_addresses"]["already_held"]) == 1
    assert (contacts, bounces) == (1, [survivor])


async def test_a_refused_merge_changes_nothing_and_tells_nobody(
    sessionmaker: SessionMaker,
) -> None:
    survivor = await customer(sessionmaker, external_id="SHOP-1")
    heard: list[Event] = []

    async def listener(event: Event) -> None:
        heard.append(event)

    async with listening(listener):
        with pytest.raises(LookupError):
            await do_merge_customers(sessionmaker, survivor, 999_999, actor=ACTOR)
        await do_merge_customers(
            sessionmaker, survivor, await customer(sessionmaker, external_id="X"), actor=ACTOR
        )
    assert [e.name for e in heard] == ["customer.merged"]
    async with sessionmaker() as session:
        entries = await session.scalar(select(func.count()).select_from(AuditEntry))
    assert entries == 1


async def test_upsert_by_a_merged_external_id_updates_the_survivor(
    sessionmaker: SessionMaker,
) -> None:
    survivor = await customer(sessionmaker, external_id="SHOP-1")
    other = await customer(sessionmaker, external_id="CALL-7")
    await do_merge_customers(sessionmaker, survivor, other, actor=ACTOR)
    view, created = await do_upsert_customer(
        sessionmaker,
        parse_customer({"external_id": "CALL-7", "timezone": "Europe/Madrid"}, "US"),
        actor=ACTOR,
    )
    assert (view["id"], view["timezone"], created) == (survivor, "Europe/Madrid", False)
    async with sessionmaker() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "customer.update")
        )
        tombstone = await session.get_one(Customer, other)
    assert entry is not None
    assert entry.data == {"external_id": "CALL-7", "fields": ["external_id", "timezone"]}
    assert tombstone.merged_into_id == survivor


async def test_an_upsert_refused_writes_no_audit_entry(sessionmaker: SessionMaker) -> None:
    await customer(sessionmaker, external_id="SHOP-1", email="ana@example.com")
    with pytest.raises(IdentityConflict):
        await do_upsert_customer(
            sessionmaker,
            parse_customer({"external_id": "SHOP-2", "email": "ana@example.com"}, "US"),
            actor=ACTOR,
        )
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(AuditEntry)) == 0
        assert await session.scalar(select(func.count()).select_from(Interaction)) == 0
