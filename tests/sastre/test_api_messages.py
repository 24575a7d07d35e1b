"""Staff send through the contact policy and the outbox; delivery is visible and retryable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update

from channels.base import ChannelName, DeliveryFailed
from channels.fake import FakeSender
from crm_core.sqltypes import utcnow
from dialog.outbox.models import OutboxEntry
from sastre.app import create_app
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.worker import Worker
from tests.sastre.conftest import Client, ClientFactory
from tests.sastre.test_api_consent import _customer, _record

Auth = Callable[..., dict[str, str]]


def _worker(sessionmaker: SessionMaker, sender: FakeSender, due_at: str) -> Worker:
    """A worker whose clock is at the message's due time at the earliest: a service SMS is
    deferred to the morning at night in the customer's time zone, and tests run at any hour."""
    due = datetime.fromisoformat(due_at)
    return Worker(sessionmaker, {ChannelName.SMS: sender}, clock=lambda: max(utcnow(), due))


async def _send(client: Client, auth: Auth, **body: Any) -> tuple[int, Any]:
    response = await client.post("/api/messages", json=body, headers=auth())
    return response.status, await response.json()


async def test_a_service_message_is_queued_sent_and_shown(
    client: Client, auth: Auth, sessionmaker: SessionMaker
) -> None:
    customer = await _customer(client, auth)
    status, body = await _send(
        client,
        auth,
        customer_id=customer,
        text="Your order shipped",
        purpose="service",
        channel="sms",
    )
    assert status == 202, body
    fake = FakeSender()
    await _worker(sessionmaker, fake, body["due_at"]).drain()
    assert [r.message.text for r in fake.sent] == ["Your order shipped"]
    shown = await (await client.get(f"/api/messages/{body['id']}", headers=auth())).json()
    assert shown["delivery"]["state"] == "sent"
    assert shown["delivery"]["provider_id"] == fake.sent[0].provider_id
    assert [a["outcome"] for a in shown["attempts"]] == ["sent"]


async def test_marketing_without_consent_is_refused_with_the_reason(
    client: Client, auth: Auth
) -> None:
    customer = await _customer(client, auth)
    status, body = await _send(
        client, auth, customer_id=customer, text="Sale!", purpose="marketing", channel="email"
    )
    assert status == 409
    assert body["detail"]["reason"] == body["error"]


async def test_service_after_stop_is_refused(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    status, _ = await _record(
        client,
        auth,
        customer,
        channel="sms",
        purpose="service",
        action="revoke",
        source="keyword",
        evidence={"text": "STOP"},
    )
    assert status in (200, 201)
    status, _ = await _send(
        client, auth, customer_id=customer, text="hi", purpose="service", channel="sms"
    )
    assert status == 409


async def test_a_failed_message_is_listed_and_retried(
    client: Client, auth: Auth, sessionmaker: SessionMaker
) -> None:
    customer = await _customer(client, auth)
    _, body = await _send(
        client, auth, customer_id=customer, text="hi", purpose="service", channel="sms"
    )
    fake = FakeSender()
    fake.fail_next(DeliveryFailed("invalid number", retryable=False, code="21211"))
    await _worker(sessionmaker, fake, body["due_at"]).drain()
    listed = await (await client.get("/api/outbox?state=failed", headers=auth())).json()
    assert [(m["id"], m["error"]["code"]) for m in listed["messages"]] == [(body["id"], "21211")]
    again = await client.post(f"/api/messages/{body['id']}/retry", headers=auth())
    assert again.status == 202
    await _worker(sessionmaker, fake, body["due_at"]).drain()
    shown = await (await client.get(f"/api/messages/{body['id']}", headers=auth())).json()
    assert shown["delivery"]["state"] == "sent"
    assert [a["outcome"] for a in shown["attempts"]] == ["failed", "sent"]


async def test_only_a_failed_message_is_retried(
    client: Client, auth: Auth, sessionmaker: SessionMaker
) -> None:
    customer = await _customer(client, auth)
    _, body = await _send(
        client, auth, customer_id=customer, text="hi", purpose="service", channel="sms"
    )
    response = await client.post(f"/api/messages/{body['id']}/retry", headers=auth())
    assert response.status == 409
    async with sessionmaker.begin() as session:
        await session.execute(update(OutboxEntry).values(state="failed"))
    assert (await client.post("/api/messages/99999/retry", headers=auth())).status == 404


async def test_bad_input_is_a_400(client: Client, auth: Auth) -> None:
    assert (await client.get("/api/outbox?state=lost", headers=auth())).status == 400
    assert (await client.get("/api/messages/abc", headers=auth())).status == 400
    status, _ = await _send(client, auth, customer_id=1, text="", purpose="service")
    assert status == 400


async def test_metrics_show_the_outbox(
    client: Client, auth: Auth, sessionmaker: SessionMaker
) -> None:
    customer = await _customer(client, auth)
    _, body = await _send(
        client, auth, customer_id=customer, text="a", purpose="service", channel="sms"
    )
    text = await (await client.get("/metrics")).text()
    # Due now, or deferred to the morning in the customer's time zone: counted once either way.
    assert ("sastre_outbox_depth 1.0" in text) != ("sastre_outbox_deferred 1.0" in text)
    await _worker(sessionmaker, FakeSender(), body["due_at"]).drain()
    text = await (await client.get("/metrics")).text()
    assert "sastre_outbox_depth 0.0" in text
    assert 'sastre_outbox_sends{channel="sms",outcome="sent"} 1.0' in text


async def test_a_marketing_send_counts_towards_the_frequency_cap(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth
) -> None:
    capped = settings.model_copy(
        update={
            "marketing_max_per_day": 1,
            "marketing_max_per_week": 5,
            "quiet_hours": "US=00:00-00:00",  # any hour of the day the test runs at
        }
    )
    client = await aiohttp_client(create_app(capped))
    customer = await _customer(client, auth)
    await _record(client, auth, customer)
    await _record(client, auth, customer, action="confirm")
    sale: dict[str, Any] = {"customer_id": customer, "purpose": "marketing", "channel": "email"}
    status, first = await _send(client, auth, text="Sale!", **sale)
    assert status == 202, first
    assert first["decision"]["outcome"] == "allow"
    status, second = await _send(client, auth, text="Sale, again!", **sale)
    assert status == 202, second
    assert second["decision"]["outcome"] == "defer"
    assert second["decision"]["reason"] == "frequency_cap"
    assert datetime.fromisoformat(second["due_at"]) >= datetime.fromisoformat(
        first["due_at"]
    ) + timedelta(days=1)
