"""What the bot did with a message: on the result, and stored with the inbound message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import select

from dialog.inbound import InboundProcessor
from dialog.models import Direction, Message
from sastre.config import Settings
from sastre.db import SessionMaker
from tests.support.embedded import embedded_processor, web


@pytest.fixture
async def processor(
    sessionmaker: SessionMaker, settings: Settings
) -> AsyncIterator[InboundProcessor]:
    async with AsyncExitStack() as stack:
        yield await embedded_processor(sessionmaker, settings, stack)


async def outcomes(sessionmaker: SessionMaker) -> list[str | None]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Message.outcome)
            .where(Message.direction == Direction.IN.value)
            .order_by(Message.id)
        )
        return list(rows)


async def test_an_faq_answer_is_stored_as_the_messages_outcome(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    result = await processor.handle(web("¿Cuál es el horario de la tienda?", 1))
    assert result.plan == "faq:opening-hours"
    assert await outcomes(sessionmaker) == ["faq:opening-hours"]


async def test_small_talk_and_keywords_say_what_answered_them(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    greeted = await processor.handle(web("hello", 1))
    stopped = await processor.handle(web("STOP", 2))
    silenced = await processor.handle(web("are you there?", 3))
    assert (greeted.plan, stopped.plan, silenced.plan) == (
        "small_talk:greet",
        "keyword:opt_out",
        None,  # STOP in force: never put to the bot
    )
    assert await outcomes(sessionmaker) == ["small_talk:greet", "keyword:opt_out", None]


async def test_a_duplicate_has_no_outcome(processor: InboundProcessor) -> None:
    await processor.handle(web("hello", 1))
    again = await processor.handle(web("hello", 1))
    assert again.duplicate
    assert again.plan is None
