"""Two processes answering one customer at once: each with its own engine, on one database.

The second process reads the conversation while the first is still deciding its turn. Without a
lock it reads what the first is about to overwrite, and a failed turn is lost or the customer is
handed off twice. On SQLite the write lock already makes them take turns; on PostgreSQL the
conversation's row lock does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from channels.base import ChannelName, InboundMessage
from consent.replies import Brand
from crm_core.models import Interaction
from dialog.inbound import InboundProcessor
from dialog.models import Conversation
from dialog.turns import BotTurn, InboundResult, Turn
from sastre.db import SessionMaker, create_engine, sessionmaker_for
from tests.support.quick import quick

HAND_OFF_AFTER = 3  # failed turns, as the embedded bot's rule does


class Puzzle:
    """Never understands "???"; hands off on the third failed turn. Its first answer waits until the
    other process has started reading (or a moment has passed: on SQLite it cannot start)."""

    def __init__(self, other_reading: asyncio.Event) -> None:
        self.other_reading = other_reading
        self.hold = False
        self.deciding = asyncio.Event()  # its held answer has begun

    async def decide(self, turn: Turn) -> BotTurn:
        if turn.text != "???":
            return BotTurn(["Hello!"], intent="greet")
        if self.hold:
            self.hold = False
            self.deciding.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.other_reading.wait(), timeout=1)
        failed = turn.conversation.failed_turns + 1
        handoff = "not_understood" if failed >= HAND_OFF_AFTER else None
        return BotTurn(["Sorry?"], understood=False, handoff=handoff, intent="faq")


class PuzzledBrain(Puzzle):
    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn:
        return await self.decide(turn)


class PuzzledRemote(Puzzle):
    """Asked with no transaction open: its answer is applied to the conversation as it is by
    then (locked on PostgreSQL), not as it was when the message came."""

    async def ask(self, turn: Turn) -> BotTurn:
        return await self.decide(turn)


def _processor(sessionmaker: SessionMaker, bot: PuzzledBrain | PuzzledRemote) -> InboundProcessor:
    return InboundProcessor(
        quick(sessionmaker),
        bot,
        default_region="US",
        default_language="en",
        default_timezone="UTC",
        brand=Brand("Sastre", "support@example.com"),
    )


def _sms(text: str, n: int) -> InboundMessage:
    return InboundMessage(ChannelName.SMS, "+14155552671", text, f"SM-race-{n}")


@pytest.fixture
async def second_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.mark.parametrize("kind", [PuzzledBrain, PuzzledRemote])
async def test_two_processes_count_every_failed_turn_and_hand_off_once(
    sessionmaker: SessionMaker,
    second_engine: AsyncEngine,
    kind: type[PuzzledBrain] | type[PuzzledRemote],
) -> None:
    reading = asyncio.Event()
    first_bot, second_bot = kind(reading), kind(reading)
    first = _processor(sessionmaker, first_bot)
    second = _processor(sessionmaker_for(second_engine), second_bot)
    opened = await first.handle(_sms("hello", 0))  # the customer and their conversation
    event.listen(second_engine.sync_engine, "before_cursor_execute", lambda *_: reading.set())
    results: list[InboundResult] = []
    for n in (1, 3):  # two rounds: each process one message of the same customer at once
        reading.clear()
        first_bot.hold = True
        first_bot.deciding.clear()
        results += await asyncio.gather(
            first.handle(_sms("???", n)), _after_first(second, _sms("???", n + 1), first_bot)
        )
    async with sessionmaker() as session:
        conversation = await session.get_one(Conversation, opened.conversation_id)
        answers = await session.scalar(
            select(func.count())
            .select_from(Interaction)
            .where(Interaction.customer_id == opened.customer_id, Interaction.kind == "message_out")
        )
    assert conversation.failed_turns == HAND_OFF_AFTER  # none lost: the fourth found a person
    assert conversation.state == "queued"
    assert sum(result.handed_off for result in results) == 1
    assert answers == 1 + HAND_OFF_AFTER  # "hello"'s answer, then one per failed turn


async def _after_first(
    processor: InboundProcessor, message: InboundMessage, bot: Puzzle
) -> InboundResult:
    await bot.deciding.wait()  # the first process is deciding its turn: now the second reads
    return await processor.handle(message)
