"""A lead made from an SMS of a short code or a sender id (its phone identity is the address as
written) goes through the contact policy and the look-ups like any other customer: nothing is
sent to it, nothing answers 500 (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from crm_core.models import Identity
from dialog.models import Message
from sastre.auth import Role
from sastre.db import SessionMaker
from tests.sastre.conftest import tokens  # noqa: F401 (fixtures)
from tests.sastre.test_webhooks_twilio import (  # noqa: F401 (fixtures)
    INBOUND,
    Client,
    post,
    sms,
    sms_settings,
    twilio_client,
)

Auth = Callable[..., dict[str, str]]
SENDERS = ["22395", "ACME", "+447700900123"]


async def _lead(client: Client, sessionmaker: SessionMaker, sender: str) -> int:
    answer = await post(client, INBOUND, sms("Your code is 123456", 1, sender=sender))
    assert answer.status == 200
    async with sessionmaker() as session:
        owner = await session.scalar(select(Identity.customer_id).where(Identity.value == sender))
    assert owner is not None
    return int(owner)


@pytest.mark.parametrize("sender", SENDERS[:2])
async def test_the_policy_never_picks_a_short_code_or_sender_id(
    twilio_client: Client,  # noqa: F811
    sessionmaker: SessionMaker,
    auth: Auth,
    sender: str,
) -> None:
    customer = await _lead(twilio_client, sessionmaker, sender)
    for channel in ({}, {"channel": "sms"}):
        decision = await twilio_client.post(
            "/api/contact-decision",
            json={"customer_id": customer, "purpose": "service", **channel},
            headers=auth(),
        )
        body = await decision.json()
        assert decision.status == 200, body
        assert body["outcome"] == "deny"
        assert body["reason"] in ("unreachable", "no_reachable_channel")
    sent = await twilio_client.post(
        "/api/messages",
        json={"customer_id": customer, "text": "hello", "purpose": "service", "channel": "sms"},
        headers=auth(),
    )
    body = await sent.json()
    assert sent.status == 409, body
    assert set(body) >= {"error", "detail"}


@pytest.mark.parametrize("sender", SENDERS)
async def test_a_lead_is_found_by_the_address_it_was_stored_under(
    twilio_client: Client,  # noqa: F811
    sessionmaker: SessionMaker,
    auth: Auth,
    sender: str,
) -> None:
    customer = await _lead(twilio_client, sessionmaker, sender)
    found = await twilio_client.get("/api/customers", params={"phone": sender}, headers=auth())
    body = await found.json()
    assert found.status == 200, body
    assert body["id"] == customer


async def test_a_value_no_one_holds_is_still_refused_with_its_reason(
    twilio_client: Client,  # noqa: F811
    auth: Auth,
) -> None:
    found = await twilio_client.get(
        "/api/customers", params={"phone": "22395"}, headers=auth(Role.ADMIN)
    )
    body = await found.json()
    assert found.status == 400, body
    assert "not a valid number" in str(body["detail"])


async def test_a_send_goes_to_the_customer_s_number_not_a_short_code_they_hold(
    twilio_client: Client,  # noqa: F811
    sessionmaker: SessionMaker,
    auth: Auth,
) -> None:
    made = await twilio_client.post(
        "/api/customers", json={"external_id": "C-1", "phone": "+12125550199"}, headers=auth()
    )
    customer = (await made.json())["id"]
    async with sessionmaker.begin() as session:  # merged in from a short code's lead, say
        session.add(Identity(kind="phone", value="22395", customer_id=customer, verified=True))
    sent = await twilio_client.post(
        "/api/messages",
        json={"customer_id": customer, "text": "hello", "purpose": "service", "channel": "sms"},
        headers=auth(),
    )
    body = await sent.json()
    assert sent.status == 202, body
    async with sessionmaker() as session:
        address = await session.scalar(select(Message.address).where(Message.id == body["id"]))
    assert address == "+12125550199"
