"""The inbound path: dedupe, resolution, keywords, conversations, hand-off, replies on the timeline.

The bot is a fake here (the real one has its own tests): this file is about the path around it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from typing_extensions import override

from channels.base import ChannelName, InboundMessage
from consent.ledger import consent_history
from consent.replies import Brand
from crm_core.customers import upsert_customer
from crm_core.models import Interaction
from crm_core.records import parse_customer
from dialog.inbound import BotTurn, InboundProcessor, InboundResult, Turn
from dialog.models import AwaitingBot, Conversation, Message
from sastre.db import SessionMaker

_ids = itertools.count(1)


class FakeBrain:
    """Answers "echo: <text>"; hands off when told "human"; never understands "???"; falls
    over on `crash_on`."""

    uses_database = True
    crash_on: str | None = "crash"

    def __init__(self) -> None:
        self.turns: list[Turn] = []

    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn:
        self.turns.append(turn)
        if turn.text == "human":
            return BotTurn(
                ["Passing you to a colleague."], handoff="customer_asked", intent="human"
            )
        if turn.text == "this is terrible":
            return BotTurn(["Sorry."], handoff="complaint", intent="complaint", complaint=True)
        if turn.text == self.crash_on:
            raise RuntimeError("the bot fell over")
        if turn.text == "???":
            return BotTurn(["Sorry, I did not understand."], understood=False, intent="faq")
        return BotTurn([f"echo: {turn.text}"], intent="faq", confidence=0.9)


@pytest.fixture
def brain() -> FakeBrain:
    return FakeBrain()


def make_processor(sessionmaker: SessionMaker, brain: FakeBrain) -> InboundProcessor:
    return InboundProcessor(
        sessionmaker,
        brain,
        default_region="US",
        default_language="en",
        default_timezone="UTC",
        brand=Brand("Sastre", "support@example.com"),
    )


@pytest.fixture
def processor(sessionmaker: SessionMaker, brain: FakeBrain) -> InboundProcessor:
    return make_processor(sessionmaker, brain)


def sms(text: str, sender: str = "+14155552671", provider_id: str | None = None) -> InboundMessage:
    return InboundMessage(ChannelName.SMS, sender, text, provider_id or f"SM{next(_ids)}")


async def count(sessionmaker: SessionMaker, model: type, *where: object) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))  # type: ignore[arg-type]


async def test_a_first_message_creates_a_lead_and_gets_an_answer(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    result = await processor.handle(sms("opening hours?"))
    assert not result.duplicate
    assert [r.text for r in result.replies] == ["echo: opening hours?"]
    assert result.replies[0].address == "+14155552671"
    kinds = await _timeline_kinds(sessionmaker, result.customer_id)
    assert kinds == ["message_out", "message_in"]


async def test_the_same_message_twice_is_stored_and_answered_once(
    processor: InboundProcessor, sessionmaker: SessionMaker, brain: FakeBrain
) -> None:
    first = await processor.handle(sms("hi", provider_id="SM-dup"))
    again = await processor.handle(sms("hi", provider_id="SM-dup"))
    assert again.duplicate
    assert again.replies == ()
    assert await count(sessionmaker, Message) == 2  # one in, one out
    assert len(brain.turns) == 1
    assert first.replies


async def test_the_same_message_at_the_same_moment_is_answered_once(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    results = await asyncio.gather(
        *(processor.handle(sms("hi", provider_id="SM-race")) for _ in range(5))
    )
    assert sum(not r.duplicate for r in results) == 1
    assert sum(len(r.replies) for r in results) == 1
    assert await count(sessionmaker, Message) == 2
    assert await count(sessionmaker, Conversation) == 1


async def test_stop_unsubscribes_and_silences_until_start(
    processor: InboundProcessor, sessionmaker: SessionMaker, brain: FakeBrain
) -> None:
    stopped = await processor.handle(sms("STOP"))
    assert stopped.replies[0].text.startswith("You are unsubscribed from Sastre.")
    quiet = await processor.handle(sms("are you there?"))
    assert quiet.replies == ()
    started = await processor.handle(sms("START"))
    assert "resubscribed" in started.replies[0].text
    answered = await processor.handle(sms("hello again"))
    assert [r.text for r in answered.replies] == ["echo: hello again"]
    assert [t.text for t in brain.turns] == ["hello again"]  # keywords never reach the bot
    async with sessionmaker() as session:
        history = await consent_history(session, stopped.customer_id or 0)
    assert [(e.purpose, e.action, e.source) for e in history] == [
        ("service", "revoke", "keyword"),
        ("marketing", "revoke", "keyword"),
        ("service", "grant", "keyword"),
    ]
    assert history[0].evidence["text"] == "STOP"


async def test_plain_words_revocation_counts_as_stop(processor: InboundProcessor) -> None:
    result = await processor.handle(sms("please stop texting me"))
    assert result.replies[0].text.startswith("You are unsubscribed")


async def test_spanish_keywords_get_spanish_replies(processor: InboundProcessor) -> None:
    result = await processor.handle(sms("BAJA"))
    assert result.replies[0].text.startswith("Se ha dado de baja de Sastre.")


async def test_help_gets_the_compliance_help_text(
    processor: InboundProcessor, brain: FakeBrain
) -> None:
    result = await processor.handle(sms("HELP"))
    text = result.replies[0].text
    assert "support@example.com" in text
    assert "Msg & data rates may apply" in text
    assert "STOP" in text
    assert brain.turns == []


async def test_a_plain_yes_with_nothing_pending_goes_to_the_bot(
    processor: InboundProcessor,
) -> None:
    result = await processor.handle(sms("yes"))
    assert [r.text for r in result.replies] == ["echo: yes"]


async def test_hand_off_queues_with_context_and_the_bot_falls_silent(
    processor: InboundProcessor, sessionmaker: SessionMaker, brain: FakeBrain
) -> None:
    await processor.handle(sms("where is my order?"))
    handed = await processor.handle(sms("human"))
    assert handed.handed_off
    silent = await processor.handle(sms("hello?"))
    assert silent.replies == ()
    assert len(brain.turns) == 2
    async with sessionmaker() as session:
        conversation = await session.get_one(Conversation, handed.conversation_id)
    assert conversation.state == "queued"
    assert conversation.handoff_reason == "customer_asked"
    assert conversation.priority_tier == "STANDARD"
    assert conversation.waiting_since is not None
    texts = [m["text"] for m in conversation.context["transcript"]]
    assert texts[0] == "where is my order?"
    assert "human" in texts
    assert conversation.context["customer"]["tier"] == "STANDARD"


async def test_a_complaint_is_recorded_on_the_timeline(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    result = await processor.handle(sms("this is terrible"))
    assert result.handed_off
    assert "complaint" in await _timeline_kinds(sessionmaker, result.customer_id)


async def test_one_conversation_across_channels_and_replies_follow_the_latest(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    async with sessionmaker.begin() as session:
        await upsert_customer(
            session,
            parse_customer(
                {"external_id": "C-1", "email": "ana@example.com", "phone": "+14155552671"}, "US"
            ),
        )
    by_sms = await processor.handle(sms("hi"))
    by_mail = await processor.handle(
        InboundMessage(ChannelName.EMAIL, "Ana@Example.com", "hello", "<m1@example.com>")
    )
    assert by_sms.conversation_id == by_mail.conversation_id
    assert by_mail.replies[0].channel is ChannelName.EMAIL
    assert by_mail.replies[0].address == "Ana@Example.com"


async def test_a_resolved_conversation_is_reopened_as_a_new_one(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    first = await processor.handle(sms("hi"))
    async with sessionmaker.begin() as session:
        conversation = await session.get_one(Conversation, first.conversation_id)
        conversation.state = "resolved"
    second = await processor.handle(sms("hi again"))
    assert second.conversation_id != first.conversation_id
    assert second.replies


async def test_at_risk_customers_are_flagged_for_retention(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    async with sessionmaker.begin() as session:
        await upsert_customer(
            session,
            parse_customer(
                {"external_id": "C-2", "phone": "+14155552671", "churn_risk": "high"}, "US"
            ),
        )
    result = await processor.handle(sms("hi"))
    async with sessionmaker() as session:
        conversation = await session.get_one(Conversation, result.conversation_id)
    assert conversation.flags == {"retention": True}


async def test_two_turns_not_understood_are_counted(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    await processor.handle(sms("???"))
    result = await processor.handle(sms("???"))
    async with sessionmaker() as session:
        conversation = await session.get_one(Conversation, result.conversation_id)
    assert conversation.failed_turns == 2


async def test_messages_arriving_together_are_committed_together(
    processor: InboundProcessor, sessionmaker: SessionMaker, engine: AsyncEngine
) -> None:
    senders = [f"+1415555{n:04d}" for n in range(8)]
    await asyncio.gather(*(processor.handle(sms("hi", sender)) for sender in senders))  # leads
    transactions = _count_transactions(engine)
    results = await asyncio.gather(
        *(processor.handle(sms(f"question {n}", sender)) for n, sender in enumerate(senders))
    )
    assert [r.replies[0].text for r in results] == [f"echo: question {n}" for n in range(8)]
    assert len({r.customer_id for r in results}) == 8
    assert transactions() <= 2  # the first message alone, then the seven that queued behind it
    assert await count(sessionmaker, Message) == 32  # 2 x 8 in, 2 x 8 out


class PacedBrain(FakeBrain):
    """Takes a moment to answer, as a bot across the network does; counts answers in flight."""

    def __init__(self, *, uses_database: bool) -> None:
        super().__init__()
        self.uses_database = uses_database
        self.in_flight = self.most_in_flight = 0

    @override
    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            return await super().respond(session, turn)
        finally:
            self.in_flight -= 1


async def _ask_together(sessionmaker: SessionMaker, brain: PacedBrain) -> list[InboundResult]:
    processor = make_processor(sessionmaker, brain)
    senders = [f"+1415555{n:04d}" for n in range(6)]
    return await asyncio.gather(
        *(processor.handle(sms(f"question {n}", sender)) for n, sender in enumerate(senders))
    )


async def test_a_bot_without_the_database_is_asked_for_a_whole_batch_at_once(
    sessionmaker: SessionMaker,
) -> None:
    brain = PacedBrain(uses_database=False)
    results = await _ask_together(sessionmaker, brain)
    assert [r.replies[0].text for r in results] == [f"echo: question {n}" for n in range(6)]
    assert brain.most_in_flight > 1  # the batch waits for the slowest answer, not their sum


async def test_a_bot_using_the_database_is_asked_one_turn_at_a_time(
    sessionmaker: SessionMaker,
) -> None:
    brain = PacedBrain(uses_database=True)
    results = await _ask_together(sessionmaker, brain)
    assert [r.replies[0].text for r in results] == [f"echo: question {n}" for n in range(6)]
    assert brain.most_in_flight == 1  # one session: its statements cannot interleave


async def _four_with_a_crash(processor: InboundProcessor) -> list[InboundResult | BaseException]:
    texts = ["one", "crash", "three", "four"]
    senders = [f"+1415555{n:04d}" for n in range(len(texts))]
    return await asyncio.gather(
        *(processor.handle(sms(t, s)) for t, s in zip(texts, senders, strict=True)),
        return_exceptions=True,
    )


async def test_a_failure_in_a_batch_fails_only_its_own_message(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    results = await _four_with_a_crash(processor)
    assert isinstance(results[1], RuntimeError)
    answered = [r.replies[0].text for r in results if isinstance(r, InboundResult)]
    assert answered == ["echo: one", "echo: three", "echo: four"]
    assert await count(sessionmaker, Message) == 6  # the crashed message was not half-written


async def test_a_bot_outside_the_database_failing_leaves_its_message_awaiting_it(
    sessionmaker: SessionMaker,
) -> None:
    processor = make_processor(sessionmaker, PacedBrain(uses_database=False))
    results = await _four_with_a_crash(processor)
    assert isinstance(results[1], RuntimeError)
    answered = [r.replies[0].text for r in results if isinstance(r, InboundResult)]
    assert answered == ["echo: one", "echo: three", "echo: four"]
    async with sessionmaker() as session:
        awaiting = await session.scalars(
            select(Message.text).join(AwaitingBot, AwaitingBot.message_id == Message.id)
        )
        assert list(awaiting) == ["crash"]  # stored, unanswered: a redelivery asks again
    assert await count(sessionmaker, Message) == 7


class OutsideBrain(PacedBrain):
    """A bot outside the database: while it answers, another connection writes (as Rasa's
    action server does) and it looks at what awaits it."""

    def __init__(self, sessionmaker: SessionMaker) -> None:
        super().__init__(uses_database=False)
        self.sessionmaker = sessionmaker
        self.write_took: list[float] = []
        self.awaiting: list[int] = []

    @override
    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn:
        started = asyncio.get_running_loop().time()
        async with self.sessionmaker.begin() as elsewhere:  # on SQLite: takes the write lock
            self.awaiting.append(
                int(await elsewhere.scalar(select(func.count()).select_from(AwaitingBot)) or 0)
            )
        self.write_took.append(asyncio.get_running_loop().time() - started)
        return await super().respond(session, turn)


async def test_a_bot_outside_the_database_is_asked_with_no_transaction_open(
    sessionmaker: SessionMaker,
) -> None:
    brain = OutsideBrain(sessionmaker)
    results = await _ask_together(sessionmaker, brain)
    assert [r.replies[0].text for r in results] == [f"echo: question {n}" for n in range(6)]
    assert max(brain.write_took) < 1  # nobody held the lock (SQLite would wait 10 s for it)


async def test_a_message_awaits_a_bot_outside_the_database_in_a_row_until_answered(
    sessionmaker: SessionMaker,
) -> None:
    brain = OutsideBrain(sessionmaker)
    await make_processor(sessionmaker, brain).handle(sms("hello"))
    assert brain.awaiting == [1]
    assert await count(sessionmaker, AwaitingBot) == 0


async def test_a_redelivery_of_a_message_still_awaiting_the_bot_is_asked_again(
    sessionmaker: SessionMaker,
) -> None:
    await _left_awaiting(sessionmaker, "SM-again")
    brain = PacedBrain(uses_database=False)
    answering = make_processor(sessionmaker, brain)
    brain.crash_on = None
    again = await answering.handle(sms("crash", provider_id="SM-again"))
    assert not again.duplicate
    assert [reply.text for reply in again.replies] == ["echo: crash"]
    assert await count(sessionmaker, AwaitingBot) == 0
    assert await count(sessionmaker, Message) == 2  # stored once, answered once
    kinds = await _timeline_kinds(sessionmaker, again.customer_id)
    assert kinds.count("message_in") == 1
    once_more = await answering.handle(sms("crash", provider_id="SM-again"))
    assert once_more.duplicate  # answered now: a plain duplicate


async def _left_awaiting(sessionmaker: SessionMaker, provider_id: str) -> None:
    failing = make_processor(sessionmaker, PacedBrain(uses_database=False))
    with pytest.raises(RuntimeError):  # as if the process had stopped before the answer
        await failing.handle(sms("crash", provider_id=provider_id))


async def test_a_message_left_awaiting_is_answered_by_the_bot_configured_now(
    sessionmaker: SessionMaker,
) -> None:
    await _left_awaiting(sessionmaker, "SM-switch")
    brain = FakeBrain()
    brain.crash_on = None
    again = await make_processor(sessionmaker, brain).handle(sms("crash", provider_id="SM-switch"))
    assert [reply.text for reply in again.replies] == ["echo: crash"]
    assert await count(sessionmaker, AwaitingBot) == 0


async def test_a_message_left_awaiting_after_a_stop_is_done_with_in_silence(
    sessionmaker: SessionMaker,
) -> None:
    await _left_awaiting(sessionmaker, "SM-stopped")
    brain = PacedBrain(uses_database=False)
    brain.crash_on = None
    processor = make_processor(sessionmaker, brain)
    await processor.handle(sms("STOP"))
    again = await processor.handle(sms("crash", provider_id="SM-stopped"))
    assert not again.duplicate
    assert again.replies == ()
    assert await count(sessionmaker, AwaitingBot) == 0


async def test_one_customers_messages_together_are_taken_in_order(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    first, second = await asyncio.gather(processor.handle(sms("???")), processor.handle(sms("???")))
    assert first.conversation_id == second.conversation_id
    async with sessionmaker() as session:
        conversation = await session.get_one(Conversation, second.conversation_id)
    assert conversation.failed_turns == 2  # the second turn saw the first


async def test_shutting_down_waits_for_messages_already_handed_in(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    pending = [
        asyncio.create_task(processor.handle(sms(f"q{n}", f"+1415555{n:04d}"))) for n in range(5)
    ]
    await asyncio.sleep(0)  # handed in: queued for the writer
    await processor.drained()
    assert await count(sessionmaker, Message) == 10
    assert all(result.replies for result in await asyncio.gather(*pending))


async def test_an_overlong_message_is_refused(processor: InboundProcessor) -> None:
    with pytest.raises(ValueError, match="longer than 4000"):
        await processor.handle(sms("x" * 4001))


def _count_transactions(engine: AsyncEngine) -> Callable[[], int]:
    began: list[object] = []
    event.listen(engine.sync_engine, "begin", began.append)
    return lambda: len(began)


async def _timeline_kinds(sessionmaker: SessionMaker, customer_id: int | None) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Interaction.kind)
            .where(Interaction.customer_id == customer_id)
            .order_by(Interaction.id.desc())
        )
        return list(rows)
