"""The KB's gaps read from the transcript: which messages, the agent's answer, the bounds."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import ChannelName, InboundMessage
from consent.replies import Brand
from crm_core.sqltypes import utcnow
from dialog import gaps_store
from dialog.gaps import is_gap
from dialog.gaps_store import GapScan, read_gaps
from dialog.inbound import InboundProcessor
from dialog.models import Direction, LabelledExample, Message
from dialog.turns import BotTurn, InboundResult, Turn
from sastre.db import SessionMaker

_ids = itertools.count(1)
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
OUTCOMES = [
    "rephrase",
    "choices:faq:returns|faq:exchanges",
    "handoff:not_understood",
    "handoff:cmv_priority",
    "handoff:complaint",
    "handoff:customer_asked",
    "handoff:attachment",
    "faq:opening-hours",
    "action:action_order_status",
    "small_talk:greet",
    "confirm:action_opt_out",
]


class ScriptedBrain:
    """Plans what it is told to: the text "<plan> <words>" gets that plan."""

    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn:
        plan = turn.text.split()[0]
        handoff = plan.removeprefix("handoff:") if plan.startswith("handoff:") else None
        return BotTurn(
            ["ok"],
            understood=plan != "rephrase",
            handoff=handoff,
            intent="faq",
            confidence=0.5,
            plan=plan,
        )


@pytest.fixture
def processor(sessionmaker: SessionMaker) -> InboundProcessor:
    return InboundProcessor(
        sessionmaker,
        ScriptedBrain(),
        default_region="US",
        default_language="en",
        default_timezone="UTC",
        brand=Brand("Sastre", "support@example.com"),
    )


async def say(
    processor: InboundProcessor,
    text: str,
    sender: str = "+14155552671",
    channel: ChannelName = ChannelName.SMS,
) -> InboundResult:
    return await processor.handle(InboundMessage(channel, sender, text, f"SM{next(_ids)}"))


async def staff_writes(
    sessionmaker: SessionMaker, after: InboundResult, text: str, author: str = "agent:ana"
) -> int:
    """A message a person (or the bot, or the system) writes in the conversation, now."""
    assert after.conversation_id is not None
    assert after.customer_id is not None
    async with sessionmaker.begin() as session:
        message = Message(
            conversation_id=after.conversation_id,
            customer_id=after.customer_id,
            channel="sms",
            direction=Direction.OUT.value,
            provider_id=f"staff-{next(_ids)}",
            address="+14155552671",
            text=text,
            author=author,
        )
        session.add(message)
        await session.flush()
        return message.id


async def scan(sessionmaker: SessionMaker, **options: object) -> GapScan:
    options.setdefault("since", LONG_AGO)
    async with sessionmaker() as session:
        return await read_gaps(session, **options)  # type: ignore[arg-type]


async def test_the_gaps_are_the_outcomes_dialog_gaps_names(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    for n, outcome in enumerate(OUTCOMES):
        await say(processor, f"{outcome} question", sender=f"+1415555{2600 + n}")
    await say(processor, "STOP", sender="+14155552700")  # a keyword: keyword:stop
    result = await scan(sessionmaker)
    assert sorted(g.outcome for g in result.gaps) == sorted(filter(is_gap, OUTCOMES))
    assert result.complete


async def test_the_answer_is_the_first_staff_message_after_the_gap(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    hello = await say(processor, "faq:opening-hours hello")
    await staff_writes(sessionmaker, hello, "Hi, anything else?")  # before the gap: not its answer
    asked = await say(processor, "rephrase do you hem trousers")
    await staff_writes(sessionmaker, asked, "Your request is noted", author="system")
    answer = await staff_writes(sessionmaker, asked, "Yes, in 3 days", author="supervisor:bo")
    await staff_writes(sessionmaker, asked, "Anything else?")
    (gap,) = (await scan(sessionmaker)).gaps
    assert gap.message_id == asked.message_id
    assert gap.answer is not None
    assert (gap.answer.message_id, gap.answer.text, gap.answer.author) == (
        answer,
        "Yes, in 3 days",
        "supervisor:bo",
    )


async def test_another_conversations_answer_is_not_this_gaps(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    await say(processor, "rephrase do you hem trousers", sender="+14155552601")
    other = await say(processor, "faq:opening-hours hi", sender="+14155552602")
    await staff_writes(sessionmaker, other, "Hello!")
    (gap,) = (await scan(sessionmaker)).gaps
    assert gap.answer is None


async def test_the_customers_choice_comes_with_the_gap(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    offered = await say(processor, "choices:faq:returns|faq:exchanges swap a shirt")
    async with sessionmaker.begin() as session:
        session.add(
            LabelledExample(
                text="swap a shirt",
                language="en",
                label="faq:exchanges",
                source="choice",
                conversation_id=offered.conversation_id,
                message_id=offered.message_id,
            )
        )
    (gap,) = (await scan(sessionmaker)).gaps
    assert gap.chosen == "faq:exchanges"


async def test_the_newest_gaps_are_read_up_to_the_limit(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    said = [await say(processor, f"rephrase question {n}") for n in range(3)]
    capped = await scan(sessionmaker, limit=2)
    assert [g.message_id for g in capped.gaps] == [said[2].message_id, said[1].message_id]
    assert not capped.complete
    assert (await scan(sessionmaker, limit=3)).complete


async def test_only_the_newest_messages_are_looked_through(
    processor: InboundProcessor, sessionmaker: SessionMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await say(processor, "rephrase question one")
    latest = await say(processor, "rephrase question two")
    # Each turn stores the question and the bot's answer: the newest two messages by id are the
    # second question and its answer.
    monkeypatch.setattr(gaps_store, "SCAN_WINDOW", 2)
    windowed = await scan(sessionmaker)
    assert [g.message_id for g in windowed.gaps] == [latest.message_id]
    assert not windowed.complete  # the first question is since the date but was not read
    assert first.message_id is not None
    later = await scan(sessionmaker, since=utcnow() + timedelta(days=1))
    assert later.gaps == []
    assert later.complete  # what lies below the window is older than the date asked for


async def test_since_channel_and_language_filter(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    await say(processor, "rephrase do you hem trousers", sender="+14155552601")
    await say(processor, "rephrase ¿hacéis arreglos de pantalones?", sender="+14155552602")
    await say(
        processor, "rephrase do you ship to Peru", sender="c@example.com", channel=ChannelName.EMAIL
    )
    everything = await scan(sessionmaker)
    assert len(everything.gaps) == 3
    assert [g.text for g in (await scan(sessionmaker, language="es")).gaps] == [
        "rephrase ¿hacéis arreglos de pantalones?"
    ]
    assert [g.channel for g in (await scan(sessionmaker, channel="email")).gaps] == ["email"]
    assert (await scan(sessionmaker, since=utcnow() + timedelta(minutes=1))).gaps == []
