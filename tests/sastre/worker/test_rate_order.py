"""Workers under a channel's rate limit send its messages in the order they became due, those
queued meanwhile included, and sleep while the window is full rather
than look again and again: two workers sharing the limit in memory (one process), and two sharing
it through Redis (as two processes do), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

from limits.aio.storage import MemoryStorage
from typing_extensions import override

from channels.base import ChannelName
from channels.fake import FakeSender
from dialog.outbox import listen
from sastre.db import SessionMaker
from sastre.worker import Worker
from sastre.worker.rates import ChannelRates, storage_for
from tests.dialog.outbox.claims import queue_replies

RATE = 5.0  # messages a second
BACKLOG, ARRIVING = 8, 4  # queued before the workers start, and one every 1/ARRIVING s after
HOUR = 3600.0  # no polling: the workers look when woken, or when the window has room


class Counting(Worker):
    """Counts the times it found nothing to do and went to sleep."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.idles = 0

    @override
    async def _idle(self, stop: asyncio.Event) -> None:
        self.idles += 1
        await super()._idle(stop)


async def _send_in_turn(sessionmaker: SessionMaker, limiters: list[ChannelRates]) -> None:
    queued = await queue_replies(sessionmaker, BACKLOG)
    fake = FakeSender()
    workers = [
        Counting(sessionmaker, {ChannelName.SMS: fake}, admit=rates, concurrency=4, poll=HOUR)
        for rates in limiters
    ]
    undo = [listen(worker.wake) for worker in workers]
    stop = asyncio.Event()
    running = [asyncio.create_task(worker.run(stop)) for worker in workers]
    try:
        for _ in range(ARRIVING):
            await asyncio.sleep(1 / ARRIVING)
            queued += await queue_replies(sessionmaker, 1)
        async with asyncio.timeout(30):
            while len(fake.sent) < len(queued):  # noqa: ASYNC110 - the fake's list, no event
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.gather(*running)
        for cancel in undo:
            cancel()
    assert [s.message.reference for s in fake.sent] == [f"sastre-{n}" for n in queued]
    # (The rate itself is the limiter's, tested in test_rates: how far apart the calls come
    # here depends on how busy the machine is, not only on the limit.)
    # While the window is full its rows are due, yet the workers sleep until it has room (a
    # worker looking every few milliseconds would count hundreds).
    assert max(worker.idles for worker in workers) < 60


async def test_two_workers_of_a_process_send_in_turn_at_the_rate(
    sessionmaker: SessionMaker,
) -> None:
    storage = MemoryStorage()
    namespace = uuid.uuid4().hex
    limiters = [ChannelRates({ChannelName.SMS: RATE}, storage, namespace=namespace)] * 2
    await _send_in_turn(sessionmaker, limiters)


async def test_two_processes_sharing_the_limit_through_redis_send_in_turn_at_the_rate(
    sessionmaker: SessionMaker, redis_url: str
) -> None:
    namespace = uuid.uuid4().hex  # the suite's Redis is shared by the tests
    opened = [storage_for(redis_url) for _ in range(2)]  # a connection pool each
    try:
        limiters = [
            ChannelRates({ChannelName.SMS: RATE}, storage, namespace=namespace)
            for storage, _ in opened
        ]
        await _send_in_turn(sessionmaker, limiters)
    finally:
        for _, close in opened:
            await close()
