"""Keywords by e-mail, through the whole service: anyone can write `From: you`, so an unproven
sender may withdraw consent but never give it back; a DKIM-proven START still does. The replies
are worded for e-mail (on SQLite and PostgreSQL)."""

from __future__ import annotations

import dkim
from sqlalchemy import select

from consent.ledger import record_consent
from consent.models import ConsentEvent, ConsentState
from consent.types import Action, Channel, Purpose, Source
from crm_core.customers import resolve
from crm_core.models import AuditEntry, IdentityKind
from sastre.config import Settings
from sastre.db import SessionMaker
from tests.sastre.conftest import ClientFactory
from tests.sastre.test_webhooks_email import (
    CEO,
    FIXTURES,
    email_client,
    email_settings,
    post,
    replies,
)

_ids = iter(range(1, 1000))


def mail(text: str, *, signed: bool = False) -> bytes:
    """A message from the CEO saying `text`; `signed`: DKIM-signed by their domain (proven)."""
    message = (
        f"From: Chief Executive <{CEO}>\r\nTo: hola@tienda.example\r\nSubject: {text}\r\n"
        f"Message-ID: <kw.{next(_ids)}@bigcustomer.example>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{text}\r\n"
    ).encode()
    if not signed:
        return message
    key = (FIXTURES / "dkim" / "test-only.private.pem").read_bytes()
    headers = [b"from", b"to", b"subject", b"message-id"]
    signature: bytes = dkim.sign(
        message, b"test", b"bigcustomer.example", key, include_headers=headers
    )
    return signature + message


async def subscribed_ceo(sessionmaker: SessionMaker) -> int:
    """The CEO with confirmed e-mail marketing (given on the web form, double opt-in done)."""
    async with sessionmaker.begin() as session:
        customer, _ = await resolve(session, IdentityKind.EMAIL, CEO, "ES", language="en")
        for action in (Action.GRANT, Action.CONFIRM):
            await record_consent(
                session,
                customer.id,
                Channel.EMAIL,
                Purpose.MARKETING,
                action,
                Source.WEB_FORM,
                actor="customer",
                evidence={"wording": "Yes, e-mail me offers"},
            )
        return customer.id


async def email_marketing(sessionmaker: SessionMaker, customer: int) -> str | None:
    async with sessionmaker() as session:
        return await session.scalar(
            select(ConsentState.status).where(
                ConsentState.customer_id == customer,
                ConsentState.channel == "email",
                ConsentState.purpose == "marketing",
            )
        )


async def keyword_events(sessionmaker: SessionMaker) -> list[tuple[str, str]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(ConsentEvent.purpose, ConsentEvent.action)
            .where(ConsentEvent.source == Source.KEYWORD.value)
            .order_by(ConsentEvent.id)
        )
        return [(purpose, action) for purpose, action in rows]


async def test_a_forged_start_does_not_undo_the_customers_own_opt_out(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await subscribed_ceo(sessionmaker)
    client = await email_client(aiohttp_client, email_settings(settings))
    status, body = await post(client, mail("Unsubscribe me from marketing emails"))
    assert (status, body["proven"]) == (200, False)  # withdrawing needs no proof: the law
    assert await email_marketing(sessionmaker, customer) == "revoked"
    status, body = await post(client, mail("START"))
    assert (status, body["proven"]) == (200, False)
    assert await email_marketing(sessionmaker, customer) == "revoked"
    assert await keyword_events(sessionmaker) == [("service", "revoke"), ("marketing", "revoke")]
    *_, answer = await replies(sessionmaker, CEO)
    assert answer.startswith("We could not verify that this e-mail came from you")
    async with sessionmaker() as session:
        (refused,) = await session.scalars(
            select(AuditEntry).where(AuditEntry.action == "consent.keyword_refused")
        )
    assert refused.customer_id == customer
    assert refused.data["keyword"] == "START"


async def test_a_dkim_proven_start_restores_what_the_opt_out_took(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await subscribed_ceo(sessionmaker)
    client = await email_client(aiohttp_client, email_settings(settings))
    await post(client, mail("Unsubscribe me from marketing emails"))
    status, body = await post(client, mail("START", signed=True))
    assert (status, body["proven"]) == (200, True)
    assert await email_marketing(sessionmaker, customer) == "granted"
    *_, answer = await replies(sessionmaker, CEO)
    assert answer.startswith("You are subscribed to Sastre e-mails again")


async def test_an_unproven_yes_does_not_confirm_a_pending_opt_in(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    async with sessionmaker.begin() as session:
        customer, _ = await resolve(session, IdentityKind.EMAIL, CEO, "ES", language="en")
        await record_consent(
            session,
            customer.id,
            Channel.EMAIL,
            Purpose.MARKETING,
            Action.GRANT,
            Source.WEB_FORM,
            actor="customer",
        )
    client = await email_client(aiohttp_client, email_settings(settings))
    await post(client, mail("YES"))
    assert await email_marketing(sessionmaker, customer.id) == "pending"
    assert await keyword_events(sessionmaker) == []


async def test_e_mail_keyword_replies_are_worded_for_e_mail(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    await subscribed_ceo(sessionmaker)
    client = await email_client(aiohttp_client, email_settings(settings))
    await post(client, mail("HELP"))
    await post(client, mail("STOP"))
    help_reply, stop_reply = await replies(sessionmaker, CEO)
    for reply in (help_reply, stop_reply):
        assert "Msg & data" not in reply
        assert "Reply START" not in reply
        assert "e-mail" in reply


async def test_a_quoted_baja_in_an_html_reply_unsubscribes_nobody(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """Gmail in Spanish, HTML only: the quote of our mail says "responda BAJA"; the customer
    asked about linen suits."""
    customer = await subscribed_ceo(sessionmaker)
    client = await email_client(aiohttp_client, email_settings(settings))
    html = (
        '<div dir="ltr">¿Tienen trajes de lino?</div><br><div class="gmail_quote">'
        '<div class="gmail_attr">El dom, 6 dic 2026 a las 3:00, Tienda &lt;hola@tienda.example'
        '&gt; escribió:<br></div><blockquote class="gmail_quote">Si no desea recibir más '
        "mensajes responda BAJA.<br>Quiero darme de baja.</blockquote></div>"
    )
    message = (
        f"From: Chief Executive <{CEO}>\r\nTo: hola@tienda.example\r\nSubject: Re: Novedades\r\n"
        f"Message-ID: <kw.{next(_ids)}@bigcustomer.example>\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n"
        f"{html}\r\n"
    ).encode()
    status, _ = await post(client, message)
    assert status == 200
    assert await email_marketing(sessionmaker, customer) == "granted"
    assert await keyword_events(sessionmaker) == []
