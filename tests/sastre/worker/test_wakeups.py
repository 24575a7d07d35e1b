"""A commit in one process wakes the workers of another through Redis pub/sub: the web side
publishes after the commit, the worker side's own subscriber connection hears it. The workers
here never poll (an hour between looks), so only the wake-up can make them send."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from redis.asyncio import Redis
from sqlalchemy import select
from typing_extensions import override

from channels.base import ChannelName
from dialog.outbox import OutboxEntry
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


ROOT = Path(__file__).resolve().parents[3]
# The worker's own OS process: the worker and its Redis subscriber as `sastre worker` runs them,
# but never polling, and with a sender that says on stdout what it was given.
WORKER = """
import asyncio
import signal
import sys

from channels.base import ChannelName
from channels.fake import FakeSender
from sastre.db import create_engine, sessionmaker_for
from sastre.worker import Worker
from sastre.worker.process import hear_wakeups


class Telling(FakeSender):
    async def send(self, message):
        provider_id = await super().send(message)
        print("sent", message.address, message.reference, flush=True)
        return provider_id


class Idling(Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.idle = asyncio.Event()

    async def _idle(self, stop):
        self.idle.set()
        await super()._idle(stop)


async def main(database_url, redis_url):
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    engine = create_engine(database_url)
    worker = Idling(sessionmaker_for(engine), {ChannelName.SMS: Telling()}, poll=3600.0)
    subscribed = asyncio.Event()
    hearing = asyncio.create_task(hear_wakeups(redis_url, worker.wake, subscribed.set))
    running = asyncio.create_task(worker.run(stop))
    await subscribed.wait()
    await worker.idle.wait()  # found nothing to send: from now on only a wake-up makes it look
    print("ready", flush=True)
    await running  # a SIGTERM lets the round in hand finish and settle first
    hearing.cancel()
    await asyncio.gather(hearing, return_exceptions=True)
    await engine.dispose()
    print("stopped", flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_a_commit_in_one_process_wakes_a_worker_in_another(
    sessionmaker: SessionMaker, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    with log.open("wb") as errors:
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            database_url,
            redis_url,
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("SASTRE_")},
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
        )
    assert worker.stdout is not None
    publisher = Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(60):  # bounds, not figures: each is usually milliseconds
            ready = await worker.stdout.readline()
        assert ready == b"ready\n", log.read_text()
        async with publish_wakeups(publisher):
            await make(sessionmaker).handle(sms("hello", sender="+14155550123"))
        async with asyncio.timeout(60):
            sent = (await worker.stdout.readline()).decode().split()
        [row] = await _rows(sessionmaker)
        assert sent == ["sent", "+14155550123", f"sastre-{row.message_id}"], log.read_text()
        worker.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            assert await worker.stdout.read() == b"stopped\n", log.read_text()
            assert await worker.wait() == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        await publisher.aclose()
    # Sent once, and settled by the other process before it stopped.
    [row] = await _rows(sessionmaker)
    assert (row.state, row.attempts) == ("sent", 1)


async def _rows(sessionmaker: SessionMaker) -> list[OutboxEntry]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(OutboxEntry))).all())
