"""What the outbox's claim tests share: replies queued as the inbound path queues them, claims and
results at chosen moments, and a rate limit worked by hand."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from channels.base import ChannelName, InboundMessage
from crm_core.models import Interaction
from dialog.outbox import Admit, Claimed, Result, claim, settle
from dialog.outbox.models import DeliveryAttempt, OutboxEntry
from sastre.db import SessionMaker
from tests.dialog.test_outbox import make

ALL = list(ChannelName)
LEASE = timedelta(seconds=30)
_numbers = itertools.count(1)


async def queue_replies(
    sessionmaker: SessionMaker, count: int, channel: ChannelName = ChannelName.SMS
) -> list[int]:
    """`count` customers write in turn: their replies' message ids, oldest first."""
    processor = make(sessionmaker)
    ids: list[int] = []
    for _ in range(count):
        n = next(_numbers)
        if channel is ChannelName.EMAIL:
            inbound = InboundMessage(channel, f"c{n}@example.com", "hello", f"<c{n}@example.com>")
        else:
            inbound = InboundMessage(channel, f"+1415555{n:04d}", "hello", f"SMq{n}")
        ids.append((await processor.handle(inbound)).replies[0].message_id)
    return ids


async def take(
    sessionmaker: SessionMaker, worker: str, at: datetime, *, admit: Admit | None = None
) -> list[Claimed]:
    async with sessionmaker.begin() as session:
        return await claim(
            session, worker=worker, channels=ALL, limit=10, lease=LEASE, now=at, admit=admit
        )


async def report(sessionmaker: SessionMaker, result: Result, *, worker: str, at: datetime) -> None:
    async with sessionmaker.begin() as session:
        await settle(session, [result], worker=worker, now=at)


async def entry(sessionmaker: SessionMaker, message_id: int) -> OutboxEntry:
    async with sessionmaker() as session:
        row = await session.get(OutboxEntry, message_id)
    assert row is not None
    return row


async def attempts(sessionmaker: SessionMaker, message_id: int) -> list[DeliveryAttempt]:
    async with sessionmaker() as session:
        found = await session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.message_id == message_id)
            .order_by(DeliveryAttempt.id)
        )
        return list(found)


async def timeline(sessionmaker: SessionMaker) -> list[str]:
    """The delivery entries on the customers' timelines, in order."""
    async with sessionmaker() as session:
        found = await session.scalars(
            select(Interaction.summary)
            .where(Interaction.kind == "delivery")
            .order_by(Interaction.occurred_at, Interaction.id)
        )
        return list(found)


@dataclass
class Gate:
    """A channel's rate limit, worked by hand: `room` more rows of `channel` may go, the others
    wait until `until`; every other channel is unlimited."""

    until: datetime
    room: int = 0
    channel: ChannelName = ChannelName.SMS
    asked: list[int] = field(default_factory=list)  # the rows it was asked about

    async def __call__(self, rows: Sequence[Claimed]) -> list[tuple[Claimed, datetime | None]]:
        decided: list[tuple[Claimed, datetime | None]] = []
        for row in rows:
            self.asked.append(row.message_id)
            if row.channel is not self.channel:
                decided.append((row, None))
            elif self.room > 0:
                self.room -= 1
                decided.append((row, None))
            else:
                decided.append((row, self.until))
        return decided
