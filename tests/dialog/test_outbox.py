"""The inbound path queues its replies in the outbox; workers' claims re-check consent; the
providers' reports move a message's state forward only."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update

from channels.base import ChannelName, InboundMessage
from consent.ledger import record_consent
from consent.replies import Brand
from consent.types import GENERAL, Action, Source
from consent.types import Channel as ConsentChannel
from consent.types import Purpose as ConsentPurpose
from crm_core.models import Interaction
from crm_core.sqltypes import utcnow
from dialog.inbound import InboundProcessor
from dialog.models import Message
from dialog.outbox import Claimed, Purpose, Result, claim, next_due, record_delivery, settle
from dialog.outbox.models import DeliveryAttempt, OutboxEntry, ParkedReport
from dialog.outbox.queue import PARKED_FOR
from sastre.db import SessionMaker
from sastre.operations.outreach import Outbound, queue_outbound
from tests.dialog.test_inbound import FakeBrain
from tests.support.quick import quick

_ids = itertools.count(1)
ALL = list(ChannelName)


def make(sessionmaker: SessionMaker) -> InboundProcessor:
    return InboundProcessor(
        quick(sessionmaker),
        FakeBrain(),
        default_region="US",
        default_language="en",
        default_timezone="UTC",
        brand=Brand("Sastre", "support@example.com"),
    )


def sms(text: str, sender: str = "+14155552671", **extra: object) -> InboundMessage:
    return InboundMessage(ChannelName.SMS, sender, text, f"SM{next(_ids)}", **extra)  # type: ignore[arg-type]


async def rows(sessionmaker: SessionMaker) -> list[OutboxEntry]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(OutboxEntry))).all())


async def test_a_reply_by_sms_is_queued_with_its_message(sessionmaker: SessionMaker) -> None:
    result = await make(sessionmaker).handle(sms("opening hours?"))
    [row] = await rows(sessionmaker)
    assert row.message_id == result.replies[0].message_id
    assert (row.state, row.purpose, row.channel) == ("queued", "service", "sms")


async def test_a_web_chat_reply_is_not_queued(sessionmaker: SessionMaker) -> None:
    message = InboundMessage(ChannelName.WEBCHAT, "visitor-1", "hi", "w-1")
    result = await make(sessionmaker).handle(message)
    assert result.replies
    assert await rows(sessionmaker) == []


async def test_an_auto_reply_is_stored_and_never_answered(sessionmaker: SessionMaker) -> None:
    message = InboundMessage(ChannelName.EMAIL, "a@example.com", "I am away", "m-1", auto=True)
    result = await make(sessionmaker).handle(message)
    assert result.message_id is not None
    assert result.replies == ()
    assert await rows(sessionmaker) == []


async def test_a_reply_queued_before_stop_is_not_sent_but_the_confirmation_is(
    sessionmaker: SessionMaker,
) -> None:
    processor = make(sessionmaker)
    await processor.handle(sms("opening hours?"))
    await processor.handle(sms("STOP"))
    async with sessionmaker.begin() as session:
        sending = await claim(
            session, worker="w", channels=ALL, limit=10, lease=timedelta(seconds=30)
        )
    [confirmation] = sending
    assert confirmation.purpose == Purpose.COMPLIANCE
    states = {row.purpose: (row.state, row.error_code) for row in await rows(sessionmaker)}
    assert states == {"service": ("failed", "revoked"), "compliance": ("sending", None)}
    async with sessionmaker() as session:
        outcomes = (await session.scalars(select(DeliveryAttempt.outcome))).all()
    assert outcomes == ["revoked"]


async def test_a_reply_queued_before_a_stop_is_not_sent_after_a_start(
    sessionmaker: SessionMaker,
) -> None:
    """The customer said STOP after asking: the answer waiting in the outbox is not theirs to
    get, even once they have said START (they got START's own confirmation instead)."""
    processor = make(sessionmaker)
    await processor.handle(sms("opening hours?"))
    await processor.handle(sms("STOP"))
    await processor.handle(sms("START"))
    async with sessionmaker.begin() as session:
        sending = await claim(
            session, worker="w", channels=ALL, limit=10, lease=timedelta(seconds=30)
        )
    assert [c.purpose for c in sending] == [
        Purpose.COMPLIANCE,
        Purpose.SERVICE,
    ]  # the two keywords'
    queued = {row.message_id: row for row in await rows(sessionmaker)}
    async with sessionmaker() as session:
        texts = {
            row.id: row.text for row in await session.execute(select(Message.id, Message.text))
        }
    failed = [
        (texts[m], row.error_code, row.error) for m, row in queued.items() if row.state == "failed"
    ]
    assert failed == [("echo: opening hours?", "revoked", "revoked after it was queued")]


async def test_starts_own_answer_goes_when_stop_and_start_come_together(
    sessionmaker: SessionMaker,
) -> None:
    """START's answer is queued after the STOP was recorded, whatever the moment its message
    came: the claim compares both by when they were written."""
    processor = make(sessionmaker)
    await processor.handle(sms("opening hours?"))
    await asyncio.gather(processor.handle(sms("STOP")), processor.handle(sms("START")))
    async with sessionmaker.begin() as session:
        sending = await claim(
            session, worker="w", channels=ALL, limit=10, lease=timedelta(seconds=30)
        )
    assert [c.text.split(".")[0] for c in sending] == [
        "You are unsubscribed from Sastre",
        "You are resubscribed to Sastre messages",
    ]


async def _marketing_row(
    sessionmaker: SessionMaker, *actions: Action, topic: str = GENERAL
) -> None:
    """A customer with these marketing consent actions by SMS (from the web form), then a
    marketing message queued for them, topic `topic`; the actions are recorded before it."""
    result = await make(sessionmaker).handle(sms("hello", sender="+14155550123"))
    assert result.customer_id is not None
    now = utcnow()
    async with sessionmaker.begin() as session:
        for action in actions:
            await record_consent(
                session,
                result.customer_id,
                ConsentChannel.SMS,
                ConsentPurpose.MARKETING,
                action,
                Source.WEB_FORM,
                actor="test",
                topic=topic,
                occurred_at=now - timedelta(minutes=1),
            )
        outbound = Outbound(
            customer_id=result.customer_id,
            medium=ChannelName.SMS,
            address="+14155550123",
            text="20% off this week",
            purpose=Purpose.MARKETING,
            author="staff:test",
            reference="marketing-1",
            language="en",
            options={"topic": topic} if topic else {},
        )
        await queue_outbound(session, outbound, now)


async def _sent_marketing(sessionmaker: SessionMaker) -> list[str]:
    async with sessionmaker.begin() as session:
        sending = await claim(
            session, worker="w", channels=ALL, limit=10, lease=timedelta(seconds=30)
        )
    return [c.text for c in sending if c.purpose == Purpose.MARKETING]


async def test_a_marketing_message_goes_while_its_consent_is_granted(
    sessionmaker: SessionMaker,
) -> None:
    await _marketing_row(sessionmaker, Action.GRANT, Action.CONFIRM)
    assert await _sent_marketing(sessionmaker) == ["20% off this week"]


async def test_a_marketing_message_does_not_go_while_its_consent_awaits_confirmation(
    sessionmaker: SessionMaker,
) -> None:
    """Revoked, then asked for again but not confirmed (double opt-in): the contact policy
    would refuse it now, and so does the claim."""
    await _marketing_row(sessionmaker, Action.GRANT, Action.CONFIRM, Action.REVOKE, Action.GRANT)
    assert await _sent_marketing(sessionmaker) == []
    [row] = [row for row in await rows(sessionmaker) if row.purpose == Purpose.MARKETING]
    assert (row.state, row.error_code) == ("failed", "not_consented")
    assert row.error == "marketing consent is pending, not granted"


async def test_a_marketing_message_on_a_topic_goes_on_that_topics_consent(
    sessionmaker: SessionMaker,
) -> None:
    """The most specific consent applies, as in the contact policy: the topic's own."""
    await _marketing_row(sessionmaker, Action.GRANT, Action.CONFIRM, topic="offers")
    assert await _sent_marketing(sessionmaker) == ["20% off this week"]


async def test_a_claimed_row_is_not_claimed_again_until_its_lease_ends(
    sessionmaker: SessionMaker,
) -> None:
    await make(sessionmaker).handle(sms("hello"))
    lease = timedelta(seconds=30)
    async with sessionmaker.begin() as session:
        first = await claim(session, worker="a", channels=ALL, limit=10, lease=lease)
    async with sessionmaker.begin() as session:
        assert await claim(session, worker="b", channels=ALL, limit=10, lease=lease) == []
    [row] = await rows(sessionmaker)
    later = row.due_at + timedelta(seconds=1)
    async with sessionmaker.begin() as session:
        taken = await claim(session, worker="b", channels=ALL, limit=10, lease=lease, now=later)
    assert [c.message_id for c in taken] == [c.message_id for c in first]
    assert taken[0].interrupted
    assert taken[0].attempts == 2


async def test_a_worker_claims_only_the_channels_it_can_send(sessionmaker: SessionMaker) -> None:
    await make(sessionmaker).handle(sms("hello"))
    async with sessionmaker.begin() as session:
        got = await claim(
            session,
            worker="w",
            channels=[ChannelName.EMAIL],
            limit=10,
            lease=timedelta(seconds=30),
        )
    assert got == []


async def test_delivery_reports_move_forward_only_and_reach_the_timeline(
    sessionmaker: SessionMaker,
) -> None:
    result = await make(sessionmaker).handle(sms("hello"))
    message_id = result.replies[0].message_id
    async with sessionmaker.begin() as session:
        row = await session.get(OutboxEntry, message_id)
        assert row is not None
        row.state, row.provider_id = "sent", "SMabc"
    report: dict[str, Any] = {"channel": "sms", "provider_id": "SMabc"}
    async with sessionmaker.begin() as session:
        assert await record_delivery(session, state="delivered", **report)
        assert not await record_delivery(session, state="sent", **report)
        assert not await record_delivery(session, state="undelivered", code="30003", **report)
        assert not await record_delivery(session, channel="sms", provider_id="nope", state="read")
    async with sessionmaker() as session:
        row = await session.get(OutboxEntry, message_id)
        assert row is not None
        assert row.state == "delivered"
        entries = (
            await session.scalars(select(Interaction.summary).where(Interaction.kind == "delivery"))
        ).all()
    assert entries == ["delivered"]


async def test_the_reply_message_is_on_the_transcript(sessionmaker: SessionMaker) -> None:
    await make(sessionmaker).handle(sms("hello"))
    async with sessionmaker() as session:
        directions = (await session.scalars(select(Message.direction))).all()
    assert sorted(directions) == ["in", "out"]


async def _claim_one(sessionmaker: SessionMaker) -> Claimed:
    async with sessionmaker.begin() as session:
        [claimed] = await claim(
            session, worker="w", channels=ALL, limit=10, lease=timedelta(seconds=30)
        )
    return claimed


async def test_a_report_that_outruns_the_workers_commit_is_applied_when_it_saves_the_id(
    sessionmaker: SessionMaker,
) -> None:
    await make(sessionmaker).handle(sms("hello"))
    claimed = await _claim_one(sessionmaker)
    # The provider took the message and called back (out of order) before the worker's commit.
    report: dict[str, Any] = {"channel": "sms", "provider_id": "SMearly"}
    async with sessionmaker.begin() as session:
        assert not await record_delivery(session, state="delivered", **report)
        assert not await record_delivery(session, state="sent", **report)
    async with sessionmaker.begin() as session:
        await settle(session, [Result(claimed, "sent", provider_id="SMearly")], worker="w")
    async with sessionmaker() as session:
        row = await session.get(OutboxEntry, claimed.message_id)
        assert row is not None
        assert row.state == "delivered"
        entries = (
            await session.scalars(
                select(Interaction.summary)
                .where(Interaction.kind == "delivery")
                .order_by(Interaction.occurred_at, Interaction.id)
            )
        ).all()
        left = (await session.scalars(select(ParkedReport))).all()
    assert entries == ["sent", "delivered"]
    assert left == []


async def test_a_parked_failure_after_a_delivery_changes_nothing(
    sessionmaker: SessionMaker,
) -> None:
    await make(sessionmaker).handle(sms("hello"))
    claimed = await _claim_one(sessionmaker)
    report: dict[str, Any] = {"channel": "sms", "provider_id": "SMlate"}
    async with sessionmaker.begin() as session:
        await record_delivery(session, state="delivered", **report)
        await record_delivery(session, state="undelivered", code="30003", **report)
    async with sessionmaker.begin() as session:
        await settle(session, [Result(claimed, "sent", provider_id="SMlate")], worker="w")
    async with sessionmaker() as session:
        row = await session.get(OutboxEntry, claimed.message_id)
    assert row is not None
    assert (row.state, row.error_code) == ("delivered", None)


async def test_an_unmatched_report_expires_after_a_day(sessionmaker: SessionMaker) -> None:
    old = utcnow() - PARKED_FOR - timedelta(minutes=1)
    async with sessionmaker.begin() as session:
        await record_delivery(session, channel="sms", provider_id="SMold", state="sent")
        await session.execute(update(ParkedReport).values(received_at=old))
    async with sessionmaker.begin() as session:
        await record_delivery(session, channel="sms", provider_id="SMnew", state="sent")
    async with sessionmaker() as session:
        kept = (await session.scalars(select(ParkedReport.provider_id))).all()
    assert kept == ["SMnew"]


async def test_a_batch_saving_many_ids_applies_only_the_reports_parked_for_them(
    sessionmaker: SessionMaker,
) -> None:
    processor = make(sessionmaker)
    for n in range(3):
        await processor.handle(sms("hello", sender=f"+1415555010{n}"))
    async with sessionmaker.begin() as session:
        claimed = await claim(
            session, worker="w", channels=ALL, limit=10, lease=timedelta(seconds=30)
        )
    async with sessionmaker.begin() as session:
        await record_delivery(session, channel="sms", provider_id="SMb1", state="delivered")
        await record_delivery(session, channel="sms", provider_id="SMother", state="delivered")
    results = [Result(c, "sent", provider_id=f"SMb{n}") for n, c in enumerate(claimed)]
    async with sessionmaker.begin() as session:
        await settle(session, results, worker="w")
    async with sessionmaker() as session:
        found = await session.execute(select(OutboxEntry.provider_id, OutboxEntry.state))
        states = {pid: state for pid, state in found}
        left = (await session.scalars(select(ParkedReport.provider_id))).all()
    assert states == {"SMb0": "sent", "SMb1": "delivered", "SMb2": "sent"}
    assert left == ["SMother"]


async def test_a_claim_walks_the_pending_rows_in_due_order_not_the_whole_channel(
    sessionmaker: SessionMaker,
) -> None:
    """The claim and `next_due` read the partial index of pending rows; on SQLite, with no
    statistics, the planner took the channel's index and read every row the channel ever had."""
    seen: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM outbox" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    async with sessionmaker() as session:
        engine = session.get_bind()  # the driver-level engine under the async one
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL plans from its statistics; the statement names the index rows")
    event.listen(engine, "before_cursor_execute", note)
    try:
        async with sessionmaker.begin() as session:
            await claim(session, worker="w", channels=ALL, limit=10, lease=timedelta(seconds=30))
        async with sessionmaker() as session:
            await next_due(session, ALL)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert len(seen) == 2
    async with sessionmaker() as session:
        connection = await session.connection()
        for statement, parameters in seen:
            plan = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            details = " ".join(str(row[-1]) for row in plan)
            assert "SEARCH outbox USING INDEX ix_outbox_due" in details, details
