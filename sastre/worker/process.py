"""A worker as a process: `sastre worker`, or the one `sastre serve` starts beside the web
server (unless `SASTRE_SERVE_WORKER=0`).

Woken across processes by Redis pub/sub when `SASTRE_REDIS_URL` is set (the web process
publishes after every commit that queued rows). The worker `sastre serve` spawns is also woken
through a pipe from its parent (`wake_pipe`), Redis or not. Without Redis it also looks every
50 ms, a cheap indexed read that takes no lock, for rows other processes queued (the CLI's).
While Redis is unreachable a worker looks in the database the same way and limits its rate in
its own memory (`rates`), and says so once when Redis goes and once when it is back (`outage`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import timedelta
from multiprocessing.connection import Connection

from redis.asyncio import Redis

from channels.base import ChannelName, Sender
from crm_core.sqltypes import utcnow
from dialog.outbox import listen, next_due
from sastre.config import Settings
from sastre.db import SessionMaker, create_engine, reader_for, sessionmaker_for
from sastre.operations.outreach import Outreach
from sastre.worker.backoff import RetryPolicy
from sastre.worker.loop import Worker
from sastre.worker.outage import REDIS_ERRORS, Outage
from sastre.worker.quiet_hours import QuietHours
from sastre.worker.rates import REDIS_TIMEOUT, ChannelRates, storage_for
from sastre.worker.wake_pipe import WakePipe, hear_pipe

__all__ = [
    "WAKE_CHANNEL",
    "hear_wakeups",
    "poll_database",
    "publish_wakeups",
    "run_worker",
    "spawn_worker",
    "spawned_worker",
    "worker_main",
]

log = logging.getLogger(__name__)
WAKE_CHANNEL = "sastre:outbox"
POLL = 0.05  # seconds between looks in the database when no wake-up can come (no Redis)
PUBLISH_RETRY = 1.0  # seconds between a web process's tries at an unreachable Redis
POLL_AFTER = 3 * PUBLISH_RETRY  # seconds a worker goes on polling once Redis is back
QUIET_BEFORE_PING = 5.0  # seconds without a word from Redis before a worker asks if it is there


def rates_of(settings: Settings) -> dict[ChannelName, float]:
    return {
        ChannelName.SMS: settings.rate_sms,
        ChannelName.EMAIL: settings.rate_email,
        ChannelName.TELEGRAM: settings.rate_telegram,
    }


@contextlib.asynccontextmanager
async def publish_wakeups(redis: Redis | None) -> AsyncIterator[None]:
    """In a web process: tell the workers of other processes about every commit that queued.

    Redis unreachable loses nothing (the workers poll the database meanwhile): a failed publish
    is one warning while the outage lasts, not an error per commit. Redis is tried again at
    most every `PUBLISH_RETRY` seconds (one try at a time, off the request): the workers
    subscribe again within a second of its return and stop polling soon after (`POLL_AFTER`),
    so wake-ups must flow again by then."""
    if redis is None:
        yield
        return
    tasks: set[asyncio.Task[None]] = set()
    outage = Outage(
        "worker wake-ups",
        "the workers look in the database every 50 ms",
        retry_every=PUBLISH_RETRY,
        max_retry_every=PUBLISH_RETRY,
    )

    async def publish() -> None:
        try:
            async with asyncio.timeout(REDIS_TIMEOUT):
                await redis.publish(WAKE_CHANNEL, b"1")
        except REDIS_ERRORS as error:  # a timeout is an OSError too
            outage.failed(error)
        else:
            outage.succeeded()

    def wake() -> None:
        if not outage.may_try():
            return
        task = asyncio.ensure_future(publish())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    undo = listen(wake)
    try:
        yield
    finally:
        undo()
        if tasks:  # the last announcements go out (or fail quietly) before Redis is closed
            await asyncio.wait(tasks)


async def hear_wakeups(
    redis_url: str,
    wake: Callable[[], None],
    subscribed: Callable[[], None] | None = None,
    *,
    reachable: Callable[[bool], None] | None = None,
    retry: float = 1.0,
) -> None:
    """In a worker's process: call `wake` for every commit another process announced, until
    cancelled. `subscribed` is told once Redis has confirmed the subscription (from then on no
    announcement is missed). When Redis goes away it subscribes again every `retry` seconds;
    `reachable(False)` is told when it went, `reachable(True)` once subscribed again (and `wake`
    then, for what was committed meanwhile)."""
    client = Redis.from_url(redis_url, socket_connect_timeout=REDIS_TIMEOUT)
    outage = Outage("worker wake-ups", "this worker looks in the database every 50 ms")
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(WAKE_CHANNEL)
                    heard, pinged = loop.time(), None
                    while True:
                        message = await pubsub.get_message(timeout=1.0)
                        now = loop.time()
                        if message is None:
                            # Quiet: is Redis still there? One that hangs (stopped, or cut
                            # off without a reset) never ends a read: it must answer a PING.
                            if pinged is not None and now - pinged > REDIS_TIMEOUT:
                                raise TimeoutError("Redis did not answer a PING")
                            if pinged is None and now - heard > QUIET_BEFORE_PING:
                                await pubsub.ping()
                                pinged = now
                            continue
                        heard, pinged = now, None
                        kind = message.get("type")
                        if kind == "message":
                            wake()
                        elif kind == "subscribe":
                            if outage.down:
                                outage.succeeded()
                                if reachable is not None:
                                    reachable(True)
                                wake()
                            if subscribed is not None:
                                subscribed()
            except REDIS_ERRORS as error:
                if not outage.down:
                    outage.failed(error)
                    if reachable is not None:
                        reachable(False)
                await asyncio.sleep(retry)
    finally:
        await client.aclose()


async def poll_database(
    reader: SessionMaker, channels: Sequence[ChannelName], wake: Callable[[], None]
) -> None:
    """Wake the worker whenever a row is due, looking every `POLL` seconds, until cancelled: the
    wake-up while Redis, which carries them between processes, is unreachable (a cheap indexed
    read that takes no lock)."""
    while True:
        await asyncio.sleep(POLL)
        try:
            async with reader() as session:
                due = await next_due(session, channels)
        except Exception:  # the database's own trouble is the worker's to report
            continue
        if due is not None and due <= utcnow():
            wake()


async def run_worker(
    settings: Settings,
    senders: Mapping[ChannelName, Sender],
    stop: asyncio.Event,
    *,
    concurrency: int | None = None,
    wakes: Connection | None = None,
) -> Worker:
    """Run one worker with these senders until `stop`; `wakes`: the read end of the pipe its
    parent wakes it through (`wake_pipe`)."""
    from sastre.senders import failure_hooks

    engine = create_engine(settings.database_url)
    storage, close_storage = storage_for(settings.redis_url)
    rates = ChannelRates(rates_of(settings), storage)
    worker = Worker(
        sessionmaker_for(engine),
        senders,
        reader=reader_for(engine),
        concurrency=concurrency or settings.worker_concurrency,
        lease=timedelta(seconds=settings.worker_lease_seconds),
        policy=RetryPolicy(
            settings.retry_max_attempts, settings.retry_base_seconds, settings.retry_max_seconds
        ),
        admit=rates if rates.limited else None,
        wait=QuietHours(Outreach.from_settings(settings)),
        poll=1.0 if settings.redis_url else POLL,
        on_failure=failure_hooks(settings),
    )
    undo = listen(worker.wake)
    unpipe = hear_pipe(wakes, worker.wake) if wakes is not None else None
    polling: asyncio.Task[None] | None = None
    ending: set[asyncio.Task[None]] = set()  # polling on for a while after Redis came back
    loop = asyncio.get_running_loop()

    def reachable(up: bool) -> None:
        nonlocal polling
        if up and polling is not None:
            # Not at once: the web processes publish again within `PUBLISH_RETRY` of Redis's
            # return, and until they do, their wake-ups are lost.
            ending.add(polling)
            polling.add_done_callback(ending.discard)
            loop.call_later(POLL_AFTER, polling.cancel)
            polling = None
        elif not up and polling is None:
            polling = asyncio.ensure_future(
                poll_database(reader_for(engine), list(senders), worker.wake)
            )

    hearing = (
        asyncio.ensure_future(hear_wakeups(settings.redis_url, worker.wake, reachable=reachable))
        if settings.redis_url
        else None
    )
    try:
        await worker.run(stop)
    finally:
        undo()
        if unpipe is not None:
            unpipe()
        for task in (hearing, polling, *ending):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await close_storage()
        await engine.dispose()
    return worker


async def _main(
    settings: Settings,
    ready: Callable[[], None] | None,
    signals: tuple[signal.Signals, ...],
    wakes: Connection | None,
) -> None:
    from sastre.senders import built_senders

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    if (parent := multiprocessing.parent_process()) is not None:
        _stop_with(parent, stop)
    if ready is not None:  # told only once a SIGTERM would stop it gracefully
        ready()
    async with built_senders(settings) as senders:
        if not senders:
            log.warning("no channel is configured to send on: the worker only waits")
        log.info("outbox worker sending on %s", ", ".join(sorted(senders)) or "nothing")
        await run_worker(settings, senders, stop, wakes=wakes)


def _stop_with(parent: multiprocessing.process.BaseProcess, stop: asyncio.Event) -> None:
    """A worker `sastre serve` spawned stops when serve is gone, however it went: killed with
    SIGKILL (or by the kernel for memory) it never asks its worker to stop, and a worker left
    behind would go on sending the outbox beside the one the next serve starts. The parent's
    sentinel is a pipe only the parent holds open: readable once it has ended."""
    loop = asyncio.get_running_loop()

    def gone() -> None:
        loop.remove_reader(parent.sentinel)
        log.warning("the process that started this worker (pid %s) is gone: stopping", parent.pid)
        stop.set()

    loop.add_reader(parent.sentinel, gone)


def worker_main(
    settings: Settings,
    ready: Callable[[], None] | None = None,
    *,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
    wakes: Connection | None = None,
) -> None:
    """`sastre worker`: until SIGTERM or SIGINT."""
    asyncio.run(_main(settings, ready, signals, wakes))


def spawned_worker(settings: Settings, wakes: Connection | None = None) -> None:
    """The worker `sastre serve` and `sastre demo` spawn. A spawned interpreter starts with no
    logging set up: it logs as the command does (SASTRE_LOG_LEVEL). Its parent decides when it
    stops (SIGTERM): a Ctrl+C in the terminal reaches the whole process group, and the parent
    stops its worker itself as it shuts down, after the web server stopped taking messages."""
    from sastre.logs import configure_logging

    configure_logging(settings.log_level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker_main(settings, signals=(signal.SIGTERM,), wakes=wakes)


def spawn_worker(
    settings: Settings,
    target: Callable[[Settings, Connection | None], None] = spawned_worker,
    *,
    wakes: WakePipe | None = None,
) -> multiprocessing.process.BaseProcess:
    """A worker in a process of its own (spawned: no inherited event loop), started; woken
    through `wakes` when given."""
    context = multiprocessing.get_context("spawn")
    reader = wakes.reader_for_next_worker() if wakes is not None else None
    process = context.Process(
        target=target, args=(settings, reader), name="sastre-worker", daemon=True
    )
    process.start()
    if reader is not None:
        reader.close()  # the child has its own copy now
    return process
