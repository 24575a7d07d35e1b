"""A message waiting for its retry reads `queued` with the time it is due, never `sending` (a
row nobody holds has no call in flight), and a provider's Retry-After waits at most
SASTRE_RETRY_MAX_SECONDS (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
from datetime import timedelta

from sqlalchemy import select

from channels.base import ChannelName, DeliveryFailed, InboundMessage
from channels.fake import FakeSender
from dialog.outbox import DeliveryState, claim, release
from dialog.outbox.models import OutboxEntry
from sastre.db import SessionMaker
from sastre.worker import RetryPolicy, Worker
from tests.dialog.test_outbox import make

_ids = itertools.count(1)
POLICY = RetryPolicy(max_attempts=8, base=2.0, cap=900.0)


def sms(text: str) -> InboundMessage:
    return InboundMessage(ChannelName.SMS, "+14155552671", text, f"SMr{next(_ids)}")


async def entry(sessionmaker: SessionMaker) -> OutboxEntry:
    async with sessionmaker() as session:
        return (await session.scalars(select(OutboxEntry))).one()


async def test_a_message_waiting_for_its_retry_is_queued_until_due_and_held_by_nobody(
    sessionmaker: SessionMaker,
) -> None:
    await make(sessionmaker).handle(sms("hello"))
    fake = FakeSender()
    fake.fail_next(DeliveryFailed("too many requests", retryable=True, code="429", retry_after=60))
    assert await Worker(sessionmaker, {ChannelName.SMS: fake}, policy=POLICY).drain() == 1
    row = await entry(sessionmaker)
    assert row.state == DeliveryState.QUEUED.value
    assert row.claimed_by is None
    assert (row.error_code, row.error, row.attempts) == ("429", "too many requests", 1)
    assert row.due_at - row.updated_at >= timedelta(seconds=59)
    # When it is due, it is claimed (`sending`) and sent as any queued message.
    later = Worker(
        sessionmaker,
        {ChannelName.SMS: fake},
        policy=POLICY,
        clock=lambda: row.due_at + timedelta(seconds=1),
    )
    assert await later.drain() == 1
    assert (await entry(sessionmaker)).state == DeliveryState.SENT.value


async def test_a_day_long_retry_after_waits_no_longer_than_the_configured_maximum(
    sessionmaker: SessionMaker,
) -> None:
    await make(sessionmaker).handle(sms("hello"))
    fake = FakeSender()
    fake.fail_next(DeliveryFailed("slow down", retryable=True, code="429", retry_after=86_400))
    await Worker(sessionmaker, {ChannelName.SMS: fake}, policy=POLICY).drain()
    row = await entry(sessionmaker)
    assert row.state == DeliveryState.QUEUED.value
    wait = row.due_at - row.updated_at
    assert timedelta(seconds=899) <= wait <= timedelta(seconds=901)


async def test_rows_a_stopping_worker_gives_back_are_queued_again(
    sessionmaker: SessionMaker,
) -> None:
    await make(sessionmaker).handle(sms("hello"))
    async with sessionmaker.begin() as session:
        [taken] = await claim(
            session, worker="w", channels=[ChannelName.SMS], limit=10, lease=timedelta(seconds=60)
        )
    held = await entry(sessionmaker)
    assert (held.state, held.claimed_by) == (DeliveryState.SENDING.value, "w")
    async with sessionmaker.begin() as session:
        await release(session, [taken.message_id], held.updated_at)
    row = await entry(sessionmaker)
    assert (row.state, row.claimed_by) == (DeliveryState.QUEUED.value, None)
