"""E-mail both ways through the real pieces: a customer's message in by the webhook, the bot's
answer out by the outbox worker and `SmtpEmail` to aiosmtpd, in the customer's thread; the
bounce of that answer marks it undelivered and the address undeliverable; STOP written above a
quoted thread is a STOP."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from channels.base import ChannelName
from channels.email import SmtpEmail
from consent.models import Undeliverable
from consent.replies import service_revoked
from consent.types import Channel
from crm_core.customers import find_customer
from crm_core.models import IdentityKind
from dialog.outbox import OutboxEntry
from sastre.app import create_app
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.worker import Worker
from tests.sastre.conftest import ClientFactory
from tests.support.smtp_peer import smtp_peer

Client = TestClient[web.Request, web.Application]

FIXTURES = Path(__file__).parents[1] / "channels" / "fixtures" / "email"
TOKEN = "inbound-email-token-for-tests-0123"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "message/rfc822"}
JANE = "jane.doe@example.com"


def raw(name: str) -> bytes:
    return (FIXTURES / f"{name}.eml").read_bytes()


async def client_for(aiohttp_client: ClientFactory, settings: Settings) -> Client:
    configured = settings.model_copy(update={"inbound_email_token": SecretStr(TOKEN)})
    return await aiohttp_client(create_app(configured))


async def test_an_answer_goes_out_in_the_thread_and_its_bounce_comes_back(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await client_for(aiohttp_client, settings)
    response = await client.post("/webhooks/email", data=raw("gmail_reply_en"), headers=HEADERS)
    assert response.status == 200
    async with smtp_peer() as peer:
        smtp = SmtpEmail(
            host="127.0.0.1", port=peer.port, sender="Tienda <hola@tienda.example>", tls="none"
        )
        async with smtp:
            assert await Worker(sessionmaker, {ChannelName.EMAIL: smtp}).drain() == 1
    (sent,) = peer.received
    answer = sent.message
    customer_id = "CAJx8Zk1Gm4iLrEpLyEn+abcdef0123456789@mail.example.com"
    assert sent.recipients == (JANE,)
    assert answer["Subject"] == "Re: Your return"
    assert answer["In-Reply-To"] == f"<{customer_id}>"
    assert answer["References"].split() == [
        "<sastre.answer.0100@tienda.example>",
        f"<{customer_id}>",
    ]
    async with sessionmaker() as session:
        row = (await session.scalars(select(OutboxEntry))).one()
    assert row.state == "sent"
    assert f"<{row.provider_id}>" == answer["Message-ID"]

    bounce = (
        raw("bounce_5_1_1")
        .replace(b"sastre.out.0042@tienda.example", str(row.provider_id).encode())
        .replace(b"nobody.here@example.com", JANE.encode())
    )
    response = await client.post("/webhooks/email", data=bounce, headers=HEADERS)
    assert (await response.json())["status"] == "bounce"
    async with sessionmaker() as session:
        row = (await session.scalars(select(OutboxEntry))).one()
        marked = (await session.scalars(select(Undeliverable))).one()
    assert (row.state, row.error_code) == ("undelivered", "5.1.1")
    assert (marked.channel, marked.address) == ("email", JANE)


async def test_stop_above_a_quoted_thread_revokes_email(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await client_for(aiohttp_client, settings)
    stop = raw("gmail_reply_en").replace(
        b"Thanks! Can I bring it to the shop instead of posting it?\n\nBest regards,\nJane\n",
        b"STOP\n",
    )
    response = await client.post("/webhooks/email", data=stop, headers=HEADERS)
    assert response.status == 200
    async with sessionmaker() as session:
        customer = await find_customer(session, IdentityKind.EMAIL.value, JANE, "US")
        assert await service_revoked(session, customer.id, Channel.EMAIL)
