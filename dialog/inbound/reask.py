"""SMS a bot outside the database never answered, asked again.

A turn put to a remote bot (`RemoteBot`, a Rasa server) is stored awaiting it (`AwaitingBot`)
and answered in a second transaction. If the bot gives no answer (past the inbound path's
`bot_timeout`), or the process stops in between, the message waits for its provider to deliver
it again, which the processor asks again and answers once. Mail servers retry a 451 and the web
chat widget sends again by itself; Twilio posts a webhook once (a Fallback URL aside), so an SMS
would wait for ever. `claim_due` finds the SMS that have awaited the bot longer than `after`,
takes each one (moving its `asked_at`, in an UPDATE only one process wins, so two web
processes never ask twice), and gives it back as the redelivery Twilio did not make;
`reask_forever` hands those to the inbound path at intervals. A message older than
`GIVE_UP_AFTER` is left awaiting: a day late, an answer is no longer one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.base import ChannelName, InboundMessage
from crm_core.sqltypes import utcnow
from dialog.models import AwaitingBot, Direction, Message
from dialog.turns import InboundResult

__all__ = ["GIVE_UP_AFTER", "REASKED", "REASK_EVERY", "claim_due", "reask_after", "reask_forever"]

log = logging.getLogger(__name__)

REASKED: tuple[ChannelName, ...] = (ChannelName.SMS,)  # media whose provider delivers once
REASK_EVERY = 30.0  # seconds between looks
GIVE_UP_AFTER = timedelta(days=1)
CLAIM_AT_MOST = 100  # messages taken per look

Handle = Callable[[InboundMessage], Awaitable[InboundResult]]  # the inbound path's `handle`


def reask_after(bot_timeout: float) -> timedelta:
    """How long a message awaits the bot before it is asked again: longer than the inbound
    path waits for an answer (`bot_timeout`), so a turn still being asked is never taken."""
    return timedelta(seconds=max(60.0, 2 * bot_timeout))


async def claim_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    after: timedelta,
    now: datetime | None = None,
    channels: Sequence[ChannelName] = REASKED,
) -> list[InboundMessage]:
    """The messages on `channels` awaiting the bot since `after` ago or longer, each taken by
    this caller (its `asked_at` moved to now), as their provider would deliver them again."""
    moment = now or utcnow()
    due = moment - after
    async with sessionmaker.begin() as session:
        rows = (
            await session.execute(
                select(
                    Message.id,
                    Message.channel,
                    Message.address,
                    Message.text,
                    Message.provider_id,
                    Message.attachments,
                    Message.created_at,
                )
                .join(AwaitingBot, AwaitingBot.message_id == Message.id)
                .where(
                    AwaitingBot.asked_at <= due,
                    Message.direction == Direction.IN.value,
                    Message.channel.in_([channel.value for channel in channels]),
                    Message.created_at > moment - GIVE_UP_AFTER,
                )
                .order_by(AwaitingBot.asked_at)
                .limit(CLAIM_AT_MOST)
            )
        ).all()
        taken = []
        for row in rows:
            # Another process may have taken it since the SELECT: its asked_at moved past `due`
            # (on PostgreSQL this UPDATE waits for that one's commit and then matches nothing).
            claim = await session.execute(
                update(AwaitingBot)
                .where(AwaitingBot.message_id == row.id, AwaitingBot.asked_at <= due)
                .values(asked_at=moment)
                .returning(AwaitingBot.message_id)
            )
            if claim.first() is not None:
                taken.append(row)
    return [
        InboundMessage(
            ChannelName(row.channel),
            row.address,
            row.text,
            provider_id=row.provider_id,
            attachments=tuple(row.attachments or ()),
            reasked=True,
            received_at=row.created_at,
        )
        for row in taken
    ]


async def reask_forever(
    sessionmaker: async_sessionmaker[AsyncSession],
    handle: Handle,
    *,
    after: timedelta,
    every: float = REASK_EVERY,
) -> None:
    """Every `every` seconds, hand the SMS awaiting the bot since `after` ago to `handle` (the
    inbound path), each in a task of its own, until cancelled."""
    asking: set[asyncio.Task[None]] = set()
    try:
        while True:
            await asyncio.sleep(every)
            try:
                due = await claim_due(sessionmaker, after=after)
            except Exception:  # the database's own trouble: the next look tries again
                log.exception("could not look for messages awaiting the bot")
                continue
            for message in due:
                task = asyncio.ensure_future(_ask_again(handle, message))
                asking.add(task)
                task.add_done_callback(asking.discard)
    finally:
        for task in asking:
            task.cancel()


async def _ask_again(handle: Handle, message: InboundMessage) -> None:
    log.info("asking the bot again about %s %s", message.channel.value, message.provider_id)
    try:
        await handle(message)
    except Exception as error:  # still no answer: it stays awaiting, for the next look
        log.warning(
            "the bot still gave no answer about %s %s: %s",
            message.channel.value,
            message.provider_id,
            error,
        )
