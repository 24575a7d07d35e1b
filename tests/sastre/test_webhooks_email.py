"""E-mail in through the whole service: the webhook's token and content type, storing before
answering, dedupe, auto-replies never answered, bounces marking addresses undeliverable, a forged
From answered without account data, and the SMTP listener (on SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from consent.models import Undeliverable
from crm_core.customers import resolve
from crm_core.models import AuditEntry, IdentityKind, Interaction, InteractionKind
from crm_core.sqltypes import utcnow
from crm_core.timeline import add_interaction
from dialog.models import Conversation, Direction, Message
from dialog.outbox import OutboxEntry
from dialog.senders import SENDER, UNANSWERED
from sastre.app import create_app
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.email_intake import UNATTRIBUTED
from sastre.email_listener import EMAIL_DNS, SMTP_PORT
from tests.sastre.conftest import ClientFactory
from tests.sastre.test_api_fuzz import status_of_raw
from tests.support.silent_bot import SilentBot

Client = TestClient[web.Request, web.Application]

FIXTURES = Path(__file__).parents[1] / "channels" / "fixtures" / "email"
TOKEN = "inbound-email-token-for-tests-0123"
PATH = "/webhooks/email"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "message/rfc822"}
CEO = "ceo@bigcustomer.example"


def raw(name: str) -> bytes:
    return (FIXTURES / f"{name}.eml").read_bytes()


def dkim_keys(name: bytes, timeout: float = 5) -> bytes | None:
    """DKIM's resolver for these tests: the test key, for bigcustomer.example only."""
    if name.endswith(b"._domainkey.bigcustomer.example."):
        return (FIXTURES / "dkim" / "test-only.dns.txt").read_bytes().strip()
    return None


def email_settings(settings: Settings, **more: Any) -> Settings:
    return settings.model_copy(
        update={"inbound_email_token": SecretStr(TOKEN), "default_region": "ES", **more}
    )


async def email_client(aiohttp_client: ClientFactory, settings: Settings) -> Client:
    app = create_app(settings)
    app[EMAIL_DNS] = dkim_keys
    return await aiohttp_client(app)


async def post(client: Client, body: bytes, headers: dict[str, str] | None = None) -> Any:
    response = await client.post(PATH, data=body, headers=HEADERS if headers is None else headers)
    return response.status, await response.json()


async def inbound(sessionmaker: SessionMaker) -> list[Message]:
    async with sessionmaker() as session:
        query = select(Message).where(Message.direction == Direction.IN.value)
        return list(await session.scalars(query.order_by(Message.id)))


async def replies(sessionmaker: SessionMaker, address: str) -> list[str]:
    async with sessionmaker() as session:
        query = select(Message.text).where(
            Message.direction == Direction.OUT.value, Message.address == address
        )
        return list(await session.scalars(query.order_by(Message.id)))


async def test_the_webhook_is_off_without_a_token(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    status, body = await post(client, raw("plain"))
    assert status == 404
    assert body["error"] == "e-mail webhook not configured"


async def test_a_wrong_token_is_401_and_stores_nothing(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await email_client(aiohttp_client, email_settings(settings))
    for authorization in ("Bearer not-the-token", "Basic " + TOKEN, ""):
        headers = {**HEADERS, "Authorization": authorization}
        status, body = await post(client, raw("plain"), headers)
        assert status == 401, authorization
        assert body["error"] == "invalid token"
    assert await inbound(sessionmaker) == []


async def test_a_wrong_content_type_is_400_with_the_reason(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await email_client(aiohttp_client, email_settings(settings))
    headers = {**HEADERS, "Content-Type": "application/json"}
    status, body = await post(client, b'{"raw": "..."}', headers)
    assert status == 400
    assert body["error"] == "wrong content type"
    assert "message/rfc822" in body["detail"]
    assert await inbound(sessionmaker) == []


async def test_a_message_is_stored_before_the_answer_and_its_reply_queued_in_the_thread(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await email_client(aiohttp_client, email_settings(settings))
    status, body = await post(client, raw("outlook_reply_es"))
    assert status == 200
    assert body["status"] == "message"
    assert body["proven"] is False
    (stored,) = await inbound(sessionmaker)
    assert stored.channel == "email"
    assert stored.address == "lucia.moreno@example.org"
    assert stored.provider_id == "AM0PR02MB5523E1C0FFEE0000@AM0PR02MB5523.eurprd02.prod.example.org"
    assert "De: Tienda" in stored.text  # the whole body is kept
    async with sessionmaker() as session:
        queued = (await session.scalars(select(OutboxEntry))).one()
        note = (
            await session.scalars(
                select(Interaction).where(Interaction.kind == InteractionKind.MESSAGE_IN.value)
            )
        ).one()
    assert queued.channel == "email"
    assert queued.options["subject"] == "RE: Tu pedido SO-123456"
    assert queued.options["in_reply_to"] == stored.provider_id
    assert queued.options["references"] == [
        "sastre.first.0001@tienda.example",
        "sastre.answer.0002@tienda.example",
        stored.provider_id,
    ]
    assert note.data["provider"]["sender_proven"] == "no"


async def test_a_reply_to_a_message_without_references_cites_its_parent_too(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """RFC 5322 3.6.4: with no References, the parent's In-Reply-To (one id) starts ours."""
    client = await email_client(aiohttp_client, email_settings(settings))
    message = re.sub(rb"References:[^\n]*\n(?:[ \t][^\n]*\n)*", b"", raw("outlook_reply_es"))
    assert b"References:" not in message
    assert b"In-Reply-To:" in message
    assert (await post(client, message))[0] == 200
    (stored,) = await inbound(sessionmaker)
    async with sessionmaker() as session:
        queued = (await session.scalars(select(OutboxEntry))).one()
    assert queued.options["references"] == ["sastre.answer.0002@tienda.example", stored.provider_id]


async def test_the_same_message_twice_is_stored_and_answered_once(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await email_client(aiohttp_client, email_settings(settings))
    first = await post(client, raw("plain"))
    second = await post(client, raw("plain"))
    assert first[1]["status"] == "message"
    assert second[1]["status"] == "duplicate"
    assert len(await inbound(sessionmaker)) == 1
    assert len(await replies(sessionmaker, "lucia.moreno@example.org")) == 1


async def test_another_message_under_a_message_id_already_stored_is_kept_too(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    # A mailer that gives every message one id: the second message is not a redelivery.
    client = await email_client(aiohttp_client, email_settings(settings))
    first = raw("plain")
    other = first.replace(b"\n\n", b"\n\nP.S. One more question about the lining.\n\n", 1)
    assert other != first
    statuses = [(await post(client, body))[1]["status"] for body in (first, other, other, first)]
    assert statuses == ["message", "message", "duplicate", "duplicate"]
    stored = await inbound(sessionmaker)
    assert len(stored) == 2
    assert sum("One more question" in message.text for message in stored) == 1


async def test_another_attachment_under_a_message_id_already_stored_is_kept_too(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    # The same words, another document: a scanner or invoice mailer with a fixed id.
    client = await email_client(aiohttp_client, email_settings(settings))
    first = raw("attachment")
    other = first.replace(b"42.pdf", b"43.pdf")
    statuses = [(await post(client, body))[1]["status"] for body in (first, other, other)]
    assert statuses == ["message", "message", "duplicate"]
    assert len(await inbound(sessionmaker)) == 2


async def test_a_token_that_is_not_utf8_is_refused(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    client = await email_client(aiohttp_client, email_settings(settings))
    request = (
        f"POST {PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: message/rfc822\r\n".encode()
        + b"Authorization: Bearer \xff\xfe\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    assert await status_of_raw(client, request) == 401


async def test_without_a_message_id_the_raw_message_dedupes(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await email_client(aiohttp_client, email_settings(settings))
    await post(client, raw("missing_headers"))
    _, again = await post(client, raw("missing_headers"))
    assert again["status"] == "duplicate"
    (stored,) = await inbound(sessionmaker)
    assert stored.provider_id.startswith("sha256:")


async def test_auto_replies_and_bulk_mail_are_stored_and_never_answered(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await email_client(aiohttp_client, email_settings(settings))
    for name in ("auto_reply", "bulk"):
        status, body = await post(client, raw(name))
        assert status == 200
        assert body["auto"] is not None
    assert len(await inbound(sessionmaker)) == 2
    async with sessionmaker() as session:
        outbound = await session.scalar(
            select(func.count()).select_from(Message).where(Message.direction == "out")
        )
    assert outbound == 0


async def test_a_malformed_message_is_stored_and_flagged(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await email_client(aiohttp_client, email_settings(settings))
    status, body = await post(client, raw("broken_mime"))
    assert status == 200
    assert body["malformed"] is True
    (stored,) = await inbound(sessionmaker)
    assert stored.text == "Os mando la foto del desperfecto.\n"
    assert '"name": "foto.jpg"' in stored.attachments[0]
    async with sessionmaker() as session:
        note = (
            await session.scalars(
                select(Interaction).where(Interaction.kind == InteractionKind.MESSAGE_IN.value)
            )
        ).one()
    assert "CloseBoundaryNotFoundDefect" in note.data["provider"]["malformed"]


async def test_garbage_is_stored_unattributed_and_flagged_never_refused(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await email_client(aiohttp_client, email_settings(settings))
    status, body = await post(client, b"\x00\xff\xfe garbage not an email at all \r\n\r\n\x80")
    assert status == 200  # the relay must not resend it for ever
    assert (body["status"], body["unattributed"], body["malformed"]) == ("message", True, True)
    (stored,) = await inbound(sessionmaker)
    assert stored.address == UNATTRIBUTED
    assert await replies(sessionmaker, UNATTRIBUTED) == []  # nobody to answer
    async with sessionmaker() as session:
        note = (
            await session.scalars(
                select(Interaction).where(Interaction.kind == InteractionKind.MESSAGE_IN.value)
            )
        ).one()
        (marked,) = await session.scalars(select(Undeliverable))
    assert "no From address and no envelope sender" in note.data["provider"][UNANSWERED]
    assert (marked.customer_id, marked.address) == (stored.customer_id, UNATTRIBUTED)
    status, body = await post(client, b"   ")
    assert status == 400  # an empty body is no message at all


async def test_a_sender_that_is_no_address_is_stored_unattributed(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await email_client(aiohttp_client, email_settings(settings))
    message = b"From: Someone <someone@localhost>\r\nSubject: hi\r\n\r\nhello\r\n"
    status, body = await post(client, message)
    assert (status, body["unattributed"]) == (200, True)
    (stored,) = await inbound(sessionmaker)
    assert stored.address == UNATTRIBUTED
    async with sessionmaker() as session:
        note = (
            await session.scalars(
                select(Interaction).where(Interaction.kind == InteractionKind.MESSAGE_IN.value)
            )
        ).one()
    assert note.data["provider"][SENDER] == "someone@localhost"
    assert "not an e-mail address" in note.data["provider"][UNANSWERED]


UTF8_SENDER = (
    "From: José Núñez <josé@ejemplo.es>\r\nTo: hola@tienda.example\r\n"
    "Subject: ¿Abren el sábado?\r\nMessage-ID: <utf8.1@ejemplo.es>\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\n¿A qué hora abren el sábado?\r\n"
).encode()


async def test_an_internationalised_sender_is_stored_under_their_address(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await email_client(aiohttp_client, email_settings(settings))
    status, body = await post(client, UTF8_SENDER)
    assert (status, body["unattributed"]) == (200, False)
    (stored,) = await inbound(sessionmaker)
    assert stored.address == "josé@ejemplo.es"
    assert await replies(sessionmaker, "josé@ejemplo.es")  # answered like anyone else


OURS = "sastre.out.0042@tienda.example"  # the Message-ID bounce_5_1_1.eml returns


async def sent_email(sessionmaker: SessionMaker, address: str, provider_id: str = OURS) -> int:
    """A customer holding `address` and an e-mail our outbox sent them with `provider_id`."""
    async with sessionmaker.begin() as session:
        customer, _ = await resolve(session, IdentityKind.EMAIL, address, "ES")
        conversation = Conversation(customer_id=customer.id, channel="email", address=address)
        session.add(conversation)
        await session.flush()
        sent = Message(
            conversation_id=conversation.id,
            customer_id=customer.id,
            channel="email",
            direction=Direction.OUT.value,
            provider_id=provider_id,
            address=address,
            text="Tu pedido SO-999000 ha salido.",
            author="bot",
        )
        session.add(sent)
        await session.flush()
        session.add(
            OutboxEntry(
                message_id=sent.id,
                channel="email",
                state="sent",
                provider_id=provider_id,
                due_at=utcnow(),
            )
        )
        return customer.id


async def undeliverable(sessionmaker: SessionMaker) -> list[tuple[int, str, str, str]]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(Undeliverable).order_by(Undeliverable.customer_id))
        return [(r.customer_id, r.channel, r.address, r.reason) for r in rows]


async def outbox_states(sessionmaker: SessionMaker) -> list[str]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(OutboxEntry.state)))


async def test_a_permanent_bounce_of_our_message_marks_the_address_undeliverable(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await sent_email(sessionmaker, "nobody.here@example.com")
    client = await email_client(aiohttp_client, email_settings(settings))
    status, body = await post(client, raw("bounce_5_1_1"))
    assert status == 200
    assert body["status"] == "bounce"
    _, again = await post(client, raw("bounce_5_1_1"))  # a repeated report adds nothing
    assert again["status"] == "bounce"
    async with sessionmaker() as session:
        audits = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "email.undeliverable")
            )
        )
    assert await undeliverable(sessionmaker) == [
        (customer, "email", "nobody.here@example.com", "bounce 5.1.1")
    ]
    assert len(audits) == 1
    assert await outbox_states(sessionmaker) == ["undelivered"]
    assert await inbound(sessionmaker) == []  # a report is not a customer's message


@pytest.mark.parametrize(
    "report",
    [
        "bounce_action_comment",  # "Action: failed (permanent failure)": a comment may follow
        "bounce_global_dsn",  # RFC 6533's message/global-delivery-status (mail sent SMTPUTF8)
    ],
)
async def test_a_permanent_bounce_in_another_report_shape_marks_the_address_too(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker, report: str
) -> None:
    customer = await sent_email(sessionmaker, "nobody.here@example.com")
    client = await email_client(aiohttp_client, email_settings(settings))
    status, body = await post(client, raw(report))
    assert (status, body["status"]) == (200, "bounce")
    assert await undeliverable(sessionmaker) == [
        (customer, "email", "nobody.here@example.com", "bounce 5.1.1")
    ]
    assert await outbox_states(sessionmaker) == ["undelivered"]


async def test_a_forged_bounce_about_a_message_we_never_sent_changes_nothing(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    await sent_email(sessionmaker, "nobody.here@example.com")
    forged = raw("bounce_5_1_1").replace(OURS.encode(), b"random-123@evil.example")
    forged = forged.replace(b"MAILER-DAEMON@mx.tienda.example", b"attacker@evil.example")
    client = await email_client(aiohttp_client, email_settings(settings))
    status, body = await post(client, forged)
    assert (status, body["status"]) == (200, "bounce")  # taken, so the relay stops resending
    assert await undeliverable(sessionmaker) == []
    assert await outbox_states(sessionmaker) == ["sent"]
    async with sessionmaker() as session:
        (noted,) = await session.scalars(
            select(AuditEntry).where(AuditEntry.action == "email.report_ignored")
        )
    assert noted.data["recipient"] == "nobody.here@example.com"
    assert noted.data["from"] == "attacker@evil.example"
    assert "never sent" in noted.data["why"]


async def test_a_forged_bounce_naming_our_message_to_someone_else_changes_nothing(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    await sent_email(sessionmaker, "chloe.scott@example.net")  # our message went to Chloe
    async with sessionmaker.begin() as session:  # the attacker names Charlotte instead
        await resolve(session, IdentityKind.EMAIL, "nobody.here@example.com", "ES")
    client = await email_client(aiohttp_client, email_settings(settings))
    status, _ = await post(client, raw("bounce_5_1_1"))
    assert status == 200
    assert await undeliverable(sessionmaker) == []
    assert await outbox_states(sessionmaker) == ["sent"]
    async with sessionmaker() as session:
        (noted,) = await session.scalars(
            select(AuditEntry).where(AuditEntry.action == "email.report_ignored")
        )
    assert "another address" in noted.data["why"]


async def test_a_bounce_refusing_the_message_fails_it_and_keeps_the_address(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await sent_email(sessionmaker, "nobody.here@example.com")
    spam = raw("bounce_5_1_1").replace(b"Status: 5.1.1", b"Status: 5.7.1")
    client = await email_client(aiohttp_client, email_settings(settings))
    status, _ = await post(client, spam)
    assert status == 200
    assert await undeliverable(sessionmaker) == []
    assert await outbox_states(sessionmaker) == ["undelivered"]
    async with sessionmaker() as session:
        notes = list(
            await session.scalars(
                select(Interaction.summary).where(Interaction.customer_id == customer)
            )
        )
    assert [n for n in notes if "not delivered (5.7.1)" in n], notes


async def delay_report_notes(
    client_factory: ClientFactory,
    settings: Settings,
    sessionmaker: SessionMaker,
    status: str = "4.4.1",
    action: str = "delayed",
) -> list[str]:
    """The notes on the timeline of slow.box@example.net's customer after delayed_4_4_1.eml,
    its Status and Action as given; no address may be marked by it."""
    customer = await sent_email(
        sessionmaker, "slow.box@example.net", "sastre.out.0043@tienda.example"
    )
    client = await email_client(client_factory, email_settings(settings))
    report = (
        raw("delayed_4_4_1")
        .replace(b"Status: 4.4.1", f"Status: {status}".encode())
        .replace(b"Action: delayed", f"Action: {action}".encode())
    )
    assert (await post(client, report))[0] == 200
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Undeliverable)) == 0
        notes = await session.scalars(
            select(Interaction.summary).where(Interaction.customer_id == customer)
        )
        return list(notes)


async def test_a_delay_is_noted_and_marks_nothing(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    (note,) = await delay_report_notes(aiohttp_client, settings, sessionmaker)
    assert "delayed (4.4.1)" in note


async def test_a_permanent_status_the_server_still_tries_is_noted_as_a_delay(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """ "Action: delayed" with a 5.x.x status: the server keeps trying, whatever the status
    says. Noted, and nothing marked (it was dropped without a trace)."""
    (note,) = await delay_report_notes(aiohttp_client, settings, sessionmaker, status="5.4.1")
    assert "delayed (5.4.1)" in note


async def test_a_transient_status_the_server_gave_up_on_fails_the_message(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """ "Action: failed" with a 4.x.x: the server's queue expired (Postfix's 4.4.1, Exchange's
    4.4.7) and it tried no more. The message is undelivered; the address is not marked (a
    server down for days is not a mailbox that does not exist)."""
    notes = await delay_report_notes(
        aiohttp_client, settings, sessionmaker, status="4.4.7", action="failed"
    )
    assert [n for n in notes if "not delivered (4.4.7)" in n], notes
    assert not [n for n in notes if "delayed" in n], notes
    assert await outbox_states(sessionmaker) == ["undelivered"]


async def test_a_report_of_success_notes_nothing(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """A 2.x.x report (delivered, relayed) is not a delay on the customer's timeline."""
    notes = await delay_report_notes(
        aiohttp_client, settings, sessionmaker, status="2.0.0", action="relayed"
    )
    assert notes == []


async def _ceo_with_an_order(sessionmaker: SessionMaker) -> int:
    async with sessionmaker.begin() as session:
        customer, _ = await resolve(session, IdentityKind.EMAIL, CEO, "ES", language="en")
        customer.name = "Chief Executive"
        await add_interaction(
            session,
            customer.id,
            InteractionKind.PURCHASE,
            "Blue shirt",
            data={"order_id": "SO-123456", "item": "Blue shirt", "status": "shipped"},
        )
        return customer.id


def order_question(name: str) -> bytes:
    """The fixture asking where order SO-123456 is, in words the bot reads as order status."""
    return raw(name).replace(
        b"Please tell me the status of my order SO-123456 and send me my preferences link.",
        b"Where is my order SO-123456?",
    )


async def test_a_dkim_proven_sender_gets_their_order_status(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    await _ceo_with_an_order(sessionmaker)
    client = await email_client(aiohttp_client, email_settings(settings))
    status, body = await post(client, raw("dkim_signed"))
    assert status == 200
    assert body["proven"] is True
    (reply,) = await replies(sessionmaker, CEO)
    assert "SO-123456" in reply
    assert "Blue shirt" in reply


async def _bounced_before(sessionmaker: SessionMaker, customer_id: int) -> None:
    async with sessionmaker.begin() as session:
        session.add(
            Undeliverable(customer_id=customer_id, channel="email", address=CEO, reason="5.1.1")
        )


async def test_proven_mail_from_a_bounced_address_lifts_its_mark(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer_id = await _ceo_with_an_order(sessionmaker)
    await _bounced_before(sessionmaker, customer_id)
    client = await email_client(aiohttp_client, email_settings(settings))
    status, body = await post(client, raw("dkim_signed"))
    assert (status, body["proven"]) == (200, True)
    assert await undeliverable(sessionmaker) == []
    async with sessionmaker() as session:
        audited = await session.scalars(
            select(AuditEntry.action).where(AuditEntry.customer_id == customer_id)
        )
        assert "email.deliverable" in list(audited)


async def test_unproven_mail_from_a_bounced_address_lifts_nothing(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer_id = await _ceo_with_an_order(sessionmaker)
    await _bounced_before(sessionmaker, customer_id)
    relays = {"email_trusted_relays": "mx.tienda.example"}
    client = await email_client(aiohttp_client, email_settings(settings, **relays))
    status, body = await post(client, order_question("forged_from"))
    assert (status, body["proven"]) == (200, False)
    assert await undeliverable(sessionmaker) == [(customer_id, "email", CEO, "5.1.1")]


async def test_a_forged_from_is_answered_without_account_data_and_noted(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer_id = await _ceo_with_an_order(sessionmaker)
    relays = {"email_trusted_relays": "mx.tienda.example"}
    client = await email_client(aiohttp_client, email_settings(settings, **relays))
    status, body = await post(client, order_question("forged_from"))
    assert status == 200
    assert body["proven"] is False
    (reply,) = await replies(sessionmaker, CEO)
    assert "Blue shirt" not in reply
    assert "shipped" not in reply.lower()
    assert "verify" in reply
    async with sessionmaker() as session:
        notes = list(
            await session.scalars(
                select(Interaction).where(
                    Interaction.customer_id == customer_id,
                    Interaction.kind == InteractionKind.NOTE.value,
                )
            )
        )
    assert [n.data["action"] for n in notes] == ["action_order_status"]


async def test_the_smtp_listener_stores_before_it_acknowledges(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await email_client(aiohttp_client, email_settings(settings, smtp_listen="127.0.0.1:0"))
    port = client.app[SMTP_PORT]
    assert port is not None
    errors, answer = await aiosmtplib.send(
        raw("gmail_reply_en"),
        sender="jane.doe@example.com",
        recipients=["support@tienda.example"],
        hostname="127.0.0.1",
        port=port,
    )
    assert errors == {}
    assert answer.startswith("2.0.0")
    (stored,) = await inbound(sessionmaker)
    assert stored.address == "jane.doe@example.com"
    assert "> Hello Jane" in stored.text


async def test_a_bot_that_never_answers_is_a_503_and_the_message_posted_again_is_answered(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    bot = SilentBot()
    app = create_app(email_settings(settings, bot_timeout=0.05), brain=bot)
    app[EMAIL_DNS] = dkim_keys
    client = await aiohttp_client(app)
    response = await client.post(PATH, data=raw("gmail_reply_en"), headers=HEADERS)
    assert response.status == 503
    assert response.headers["Retry-After"] == "30"
    assert "did not answer within 0.05 s" in (await response.json())["detail"]
    bot.back = True
    status, _ = await post(client, raw("gmail_reply_en"))
    assert status == 200
    (stored,) = await inbound(sessionmaker)
    assert len(await replies(sessionmaker, stored.address)) == 1


async def test_a_bot_that_never_answers_is_a_451_and_the_resent_message_is_answered(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    bot = SilentBot()
    configured = email_settings(settings, smtp_listen="127.0.0.1:0", bot_timeout=0.05)
    app = create_app(configured, brain=bot)
    app[EMAIL_DNS] = dkim_keys
    client = await aiohttp_client(app)
    port = client.app[SMTP_PORT]
    assert port is not None

    async def send() -> tuple[dict[str, Any], str]:
        return await aiosmtplib.send(
            raw("gmail_reply_en"),
            sender="jane.doe@example.com",
            recipients=["support@tienda.example"],
            hostname="127.0.0.1",
            port=port,
        )

    with pytest.raises(aiosmtplib.SMTPDataError) as deferred:
        await send()
    # Stored, awaiting the bot: the sending server keeps it and delivers it again later.
    assert deferred.value.code == 451
    assert "did not answer within 0.05 s" in deferred.value.message
    assert len(await inbound(sessionmaker)) == 1
    bot.back = True
    errors, _ = await send()
    assert errors == {}
    (stored,) = await inbound(sessionmaker)
    assert len(await replies(sessionmaker, stored.address)) == 1


async def test_the_smtp_listener_files_a_message_without_from_under_the_envelope(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await email_client(aiohttp_client, email_settings(settings, smtp_listen="127.0.0.1:0"))
    port = client.app[SMTP_PORT]
    assert port is not None
    await aiosmtplib.send(
        b"To: hola@tienda.example\r\nSubject: hi\r\n\r\nno From header here\r\n",
        sender="someone@example.org",
        recipients=["hola@tienda.example"],
        hostname="127.0.0.1",
        port=port,
    )
    (stored,) = await inbound(sessionmaker)
    assert stored.address == "someone@example.org"


async def test_the_smtp_listener_stores_a_message_with_no_sender_at_all(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await email_client(aiohttp_client, email_settings(settings, smtp_listen="127.0.0.1:0"))
    port = client.app[SMTP_PORT]
    assert port is not None
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as smtp:
        await smtp.mail("")  # MAIL FROM:<>, as a bounce is sent
        await smtp.rcpt("hola@tienda.example")
        answer = await smtp.data(
            b"To: hola@tienda.example\r\nSubject: hi\r\n\r\nno From header, null sender\r\n"
        )
    assert answer.code == 250
    (stored,) = await inbound(sessionmaker)
    assert stored.address == UNATTRIBUTED


async def test_the_smtp_listener_stores_mail_from_the_null_sender_and_never_answers_it(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """An out-of-office or a plain-text bounce, sent from <> as RFC 5321 has them: nothing in
    its headers says so, and answering it could start a loop."""
    client = await email_client(aiohttp_client, email_settings(settings, smtp_listen="127.0.0.1:0"))
    port = client.app[SMTP_PORT]
    assert port is not None
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as smtp:
        await smtp.mail("")
        await smtp.rcpt("hola@tienda.example")
        answer = await smtp.data(raw("plain"))
    assert answer.code == 250
    (stored,) = await inbound(sessionmaker)
    assert stored.address == "lucia.moreno@example.org"
    assert await replies(sessionmaker, stored.address) == []


async def test_the_smtp_listener_takes_an_internationalised_sender(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    client = await email_client(aiohttp_client, email_settings(settings, smtp_listen="127.0.0.1:0"))
    port = client.app[SMTP_PORT]
    assert port is not None
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as smtp:
        assert smtp.supports_extension("SMTPUTF8")
        await smtp.mail("josé@ejemplo.es", options=["SMTPUTF8"], encoding="utf-8")
        await smtp.rcpt("hola@tienda.example")
        answer = await smtp.data(UTF8_SENDER)
    assert answer.code == 250
    (stored,) = await inbound(sessionmaker)
    assert stored.address == "josé@ejemplo.es"


def _stamped_by_the_relay(message: bytes) -> bytes:
    """The message with a topmost Authentication-Results naming the trusted relay, passing the
    From domain: what the relay writes, and what anyone can write."""
    return (
        b"Authentication-Results: mx.tienda.example; dmarc=pass header.from=bigcustomer.example\r\n"
        + message
    )


async def _ask_the_listener(client: Client, message: bytes) -> None:
    port = client.app[SMTP_PORT]
    assert port is not None
    errors, _ = await aiosmtplib.send(
        message, sender=CEO, recipients=["hola@tienda.example"], hostname="127.0.0.1", port=port
    )
    assert errors == {}


async def test_the_smtp_listener_takes_the_relay_s_word_from_the_relay_s_network(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    await _ceo_with_an_order(sessionmaker)
    configured = {"email_trusted_relays": "mx.tienda.example", "smtp_listen": "127.0.0.1:0"}
    client = await email_client(aiohttp_client, email_settings(settings, **configured))
    await _ask_the_listener(client, _stamped_by_the_relay(order_question("forged_from")))
    (reply,) = await replies(sessionmaker, CEO)
    assert "shipped" in reply.lower()  # the relay (on loopback, the default network) vouched


async def test_the_smtp_listener_ignores_a_relay_s_header_from_anywhere_else(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """Straight to the listener, not through the relay: a forged From with a forged header on
    top, naming the relay, proves nothing."""
    await _ceo_with_an_order(sessionmaker)
    configured = {
        "email_trusted_relays": "mx.tienda.example",
        "email_relay_networks": "192.0.2.0/24",  # the relay is elsewhere: loopback is not it
        "smtp_listen": "127.0.0.1:0",
    }
    client = await email_client(aiohttp_client, email_settings(settings, **configured))
    await _ask_the_listener(client, _stamped_by_the_relay(order_question("forged_from")))
    (reply,) = await replies(sessionmaker, CEO)
    assert "shipped" not in reply.lower()
    assert "Blue shirt" not in reply
