"""The inbound path: dedupe, resolution, keywords, conversations, hand-off, replies on the timeline.

The bot is a fake here (the real one has its own tests): this file is about the path around it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from typing_extensions import override

from channels.base import ChannelName, InboundMessage
from consent.ledger import consent_history
from consent.replies import Brand, service_revoked
from consent.types import Channel
from crm_core.customers import find_customer, resolve, upsert_customer
from crm_core.models import IdentityKind, Interaction
from crm_core.records import parse_customer
from dialog.inbound import BOT_TIMEOUT, InboundProcessor, sql
from dialog.inbound.sql import load_context
from dialog.inbound.steps import TurnSteps
from dialog.inbound.work import Pending, Work
from dialog.media import medium
from dialog.models import AwaitingBot, Conversation, ConversationState, Message
from dialog.outbox.models import OutboxEntry
from dialog.turns import Bot, BotTurn, BotUnanswered, InboundResult, Turn
from sastre.db import SessionMaker
from tests.support.quick import quick

_ids = itertools.count(1)
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Answers:
    """The fake bots' rule: "echo: <text>"; hands off when told "human"; never understands
    "???"; falls over on `crash_on`."""

    crash_on: str | None = "crash"

    def __init__(self) -> None:
        self.turns: list[Turn] = []

    def decide(self, turn: Turn) -> BotTurn:
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


class FakeBrain(Answers):
    """A bot inside the database (a `Brain`)."""

    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn:
        return self.decide(turn)


class FakeRemote(Answers):
    """A bot outside the database (a `RemoteBot`)."""

    async def ask(self, turn: Turn) -> BotTurn:
        return self.decide(turn)


@pytest.fixture
def brain() -> FakeBrain:
    return FakeBrain()


def make_processor(
    sessionmaker: SessionMaker, brain: Bot, *, bot_timeout: float = BOT_TIMEOUT, **options: Any
) -> InboundProcessor:
    """The processor these tests use; `options` as `InboundProcessor` takes them (lanes...)."""
    return InboundProcessor(
        quick(sessionmaker),
        brain,
        default_region="US",
        default_language="en",
        default_timezone="UTC",
        brand=Brand("Sastre", "support@example.com"),
        bot_timeout=bot_timeout,
        **options,
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


async def test_what_the_bot_made_of_each_message_is_stored_with_it(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    """Intent, confidence and outcome, for every message of a batch (on PostgreSQL in the
    batch's one write), and nothing on the answers."""
    texts = {
        "+14155550001": "opening hours?",
        "+14155550002": "human",
        "+14155550003": "???",
        "+14155550004": "STOP",
    }
    await asyncio.gather(*(processor.handle(sms(text, sender)) for sender, text in texts.items()))
    async with sessionmaker() as session:
        stored = (await session.scalars(select(Message).order_by(Message.id))).all()
    read = {m.text: (m.intent, m.confidence, m.outcome) for m in stored if m.direction == "in"}
    assert read["opening hours?"][:2] == ("faq", 0.9)
    assert read["human"][0] == "human"
    assert read["???"][0] == "faq"
    assert read["STOP"] == ("keyword", None, "keyword:opt_out")
    answers = [(m.intent, m.confidence, m.outcome) for m in stored if m.direction == "out"]
    assert answers
    assert all(answer == (None, None, None) for answer in answers), answers


async def test_the_same_message_twice_is_stored_and_answered_once(
    processor: InboundProcessor, sessionmaker: SessionMaker, brain: FakeBrain
) -> None:
    first = await processor.handle(sms("hi", provider_id="SM-dup"))
    again = await processor.handle(sms("hi", provider_id="SM-dup"))
    assert again.duplicate
    assert not again.reused
    assert again.replies == ()
    assert await count(sessionmaker, Message) == 2  # one in, one out
    assert len(brain.turns) == 1
    assert first.replies


async def test_another_text_under_an_id_already_stored_is_refused_as_reused(
    processor: InboundProcessor, sessionmaker: SessionMaker, brain: FakeBrain
) -> None:
    await processor.handle(sms("hi", provider_id="SM-reused"))
    other = await processor.handle(sms("and my refund?", provider_id="SM-reused"))
    assert (other.duplicate, other.reused, other.replies) == (True, True, ())
    assert [turn.text for turn in brain.turns] == ["hi"]
    async with sessionmaker() as session:
        texts = await session.scalars(select(Message.text).order_by(Message.id))
        assert list(texts) == ["hi", "echo: hi"]


async def test_a_late_redelivery_after_its_conversation_was_resolved_opens_none(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    """The conversation was opened in the statement that found the message stored already:
    it stayed open and empty, and took the customer's next message."""
    await processor.handle(sms("hi", provider_id="SM-late"))
    async with sessionmaker.begin() as session:
        conversation = (await session.scalars(select(Conversation))).one()
        conversation.state = ConversationState.RESOLVED.value
    again = await processor.handle(sms("hi", provider_id="SM-late"))
    assert again.duplicate
    async with sessionmaker() as session:
        states = list(await session.scalars(select(Conversation.state)))
    assert states == [ConversationState.RESOLVED.value]


async def test_another_text_under_an_id_in_flight_is_refused_as_reused(
    processor: InboundProcessor, brain: FakeBrain
) -> None:
    first, same, other = await asyncio.gather(
        processor.handle(sms("hi", provider_id="SM-flying")),
        processor.handle(sms("hi", provider_id="SM-flying")),
        processor.handle(sms("and my refund?", provider_id="SM-flying")),
    )
    assert not first.duplicate
    assert (same.duplicate, same.reused, same.replies) == (True, False, first.replies)
    assert (other.duplicate, other.reused, other.replies) == (True, True, ())
    assert [turn.text for turn in brain.turns] == ["hi"]


async def test_a_redelivery_behind_another_text_in_flight_under_its_id_is_a_duplicate(
    processor: InboundProcessor, brain: FakeBrain
) -> None:
    await processor.handle(sms("hi", provider_id="SM-behind"))
    other, again = await asyncio.gather(
        processor.handle(sms("and my refund?", provider_id="SM-behind")),
        processor.handle(sms("hi", provider_id="SM-behind")),  # waits for the one in flight
    )
    assert (other.duplicate, other.reused) == (True, True)
    assert (again.duplicate, again.reused) == (True, False)
    assert [turn.text for turn in brain.turns] == ["hi"]


async def test_another_sender_or_attachment_under_an_id_already_stored_is_reused(
    processor: InboundProcessor,
) -> None:
    first = InboundMessage(ChannelName.SMS, "+14155552671", "photo", "MM-1", attachments=("a",))
    await processor.handle(first)
    for other in (replace(first, address="+14155552672"), replace(first, attachments=("b",))):
        result = await processor.handle(other)
        assert (result.duplicate, result.reused) == (True, True)
    assert (await processor.handle(first)).reused is False


async def test_the_same_message_at_the_same_moment_is_answered_once(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    results = await asyncio.gather(
        *(processor.handle(sms("hi", provider_id="SM-race")) for _ in range(5))
    )
    assert sum(not r.duplicate for r in results) == 1
    # One answer; the duplicates carry it too, for a web chat socket that took over.
    assert len({reply.message_id for r in results for reply in r.replies}) == 1
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


async def test_a_turn_reads_only_the_attributes_it_uses(sessionmaker: SessionMaker) -> None:
    """An import may fill a customer's attributes with dozens of fields: every batch would read
    and decode them all for each sender, for the one the hand-off looks at."""
    async with sessionmaker.begin() as session:
        fields = {"external_id": "C-2", "phone": "+14155552671", "notes": "x" * 5000}
        at_risk, _ = await upsert_customer(
            session, parse_customer(fields | {"churn_risk": "high"}, "US")
        )
        fields |= {"external_id": "C-3", "phone": "+14155552672"}
        plain, _ = await upsert_customer(session, parse_customer(fields, "US"))
    async with sessionmaker() as session:
        risky = await load_context(session, at_risk.id, "sms")
        other = await load_context(session, plain.id, "sms")
    assert risky is not None
    assert risky.customer.attributes == {"churn_risk": "high"}
    assert other is not None
    assert other.customer.attributes == {}


async def test_two_turns_not_understood_are_counted(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    await processor.handle(sms("???"))
    result = await processor.handle(sms("???"))
    async with sessionmaker() as session:
        conversation = await session.get_one(Conversation, result.conversation_id)
    assert conversation.failed_turns == 2


async def test_each_conversation_of_a_batch_gets_its_own_turns_changes(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    """One batch, three turns changing different things (on PostgreSQL one UPDATE with a mask
    per column): a turn not understood counts, a hand-off queues, a plain turn leaves its
    conversation as it was."""
    senders = ["+14155550001", "+14155550002", "+14155550003"]
    for sender in senders:
        await processor.handle(sms("hello", sender))
    async with sessionmaker() as session:
        before = {c.address: c.updated_at for c in await session.scalars(select(Conversation))}
    results = await asyncio.gather(
        *(
            processor.handle(sms(text, sender))
            for text, sender in zip(["???", "human", "hello"], senders, strict=True)
        )
    )
    async with sessionmaker() as session:
        failing, handed, plain = [
            await session.get_one(Conversation, result.conversation_id) for result in results
        ]
    assert (failing.failed_turns, failing.state, failing.handoff_reason) == (1, "bot", None)
    assert (handed.failed_turns, handed.state, handed.handoff_reason) == (
        0,
        "queued",
        "customer_asked",
    )
    assert handed.context["reason"] == "customer_asked"
    assert (plain.failed_turns, plain.state, plain.context) == (0, "bot", {})
    assert failing.updated_at > before[failing.address]
    assert plain.updated_at == before[plain.address]


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


async def test_a_batch_costs_the_statements_of_one_message(
    processor: InboundProcessor, engine: AsyncEngine
) -> None:
    # The hot path's statement count is the group commit's promise (and the PostgreSQL row lock
    # rides in the context query: no extra round trip).
    senders = [f"+1415555{n:04d}" for n in range(8)]
    await asyncio.gather(*(processor.handle(sms("hi", sender)) for sender in senders))  # leads
    await processor.handle(sms("one", senders[0]))
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    await processor.handle(sms("alone", senders[0]))
    alone = len(statements)
    statements.clear()
    first = asyncio.create_task(processor.handle(sms("first", senders[0])))
    await asyncio.sleep(0)  # the writer takes it alone; the seven others queue behind it
    await asyncio.gather(first, *(processor.handle(sms("q", sender)) for sender in senders[1:]))
    assert len(statements) == 2 * alone
    if engine.dialect.name == "postgresql":
        # context, messages in, replies with their outbox rows and timeline, intents
        assert alone <= 4
    else:
        assert alone <= 7  # context, messages in, replies, outbox, timeline, intents, BEGIN


async def test_each_reply_of_a_batch_is_queued_and_on_the_timeline_under_its_own_id(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    # On PostgreSQL a reply's outbox row and timeline entry take its id inside the statement
    # that writes it (`dialog.inbound.one_write`); on SQLite from the INSERT before theirs.
    senders = [f"+1415555{n:04d}" for n in range(6)]
    results = await asyncio.gather(
        *(processor.handle(sms(f"question {n}", sender)) for n, sender in enumerate(senders))
    )
    async with sessionmaker() as session:
        for n, result in enumerate(results):
            [reply] = result.replies
            stored = await session.get_one(Message, reply.message_id)
            assert (stored.text, stored.in_reply_to) == (f"echo: question {n}", result.message_id)
            queued = await session.scalar(
                select(OutboxEntry.message_id).where(OutboxEntry.message_id == reply.message_id)
            )
            assert queued == reply.message_id
            entries = (
                await session.scalars(
                    select(Interaction)
                    .where(Interaction.customer_id == result.customer_id)
                    .order_by(Interaction.id)
                )
            ).all()
            assert [(e.kind, e.summary) for e in entries] == [
                ("message_in", f"question {n}"),
                ("message_out", f"echo: question {n}"),
            ]
            assert entries[0].data["message_id"] == result.message_id
            assert entries[1].data == {
                "message_id": reply.message_id,
                "conversation_id": result.conversation_id,
            }


async def test_first_messages_arriving_together_create_their_customers_together(
    processor: InboundProcessor, engine: AsyncEngine, sessionmaker: SessionMaker
) -> None:
    # A burst of first messages (a campaign's answers) costs a batch's handful of statements,
    # not a handful for each new customer and conversation.
    await processor.handle(sms("hi", "+14155550999"))
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    await processor.handle(sms("alone", "+14155550998"))
    alone = len(statements)
    statements.clear()
    senders = [f"+1415555{n:04d}" for n in range(8)]
    first = asyncio.create_task(processor.handle(sms("first", senders[0])))
    await asyncio.sleep(0)  # the writer takes it alone; the seven others queue behind it
    results = await asyncio.gather(
        first, *(processor.handle(sms(f"q {n}", sender)) for n, sender in enumerate(senders[1:]))
    )
    assert len(statements) == 2 * alone
    assert [r.replies[0].text for r in results] == [
        "echo: first",
        *(f"echo: q {n}" for n in range(7)),
    ]
    assert len({r.customer_id for r in results}) == len({r.conversation_id for r in results}) == 8
    assert await count(sessionmaker, Conversation) == 10


async def test_a_conversation_opened_meanwhile_by_another_process_is_joined(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    # The batch read no open conversation, but another process opened one before the INSERT:
    # that customer is skipped by it, and the message goes to the conversation that exists.
    first = await processor.handle(sms("hi", "+14155550001"))
    steps = TurnSteps("US", "en", "UTC", Brand("Sastre", "support@example.com"))
    senders = ("+14155550001", "+14155550002")
    async with sessionmaker.begin() as session:
        fresh = await resolve(session, IdentityKind.PHONE, "+14155550002", "US")
        contexts = [
            await load_context(session, customer_id, "sms")
            for customer_id in (first.customer_id or 0, fresh[0].id)
        ]
        works = []
        for context, sender in zip(contexts, senders, strict=True):
            assert context is not None
            message = sms("again", sender)
            stale = replace(context, conversation=None)
            pending = Pending(
                message,
                medium(message.channel),
                sender,
                T0,
                asyncio.get_running_loop().create_future(),
            )
            opening = steps.opening(stale, message)
            works.append(Work(pending, stale.customer, opening, False, opened=True))
        await steps.store(session, works)
    assert works[0].conversation.id == first.conversation_id
    assert works[1].conversation.id not in (0, first.conversation_id)
    assert all(work.inbound_id for work in works)
    assert await count(sessionmaker, Conversation) == 2
    async with sessionmaker() as session:
        stored = await session.execute(
            select(Message.customer_id, Message.conversation_id).where(Message.text == "again")
        )
        assert {row[0]: row[1] for row in stored} == {
            w.customer.id: w.conversation.id for w in works
        }


async def test_opening_a_conversation_and_storing_its_message_is_one_statement_on_postgresql(
    processor: InboundProcessor, sessionmaker: SessionMaker, engine: AsyncEngine
) -> None:
    """Every new customer, and every returning one, opens a conversation: on PostgreSQL in the
    statement that stores their message (`dialog.inbound.open_and_store`)."""
    statements: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "INSERT INTO conversations" in statement or "INSERT INTO messages" in statement:
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        results = await asyncio.gather(
            *(processor.handle(sms("hello", f"+1415555{n:04d}")) for n in range(3))
        )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)
    openings = [s for s in statements if "INSERT INTO conversations" in s]
    stored_apart = [s for s in statements if s.lstrip().startswith("INSERT INTO messages")]
    if engine.dialect.name == "postgresql":
        assert openings
        assert all("INSERT INTO messages" in s for s in openings)
        assert stored_apart == []  # the replies ride the batch's one write (`one_write`)
    else:
        assert len(stored_apart) >= len(openings) > 0
    assert len({r.conversation_id for r in results}) == 3
    assert all(r.message_id for r in results)


async def test_two_turns_changing_one_conversation_in_one_write_both_count(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    """After a merge two answers of one write may land in the survivor's conversation: each
    turn's changes stay, the later one's over the earlier where both set a column (as UPDATEs
    one after the other leave it; on PostgreSQL the write is one statement)."""
    first = await processor.handle(sms("hi", "+14155550001"))
    async with sessionmaker.begin() as session:
        context = await load_context(session, first.customer_id or 0, "sms")
        assert context is not None
        assert context.conversation is not None
        works = []
        for change in (
            {"failed_turns": 1, "language": "es"},
            {"state": "queued", "handoff_reason": "customer_asked", "language": "en"},
        ):
            message = sms("x", "+14155550001")
            done = asyncio.get_running_loop().create_future()
            pending = Pending(message, medium(message.channel), "+14155550001", T0, done)
            work = Work(pending, context.customer, context.conversation, False)
            work.conversation_changes.update(change)
            works.append(work)
        await sql.write(session, works)
    async with sessionmaker() as session:
        conversation = await session.get_one(Conversation, first.conversation_id)
    assert (conversation.failed_turns, conversation.state) == (1, "queued")
    assert (conversation.handoff_reason, conversation.language) == ("customer_asked", "en")


class Paced(Answers):
    """Takes a moment to answer, as a bot across the network does; counts answers in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = self.most_in_flight = 0

    async def paced(self, turn: Turn) -> BotTurn:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            return self.decide(turn)
        finally:
            self.in_flight -= 1


class PacedBrain(Paced):
    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn:
        return await self.paced(turn)


class PacedRemote(Paced):
    async def ask(self, turn: Turn) -> BotTurn:
        return await self.paced(turn)


async def _ask_together(
    sessionmaker: SessionMaker, brain: PacedBrain | PacedRemote
) -> list[InboundResult]:
    processor = make_processor(sessionmaker, brain)
    senders = [f"+1415555{n:04d}" for n in range(6)]
    return await asyncio.gather(
        *(processor.handle(sms(f"question {n}", sender)) for n, sender in enumerate(senders))
    )


async def test_a_bot_without_the_database_is_asked_for_a_whole_batch_at_once(
    sessionmaker: SessionMaker,
) -> None:
    brain = PacedRemote()
    results = await _ask_together(sessionmaker, brain)
    assert [r.replies[0].text for r in results] == [f"echo: question {n}" for n in range(6)]
    assert brain.most_in_flight > 1  # the batch waits for the slowest answer, not their sum


async def test_a_bot_using_the_database_is_asked_one_turn_at_a_time(
    sessionmaker: SessionMaker,
) -> None:
    brain = PacedBrain()
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
    processor = make_processor(sessionmaker, PacedRemote())
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


class OutsideBot(PacedRemote):
    """A bot outside the database: while it answers, another connection writes (as Rasa's
    action server does) and it looks at what awaits it."""

    def __init__(self, sessionmaker: SessionMaker) -> None:
        super().__init__()
        self.sessionmaker = sessionmaker
        self.awaiting: list[int] = []

    @override
    async def ask(self, turn: Turn) -> BotTurn:
        async with self.sessionmaker.begin() as elsewhere:  # on SQLite: takes the write lock
            self.awaiting.append(
                int(await elsewhere.scalar(select(func.count()).select_from(AwaitingBot)) or 0)
            )
        return await super().ask(turn)


async def test_a_bot_outside_the_database_is_asked_with_no_transaction_open(
    sessionmaker: SessionMaker,
) -> None:
    brain = OutsideBot(sessionmaker)
    results = await _ask_together(sessionmaker, brain)
    # Answered: on SQLite a transaction left open while the bot was asked would have held the
    # write lock its own transaction takes, and that would have failed after the busy timeout.
    assert [r.replies[0].text for r in results] == [f"echo: question {n}" for n in range(6)]
    # Each was asked once its batch had committed: another connection saw its row awaiting the
    # bot. (Not a measure of time: opening a connection on a busy machine took 1.4 s once.)
    assert min(brain.awaiting) >= 1


async def test_a_message_awaits_a_bot_outside_the_database_in_a_row_until_answered(
    sessionmaker: SessionMaker,
) -> None:
    brain = OutsideBot(sessionmaker)
    await make_processor(sessionmaker, brain).handle(sms("hello"))
    assert brain.awaiting == [1]
    assert await count(sessionmaker, AwaitingBot) == 0


async def test_a_redelivery_of_a_message_still_awaiting_the_bot_is_asked_again(
    sessionmaker: SessionMaker,
) -> None:
    await _left_awaiting(sessionmaker, "SM-again")
    brain = PacedRemote()
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
    failing = make_processor(sessionmaker, PacedRemote())
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
    brain = PacedRemote()
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


async def test_a_long_email_is_stored_whole_and_answered(
    processor: InboundProcessor, sessionmaker: SessionMaker, brain: FakeBrain
) -> None:
    text = "Hello, about my order: " + "x" * 19_977
    assert len(text) == 20_000
    mail = InboundMessage(ChannelName.EMAIL, "ana@example.com", text, "<long@example.com>")
    result = await processor.handle(mail)
    assert result.replies  # answered, not an exception
    async with sessionmaker() as session:
        stored = await session.get_one(Message, result.message_id)
    assert stored.text == text  # the whole of it
    assert brain.turns[0].text == text[: medium(ChannelName.EMAIL).bot_text]  # its start


async def test_nobody_writes_to_us_by_voice(processor: InboundProcessor) -> None:
    call = InboundMessage(ChannelName.VOICE, "+14155552671", "hello", "CA1")
    with pytest.raises(ValueError, match="do not write to us by voice"):
        await processor.handle(call)


class GatedRemote(FakeRemote):
    """A remote bot that answers `slow` only when let go (as a Rasa taking 2 s would), and
    everyone else at once."""

    def __init__(self, slow: str) -> None:
        super().__init__()
        self.slow = slow
        self.asked = asyncio.Event()  # the slow customer's turn is with the bot
        self.go = asyncio.Event()

    @override
    async def ask(self, turn: Turn) -> BotTurn:
        if turn.conversation.address == self.slow:
            self.asked.set()
            await self.go.wait()
        return self.decide(turn)


SLOW, OTHER = "+14155550001", "+14155550002"


async def test_a_slow_bot_keeps_no_other_customer_waiting(sessionmaker: SessionMaker) -> None:
    bot = GatedRemote(SLOW)
    processor = make_processor(sessionmaker, bot)
    slow = asyncio.create_task(processor.handle(sms("where is my order?", SLOW)))
    await bot.asked.wait()
    # Customer B's STOP is answered and stored while A's bot has not answered yet (before the
    # fix it waited behind A's answer: here, for ever).
    stopped = await asyncio.wait_for(processor.handle(sms("STOP", OTHER)), timeout=10)
    assert stopped.replies[0].text.startswith("You are unsubscribed")
    assert await count(sessionmaker, Message, Message.customer_id == stopped.customer_id) == 2
    assert not slow.done()
    bot.go.set()
    assert [r.text for r in (await slow).replies] == ["echo: where is my order?"]
    await processor.drained()


async def test_a_redelivery_to_another_process_while_the_bot_is_asked_is_answered_once(
    sessionmaker: SessionMaker,
) -> None:
    """Process A stored the message and asks the bot; Twilio's redelivery reaches process B,
    which found the message awaiting the bot and asked it too: two answers. The wait is A's
    until its ask ends or fails."""
    bot = GatedRemote(SLOW)
    first = asyncio.create_task(make_processor(sessionmaker, bot).handle(sms("hi", SLOW, "SM-2")))
    await bot.asked.wait()
    again = await make_processor(sessionmaker, FakeRemote()).handle(sms("hi", SLOW, "SM-2"))
    assert (again.duplicate, again.replies) == (True, ())
    bot.go.set()
    assert [reply.text for reply in (await first).replies] == ["echo: hi"]
    assert await count(sessionmaker, Message) == 2  # the message and one answer


async def test_a_customers_next_message_waits_for_their_answer_and_sees_it(
    sessionmaker: SessionMaker,
) -> None:
    bot = GatedRemote(SLOW)
    processor = make_processor(sessionmaker, bot)
    first = asyncio.create_task(processor.handle(sms("???", SLOW)))
    await bot.asked.wait()
    second = asyncio.create_task(processor.handle(sms("???", SLOW)))
    await asyncio.sleep(0.1)  # the writer takes it meanwhile (what follows holds either way)
    assert not second.done()
    assert bot.turns == []
    bot.go.set()
    await asyncio.gather(first, second)
    assert [turn.conversation.failed_turns for turn in bot.turns] == [0, 1]
    async with sessionmaker() as session:
        conversation = await session.get_one(Conversation, (await second).conversation_id)
    assert conversation.failed_turns == 2


@pytest.mark.parametrize("stop", ["STOP", "Please stop texting me"])
async def test_a_stop_acts_at_once_while_the_bot_holds_the_customers_earlier_turn(
    sessionmaker: SessionMaker, stop: str
) -> None:
    """STOP means stop: it does not wait behind the bot's answer to the message before it (up
    to `bot_timeout`), and that answer, written after it, is one the worker will not send.
    In plain words too: it is as much an opt-out, and the bot never reads it either."""
    bot = GatedRemote(SLOW)
    processor = make_processor(sessionmaker, bot)
    first = asyncio.create_task(processor.handle(sms("where is my order?", SLOW)))
    await bot.asked.wait()
    stopped = await asyncio.wait_for(processor.handle(sms(stop, SLOW)), timeout=10)
    assert not first.done()  # the bot still holds the earlier turn
    assert [reply.text for reply in stopped.replies] == [
        "You are unsubscribed from Sastre. No more messages. Reply START to resubscribe."
    ]
    bot.go.set()
    await first
    async with sessionmaker() as session:
        customer = await find_customer(session, "phone", SLOW, "US")
        assert await service_revoked(session, customer.id, Channel.SMS)
        texts = list(
            await session.scalars(
                select(Message.text).where(Message.direction == "out").order_by(Message.id)
            )
        )
    assert texts[0].startswith("You are unsubscribed")  # the answer before it came after


async def test_a_bot_that_does_not_answer_in_time_is_given_up_on(
    sessionmaker: SessionMaker,
) -> None:
    bot = GatedRemote(SLOW)
    processor = make_processor(sessionmaker, bot, bot_timeout=0.05)
    first = asyncio.create_task(processor.handle(sms("hello", SLOW)))
    await bot.asked.wait()
    bot.slow = "nobody"  # the customer's next turn is answered at once
    second = await asyncio.wait_for(processor.handle(sms("still there?", SLOW)), timeout=10)
    with pytest.raises(BotUnanswered, match=r"did not answer within 0\.05 s"):
        await first
    assert [r.text for r in second.replies] == ["echo: still there?"]
    async with sessionmaker() as session:
        awaiting = await session.scalars(
            select(Message.text).join(AwaitingBot, AwaitingBot.message_id == Message.id)
        )
        assert list(awaiting) == ["hello"]  # a redelivery asks again


async def test_shutting_down_waits_for_a_remote_bot(sessionmaker: SessionMaker) -> None:
    processor = make_processor(sessionmaker, PacedRemote())
    pending = [
        asyncio.create_task(processor.handle(sms(f"q{n}", f"+1415555{n:04d}"))) for n in range(5)
    ]
    await asyncio.sleep(0)  # handed in: queued for the writer
    await processor.drained()
    assert await count(sessionmaker, Message) == 10
    assert all(result.replies for result in await asyncio.gather(*pending))


async def test_a_cancelled_ask_leaves_nobody_waiting(sessionmaker: SessionMaker) -> None:
    bot = GatedRemote(SLOW)
    processor = make_processor(sessionmaker, bot)
    first = asyncio.create_task(processor.handle(sms("hello", SLOW)))
    await bot.asked.wait()
    second = asyncio.create_task(processor.handle(sms("hello again", SLOW)))
    await asyncio.sleep(0.1)  # parked meanwhile (what follows holds either way)
    for task in asyncio.all_tasks():
        if task.get_name().startswith("sastre-bot-"):
            task.cancel()  # as at shutdown
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    await processor.drained()


async def test_a_remote_answer_is_not_sent_once_a_person_holds_the_conversation(
    sessionmaker: SessionMaker,
) -> None:
    bot = GatedRemote(SLOW)
    processor = make_processor(sessionmaker, bot)
    waiting = asyncio.create_task(processor.handle(sms("hello", SLOW)))
    await bot.asked.wait()
    async with sessionmaker.begin() as session:
        conversation = await session.scalar(select(Conversation))
        assert conversation is not None
        conversation.state = "assigned"  # an agent took it meanwhile
    bot.go.set()
    assert (await waiting).replies == ()
    assert await count(sessionmaker, AwaitingBot) == 0


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
