"""The worker's second look at the recipient's hours: marketing claimed in quiet hours waits for
the next opening, service does not (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import update

from channels.base import ChannelName
from channels.fake import FakeSender
from consent.ledger import record_consent
from consent.preferences import update_preferences
from consent.types import Action, Channel, Purpose, Source
from crm_core.customers import upsert_customer
from crm_core.records import parse_customer
from dialog.models import Message
from dialog.outbox import Claimed, OutboxEntry
from sastre.db import SessionMaker
from sastre.worker import Worker
from sastre.worker.quiet_hours import QuietHours
from tests.dialog.outbox.claims import entry, queue_replies

MIAMI = ZoneInfo("America/New_York")  # a Florida number: contact hours 08:00-20:00
PHONE = "+13055550123"


async def _customer(sessionmaker: SessionMaker, window: tuple[str, str] | None = None) -> int:
    async with sessionmaker.begin() as session:
        customer, _ = await upsert_customer(
            session, parse_customer({"external_id": "C-1", "phone": PHONE}, "US")
        )
        if window is not None:
            start, end = window
            await update_preferences(
                session,
                customer.id,
                {"window": {"start": start, "end": end}},
                actor="test",
                source=Source.AGENT,
                evidence={},
            )
        return customer.id


def _claimed(message_id: int, customer_id: int, purpose: str) -> Claimed:
    return Claimed(message_id, customer_id, ChannelName.SMS, PHONE, "hi", purpose, {}, 1, False)


def _local(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 7, hour, minute, tzinfo=MIAMI)


async def _waiting(
    sessionmaker: SessionMaker, claimed: list[Claimed], now: datetime
) -> dict[int, datetime | None]:
    async with sessionmaker() as session:
        return await QuietHours()(session, claimed, now)


async def test_marketing_claimed_in_quiet_hours_waits_for_the_next_opening(
    sessionmaker: SessionMaker,
) -> None:
    customer = await _customer(sessionmaker)
    claimed = [_claimed(1, customer, "marketing"), _claimed(2, customer, "service")]
    # 20:30 in Florida is quiet (its state rule ends at 20:00): the marketing waits for 08:00.
    assert await _waiting(sessionmaker, claimed, _local(20, 30)) == {
        1: _local(8).replace(day=8).astimezone(UTC)
    }
    assert await _waiting(sessionmaker, claimed, _local(19, 59)) == {}


async def test_marketing_waits_for_the_customers_own_window_too(
    sessionmaker: SessionMaker,
) -> None:
    customer = await _customer(sessionmaker, ("18:00", "19:00"))
    waiting = await _waiting(sessionmaker, [_claimed(1, customer, "marketing")], _local(10))
    assert waiting == {1: _local(18).astimezone(UTC)}


async def test_marketing_to_a_window_that_never_opens_may_never_go(
    sessionmaker: SessionMaker,
) -> None:
    customer = await _customer(sessionmaker, ("22:00", "02:00"))  # never meets 08:00-20:00
    assert await _waiting(sessionmaker, [_claimed(1, customer, "marketing")], _local(12)) == {
        1: None
    }


async def test_a_worker_holds_marketing_claimed_in_quiet_hours_until_they_end(
    sessionmaker: SessionMaker,
) -> None:
    # A reply to a California number (+1415...), made marketing and due just before 22:00 there
    # (the moment it was queued is the real clock's: a fixed date must not come before it).
    pacific = ZoneInfo("America/Los_Angeles")
    late, morning = (
        datetime(2026, 12, 7, 22, tzinfo=pacific),
        datetime(2026, 12, 8, 8, tzinfo=pacific),
    )
    [row] = await queue_replies(sessionmaker, 1)
    async with sessionmaker.begin() as session:
        await session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.message_id == row)
            .values(purpose="marketing", due_at=late - timedelta(minutes=1))
        )
        customer_id = (await session.get_one(Message, row)).customer_id
        for action in (Action.GRANT, Action.CONFIRM):  # marketing goes only on confirmed consent
            await record_consent(
                session,
                customer_id,
                Channel.SMS,
                Purpose.MARKETING,
                action,
                Source.WEB_FORM,
                actor="test",
            )
    fake = FakeSender()

    def worker(at: datetime) -> Worker:
        return Worker(sessionmaker, {ChannelName.SMS: fake}, wait=QuietHours(), clock=lambda: at)

    assert await worker(late).drain() == 0
    held = await entry(sessionmaker, row)
    assert (held.state, held.due_at) == ("queued", morning.astimezone(UTC))
    assert await worker(morning).drain() == 1
    assert [s.message.reference for s in fake.sent] == [f"sastre-{row}"]
