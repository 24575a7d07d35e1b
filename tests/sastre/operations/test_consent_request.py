"""A double opt-in grant asks the customer to confirm, in the transaction that records it: by
SMS "reply YES" in their language, by e-mail the signed /c/ link; confirming either way works."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select

from channels.base import ChannelName
from channels.email import SmtpEmail
from consent.ledger import consent_status
from consent.types import Channel, ConsentStatus, Purpose
from dialog.models import Message
from dialog.outbox import OutboxEntry
from sastre.app import create_app
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.worker import Worker
from tests.sastre.conftest import Client, ClientFactory
from tests.sastre.test_api_consent import _customer, _record
from tests.sastre.test_webhooks_twilio import INBOUND, PUBLIC, TOKEN, post, sms
from tests.support.smtp_peer import smtp_peer

Auth = Callable[..., dict[str, str]]
SPANISH_PHONE = "+34609281590"


def _sendable(settings: Settings) -> Settings:
    """SMS (signed webhooks at PUBLIC) and e-mail configured; contact at any hour."""
    return settings.model_copy(
        update={
            "public_url": PUBLIC,
            "twilio_account_sid": "AC" + "0" * 32,
            "twilio_auth_token": SecretStr(TOKEN),
            "twilio_from": "+14155550100",
            "smtp_host": "127.0.0.1",
            "email_from": "Tienda <hola@tienda.example>",
            "quiet_hours": "US=00:00-00:00,ES=00:00-00:00",
        }
    )


async def _queued(sessionmaker: SessionMaker, customer: int) -> list[tuple[str, str, Any]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Message.channel, Message.text, OutboxEntry.options)
            .join(OutboxEntry, OutboxEntry.message_id == Message.id)
            .where(Message.customer_id == customer)
            .order_by(Message.id)
        )
        return [(channel, text, options) for channel, text, options in rows]


async def _status(sessionmaker: SessionMaker, customer: int, channel: Channel) -> Any:
    async with sessionmaker() as session:
        return await consent_status(session, customer, channel, Purpose.MARKETING)


async def test_an_email_grant_sends_the_confirmation_link_and_the_link_confirms(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth, sessionmaker: SessionMaker
) -> None:
    client: Client = await aiohttp_client(create_app(_sendable(settings)))
    customer = await _customer(client, auth)
    status, body = await _record(client, auth, customer)
    assert status == 201
    assert body["consents"][0]["status"] == "pending"
    assert body["confirmation"]["queued"] is True
    ((channel, _, options),) = await _queued(sessionmaker, customer)
    assert channel == "email"
    assert options["subject"] == "Confirm your subscription to Sastre"
    assert "unsubscribe_url" not in options  # a confirmation request carries no advertising
    async with smtp_peer() as peer:
        smtp = SmtpEmail(host="127.0.0.1", port=peer.port, sender="hola@tienda.example", tls="none")
        async with smtp:
            assert await Worker(sessionmaker, {ChannelName.EMAIL: smtp}).drain() == 1
    mail = peer.received[0].message
    plain, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain is not None
    assert html is not None
    link = re.search(r"https://\S+/c/\S+", plain.get_content())
    assert link is not None
    assert f'href="{link.group()}"' in html.get_content()
    confirmed = await client.post(link.group().removeprefix(PUBLIC))
    assert confirmed.status == 200
    assert await _status(sessionmaker, customer, Channel.EMAIL) is ConsentStatus.GRANTED


async def test_an_sms_grant_asks_for_yes_in_the_customers_language_and_yes_confirms(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth, sessionmaker: SessionMaker
) -> None:
    client: Client = await aiohttp_client(create_app(_sendable(settings)))
    customer = await _customer(client, auth, phone=SPANISH_PHONE, language="es")
    status, body = await _record(
        client, auth, customer, channel="sms", evidence={"wording": "Sí, envíenme ofertas"}
    )
    assert status == 201
    assert body["confirmation"]["channel"] == "sms"
    ((channel, text, _),) = await _queued(sessionmaker, customer)
    assert channel == "sms"
    assert text.startswith("Sastre: responda SI para confirmar")
    answer = await post(client, INBOUND, sms("SI", 1, sender=SPANISH_PHONE))
    assert answer.status == 200
    assert await _status(sessionmaker, customer, Channel.SMS) is ConsentStatus.GRANTED


async def test_a_second_grant_while_pending_does_not_ask_again(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth, sessionmaker: SessionMaker
) -> None:
    client: Client = await aiohttp_client(create_app(_sendable(settings)))
    customer = await _customer(client, auth)
    await _record(client, auth, customer)
    _, body = await _record(client, auth, customer)
    assert body["confirmation"] is None
    assert len(await _queued(sessionmaker, customer)) == 1


async def test_with_no_sender_the_grant_stays_pending_and_says_why(
    client: Client, auth: Auth, sessionmaker: SessionMaker
) -> None:
    customer = await _customer(client, auth)
    _, body = await _record(client, auth, customer)
    assert body["confirmation"]["queued"] is False
    assert body["confirmation"]["reason"] == "no_sender"
    assert await _queued(sessionmaker, customer) == []
    assert await _status(sessionmaker, customer, Channel.EMAIL) is ConsentStatus.PENDING
