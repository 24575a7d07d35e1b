"""E-mail both ways through the real pieces: a customer's message in by the webhook, the bot's
answer out by the outbox worker and `SmtpEmail` to aiosmtpd, in the customer's thread; the
bounce of that answer marks it undelivered and the address undeliverable; the customer's reply to
it is linked to it, another sender's is not; STOP written above a quoted thread is a STOP."""

from __future__ import annotations

from collections.abc import Callable
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
from crm_core.models import IdentityKind, Interaction, InteractionKind
from dialog.models import Message
from dialog.outbox import OutboxEntry
from sastre.app import create_app
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.worker import Worker
from tests.sastre.conftest import ClientFactory
from tests.support.smtp_peer import Received, smtp_peer

Client = TestClient[web.Request, web.Application]
Auth = Callable[..., dict[str, str]]

FIXTURES = Path(__file__).parents[1] / "channels" / "fixtures" / "email"
TOKEN = "inbound-email-token-for-tests-0123"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "message/rfc822"}
JANE = "jane.doe@example.com"


def raw(name: str) -> bytes:
    return (FIXTURES / f"{name}.eml").read_bytes()


RELAY = "mx.tienda.example"  # the mail relay trusted to have checked the senders it stamps


async def client_for(aiohttp_client: ClientFactory, settings: Settings) -> Client:
    update = {"inbound_email_token": SecretStr(TOKEN), "email_trusted_relays": RELAY}
    return await aiohttp_client(create_app(settings.model_copy(update=update)))


async def _answered(client: Client, sessionmaker: SessionMaker) -> tuple[OutboxEntry, Received]:
    """Jane writes, and the bot's answer goes out by the worker to the SMTP peer: its outbox row
    (the provider's id is the Message-ID we gave it) and what the peer received."""
    response = await client.post("/webhooks/email", data=raw("gmail_reply_en"), headers=HEADERS)
    assert response.status == 200
    async with smtp_peer() as peer:
        smtp = SmtpEmail(
            host="127.0.0.1", port=peer.port, sender="Tienda <hola@tienda.example>", tls="none"
        )
        async with smtp:
            assert await Worker(sessionmaker, {ChannelName.EMAIL: smtp}).drain() == 1
    (sent,) = peer.received
    async with sessionmaker() as session:
        return (await session.scalars(select(OutboxEntry))).one(), sent


async def test_an_answer_goes_out_in_the_thread_and_its_bounce_comes_back(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await client_for(aiohttp_client, settings)
    row, sent = await _answered(client, sessionmaker)
    answer = sent.message
    customer_id = "CAJx8Zk1Gm4iLrEpLyEn+abcdef0123456789@mail.example.com"
    assert sent.recipients == (JANE,)
    assert answer["Subject"] == "Re: Your return"
    assert answer["In-Reply-To"] == f"<{customer_id}>"
    assert answer["References"].split() == [
        "<sastre.answer.0100@tienda.example>",
        f"<{customer_id}>",
    ]
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


def _citing(
    our_id: str,
    *,
    new_id: str,
    in_reply_to: str | None = None,
    sender: str = JANE,
    proven: bool = True,
) -> bytes:
    """A reply in the thread of our e-mail `our_id`: a Message-ID of its own, References ending
    in ours, In-Reply-To ours unless told; its sender proven by the trusted relay's stamp unless
    told."""
    message = raw("gmail_reply_en").replace(
        b"CAJx8Zk1Gm4iLrEpLyEn+abcdef0123456789@mail.example.com", new_id.encode()
    )
    message = message.replace(
        b"References: <sastre.answer.0100@tienda.example>",
        f"References: <sastre.answer.0100@tienda.example> <{our_id}>".encode(),
    )
    message = message.replace(
        b"In-Reply-To: <sastre.answer.0100@tienda.example>",
        f"In-Reply-To: <{in_reply_to or our_id}>".encode(),
    )
    message = message.replace(JANE.encode(), sender.encode())
    if not proven:
        return message
    domain = sender.rpartition("@")[2]
    return f"Authentication-Results: {RELAY}; dmarc=pass header.from={domain}\n".encode() + message


async def _stored(sessionmaker: SessionMaker, message_id: str) -> Message:
    async with sessionmaker() as session:
        return (
            await session.scalars(select(Message).where(Message.provider_id == message_id))
        ).one()


async def test_a_reply_to_our_email_is_linked_to_it(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker, auth: Auth
) -> None:
    client = await client_for(aiohttp_client, settings)
    ours, _ = await _answered(client, sessionmaker)
    reply = _citing(str(ours.provider_id), new_id="second.reply@mail.example.com")
    assert (await client.post("/webhooks/email", data=reply, headers=HEADERS)).status == 200
    stored = await _stored(sessionmaker, "second.reply@mail.example.com")
    assert stored.in_reply_to == ours.message_id
    shown = await client.get(f"/api/messages/{stored.id}", headers=auth())
    assert (await shown.json())["in_reply_to"] == ours.message_id
    async with sessionmaker() as session:
        notes = (
            await session.scalars(
                select(Interaction).where(Interaction.kind == InteractionKind.MESSAGE_IN.value)
            )
        ).all()
    [entry] = [note for note in notes if note.data.get("message_id") == stored.id]
    assert entry.data["in_reply_to"] == ours.message_id


async def test_a_reply_is_linked_through_references_when_in_reply_to_is_not_ours(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """Jane answers her own earlier note in the thread: the nearest of ours above it counts."""
    client = await client_for(aiohttp_client, settings)
    ours, _ = await _answered(client, sessionmaker)
    reply = _citing(
        str(ours.provider_id),
        new_id="third.reply@mail.example.com",
        in_reply_to="CAJx8Zk1Gm4iLrEpLyEn+abcdef0123456789@mail.example.com",
    )
    assert (await client.post("/webhooks/email", data=reply, headers=HEADERS)).status == 200
    stored = await _stored(sessionmaker, "third.reply@mail.example.com")
    assert stored.in_reply_to == ours.message_id


async def test_another_senders_mail_citing_our_email_is_not_linked(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """Message-IDs are no secret (they travel in every copy and forward): a stranger's message
    naming one of Jane's is stored as theirs, linked to nothing of hers."""
    client = await client_for(aiohttp_client, settings)
    ours, _ = await _answered(client, sessionmaker)
    reply = _citing(
        str(ours.provider_id), new_id="stranger@mail.example.com", sender="mallory@example.net"
    )
    assert (await client.post("/webhooks/email", data=reply, headers=HEADERS)).status == 200
    stored = await _stored(sessionmaker, "stranger@mail.example.com")
    assert stored.in_reply_to is None
    async with sessionmaker() as session:
        answer = await session.get(Message, ours.message_id)
    assert answer is not None
    assert stored.customer_id != answer.customer_id


async def test_an_unproven_senders_reply_is_not_linked(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """Our Message-IDs carry our message numbers: whoever forges Jane's From could name one."""
    client = await client_for(aiohttp_client, settings)
    ours, _ = await _answered(client, sessionmaker)
    reply = _citing(str(ours.provider_id), new_id="forged.reply@mail.example.com", proven=False)
    assert (await client.post("/webhooks/email", data=reply, headers=HEADERS)).status == 200
    stored = await _stored(sessionmaker, "forged.reply@mail.example.com")
    assert stored.in_reply_to is None


async def test_a_reply_citing_thousands_of_ids_is_stored_and_linked(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """A References header is whatever the sender wrote: 40,000 ids are trimmed to the thread's
    root and the nearest (a statement takes at most 32,767 values on PostgreSQL)."""
    client = await client_for(aiohttp_client, settings)
    ours, _ = await _answered(client, sessionmaker)
    noise = " ".join(f"<n{n}@spam.example>" for n in range(40_000))
    reply = _citing(str(ours.provider_id), new_id="long.thread@mail.example.com").replace(
        b"References: <sastre.answer.0100@tienda.example>",
        f"References: <sastre.answer.0100@tienda.example> {noise}".encode(),
    )
    assert (await client.post("/webhooks/email", data=reply, headers=HEADERS)).status == 200
    stored = await _stored(sessionmaker, "long.thread@mail.example.com")
    assert stored.in_reply_to == ours.message_id
