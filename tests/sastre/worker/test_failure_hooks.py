"""A permanent failure whose channel and code say more than "this message failed" is acted on
in the transaction that records the failure (Twilio's 21610: the number sent STOP)."""

from __future__ import annotations

from sqlalchemy import select

from channels.base import ChannelName, DeliveryFailed, InboundMessage
from channels.fake import FakeSender
from consent.models import ConsentEvent
from consent.replies import service_revoked
from consent.types import Channel
from dialog.outbox.models import OutboxEntry
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.senders import failure_hooks
from sastre.worker import Worker
from tests.dialog.test_outbox import make

CUSTOMER = "+14155552671"


async def _refused(
    sessionmaker: SessionMaker, settings: Settings, code: str
) -> tuple[OutboxEntry, int]:
    result = await make(sessionmaker).handle(
        InboundMessage(ChannelName.SMS, CUSTOMER, "hello", f"SMhook{code}")
    )
    fake = FakeSender()
    fake.fail_next(DeliveryFailed("refused", retryable=False, code=code))
    worker = Worker(sessionmaker, {ChannelName.SMS: fake}, on_failure=failure_hooks(settings))
    assert await worker.drain() == 1
    async with sessionmaker() as session:
        entry = (await session.scalars(select(OutboxEntry))).one()
    assert result.customer_id is not None
    return entry, result.customer_id


async def test_a_send_refused_with_21610_revokes_sms_consent_as_the_provider(
    sessionmaker: SessionMaker, settings: Settings
) -> None:
    entry, customer_id = await _refused(sessionmaker, settings, "21610")
    assert (entry.state, entry.error_code) == ("failed", "21610")
    async with sessionmaker() as session:
        assert await service_revoked(session, customer_id, Channel.SMS)
        sources = (await session.scalars(select(ConsentEvent.source))).all()
    assert set(sources) == {"provider"}


async def test_another_permanent_refusal_leaves_consent_alone(
    sessionmaker: SessionMaker, settings: Settings
) -> None:
    entry, customer_id = await _refused(sessionmaker, settings, "21211")
    assert entry.state == "failed"
    async with sessionmaker() as session:
        assert not await service_revoked(session, customer_id, Channel.SMS)
