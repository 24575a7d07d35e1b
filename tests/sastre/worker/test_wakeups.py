"""A commit in one process wakes the workers of another through Redis pub/sub: the web side
publishes after the commit, the worker side's own subscriber connection hears it. The worker
here never polls (an hour between looks), so only the wake-up can make it send."""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis
from typing_extensions import override

from channels.base import ChannelName
from sastre.db import SessionMaker
from sastre.worker import Worker
from sastre.worker.process import hear_wakeups, publish_wakeups
from tests.dialog.test_outbox import make, sms
from tests.sastre.worker.test_loop import Signalling

HOUR = 3600.0


class Idling(Worker):
    """Tells when it has nothing left to do and starts waiting."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.idle = asyncio.Event()

    @override
    async def _idle(self, stop: asyncio.Event) -> None:
        self.idle.set()
        await super()._idle(stop)


async def test_a_commit_wakes_a_worker_listening_on_another_connection(
    sessionmaker: SessionMaker, redis_url: str
) -> None:
    fake = Signalling()
    worker = Idling(sessionmaker, {ChannelName.SMS: fake}, poll=HOUR)
    subscribed = asyncio.Event()
    hearing = asyncio.create_task(hear_wakeups(redis_url, worker.wake, subscribed.set))
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    publisher = Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(30):
            await subscribed.wait()
            await worker.idle.wait()
        async with publish_wakeups(publisher):
            await make(sessionmaker).handle(sms("hello"))
            async with asyncio.timeout(30):  # a bound, not a figure: usually milliseconds
                await fake.sending.wait()
        assert [s.message.text for s in fake.sent] != []
    finally:
        stop.set()
        worker.wake()
        await running
        hearing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hearing
        await publisher.aclose()
