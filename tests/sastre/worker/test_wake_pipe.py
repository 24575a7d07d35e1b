"""The worker `sastre serve` spawns is woken through a pipe from the web process, with no Redis.
The workers here never poll (an hour between looks), so only the wake-up can make them send."""

from __future__ import annotations

import asyncio
import os
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
from sqlalchemy import select

from channels.base import ChannelName
from channels.fake import FakeSender
from dialog.outbox import OutboxEntry, listen
from sastre.config import Settings, load_settings
from sastre.db import SessionMaker, create_engine, sessionmaker_for
from sastre.worker.process import spawn_worker
from sastre.worker.wake_pipe import WakePipe, hear_pipe
from tests.dialog.test_outbox import make, sms
from tests.sastre.worker.test_loop import Signalling
from tests.sastre.worker.test_wakeups import HOUR, Idling

READY = "SASTRE_TEST_WAKE_PIPE_READY"  # the socket the spawned worker says it is waiting on


async def test_a_byte_down_the_pipe_wakes_an_idle_worker(sessionmaker: SessionMaker) -> None:
    fake = Signalling()
    worker = Idling(sessionmaker, {ChannelName.SMS: fake}, poll=HOUR)
    wakes = WakePipe()
    unpipe = hear_pipe(wakes.reader_for_next_worker(), worker.wake)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(30):
            await worker.idle.wait()
        await make(sessionmaker).handle(sms("hello"))  # committed, not announced in-process
        wakes.wake()
        async with asyncio.timeout(30):  # a bound, not a figure: usually under a millisecond
            await fake.sending.wait()
    finally:
        stop.set()
        worker.wake()
        await running
        unpipe()
        wakes.close()


def test_wake_ups_for_a_worker_that_is_gone_or_slow_are_dropped_quietly() -> None:
    wakes = WakePipe()
    wakes.wake()  # no worker started yet
    reader = wakes.reader_for_next_worker()
    for _ in range(100_000):  # far beyond what the pipe holds: the byte is dropped, not awaited
        wakes.wake()
    reader.close()
    wakes.wake()  # the worker gone: the next one gets a pipe of its own
    wakes.close()


def _pipe_worker(settings: Settings, wakes: Connection | None) -> None:
    """A spawned worker as `sastre serve` starts one, but never polling."""

    async def main() -> None:
        assert wakes is not None
        engine = create_engine(settings.database_url)
        worker = Idling(sessionmaker_for(engine), {ChannelName.SMS: FakeSender()}, poll=HOUR)
        unpipe = hear_pipe(wakes, worker.wake)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        await worker.idle.wait()
        _, telling = await asyncio.open_unix_connection(os.environ[READY])
        telling.close()
        await telling.wait_closed()
        async with asyncio.timeout(60):
            while True:  # until its one row is sent
                await asyncio.sleep(0.01)
                async with sessionmaker_for(engine)() as session:
                    if await session.scalar(select(OutboxEntry.state)) == "sent":
                        break
        stop.set()
        worker.wake()
        await running
        unpipe()
        await engine.dispose()

    asyncio.run(main())


async def test_a_commit_in_the_web_process_wakes_the_worker_it_spawned(
    sessionmaker: SessionMaker, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = asyncio.Event()

    async def told(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        await writer.wait_closed()
        waiting.set()

    server = await asyncio.start_unix_server(told, tmp_path / "ready")
    monkeypatch.setenv(READY, str(tmp_path / "ready"))  # a spawned child inherits the environment
    settings = load_settings(_env_file=None, database_url=database_url)
    wakes = WakePipe()
    undo = listen(wakes.wake)  # as `sastre serve` does: every commit that queued wakes it
    process = spawn_worker(settings, _pipe_worker, wakes=wakes)
    try:
        async with asyncio.timeout(60):  # bounds, not figures
            await waiting.wait()
        await make(sessionmaker).handle(sms("hello"))  # announces after its commit
        async with asyncio.timeout(60):
            await asyncio.to_thread(process.join)
        assert process.exitcode == 0
    finally:
        server.close()
        await server.wait_closed()
        undo()
        wakes.close()
        if process.is_alive():
            process.kill()
    async with sessionmaker() as session:
        [row] = (await session.scalars(select(OutboxEntry))).all()
    assert (row.state, row.attempts) == ("sent", 1)
