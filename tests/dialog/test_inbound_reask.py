"""SMS a bot outside the database never answered are asked again (`dialog.inbound.reask`):
Twilio posts a webhook once, so nothing else would ever answer them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from channels.base import ChannelName, InboundMessage
from crm_core.sqltypes import utcnow
from dialog.inbound.reask import GIVE_UP_AFTER, claim_due, reask_after, reask_forever
from dialog.models import AwaitingBot, Direction, Message
from dialog.turns import InboundResult
from sastre.db import SessionMaker
from tests.dialog.test_inbound import FakeRemote, make_processor, sms

AFTER = timedelta(minutes=1)


async def left_awaiting(sessionmaker: SessionMaker, provider_id: str = "SM-left") -> None:
    """An SMS stored and put to the bot, which fell over: it awaits the bot (the webhook
    answered an error, and Twilio does not post it again)."""
    with pytest.raises(RuntimeError):
        await make_processor(sessionmaker, FakeRemote()).handle(
            sms("crash", provider_id=provider_id)
        )


async def awaiting(sessionmaker: SessionMaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(AwaitingBot)) or 0)


async def replies(sessionmaker: SessionMaker) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Message.text).where(Message.direction == Direction.OUT.value)
        )
        return list(rows)


async def test_an_sms_awaiting_the_bot_is_claimed_as_its_redelivery_and_answered_once(
    sessionmaker: SessionMaker,
) -> None:
    await left_awaiting(sessionmaker)
    (again,) = await claim_due(sessionmaker, after=AFTER, now=utcnow() + 2 * AFTER)
    assert (again.channel, again.provider_id, again.text) == (ChannelName.SMS, "SM-left", "crash")
    bot = FakeRemote()
    bot.crash_on = None  # the bot is back
    result = await make_processor(sessionmaker, bot).handle(again)
    assert [reply.text for reply in result.replies] == ["echo: crash"]
    assert await awaiting(sessionmaker) == 0
    assert await replies(sessionmaker) == ["echo: crash"]


async def test_a_message_is_claimed_by_one_caller_only(sessionmaker: SessionMaker) -> None:
    """Two web processes looking at once: one takes it, the other finds it taken."""
    await left_awaiting(sessionmaker)
    later = utcnow() + 2 * AFTER
    first, second = await asyncio.gather(
        claim_due(sessionmaker, after=AFTER, now=later),
        claim_due(sessionmaker, after=AFTER, now=later),
    )
    assert len(first) + len(second) == 1
    assert await claim_due(sessionmaker, after=AFTER, now=later + AFTER / 2) == []  # not yet
    assert len(await claim_due(sessionmaker, after=AFTER, now=later + AFTER)) == 1  # again


async def test_a_message_awaiting_less_than_the_wait_is_left_to_the_ask_in_flight(
    sessionmaker: SessionMaker,
) -> None:
    await left_awaiting(sessionmaker)
    assert await claim_due(sessionmaker, after=AFTER, now=utcnow() + AFTER / 2) == []
    assert await awaiting(sessionmaker) == 1


async def test_a_message_a_day_old_is_given_up_on(sessionmaker: SessionMaker) -> None:
    await left_awaiting(sessionmaker)
    assert await claim_due(sessionmaker, after=AFTER, now=utcnow() + GIVE_UP_AFTER) == []


async def test_only_media_whose_provider_delivers_once_are_asked_again(
    sessionmaker: SessionMaker,
) -> None:
    """A mail server retries a 451 and the widget sends again: those wait for their sender."""
    await left_awaiting(sessionmaker)
    async with sessionmaker.begin() as session:
        await session.execute(update(Message).values(channel=ChannelName.EMAIL.value))
    assert await claim_due(sessionmaker, after=AFTER, now=utcnow() + 2 * AFTER) == []


def test_the_wait_is_longer_than_the_inbound_path_waits_for_the_bot() -> None:
    assert reask_after(15.0) == timedelta(seconds=60)
    assert reask_after(300.0) == timedelta(seconds=600)


async def test_the_inbound_path_is_handed_the_messages_due_until_cancelled(
    sessionmaker: SessionMaker,
) -> None:
    await left_awaiting(sessionmaker)
    bot = FakeRemote()
    bot.crash_on = None
    processor = make_processor(sessionmaker, bot)
    answered = asyncio.Event()

    async def handle(message: InboundMessage) -> InboundResult:
        result = await processor.handle(message)
        answered.set()
        return result

    asking = asyncio.ensure_future(
        reask_forever(sessionmaker, handle, after=timedelta(0), every=0.01)
    )
    try:
        async with asyncio.timeout(30):
            await answered.wait()
    finally:
        asking.cancel()
    await processor.drained()
    assert await replies(sessionmaker) == ["echo: crash"]
    assert await awaiting(sessionmaker) == 0
