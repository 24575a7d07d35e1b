"""A remote bot's answer when the customer is merged while the bot thinks.

A remote bot is asked between two transactions. If the customer's record is merged meanwhile,
their conversation may have moved to the survivor or been closed into the survivor's: the answer
goes to the survivor's open conversation, under the survivor, and is not sent if a person holds
it by then.
"""

from __future__ import annotations

import asyncio
import itertools

from sqlalchemy import select

from channels.base import ChannelName, InboundMessage
from consent.ledger import record_consent
from consent.types import Action, Channel, Purpose, Source
from crm_core.models import Interaction, InteractionKind
from dialog.inbound import InboundProcessor
from dialog.models import AwaitingBot, Conversation, ConversationState, Direction, Message
from dialog.turns import InboundResult
from sastre.db import SessionMaker
from sastre.operations import do_merge_customers
from tests.dialog.test_inbound import OTHER, SLOW, GatedRemote, count, make_processor, sms

_ids = itertools.count(1)
ELSEWHERE = "ana@example.com"  # the same person's other record writes by e-mail


def email(text: str) -> InboundMessage:
    return InboundMessage(ChannelName.EMAIL, ELSEWHERE, text, f"EM{next(_ids)}")


async def _with_the_bot(
    sessionmaker: SessionMaker, processor: InboundProcessor, bot: GatedRemote, text: str
) -> tuple[asyncio.Task[InboundResult], int]:
    """SLOW writes `text` and it is with the bot, held: the pending turn, and whose it is."""
    waiting = asyncio.create_task(processor.handle(sms(text, SLOW)))
    await bot.asked.wait()
    async with sessionmaker() as session:
        asking_id = await session.scalar(
            select(Conversation.customer_id).where(Conversation.address == SLOW)
        )
    assert asking_id is not None
    return waiting, asking_id


async def _merged_while_asking(
    sessionmaker: SessionMaker,
    other_first: str | None,
    *,
    into_other: bool,
) -> tuple[InboundResult, InboundResult | None, int]:
    """The other record writes `other_first` (if any); then SLOW's "hello" is with the bot when
    the two records are merged (into the other one, or the other into SLOW's). Returns SLOW's
    result, the other's, and the survivor's id."""
    bot = GatedRemote(SLOW)
    processor: InboundProcessor = make_processor(sessionmaker, bot)
    other = None
    if other_first is not None:
        other = await processor.handle(email(other_first))
        other_id = other.customer_id
    else:
        other_id = None
    waiting, asking_id = await _with_the_bot(sessionmaker, processor, bot, "hello")
    if other_id is None:
        other = await processor.handle(email("a note from my other address"))
        other_id = other.customer_id
    assert other_id is not None
    survivor, merged = (other_id, asking_id) if into_other else (asking_id, other_id)
    await do_merge_customers(sessionmaker, survivor, merged, actor="test")
    bot.go.set()
    result = await asyncio.wait_for(waiting, timeout=10)
    await processor.drained()
    return result, other, survivor


async def _open_conversation(sessionmaker: SessionMaker, customer_id: int) -> Conversation:
    async with sessionmaker() as session:
        conversation = await session.scalar(
            select(Conversation).where(
                Conversation.customer_id == customer_id,
                Conversation.state != ConversationState.RESOLVED.value,
            )
        )
    assert conversation is not None
    return conversation


async def _replies(sessionmaker: SessionMaker, message_id: int | None) -> list[Message]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Message).where(
                Message.direction == Direction.OUT.value, Message.in_reply_to == message_id
            )
        )
        return list(rows)


async def test_an_answer_after_a_merge_is_the_survivors(sessionmaker: SessionMaker) -> None:
    """The customer's conversation moved to the survivor: the answer is written there, under
    the survivor, and its timeline entry is the survivor's (not the merged-away record's)."""
    result, _, survivor = await _merged_while_asking(sessionmaker, None, into_other=True)
    assert [r.text for r in result.replies] == ["echo: hello"]
    assert result.customer_id == survivor
    kept = await _open_conversation(sessionmaker, survivor)
    assert result.conversation_id == kept.id
    [reply] = await _replies(sessionmaker, result.message_id)
    assert (reply.customer_id, reply.conversation_id) == (survivor, kept.id)
    async with sessionmaker() as session:
        said = await session.scalar(
            select(Interaction.customer_id).where(
                Interaction.kind == InteractionKind.MESSAGE_OUT.value,
                Interaction.summary == "echo: hello",
            )
        )
    assert said == survivor
    assert await count(sessionmaker, AwaitingBot) == 0


async def test_an_answer_after_a_merge_goes_to_the_conversation_kept(
    sessionmaker: SessionMaker,
) -> None:
    """Both records had a conversation open; the other one's (older) was kept and this one
    closed into it: the answer is written to the kept one, not to the closed one."""
    result, other, survivor = await _merged_while_asking(
        sessionmaker, "is my order on its way?", into_other=False
    )
    assert other is not None
    assert [r.text for r in result.replies] == ["echo: hello"]
    assert result.customer_id == survivor
    assert result.conversation_id == other.conversation_id  # the older one lives on
    [reply] = await _replies(sessionmaker, result.message_id)
    assert (reply.customer_id, reply.conversation_id) == (survivor, other.conversation_id)
    async with sessionmaker() as session:
        closed = await session.scalars(
            select(Message.id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Conversation.state == ConversationState.RESOLVED.value)
        )
        assert list(closed) == []


async def test_an_answer_after_a_merge_into_a_queued_conversation_is_not_sent(
    sessionmaker: SessionMaker,
) -> None:
    """The other record was waiting for a person: after the merge the person's conversation is
    the queued one, so the bot's answer is not sent (as when a person takes it meanwhile)."""
    result, other, survivor = await _merged_while_asking(sessionmaker, "human", into_other=True)
    assert other is not None
    assert other.handed_off
    assert result.replies == ()
    assert result.customer_id == survivor
    assert result.conversation_id == other.conversation_id
    assert await _replies(sessionmaker, result.message_id) == []
    kept = await _open_conversation(sessionmaker, survivor)
    assert kept.state == ConversationState.QUEUED.value
    assert await count(sessionmaker, AwaitingBot) == 0


async def test_an_answer_after_the_other_record_was_merged_in_follows_its_queued_conversation(
    sessionmaker: SessionMaker,
) -> None:
    """The asking customer survives, but their conversation was closed into the other record's
    queued one: the open conversation now is that one, and a person holds it."""
    result, other, survivor = await _merged_while_asking(sessionmaker, "human", into_other=False)
    assert other is not None
    assert result.customer_id == survivor
    assert result.conversation_id == other.conversation_id
    assert result.replies == ()
    assert await _replies(sessionmaker, result.message_id) == []


async def test_an_answer_after_a_merge_into_someone_who_sent_stop_is_not_sent(
    sessionmaker: SessionMaker,
) -> None:
    """The survivor had STOP in force on SMS: once the asking number is theirs, what it writes
    is stored and nothing is sent, the bot's late answer included."""
    bot = GatedRemote(SLOW)
    processor = make_processor(sessionmaker, bot)
    other = await processor.handle(email("hello from my e-mail"))
    assert other.customer_id is not None
    async with sessionmaker.begin() as session:
        await record_consent(
            session,
            other.customer_id,
            Channel.SMS,
            Purpose.SERVICE,
            Action.REVOKE,
            Source.KEYWORD,
            actor="customer",
        )
    waiting, asking_id = await _with_the_bot(sessionmaker, processor, bot, "hello")
    await do_merge_customers(sessionmaker, other.customer_id, asking_id, actor="test")
    bot.go.set()
    result = await asyncio.wait_for(waiting, timeout=10)
    assert result.customer_id == other.customer_id
    assert result.replies == ()
    assert await _replies(sessionmaker, result.message_id) == []
    assert await count(sessionmaker, AwaitingBot) == 0


async def _asking_then_merged(
    sessionmaker: SessionMaker,
) -> tuple[GatedRemote, InboundProcessor, asyncio.Task[InboundResult], int]:
    """SLOW's "???" is with the bot when its record is merged into the other one (which wrote
    by e-mail): the bot, the processor, SLOW's pending turn and the survivor's id."""
    bot = GatedRemote(SLOW)
    processor = make_processor(sessionmaker, bot)
    first, asking_id = await _with_the_bot(sessionmaker, processor, bot, "???")
    other = await processor.handle(email("a note from my other address"))
    assert other.customer_id is not None
    await do_merge_customers(sessionmaker, other.customer_id, asking_id, actor="test")
    return bot, processor, first, other.customer_id


async def test_the_next_message_from_the_number_asked_waits_for_its_answer_after_a_merge(
    sessionmaker: SessionMaker,
) -> None:
    """The asking record is merged into another while the bot thinks: the number's next message
    is the survivor's now, and still waits for the answer, so its turn sees it (the bot's
    not understanding the first is counted before the second is asked)."""
    bot, processor, first, survivor = await _asking_then_merged(sessionmaker)
    second = asyncio.create_task(processor.handle(sms("???", SLOW)))
    await processor.handle(sms("hi", OTHER))  # taken with the second or after it: both seen to
    bot.go.set()
    results = await asyncio.wait_for(asyncio.gather(first, second), timeout=10)
    assert [r.customer_id for r in results] == [survivor] * 2
    asked = [turn for turn in bot.turns if turn.conversation.address == SLOW]
    assert [turn.conversation.failed_turns for turn in asked] == [0, 1]


async def test_after_a_merge_the_survivors_other_address_waits_for_that_answer_too(
    sessionmaker: SessionMaker,
) -> None:
    """Once the number's next message waits under the record asked, so does everything the
    survivor writes, whatever the address: each turn sees the one before."""
    bot, processor, first, _ = await _asking_then_merged(sessionmaker)
    second = asyncio.create_task(processor.handle(sms("???", SLOW)))
    third = asyncio.create_task(processor.handle(email("???")))
    await processor.handle(sms("hi", OTHER))  # taken with the two or after them: both seen to
    bot.go.set()
    await asyncio.wait_for(asyncio.gather(first, second, third), timeout=10)
    asked = [(t.conversation.address, t.conversation.failed_turns) for t in bot.turns]
    assert [turn for turn in asked if turn[1] or turn[0] == SLOW] == [
        (SLOW, 0),
        (SLOW, 1),
        (ELSEWHERE, 2),
    ]
