"""/metrics shows the outbox's backlog apart from what waits for later: a message deferred to
the morning is counted as deferred, not as backlog, and the backlog's age runs from when its
oldest message became due."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import update

from crm_core.sqltypes import utcnow
from dialog.outbox.models import OutboxEntry
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.outbox_gauges import outbox_backlog
from tests.sastre.conftest import Client
from tests.sastre.test_api_consent import _customer
from tests.sastre.test_api_messages import Auth, _send


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A deployment that can send SMS and e-mail: staff messages are queued."""
    return settings.model_copy(
        update={
            "twilio_account_sid": "AC" + "0" * 32,
            "twilio_auth_token": SecretStr("0" * 32),
            "twilio_from": "+14155550100",
            "smtp_host": "127.0.0.1",
            "email_from": "Tienda <hola@tienda.example>",
        }
    )


@pytest.fixture
def now() -> datetime:
    """The test's own moment, taken when it starts (not when the module was collected)."""
    return utcnow()


async def _queued(
    client: Client,
    auth: Auth,
    sessionmaker: SessionMaker,
    customer: int,
    due_in: timedelta,
    now: datetime,
) -> int:
    """A service message queued ten minutes before `now` and due at `now` + due_in."""
    _, body = await _send(client, auth, customer_id=customer, text="x", purpose="service")
    async with sessionmaker.begin() as session:
        await session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.message_id == body["id"])
            .values(due_at=now + due_in, created_at=now - timedelta(minutes=10))
        )
    return int(body["id"])


async def test_deferred_messages_are_not_backlog(
    client: Client, auth: Auth, sessionmaker: SessionMaker, now: datetime
) -> None:
    customer = await _customer(client, auth)
    await _queued(client, auth, sessionmaker, customer, timedelta(hours=8), now)  # the morning
    text = await (await client.get("/metrics")).text()
    assert "sastre_outbox_depth 0.0" in text
    assert "sastre_outbox_oldest_age_seconds 0.0" in text
    assert "sastre_outbox_deferred 1.0" in text


async def test_the_backlogs_age_runs_from_when_it_became_due(
    client: Client, auth: Auth, sessionmaker: SessionMaker, now: datetime
) -> None:
    customer = await _customer(client, auth)
    await _queued(client, auth, sessionmaker, customer, -timedelta(minutes=5), now)
    await _queued(client, auth, sessionmaker, customer, timedelta(hours=8), now)
    async with sessionmaker() as session:
        backlog = await outbox_backlog(session, now)
    assert (backlog.due, backlog.deferred) == (1, 1)
    assert backlog.oldest_age(now) == 300.0  # five minutes due, not ten since it was queued
    assert backlog.oldest_age(now - timedelta(hours=1)) == 0.0  # never negative


async def test_a_message_being_sent_is_backlog_not_deferred(
    client: Client, auth: Auth, sessionmaker: SessionMaker, now: datetime
) -> None:
    """A claim moves `due_at` to the end of the worker's lease: still due, not a later time."""
    customer = await _customer(client, auth)
    message_id = await _queued(client, auth, sessionmaker, customer, timedelta(minutes=1), now)
    async with sessionmaker.begin() as session:
        await session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.message_id == message_id)
            .values(state="sending", claimed_by="w1")
        )
        backlog = await outbox_backlog(session, now)
    assert (backlog.due, backlog.deferred) == (1, 0)
