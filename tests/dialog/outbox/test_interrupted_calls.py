"""After a crash, a message whose call was in flight is sent again, and that call is recorded
(`interrupted`) once, by the claim that takes the message out of the dead worker's hands: whether
the rate limit first holds it back, or consent revoked since refuses it (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from channels.base import ChannelName
from crm_core.sqltypes import utcnow
from dialog.outbox import Purpose
from sastre.db import SessionMaker
from tests.dialog.outbox.claims import LEASE, Gate, attempts, entry, queue_replies, take
from tests.dialog.test_outbox import make, sms

SECOND = timedelta(seconds=1)


async def test_a_crashed_call_the_rate_limit_holds_back_is_recorded_once(
    sessionmaker: SessionMaker,
) -> None:
    [message] = await queue_replies(sessionmaker, 1)
    start = utcnow()
    await take(sessionmaker, "dead", start)  # and the worker dies, its call in flight
    later = start + LEASE + SECOND
    gate = Gate(until=later + SECOND)
    assert await take(sessionmaker, "b", later, admit=gate) == []  # the window is full
    gate.until = later + 2 * SECOND
    assert await take(sessionmaker, "b", later + SECOND, admit=gate) == []  # still full
    assert gate.asked == [message, message]
    gate.room = 1
    [again] = await take(sessionmaker, "b", later + 2 * SECOND, admit=gate)
    assert again.interrupted
    assert (await entry(sessionmaker, message)).claimed_by == "b"
    recorded = [(a.worker, a.outcome) for a in await attempts(sessionmaker, message)]
    assert recorded == [("b", "interrupted")]


async def test_a_crashed_call_refused_at_the_take_over_is_recorded_too(
    sessionmaker: SessionMaker,
) -> None:
    processor = make(sessionmaker)
    reply = (await processor.handle(sms("hello"))).replies[0].message_id
    start = utcnow()
    await take(sessionmaker, "dead", start)
    await processor.handle(sms("STOP"))  # while the dead worker's call was out
    [confirmation] = await take(sessionmaker, "b", start + LEASE + SECOND)
    assert (confirmation.purpose, confirmation.channel) == (Purpose.COMPLIANCE, ChannelName.SMS)
    recorded = [(a.worker, a.outcome) for a in await attempts(sessionmaker, reply)]
    assert recorded == [("b", "interrupted"), ("b", "revoked")]
    assert (await entry(sessionmaker, reply)).state == "failed"
