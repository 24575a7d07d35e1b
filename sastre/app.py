"""Application assembly: every resource is acquired and released in one place (cleanup_ctx)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import NamedTuple

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from consent.replies import Brand
from dialog.faq_store import FaqCatalogue
from dialog.inbound import MAX_BATCH, InboundProcessor
from dialog.inbound.reask import reask_after, reask_forever
from dialog.turns import Bot, RemoteBot
from sastre.appkeys import (
    BRAIN,
    ENGINE,
    INBOUND,
    METRICS,
    READER,
    REDIS,
    SESSIONMAKER,
    SETTINGS,
)
from sastre.config import Settings
from sastre.db import create_engine, quick_writer_for, reader_for, sessionmaker_for
from sastre.dialogs import build_brain, embedded_reader
from sastre.email_listener import email_inbound
from sastre.metrics import Metrics, metrics_middleware
from sastre.serve_worker import SERVE_WORKER, serve_worker
from sastre.wal_checkpoints import Checkpointer, sqlite_file
from sastre.web import (
    chat,
    consent,
    console,
    customers,
    email,
    faq,
    faq_gaps,
    health,
    messages,
    public,
    twilio,
)
from sastre.web.auth import auth_middleware
from sastre.web.edge import install_headers, path_guard
from sastre.web.errors import error_middleware
from sastre.worker.supervisor import WorkerSupervisor

__all__ = ["create_app"]

log = logging.getLogger(__name__)


async def _database(app: web.Application) -> AsyncIterator[None]:
    url = app[SETTINGS].database_url
    # On SQLite the WAL is copied back by a thread of its own, not by the inbound path's
    # commits (`sastre.wal_checkpoints`).
    wal = sqlite_file(url)
    engine = create_engine(url, checkpoints_apart=wal is not None)
    app[ENGINE] = engine
    app[SESSIONMAKER] = sessionmaker_for(engine)
    app[READER] = reader_for(engine)
    async with AsyncExitStack() as stack:
        if wal is not None:
            stack.push_async_callback(Checkpointer(wal).start().close)
        yield
    await engine.dispose()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    url = app[SETTINGS].redis_url
    if url is None:
        app[REDIS] = None
        yield
        return
    redis = Redis.from_url(url)
    app[REDIS] = redis
    yield
    await redis.aclose()


class InboundBatches(NamedTuple):
    lanes: int  # batches in flight at once
    size: int  # messages per batch at most


def inbound_batches(database_url: str) -> InboundBatches:
    """How the inbound path batches (`dialog.inbound.processor`). On SQLite one lane: its single
    writer takes turns anyway. On PostgreSQL two lanes of up to 48 messages: the second opens
    only when a whole batch waits behind the first (a crowd: under 64 connections one lane
    carries them all), so the server can work on one batch while the other waits for it.

    Measured with bench.sms_inbound (64 connections, 2 cores), alternately, in one phase of the
    machine: two lanes of 24 answered 2,144-2,404 msg/s with p99 43.9-51.2 ms (p99 1.7-2.0
    times p50: the 16 messages that wait for a lane wait a whole batch), one or two of 48
    1,941-2,159 msg/s with p99 36.2-43.2 ms (1.2-1.4 times p50), one of 64 2,042-2,186 with
    p99 35-45. The p99 is the target that binds (issue #10: 50 ms, 1,500 msg/s)."""
    if make_url(database_url).get_backend_name() == "postgresql":
        return InboundBatches(lanes=2, size=48)
    return InboundBatches(lanes=1, size=MAX_BATCH)


async def _dialog(app: web.Application) -> AsyncIterator[None]:
    """The inbound path and its bot: the embedded one, or a real Rasa (SASTRE_RASA_URL)."""
    settings = app[SETTINGS]
    async with AsyncExitStack() as stack:
        brain = app[BRAIN]
        read_ahead = None
        batches = inbound_batches(settings.database_url)
        if brain is None:
            brain = await build_brain(settings, app[SESSIONMAKER], stack, app[faq.FAQ_CATALOGUE])
            if not settings.rasa_url:  # the embedded bot: its reading can start in the queue
                read_ahead = await embedded_reader(settings, app[faq.FAQ_CATALOGUE], stack)
        app[INBOUND] = InboundProcessor(
            # Its batches are short statements that requests wait on (sastre.db).
            quick_writer_for(app[ENGINE]),
            brain,
            default_region=settings.default_region,
            default_language=settings.default_language,
            default_timezone=settings.default_timezone,
            lanes=batches.lanes,
            max_batch=batches.size,
            read_ahead=read_ahead,
            bot_timeout=settings.bot_timeout,
            brand=Brand(
                settings.brand_name,
                settings.support_contact,
                messages_per_month=settings.sms_messages_per_month,
            ),
        )
        reasking = None
        if isinstance(brain, RemoteBot):
            # An SMS the bot gave no answer to is asked again: Twilio does not deliver it again.
            reasking = asyncio.ensure_future(
                reask_forever(
                    app[SESSIONMAKER],
                    app[INBOUND].handle,
                    after=reask_after(settings.bot_timeout),
                )
            )
        yield
        if reasking is not None:
            reasking.cancel()
        await app[INBOUND].drained()  # messages already accepted are written before we stop


def create_app(
    settings: Settings, *, brain: Bot | None = None, worker: WorkerSupervisor | None = None
) -> web.Application:
    """The whole service; nothing connects until the app starts (cleanup contexts).

    `brain` replaces the bot (tests); by default the embedded one is built at start-up.
    `worker` is the outbox worker `sastre serve` keeps running beside it (started with the
    app, stopped first when it shuts down, reported by /healthz)."""
    metrics = Metrics()
    app = web.Application(
        middlewares=[metrics_middleware(metrics), error_middleware, path_guard, auth_middleware],
        client_max_size=1024**2,
    )
    install_headers(app)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[BRAIN] = brain
    # One catalogue: the FAQ API invalidates the very index the bot reads.
    app[faq.FAQ_CATALOGUE] = FaqCatalogue(matcher=settings.faq_matcher)
    app.cleanup_ctx.extend([_database, _redis, _dialog, chat.abuse_limits])
    app.cleanup_ctx.append(email_inbound)  # after the inbound path: it hands messages to it
    app.cleanup_ctx.append(messages.outbox_wakeups)  # after Redis: it publishes there
    app[SERVE_WORKER] = worker
    app.cleanup_ctx.append(serve_worker)  # last: stopped first, while the rest still runs
    app.add_routes(health.routes)
    app.add_routes(customers.routes)
    app.add_routes(consent.routes)
    app.add_routes(public.routes)
    app.add_routes(chat.routes)
    app.add_routes(faq_gaps.routes)  # before faq's: /api/faq/gaps is no entry id
    app.add_routes(faq.routes)
    app.add_routes(console.routes)
    app.add_routes(twilio.routes)  # SMS in, and delivery states of what we sent
    app.add_routes(email.routes)  # e-mail in from a relay (the SMTP listener is the other door)
    app.add_routes(messages.routes)  # outbound messages: delivery, retries, staff sending
    return app
