"""A Twilio status callback racing the worker's commit of the send, each interleaving forced.

Twilio may call back before the worker has committed `sent` with the message's SID. The report
is then parked (`delivery_reports`) and applied by the transaction that saves the SID; on
PostgreSQL both sides take one lock per SID so that neither can miss the other's commit. Here
the report comes through the callback's own operation, the send through a real worker, and the
order is forced, never left to timing: the provider call is held open while the report comes,
or the lock is held by the test while both sides queue behind it in a chosen order (PostgreSQL
grants a lock to its waiters first come, first served). Whatever the order, the message ends
delivered, with its timeline in order, and no report is left behind or lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from typing_extensions import override

from channels.base import ChannelName, OutboundMessage
from channels.fake import FakeSender
from channels.sms_webhooks import DeliveryReport, parse_status
from consent.models import Undeliverable
from crm_core.models import Interaction
from crm_core.sqltypes import utcnow
from dialog.outbox import Result
from dialog.outbox.models import DeliveryAttempt, OutboxEntry, ParkedReport
from dialog.outbox.queue import _report_key  # the very key both sides lock
from sastre.db import SessionMaker, create_engine, migrate, sessionmaker_for
from sastre.operations.sms import do_record_sms_status
from sastre.worker import Worker
from tests.conftest import _fresh_postgres_database
from tests.dialog.outbox import claims
from tests.dialog.test_outbox import make, sms

FIXTURES = Path(__file__).parents[1] / "channels" / "fixtures" / "twilio"
BOUND = 60  # seconds: a bound on waits that usually take milliseconds, never a figure


def _report_form(name: str) -> dict[str, str]:
    return dict(parse_qsl((FIXTURES / f"{name}.txt").read_text().strip()))


SID = _report_form("status_delivered")["MessageSid"]


class Twilio(FakeSender):
    """Answers every send with the SID the fixtures' reports name; `during` runs while the call
    is in flight (after the claim's commit, before the worker records the result)."""

    def __init__(self, during: Callable[[], Awaitable[None]] | None = None) -> None:
        super().__init__()
        self.during = during

    @override
    async def send(self, message: OutboundMessage) -> str:
        await super().send(message)
        if self.during is not None:
            await self.during()
        return SID


async def report(sessionmaker: SessionMaker, name: str) -> bool:
    """A status callback, as the webhook records it; whether it moved the message forward."""
    outcome = await do_record_sms_status(
        sessionmaker, parse_status(_report_form(name)), region="US"
    )
    return outcome.moved


async def queued(sessionmaker: SessionMaker) -> None:
    """A reply to the fixtures' customer, waiting in the outbox."""
    await make(sessionmaker).handle(sms("hello", sender="+14155552671"))


async def assert_delivered_once(sessionmaker: SessionMaker) -> None:
    """Delivered, sent once, on the timeline in order, and no report left parked."""
    async with sessionmaker() as session:
        [row] = (await session.scalars(select(OutboxEntry))).all()
        attempts = (
            await session.execute(select(DeliveryAttempt.outcome, DeliveryAttempt.provider_id))
        ).all()
        timeline = (
            await session.scalars(
                select(Interaction.summary)
                .where(Interaction.kind == "delivery")
                .order_by(Interaction.occurred_at, Interaction.id)
            )
        ).all()
        parked = (await session.scalars(select(ParkedReport))).all()
    assert (row.state, row.provider_id) == ("delivered", SID)
    assert [tuple(a) for a in attempts] == [("sent", SID)]
    assert timeline == ["sent", "delivered"]
    assert parked == []


async def test_reports_during_the_call_are_applied_when_the_worker_saves_the_sid(
    sessionmaker: SessionMaker,
) -> None:
    await queued(sessionmaker)
    moved: list[bool] = []

    async def callbacks_first() -> None:
        # Out of order, as Twilio may send them: `delivered`, then a late `sent`.
        moved.append(await report(sessionmaker, "status_delivered"))
        moved.append(await report(sessionmaker, "status_sent"))

    twilio = Twilio(during=callbacks_first)
    assert await Worker(sessionmaker, {ChannelName.SMS: twilio}).drain() == 1
    assert moved == [False, False]  # the SID was not saved yet: both parked
    assert twilio.calls == 1
    await assert_delivered_once(sessionmaker)
    assert not await report(sessionmaker, "status_sent")  # never backwards, even now
    await assert_delivered_once(sessionmaker)


# --- PostgreSQL: both sides inside open transactions --------------------------------------------


@asynccontextmanager
async def report_lock_held(engine: AsyncEngine) -> AsyncIterator[None]:
    """The lock a report and the worker saving its SID take, held by the test for the block."""
    async with engine.connect() as connection, connection.begin():
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": _report_key(ChannelName.SMS.value, SID)},
        )
        yield


async def waiting_for_it(engine: AsyncEngine, count: int) -> None:
    """Returns once `count` transactions of this database wait for an advisory lock."""
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    async with asyncio.timeout(BOUND):
        while True:
            async with engine.connect() as connection:
                if await connection.scalar(query) == count:
                    return
            await asyncio.sleep(0.01)


async def committed(engine: AsyncEngine) -> tuple[str, str | None]:
    """The outbox row's state and SID as another connection sees them (what is committed)."""
    async with engine.connect() as connection:
        row = (await connection.execute(select(OutboxEntry.state, OutboxEntry.provider_id))).one()
    return row.state, row.provider_id


# SQLite runs one writer at a time: there, a report comes before the worker's transaction or
# after it, as in the test above.
@pytest.fixture
async def pg_engine(postgres_admin_url: str) -> AsyncIterator[AsyncEngine]:
    url = await _fresh_postgres_database(postgres_admin_url)
    await migrate(url)
    engine = create_engine(url)
    yield engine
    await engine.dispose()


@pytest.mark.postgres
async def test_a_report_behind_the_workers_open_commit_finds_the_sid(
    pg_engine: AsyncEngine,
) -> None:
    engine, sessionmaker = pg_engine, sessionmaker_for(pg_engine)
    await queued(sessionmaker)
    worker = Worker(sessionmaker, {ChannelName.SMS: Twilio()})
    async with report_lock_held(engine):
        # The worker has saved `sent` and the SID, uncommitted, and waits for the lock...
        sending = asyncio.create_task(worker.drain())
        await waiting_for_it(engine, 1)
        # ...when the callback comes, and queues behind it.
        reporting = asyncio.create_task(report(sessionmaker, "status_delivered"))
        await waiting_for_it(engine, 2)
        assert await committed(engine) == ("sending", None)
    async with asyncio.timeout(BOUND):
        assert await sending == 1
        assert await reporting  # it saw the worker's commit: applied at once, not parked
    await assert_delivered_once(sessionmaker)


@pytest.mark.postgres
async def test_a_report_ahead_of_the_workers_open_commit_is_parked_then_applied(
    pg_engine: AsyncEngine,
) -> None:
    engine, sessionmaker = pg_engine, sessionmaker_for(pg_engine)
    await queued(sessionmaker)
    worker = Worker(sessionmaker, {ChannelName.SMS: Twilio()})
    async with report_lock_held(engine):
        # The callback comes first and waits for the lock...
        reporting = asyncio.create_task(report(sessionmaker, "status_delivered"))
        await waiting_for_it(engine, 1)
        # ...then the worker saves `sent` and the SID, uncommitted, and queues behind it.
        sending = asyncio.create_task(worker.drain())
        await waiting_for_it(engine, 2)
        assert await committed(engine) == ("sending", None)
    async with asyncio.timeout(BOUND):
        # The SID was not committed when the report looked: parked, and the worker, next in
        # line, finds it when it looks for reports that came first.
        assert not await reporting
        assert await sending == 1
    await assert_delivered_once(sessionmaker)


async def test_an_error_parked_behind_a_parked_delivered_report_marks_nothing(
    sessionmaker: SessionMaker,
) -> None:
    """Both callbacks outran the worker's commit, "delivered" first and then, out of order, an
    "undelivered 30003": the handset took that very message, so the number is not marked."""
    [message_id] = await claims.queue_replies(sessionmaker, 1)
    [claimed] = await claims.take(sessionmaker, "w", utcnow())
    sid = "SM" + "e" * 32
    for state, code in (("delivered", None), ("undelivered", "30003")):
        report_ = DeliveryReport(sid, state, claimed.address, code)
        await do_record_sms_status(sessionmaker, report_, region="US")
    sent = Result(claimed, "sent", provider_id=sid)
    await claims.report(sessionmaker, sent, worker="w", at=utcnow())
    async with sessionmaker() as session:
        row = await session.get(OutboxEntry, message_id)
        marks = list(await session.scalars(select(Undeliverable)))
    assert row is not None
    assert (row.state, marks) == ("delivered", [])
