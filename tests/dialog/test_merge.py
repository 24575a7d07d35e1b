"""Merging two records' conversations: one open conversation, the hand-off and the queue place
kept, every message with it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import select, update

from crm_core.models import Customer, CustomerStatus
from dialog.merge import OpenConversation, choose_kept, merge_conversations
from dialog.models import Conversation, ConversationState, Message
from sastre.db import SessionMaker

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OPEN_STATES = [ConversationState.BOT, ConversationState.QUEUED, ConversationState.ASSIGNED]
RANK = {state.value: rank for rank, state in enumerate(OPEN_STATES)}


def conversation(
    id_: int, state: ConversationState, waiting_minutes: int | None, created_minutes: int = 0
) -> OpenConversation:
    waiting = None if waiting_minutes is None else T0 + timedelta(minutes=waiting_minutes)
    return OpenConversation(id_, state.value, waiting, T0 + timedelta(minutes=created_minutes))


def test_a_queued_conversation_beats_the_bots() -> None:
    choice = choose_kept(
        conversation(1, ConversationState.BOT, None),
        conversation(2, ConversationState.QUEUED, 30),
    )
    assert (choice.kept.id, choice.closed.id) == (2, 1)
    assert choice.waiting_since == T0 + timedelta(minutes=30)


def test_of_two_queued_the_one_waiting_longer_keeps_its_place() -> None:
    choice = choose_kept(
        conversation(1, ConversationState.QUEUED, 40, created_minutes=0),
        conversation(2, ConversationState.QUEUED, 10, created_minutes=5),
    )
    assert choice.kept.id == 2
    assert choice.waiting_since == T0 + timedelta(minutes=10)
    assert "waited longer" in choice.reason


def test_an_assigned_conversation_keeps_the_earlier_waiting_time() -> None:
    choice = choose_kept(
        conversation(1, ConversationState.ASSIGNED, 40),
        conversation(2, ConversationState.QUEUED, 10),
    )
    assert choice.kept.id == 1
    assert choice.waiting_since == T0 + timedelta(minutes=10)


states = st.sampled_from(OPEN_STATES)
minutes = st.none() | st.integers(0, 600)


@given(states, minutes, st.integers(0, 600), states, minutes, st.integers(0, 600))
@example(ConversationState.QUEUED, None, 0, ConversationState.QUEUED, 5, 9)
def test_the_kept_one_is_the_furthest_towards_a_human_and_waits_since_the_earliest(
    state_a: ConversationState,
    waiting_a: int | None,
    created_a: int,
    state_b: ConversationState,
    waiting_b: int | None,
    created_b: int,
) -> None:
    a = conversation(1, state_a, waiting_a, created_a)
    b = conversation(2, state_b, waiting_b, created_b)
    choice = choose_kept(a, b)
    assert {choice.kept.id, choice.closed.id} == {1, 2}
    assert RANK[choice.kept.state] == max(RANK[a.state], RANK[b.state])
    assert choose_kept(b, a) == choice  # the order they are given in does not matter
    waiting = [w for w in (a.waiting_since, b.waiting_since) if w is not None]
    if choice.kept.state != ConversationState.BOT and waiting:
        assert choice.waiting_since == min(waiting)


async def _person_with(
    sessionmaker: SessionMaker,
    state: ConversationState,
    waiting_minutes: int | None,
    tier: str = "STANDARD",
) -> tuple[int, int]:
    handed_off = state is not ConversationState.BOT
    async with sessionmaker.begin() as session:
        customer = Customer(status=CustomerStatus.LEAD.value, tier=tier)
        session.add(customer)
        await session.flush()
        row = Conversation(
            customer_id=customer.id,
            state=state.value,
            channel="sms",
            address=f"+1415555{customer.id:04d}",
            waiting_since=None
            if waiting_minutes is None
            else T0 + timedelta(minutes=waiting_minutes),
            priority_tier=tier if handed_off else None,
        )
        session.add(row)
        await session.flush()
        for n in range(2):
            session.add(
                Message(
                    conversation_id=row.id,
                    customer_id=customer.id,
                    channel="sms",
                    direction="in",
                    provider_id=f"SM{customer.id}-{n}",
                    address=row.address,
                    text=f"message {n} of {customer.id}",
                    author="customer",
                )
            )
        return customer.id, row.id


async def test_two_open_conversations_become_one(sessionmaker: SessionMaker) -> None:
    survivor, bot_conversation = await _person_with(sessionmaker, ConversationState.BOT, None)
    other, queued = await _person_with(sessionmaker, ConversationState.QUEUED, 5)
    async with sessionmaker.begin() as session:
        facts = await merge_conversations(
            session, survivor, other, survivor_tier="STANDARD", now=T0 + timedelta(hours=1)
        )
    async with sessionmaker() as session:
        rows = {c.id: c for c in await session.scalars(select(Conversation))}
        in_kept = list(
            await session.scalars(select(Message.text).where(Message.conversation_id == queued))
        )
    assert facts["combined"]["kept"] == queued
    assert facts["combined"]["messages_moved"] == 2
    assert {c.customer_id for c in rows.values()} == {survivor}
    assert (rows[queued].state, rows[queued].waiting_since) == ("queued", T0 + timedelta(minutes=5))
    assert rows[bot_conversation].state == "resolved"
    assert rows[bot_conversation].flags["merged_into_conversation"] == queued
    assert len(in_kept) == 4


async def test_a_single_open_conversation_just_moves(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        survivor = Customer(status=CustomerStatus.LEAD.value)
        session.add(survivor)
    other, queued = await _person_with(sessionmaker, ConversationState.QUEUED, 5)
    async with sessionmaker.begin() as session:
        facts = await merge_conversations(
            session, survivor.id, other, survivor_tier="STANDARD", now=T0
        )
    async with sessionmaker() as session:
        row = await session.get_one(Conversation, queued)
    assert facts == {"moved": 1, "combined": None}
    assert (row.customer_id, row.state) == (survivor.id, "queued")


async def merged(sessionmaker: SessionMaker, survivor: int, other: int) -> dict[str, Any]:
    async with sessionmaker.begin() as session:
        return await merge_conversations(session, survivor, other, survivor_tier="CMV", now=T0)


async def priority(sessionmaker: SessionMaker, conversation_id: int) -> str | None:
    async with sessionmaker() as session:
        return (await session.get_one(Conversation, conversation_id)).priority_tier


async def test_a_queued_conversation_that_moves_takes_the_survivors_tier(
    sessionmaker: SessionMaker,
) -> None:
    """The bug: a queued lead merged into a CMV customer kept waiting as STANDARD."""
    survivor, _ = await _person_with(sessionmaker, ConversationState.BOT, None, tier="CMV")
    async with sessionmaker.begin() as session:  # the survivor has no open conversation
        await session.execute(update(Conversation).values(state="resolved"))
    other, queued = await _person_with(sessionmaker, ConversationState.QUEUED, 5)
    facts = await merged(sessionmaker, survivor, other)
    assert await priority(sessionmaker, queued) == "CMV"
    assert facts["priority_tier"] == {"conversation": queued, "from": "STANDARD", "to": "CMV"}


async def test_a_combined_conversation_takes_the_survivors_tier(
    sessionmaker: SessionMaker,
) -> None:
    survivor, _ = await _person_with(sessionmaker, ConversationState.BOT, None, tier="CMV")
    other, queued = await _person_with(sessionmaker, ConversationState.QUEUED, 5)
    facts = await merged(sessionmaker, survivor, other)
    assert facts["combined"]["kept"] == queued
    assert await priority(sessionmaker, queued) == "CMV"


async def test_a_conversation_still_with_the_bot_gets_its_tier_when_handed_off(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        survivor = Customer(status=CustomerStatus.CUSTOMER.value, tier="CMV")
        session.add(survivor)
    other, with_bot = await _person_with(sessionmaker, ConversationState.BOT, None)
    facts = await merged(sessionmaker, survivor.id, other)
    assert await priority(sessionmaker, with_bot) is None
    assert "priority_tier" not in facts
