"""The worker sends what is queued, retries what may succeed later, and wakes on a commit."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from typing_extensions import override

from channels.base import ChannelName, DeliveryFailed, InboundMessage, OutboundMessage
from channels.fake import FakeSender
from crm_core.sqltypes import utcnow
from dialog.outbox import Claimed, Result, listen
from dialog.outbox.models import DeliveryAttempt, OutboxEntry
from sastre.db import SessionMaker
from sastre.worker import RetryPolicy, Worker
from tests.dialog.test_outbox import make

_ids = itertools.count(1)


def sms(text: str) -> InboundMessage:
    return InboundMessage(ChannelName.SMS, "+14155552671", text, f"SMw{next(_ids)}")


class Signalling(FakeSender):
    def __init__(self) -> None:
        super().__init__()
        self.sending = asyncio.Event()

    @override
    async def send(self, message: OutboundMessage) -> str:
        self.sending.set()
        return await super().send(message)


async def entry(sessionmaker: SessionMaker) -> OutboxEntry:
    async with sessionmaker() as session:
        return (await session.scalars(select(OutboxEntry))).one()


async def test_a_queued_reply_is_sent_once(sessionmaker: SessionMaker) -> None:
    await make(sessionmaker).handle(sms("hello"))
    fake = FakeSender()
    worker = Worker(sessionmaker, {ChannelName.SMS: fake})
    assert await worker.drain() == 1
    assert await worker.drain() == 0
    row = await entry(sessionmaker)
    assert (row.state, row.provider_id, row.attempts) == ("sent", fake.sent[0].provider_id, 1)
    assert fake.sent[0].message.reference == f"sastre-{row.message_id}"


async def test_a_worker_with_no_channel_waits_until_stopped(sessionmaker: SessionMaker) -> None:
    # `sastre serve` with no channel configured: an early return looked like a crash to the
    # supervisor, which restarted it forever.
    stop = asyncio.Event()
    running = asyncio.ensure_future(Worker(sessionmaker, {}).run(stop))
    await asyncio.sleep(0.05)
    assert not running.done()
    stop.set()
    await asyncio.wait_for(running, 5)


async def test_a_round_settles_many_results_at_once(sessionmaker: SessionMaker) -> None:
    processor = make(sessionmaker)
    for n in range(3):
        await processor.handle(
            InboundMessage(ChannelName.SMS, f"+1415555000{n}", "hi", f"SMm{next(_ids)}")
        )
    fake = FakeSender()
    fake.fail_next(DeliveryFailed("no", retryable=False), DeliveryFailed("later", retryable=True))
    assert await Worker(sessionmaker, {ChannelName.SMS: fake}).round() == 3
    async with sessionmaker() as session:
        states = sorted((await session.scalars(select(OutboxEntry.state))).all())
    assert states == ["failed", "queued", "sent"]  # the retry waits, held by nobody


async def test_a_retryable_failure_waits_at_least_its_retry_after(
    sessionmaker: SessionMaker,
) -> None:
    await make(sessionmaker).handle(sms("hello"))
    fake = FakeSender()
    fake.fail_next(DeliveryFailed("slow down", retryable=True, code="429", retry_after=120))
    worker = Worker(sessionmaker, {ChannelName.SMS: fake}, jitter=lambda: 0.0)
    assert await worker.drain() == 1
    row = await entry(sessionmaker)
    assert (row.state, row.error_code) == ("queued", "429")
    assert row.due_at - row.updated_at >= timedelta(seconds=119)  # minus the time to settle
    later = Worker(
        sessionmaker, {ChannelName.SMS: fake}, clock=lambda: row.due_at + timedelta(seconds=1)
    )
    assert await later.drain() == 1
    assert (await entry(sessionmaker)).state == "sent"
    async with sessionmaker() as session:
        outcomes = (await session.scalars(select(DeliveryAttempt.outcome))).all()
    assert sorted(outcomes) == ["retry", "sent"]


async def test_a_permanent_failure_is_final_with_the_providers_code(
    sessionmaker: SessionMaker,
) -> None:
    await make(sessionmaker).handle(sms("hello"))
    fake = FakeSender()
    fake.fail_next(DeliveryFailed("unsubscribed recipient", retryable=False, code="21610"))
    worker = Worker(sessionmaker, {ChannelName.SMS: fake})
    await worker.drain()
    row = await entry(sessionmaker)
    assert (row.state, row.error_code, row.error) == ("failed", "21610", "unsubscribed recipient")


async def test_the_attempts_run_out(sessionmaker: SessionMaker) -> None:
    await make(sessionmaker).handle(sms("hello"))
    fake = FakeSender()
    fake.fail_next(*(DeliveryFailed("down", retryable=True) for _ in range(2)))
    worker = Worker(
        sessionmaker,
        {ChannelName.SMS: fake},
        policy=RetryPolicy(max_attempts=2, base=0.001, cap=0.001),
        jitter=lambda: 0.0,
    )
    await worker.drain()
    await worker.drain()
    assert (await entry(sessionmaker)).state == "failed"
    assert fake.calls == 2


async def test_an_idle_worker_sends_a_committed_reply_at_once(
    sessionmaker: SessionMaker,
) -> None:
    fake = Signalling()
    # A poll far longer than the wait below: only the wake-up can send it in time. (How soon,
    # in milliseconds, is for the benchmarks: a timed assertion fails on a busy machine.)
    worker = Worker(sessionmaker, {ChannelName.SMS: fake}, poll=30)
    stop = asyncio.Event()
    undo = listen(worker.wake)
    running = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(0.05)  # the worker is idle, waiting
        await make(sessionmaker).handle(sms("hello"))
        async with asyncio.timeout(5):
            await fake.sending.wait()
    finally:
        undo()
        stop.set()
        await running


async def test_an_email_answer_goes_out_in_the_customers_thread(
    sessionmaker: SessionMaker,
) -> None:
    inbound = InboundMessage(
        ChannelName.EMAIL,
        "ana@example.org",
        "Where is my order?",
        "CAF00D@mail.example.org",
        subject="Order SO-1",
        thread_key="root.1@shop.example",
        metadata={"message_id": "CAF00D@mail.example.org", "references": "root.1@shop.example"},
    )
    await make(sessionmaker).handle(inbound)
    fake = FakeSender()
    assert await Worker(sessionmaker, {ChannelName.EMAIL: fake}).drain() == 1
    [sent] = fake.sent
    assert sent.message.subject == "Re: Order SO-1"
    assert sent.message.in_reply_to == "CAF00D@mail.example.org"
    assert sent.message.references == ("root.1@shop.example", "CAF00D@mail.example.org")


class Holding(FakeSender):
    """Holds every call to one address until released; the others go at once."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    @override
    async def send(self, message: OutboundMessage) -> str:
        if message.address == self.address:
            self.holding.set()
            await self.release.wait()
        return await super().send(message)


async def _queue_replies(sessionmaker: SessionMaker, senders: list[str]) -> None:
    processor = make(sessionmaker)
    for sender in senders:  # queued in this order: the first is the oldest, claimed first
        await processor.handle(InboundMessage(ChannelName.SMS, sender, "hi", f"SMh{next(_ids)}"))


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - in-memory counters, no event to wait on
            await asyncio.sleep(0.01)


async def test_a_slow_call_does_not_hold_back_the_others(sessionmaker: SessionMaker) -> None:
    slow, others = "+14155550100", [f"+1415555020{n}" for n in range(4)]
    await _queue_replies(sessionmaker, [slow, *others])
    fake = Holding(slow)
    worker = Worker(sessionmaker, {ChannelName.SMS: fake}, concurrency=2)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        # While the slow call is out, the other slot keeps sending, and results are recorded.
        await _until(lambda: worker.outcomes[("sms", "sent")] == len(others))
        assert fake.holding.is_set()
    finally:
        fake.release.set()
        stop.set()
        await running
    async with sessionmaker() as session:
        states = (await session.scalars(select(OutboxEntry.state))).all()
    assert states == ["sent"] * 5  # stopping finished and recorded the held call


async def test_a_call_that_outlives_the_lease_is_given_up_and_tried_again(
    sessionmaker: SessionMaker,
) -> None:
    slow, other = "+14155550101", "+14155550201"
    await _queue_replies(sessionmaker, [slow, other])
    fake = Holding(slow)
    worker = Worker(
        sessionmaker,
        {ChannelName.SMS: fake},
        lease=timedelta(seconds=0.5),
        policy=RetryPolicy(base=3600, cap=3600),
        jitter=lambda: 1.0,
    )
    assert await worker.drain() == 2  # returns: the slow call was cut short at 0.4 s
    async with sessionmaker() as session:
        attempts = (
            await session.execute(select(DeliveryAttempt.outcome, DeliveryAttempt.reason))
        ).all()
    assert sorted(attempts) == [
        ("retry", "the provider did not answer in time"),
        ("sent", None),
    ]
    fake.release.set()


async def test_results_the_database_refused_for_a_moment_are_written_again_not_resent(
    sessionmaker: SessionMaker,
) -> None:
    await _queue_replies(sessionmaker, ["+14155550102"])
    fake = FakeSender()
    worker = Worker(sessionmaker, {ChannelName.SMS: fake})
    settle = worker._settle
    refusals = [RuntimeError("the database went away for a moment")]

    async def flaky(results: list[Result]) -> None:
        if refusals:
            raise refusals.pop()
        await settle(results)

    worker._settle = flaky  # type: ignore[method-assign]
    assert await worker.drain() == 1
    assert fake.calls == 1
    row = await entry(sessionmaker)
    assert (row.state, row.attempts) == ("sent", 1)


async def test_a_result_that_cannot_be_written_holds_back_none_of_the_others(
    sessionmaker: SessionMaker,
) -> None:
    """Each of the others is recorded (none is sent again); the one that cannot be is tried
    until just before its lease ends, then left to it, as after a crash."""
    await _queue_replies(sessionmaker, [f"+1415555030{n}" for n in range(3)])
    async with sessionmaker() as session:
        poison = min(await session.scalars(select(OutboxEntry.message_id)))
    fake = FakeSender()
    worker = Worker(sessionmaker, {ChannelName.SMS: fake}, lease=timedelta(seconds=3))
    settle = worker._settle
    tries = 0

    async def refusing(results: list[Result]) -> None:
        nonlocal tries
        if any(r.claimed.message_id == poison for r in results):
            tries += 1
            raise RuntimeError("this row cannot be written")
        await settle(results)

    worker._settle = refusing  # type: ignore[method-assign]
    await worker.drain()
    assert fake.calls == 3
    async with sessionmaker() as session:
        states = dict(
            (await session.execute(select(OutboxEntry.message_id, OutboxEntry.state))).all()
        )
    assert states.pop(poison) == "sending"
    assert set(states.values()) == {"sent"}
    assert tries > 2  # tried again while its lease lasted, not once


def _claimed(message_id: int, lease_until: datetime) -> Claimed:
    return Claimed(
        message_id,
        1,
        ChannelName.SMS,
        "+14155550100",
        "hola",
        "service",
        {},
        1,
        False,
        lease_until=lease_until,
    )


async def test_a_calls_patience_runs_until_its_lease_nearly_ends(
    sessionmaker: SessionMaker,
) -> None:
    """Counted from the end of a claim that waited (for the write lock, a rate limit), a call
    could outlive its lease and be made again by the worker that took the row over."""
    now = utcnow()
    lease = timedelta(seconds=10)
    worker = Worker(sessionmaker, {ChannelName.SMS: FakeSender()}, lease=lease, clock=lambda: now)
    assert worker.patience_for([_claimed(1, now + lease)]) == 8.0
    assert worker.patience_for([_claimed(2, now + timedelta(seconds=5))]) == 3.0  # waited 5 s
    assert worker.patience_for([_claimed(3, now + timedelta(seconds=1))]) == 0.0


async def test_a_result_whose_lease_has_run_out_ends_only_its_own_tries(
    sessionmaker: SessionMaker,
) -> None:
    """A row claimed long ago is left to its lease; one claimed just now is still written (it
    was given up with it, and its call made again once its lease ran out)."""
    now = utcnow()

    def result(message_id: int, lease_left: timedelta) -> Result:
        claimed = _claimed(message_id, now + lease_left)
        return Result(claimed, "sent", provider_id=f"SM{message_id}")

    worker = Worker(sessionmaker, {ChannelName.SMS: FakeSender()})
    refusals = 3  # the batch, then each result on its own
    written: list[int] = []

    async def away_for_a_moment(results: list[Result]) -> None:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise RuntimeError("the database went away for a moment")
        written.extend(r.claimed.message_id for r in results)

    worker._settle = away_for_a_moment  # type: ignore[method-assign]
    await worker._record([result(1, timedelta(seconds=-1)), result(2, timedelta(minutes=1))])
    assert written == [2]


async def test_an_over_long_provider_code_is_kept_cut_not_lost(sessionmaker: SessionMaker) -> None:
    await make(sessionmaker).handle(sms("hello"))
    fake = FakeSender()
    fake.fail_next(DeliveryFailed("refused", retryable=False, code="9" * 40))
    await Worker(sessionmaker, {ChannelName.SMS: fake}).drain()
    row = await entry(sessionmaker)
    assert (row.state, row.error_code) == ("failed", "9" * 32)
    assert fake.calls == 1
