"""Text no database can store arrives on every channel (an SMS or an e-mail with a NUL, an e-mail
whose charset decodes to half a UTF-16 pair): it is stored with the character replaced, and
answered, never an error. PostgreSQL refuses NUL in text columns, SQLite keeps it; neither
driver can send a lone surrogate; both must end the same."""

from __future__ import annotations

from sqlalchemy import select

from channels.base import ChannelName, InboundMessage
from crm_core.models import AuditEntry
from dialog.models import Message
from sastre.config import Settings
from sastre.db import SessionMaker
from tests.dialog.test_inbound import FakeBrain, make_processor
from tests.sastre.conftest import ClientFactory
from tests.sastre.test_webhooks_email import (
    email_client,
    email_settings,
    inbound,
    outbox_states,
    post,
    raw,
    replies,
    sent_email,
)

REPLACEMENT = "\ufffd"


def test_a_nul_is_replaced_wherever_an_inbound_message_carries_text() -> None:
    message = InboundMessage(
        ChannelName.EMAIL,
        "ana@example.com",
        "hola\x00",
        "<id\x00@example.com>",
        subject="pedido\x00",
        bot_text="hola\x00",
        thread_key="<id\x00@example.com>",
        attachments=("factura\x00.pdf",),
        metadata={"dkim\x00": "pass\x00"},
    )
    assert message.text == "hola" + REPLACEMENT
    assert message.bot_text == "hola" + REPLACEMENT
    assert message.subject == "pedido" + REPLACEMENT
    assert message.provider_id == message.thread_key == f"<id{REPLACEMENT}@example.com>"
    assert message.attachments == (f"factura{REPLACEMENT}.pdf",)
    assert message.metadata == {f"dkim{REPLACEMENT}": f"pass{REPLACEMENT}"}


async def test_an_sms_with_a_nul_is_stored_with_it_replaced_and_answered(
    sessionmaker: SessionMaker,
) -> None:
    processor = make_processor(sessionmaker, FakeBrain())
    message = InboundMessage(ChannelName.SMS, "+14155552671", "where\x00 is it", "SM-nul")
    result = await processor.handle(message)
    assert [reply.text for reply in result.replies] == [f"echo: where{REPLACEMENT} is it"]
    async with sessionmaker() as session:
        texts = list(await session.scalars(select(Message.text).order_by(Message.id)))
    assert texts == [f"where{REPLACEMENT} is it", f"echo: where{REPLACEMENT} is it"]


async def test_an_e_mail_with_a_nul_is_stored_with_it_replaced_and_answered(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    mail = (
        b"From: Ana <ana@example.org>\r\nTo: tienda@example.com\r\n"
        b"Subject: mi pedido\x00\r\nMessage-ID: <nul.1@example.org>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        b"\xc2\xbfd\xc3\xb3nde est\xc3\xa1 mi pedido?\x00\r\n"
    )
    stored = await _stored_and_answered(aiohttp_client, settings, sessionmaker, mail)
    assert stored.startswith(f"¿dónde está mi pedido?{REPLACEMENT}")


async def _stored_and_answered(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker, mail: bytes
) -> str:
    """Ana's mail through the webhook: taken (200), stored, answered; the text stored."""
    client = await email_client(aiohttp_client, email_settings(settings))
    status, _ = await post(client, mail)
    assert status == 200
    (stored,) = await inbound(sessionmaker)
    assert await replies(sessionmaker, "ana@example.org")
    return str(stored.text)


def test_a_lone_surrogate_is_replaced_as_a_nul_is() -> None:
    message = InboundMessage(
        ChannelName.EMAIL,
        "ana@example.com",
        "hola\ud800",
        "<id@example.com>",
        subject="\udc80pedido",
        metadata={"name": "Ana\udfff"},
    )
    assert message.text == "hola" + REPLACEMENT
    assert message.subject == REPLACEMENT + "pedido"
    assert message.metadata == {"name": "Ana" + REPLACEMENT}


async def test_an_e_mail_whose_charset_decodes_to_a_lone_surrogate_is_stored_and_answered(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """UTF-7's "+2AA-" decodes without an error to U+D800 alone: once a 500 on the webhook (a
    451, again and again, on SMTP), the mail never stored."""
    mail = (
        b"From: Ana <ana@example.org>\r\nTo: tienda@example.com\r\nSubject: pedido\r\n"
        b"Message-ID: <utf7.1@example.org>\r\nContent-Type: text/plain; charset=utf-7\r\n\r\n"
        b"hola +2AA- donde esta mi pedido\r\n"
    )
    stored = await _stored_and_answered(aiohttp_client, settings, sessionmaker, mail)
    assert stored.startswith(f"hola {REPLACEMENT} donde esta mi pedido")


async def test_a_delivery_report_with_a_nul_is_recorded_believed_or_not(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """Anyone can send a report, and what it says is kept: a reason on the outbox row when it
    is believed, an audit entry when it is not. Once a 500 on PostgreSQL either way."""
    client = await email_client(aiohttp_client, email_settings(settings))
    report = raw("bounce_5_1_1").replace(b"Diagnostic-Code: smtp; 550", b"Diagnostic-Code: 5\x0050")
    status, body = await post(client, report)  # about no message of ours: not believed
    assert (status, body["status"]) == (200, "bounce")
    async with sessionmaker() as session:
        ignored = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "email.report_ignored")
        )
    assert ignored is not None
    await sent_email(sessionmaker, "nobody.here@example.com")
    status, body = await post(client, report)
    assert (status, body["status"]) == (200, "bounce")
    assert await outbox_states(sessionmaker) == ["undelivered"]
