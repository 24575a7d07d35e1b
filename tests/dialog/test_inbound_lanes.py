"""Batches in lanes, and the bot reading queued messages ahead (`dialog.inbound.processor`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import ChannelName, InboundMessage
from dialog.inbound import InboundProcessor
from dialog.inbound import processor as processor_module
from dialog.inbound.processor import READ_AHEAD_MIN
from dialog.models import Message
from dialog.turns import BotTurn, InboundResult, Turn
from sastre.db import SessionMaker
from tests.dialog.test_inbound import count, make_processor


class HeldBrain:
    """Echoes every turn, in the order it is asked; the first message waits for `release`."""

    def __init__(self, held: str) -> None:
        self.held = held
        self.asked = asyncio.Event()  # the held message has reached the bot
        self.release = asyncio.Event()
        self.seen: list[str] = []

    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn:
        self.seen.append(turn.text)
        if turn.text == self.held:
            self.asked.set()
            await self.release.wait()
        return BotTurn([f"echo: {turn.text}"], intent="faq", confidence=0.9)


class ListReader:
    """A reader that notes the texts it is handed; `elsewhere`, it returns a future per call
    that the test resolves (a reading done in another process, back when the test says)."""

    def __init__(self, texts: list[str], *, elsewhere: bool = False) -> None:
        self.texts = texts
        self.elsewhere = elsewhere
        self.readings: list[asyncio.Future[None]] = []

    def read(self, texts: Sequence[str]) -> asyncio.Future[None] | None:
        self.texts.extend(texts)
        if not self.elsewhere:
            return None
        self.readings.append(asyncio.get_running_loop().create_future())
        return self.readings[-1]


def _processor(
    sessionmaker: SessionMaker,
    brain: HeldBrain,
    *,
    lanes: int,
    max_batch: int = 4,
    read_ahead: list[str] | ListReader | None = None,
) -> InboundProcessor:
    return make_processor(
        sessionmaker,
        brain,
        max_batch=max_batch,
        lanes=lanes,
        read_ahead=ListReader(read_ahead) if isinstance(read_ahead, list) else read_ahead,
    )


def _sms(text: str, sender: str) -> InboundMessage:
    return InboundMessage(ChannelName.SMS, sender, text, f"SM-{text}")


async def _until(done: Callable[[], bool], what: str) -> None:
    # Each handle() queues its message before its first await: a few loop turns suffice.
    for _ in range(100):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never: {what}")


async def _until_queued(processor: InboundProcessor, count: int) -> None:
    await _until(lambda: len(processor._queue) >= count, f"{count} messages queued")


async def _first_held(
    processor: InboundProcessor, brain: HeldBrain
) -> asyncio.Future[InboundResult]:
    """brain.held from +14155550100, handed in and held by the bot: a batch in flight."""
    first = asyncio.ensure_future(processor.handle(_sms(brain.held, "+14155550100")))
    await brain.asked.wait()
    return first


async def test_a_second_lane_takes_other_senders_while_the_first_waits(
    sessionmaker: SessionMaker,
) -> None:
    brain = HeldBrain("a1")
    processor = _processor(sessionmaker, brain, lanes=2)
    first = asyncio.ensure_future(processor.handle(_sms("a1", "+14155550001")))
    await brain.asked.wait()
    # A crowd arrives while a1's batch is in flight: a2 is from the same sender, so it waits for
    # a1's batch; the others go in the second lane at once.
    later = [
        asyncio.ensure_future(processor.handle(_sms(text, sender)))
        for text, sender in (
            ("a2", "+14155550001"),
            ("b1", "+14155550002"),
            ("c1", "+14155550003"),
            ("d1", "+14155550004"),
        )
    ]
    await _until(lambda: len(processor._flying) == 2, "a second lane")
    brain.release.set()
    results = await asyncio.gather(first, *later)
    assert [r.replies[0].text for r in results] == [
        f"echo: {t}" for t in ["a1", "a2", "b1", "c1", "d1"]
    ]
    assert brain.seen == ["a1", "b1", "c1", "d1", "a2"]  # a2 saw a1's turn; nobody waited on a2


async def test_one_lane_takes_the_queue_in_order(sessionmaker: SessionMaker) -> None:
    brain = HeldBrain("a1")
    processor = _processor(sessionmaker, brain, lanes=1)
    first = asyncio.ensure_future(processor.handle(_sms("a1", "+14155550001")))
    await brain.asked.wait()
    later = [
        asyncio.ensure_future(processor.handle(_sms(text, sender)))
        for text, sender in (("a2", "+14155550001"), ("b1", "+14155550002"))
    ]
    await _until_queued(processor, 2)
    brain.release.set()
    await asyncio.gather(first, *later)
    assert brain.seen == ["a1", "a2", "b1"]


async def test_queued_messages_are_read_ahead_while_a_batch_waits(
    sessionmaker: SessionMaker,
) -> None:
    brain = HeldBrain("first")
    texts: list[str] = []
    processor = _processor(sessionmaker, brain, lanes=1, max_batch=32, read_ahead=texts)
    first = await _first_held(processor, brain)
    crowd = [f"question {n}" for n in range(READ_AHEAD_MIN)]
    later = [
        asyncio.ensure_future(processor.handle(_sms(text, f"+1415555{n:04d}")))
        for n, text in enumerate(crowd)
    ]
    await _until_queued(processor, READ_AHEAD_MIN)
    for _ in range(10):  # the read-ahead runs in the moments the batch waits
        await asyncio.sleep(0)
    assert sorted(texts) == sorted(crowd)
    brain.release.set()
    results = await asyncio.gather(first, *later)
    assert [r.replies[0].text for r in results[1:]] == [f"echo: {t}" for t in crowd]


async def test_a_few_queued_messages_are_not_read_ahead(sessionmaker: SessionMaker) -> None:
    brain = HeldBrain("first")
    texts: list[str] = []
    processor = _processor(sessionmaker, brain, lanes=1, max_batch=32, read_ahead=texts)
    first = await _first_held(processor, brain)
    few = [
        asyncio.ensure_future(processor.handle(_sms(f"q{n}", f"+1415555{n:04d}")))
        for n in range(READ_AHEAD_MIN - 1)
    ]
    await _until_queued(processor, READ_AHEAD_MIN - 1)
    for _ in range(10):
        await asyncio.sleep(0)
    assert texts == []  # for a few texts the arithmetic's fixed cost is most of it
    brain.release.set()
    await asyncio.gather(first, *few)


async def test_a_batch_hands_its_texts_to_a_reader_elsewhere_and_awaits_it(
    sessionmaker: SessionMaker,
) -> None:
    brain = HeldBrain("never held")
    reader = ListReader([], elsewhere=True)
    processor = _processor(sessionmaker, brain, lanes=1, read_ahead=reader)
    answered = asyncio.ensure_future(processor.handle(_sms("hello", "+14155550100")))
    await _until(lambda: reader.texts == ["hello"], "the batch's text handed to the reader")
    for _ in range(20):
        await asyncio.sleep(0)
    assert brain.seen == []  # the turn waits for its reading
    reader.readings[0].set_result(None)
    result = await answered
    assert brain.seen == ["hello"]
    assert result.replies[0].text == "echo: hello"


async def test_a_turn_goes_on_without_a_reading_that_is_late(
    sessionmaker: SessionMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processor_module, "READ_WAIT", 0.01)
    brain = HeldBrain("never held")
    reader = ListReader([], elsewhere=True)
    processor = _processor(sessionmaker, brain, lanes=1, read_ahead=reader)
    result = await asyncio.wait_for(processor.handle(_sms("hello", "+14155550100")), 10)
    assert result.replies[0].text == "echo: hello"  # the bot read it itself
    assert not reader.readings[0].done()


async def test_a_redelivery_while_the_first_is_handled_gets_its_outcome_at_once(
    sessionmaker: SessionMaker,
) -> None:
    brain = HeldBrain("first")
    processor = _processor(sessionmaker, brain, lanes=1)
    first = await _first_held(processor, brain)
    again = asyncio.ensure_future(processor.handle(_sms("first", "+14155550100")))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not again.done()  # it waits for the first delivery, not for a batch of its own
    assert len(processor._queue) == 0
    brain.release.set()
    stored, redelivered = await asyncio.gather(first, again)
    assert not stored.duplicate
    assert redelivered.duplicate
    assert brain.seen == ["first"]
    assert await count(sessionmaker, Message, Message.direction == "in") == 1


async def test_a_redelivery_of_a_message_just_settled_is_a_plain_duplicate(
    sessionmaker: SessionMaker,
) -> None:
    # x and a share a batch; x's caller, resumed first, sends a's redelivery before a's own
    # caller has resumed: it must not wait on a delivery that has already settled.
    brain = HeldBrain("first")
    processor = _processor(sessionmaker, brain, lanes=1)
    first = await _first_held(processor, brain)

    async def x_then_redelivery() -> InboundResult:
        await processor.handle(_sms("x", "+14155550101"))
        return await processor.handle(_sms("a", "+14155550102"))

    chained = asyncio.ensure_future(x_then_redelivery())
    a = asyncio.ensure_future(processor.handle(_sms("a", "+14155550102")))
    await _until_queued(processor, 2)
    brain.release.set()
    results = await asyncio.wait_for(asyncio.gather(first, a, chained), 10)
    assert [result.duplicate for result in results] == [False, False, True]
    assert await count(sessionmaker, Message, Message.direction == "in") == 3


class FailsOnce:
    """Fails the first turn it is asked, then echoes."""

    def __init__(self) -> None:
        self.failed = False
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn:
        if not self.failed:
            self.failed = True
            self.asked.set()
            await self.release.wait()
            raise RuntimeError("the bot fell over")
        return BotTurn([f"echo: {turn.text}"], intent="faq", confidence=0.9)


async def test_a_redelivery_of_a_message_that_failed_is_tried_itself(
    sessionmaker: SessionMaker,
) -> None:
    brain = FailsOnce()
    processor = make_processor(sessionmaker, brain, max_batch=4)
    first = asyncio.ensure_future(processor.handle(_sms("first", "+14155550100")))
    await brain.asked.wait()
    again = asyncio.ensure_future(processor.handle(_sms("first", "+14155550100")))
    brain.release.set()
    with pytest.raises(RuntimeError):
        await first
    result = await again
    assert not result.duplicate
    assert result.replies[0].text == "echo: first"
    assert await count(sessionmaker, Message, Message.direction == "in") == 1
