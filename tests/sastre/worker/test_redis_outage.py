"""Redis carries only what the database can rebuild (wake-ups between processes, the shared rate
limits): while it is unreachable the workers keep sending, limiting their rate locally and
looking in the database for due rows, and the outage is said once when it starts and once when
it ends, not in a traceback per call. Against the suite's real Redis, through a door a test
shuts (tests/support/redis_door.py)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from channels.base import ChannelName
from dialog.outbox import announce
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.worker import process
from sastre.worker.outage import Outage
from sastre.worker.process import hear_wakeups, poll_database, publish_wakeups, run_worker
from sastre.worker.rates import ChannelRates, storage_for
from tests.dialog.test_outbox import make, sms
from tests.sastre.worker.test_loop import Signalling
from tests.sastre.worker.test_rates import row
from tests.support.redis_door import RedisDoor

OUTAGE_LOGGER = "sastre.worker.outage"


@pytest.fixture
async def door(redis_url: str) -> AsyncIterator[RedisDoor]:
    async with RedisDoor(redis_url) as door:
        yield door


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == OUTAGE_LOGGER]


async def test_the_rate_limit_holds_locally_while_redis_is_away(
    door: RedisDoor, caplog: pytest.LogCaptureFixture
) -> None:
    storage, close = storage_for(door.url)
    # One every 100 s: nothing below depends on how quickly the calls follow each other.
    rates = ChannelRates({ChannelName.SMS: 0.01}, storage, namespace=uuid.uuid4().hex)
    rates.outage = Outage("the shared rate limits", "local", retry_every=0)  # try Redis each time
    caplog.set_level(logging.WARNING, OUTAGE_LOGGER)
    try:
        door.shut()
        first = await rates([row(1), row(2)])
        second = await rates([row(3)])
        # In this process's memory: the first goes, the others wait their turn.
        assert [later is None for _, later in first + second] == [True, False, False]
        [gone] = _said(caplog)
        assert gone.startswith("Redis is unreachable for the shared rate limits")
        door.open()
        await rates([row(4)])
        assert len(_said(caplog)) == 2
        assert _said(caplog)[1].startswith("Redis is back for the shared rate limits")
        assert not [r for r in caplog.records if r.exc_info]  # no traceback
    finally:
        await close()


async def test_a_worker_keeps_sending_while_redis_is_away(
    settings: Settings,
    sessionmaker: SessionMaker,
    door: RedisDoor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    door.shut()
    configured = settings.model_copy(update={"redis_url": door.url, "rate_sms": 1.0})
    fake = Signalling()
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING)
    running = asyncio.ensure_future(run_worker(configured, {ChannelName.SMS: fake}, stop))
    try:
        await make(sessionmaker).handle(sms("hello"))
        async with asyncio.timeout(60):  # a bound, not a figure: usually milliseconds
            await fake.sending.wait()
    finally:
        stop.set()
        await running
    assert len(fake.sent) == 1
    assert not [r for r in caplog.records if r.exc_info]  # a warning, never a traceback


async def test_wake_ups_fall_back_to_the_database_and_come_back_with_redis(
    door: RedisDoor, caplog: pytest.LogCaptureFixture
) -> None:
    changes: asyncio.Queue[bool] = asyncio.Queue()
    woken = asyncio.Event()
    subscribed = asyncio.Event()
    caplog.set_level(logging.WARNING, OUTAGE_LOGGER)
    hearing = asyncio.ensure_future(
        hear_wakeups(door.url, woken.set, subscribed.set, reachable=changes.put_nowait, retry=0.01)
    )
    try:
        async with asyncio.timeout(60):
            await subscribed.wait()
            door.shut()
            assert await changes.get() is False
            woken.clear()
            door.open()
            assert await changes.get() is True
            await woken.wait()  # for what was committed while it was away
        said = _said(caplog)
        assert len(said) == 2
        assert said[0].startswith("Redis is unreachable for worker wake-ups")
        assert said[1].startswith("Redis is back for worker wake-ups")
    finally:
        hearing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hearing


async def test_a_redis_that_hangs_is_an_outage_for_wake_ups_too(
    door: RedisDoor, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopped Redis keeps its connections: a subscriber's read never ends, and without
    asking it, the worker never fell back to polling the database."""
    monkeypatch.setattr(process, "QUIET_BEFORE_PING", 0.2)
    monkeypatch.setattr(process, "REDIS_TIMEOUT", 0.5)
    changes: asyncio.Queue[bool] = asyncio.Queue()
    subscribed = asyncio.Event()
    caplog.set_level(logging.WARNING, OUTAGE_LOGGER)
    hearing = asyncio.ensure_future(
        hear_wakeups(
            door.url, lambda: None, subscribed.set, reachable=changes.put_nowait, retry=0.01
        )
    )
    try:
        async with asyncio.timeout(60):
            await subscribed.wait()
            door.freeze()
            assert await changes.get() is False
            door.thaw()
            assert await changes.get() is True
        said = _said(caplog)
        assert said[0].startswith("Redis is unreachable for worker wake-ups (TimeoutError")
    finally:
        hearing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hearing


async def test_the_database_poll_wakes_the_worker_for_a_due_row(
    sessionmaker: SessionMaker,
) -> None:
    await make(sessionmaker).handle(sms("hello"))  # a reply, due now
    woken = asyncio.Event()
    polling = asyncio.ensure_future(poll_database(sessionmaker, [ChannelName.SMS], woken.set))
    try:
        async with asyncio.timeout(30):
            await woken.wait()
    finally:
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling


async def test_publishing_to_an_unreachable_redis_is_one_warning_and_no_lost_task(
    door: RedisDoor, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    caplog.set_level(logging.WARNING, OUTAGE_LOGGER)
    publisher = Redis.from_url(door.url)
    try:
        door.shut()
        async with publish_wakeups(publisher):
            for _ in range(5):
                announce()
                await asyncio.sleep(0)
        gc.collect()  # a task whose exception nobody retrieved says so when collected
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
        await publisher.aclose()
    assert unhandled == []
    [said] = _said(caplog)
    assert said.startswith("Redis is unreachable for worker wake-ups")
