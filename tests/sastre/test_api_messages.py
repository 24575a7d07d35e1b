"""Staff send through the contact policy and the outbox; delivery is visible and retryable."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from channels.base import ChannelName, DeliveryFailed
from channels.email import SmtpEmail
from channels.fake import FakeSender
from consent.models import Undeliverable
from crm_core.models import Identity, Interaction
from crm_core.sqltypes import utcnow
from dialog.models import Message
from dialog.outbox import DeliveryState, record_delivery
from dialog.outbox.models import OutboxEntry
from sastre.app import create_app
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.worker import Worker
from tests.sastre.conftest import Client, ClientFactory
from tests.sastre.test_api_consent import _customer, _record
from tests.sastre.test_webhooks_twilio import INBOUND, PUBLIC, TOKEN, post, sms
from tests.support.smtp_peer import smtp_peer

# What makes SMS and e-mail sendable: a Twilio account and an SMTP server with a From address
# (and marketing e-mail lawful: the postal address its footer carries).
POSTAL_ADDRESS = "Tienda SL, Calle Mayor 1, 28013 Madrid, Spain"
SENDERS: dict[str, Any] = {
    "twilio_account_sid": "AC" + "0" * 32,
    "twilio_auth_token": SecretStr("0" * 32),
    "twilio_from": "+14155550100",
    "smtp_host": "127.0.0.1",
    "email_from": "Tienda <hola@tienda.example>",
    "postal_address": POSTAL_ADDRESS,
}
Auth = Callable[..., dict[str, str]]
EMAIL_FIXTURES = Path(__file__).parents[1] / "channels" / "fixtures" / "email"
EMAIL_TOKEN = "inbound-email-token-for-tests-0123"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A deployment that can send SMS and e-mail (the workers here get fakes instead)."""
    return settings.model_copy(update=SENDERS)


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


async def _bounced(sessionmaker: SessionMaker, customer: int, number: str) -> None:
    async with sessionmaker.begin() as session:
        session.add(Undeliverable(customer_id=customer, channel="sms", address=number, reason="x"))


async def test_a_service_sms_goes_to_the_number_that_did_not_bounce(
    client: Client, auth: Auth, sessionmaker: SessionMaker
) -> None:
    customer = await _customer(client, auth)  # +12125550199
    async with sessionmaker.begin() as session:
        session.add(Identity(kind="phone", value="+12125550198", customer_id=customer))
    await _bounced(sessionmaker, customer, "+12125550199")
    sms = {"customer_id": customer, "text": "hi", "purpose": "service", "channel": "sms"}
    status, body = await _send(client, auth, **sms)
    assert status == 202, body
    fake = FakeSender()
    await _worker(sessionmaker, fake, body["due_at"]).drain()
    assert [r.message.address for r in fake.sent] == ["+12125550198"]
    await _bounced(sessionmaker, customer, "+12125550198")
    status, body = await _send(client, auth, **sms)
    assert status == 409
    assert body["detail"]["reason"] == "undeliverable"


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


async def _failed_sms(
    client: Client, auth: Auth, sessionmaker: SessionMaker, *, code: str
) -> tuple[int, Any]:
    """A new customer, and a service SMS to them the provider refused for good (`code`): the
    customer's id and the send's answer."""
    customer = await _customer(client, auth)
    _, body = await _send(
        client, auth, customer_id=customer, text="hi", purpose="service", channel="sms"
    )
    fake = FakeSender()
    fake.fail_next(DeliveryFailed("refused", retryable=False, code=code))
    await _worker(sessionmaker, fake, body["due_at"]).drain()
    return customer, body


async def test_a_failed_message_is_listed_and_retried(
    client: Client, auth: Auth, sessionmaker: SessionMaker
) -> None:
    _, body = await _failed_sms(client, auth, sessionmaker, code="21211")
    listed = await (await client.get("/api/outbox?state=failed", headers=auth())).json()
    assert [(m["id"], m["error"]["code"]) for m in listed["messages"]] == [(body["id"], "21211")]
    again = await client.post(f"/api/messages/{body['id']}/retry", headers=auth())
    assert again.status == 202
    # The retry asks the contact policy again: past 21:00 on the number it waits for morning.
    await _worker(sessionmaker, FakeSender(), (await again.json())["due_at"]).drain()
    shown = await (await client.get(f"/api/messages/{body['id']}", headers=auth())).json()
    assert shown["delivery"]["state"] == "sent"
    # Where the new delivery started, and who started it, stays in the history.
    assert [a["outcome"] for a in shown["attempts"]] == ["failed", "retried", "sent"]
    assert shown["attempts"][1]["worker"] == "admin:test-admin"


async def test_a_message_still_on_its_way_is_not_retried(
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
    # More digits than int() reads (4,300): a 400, not a ValueError's 500.
    digits = "9" * 5000
    for path in (
        f"/api/messages/{digits}",
        f"/api/outbox?state=failed&limit={digits}",
        f"/api/customers/{digits}",
    ):
        assert (await client.get(path, headers=auth())).status == 400, path[:40]
    assert (await client.post(f"/api/messages/{digits}/retry", headers=auth())).status == 400
    padded = await client.get(f"/api/outbox?state=failed&limit={'0' * 5000}5", headers=auth())
    assert padded.status == 200  # five, however many zeros lead it
    status, _ = await _send(client, auth, customer_id=1, text="", purpose="service")
    assert status == 400


async def test_a_text_of_only_spaces_and_line_breaks_is_a_400_naming_text(
    client: Client, auth: Auth
) -> None:
    customer = await _customer(client, auth)
    for blank in ("   \n ", "\t", "\u00a0\r\n"):
        status, body = await _send(
            client, auth, customer_id=customer, text=blank, purpose="service", channel="sms"
        )
        assert status == 400, body
        assert body["detail"][0]["field"] == "text"


@pytest.mark.parametrize("forged", ["0001-01-01T00:00:00+14:00|1", "9999-12-31T23:59:59-14:00|1"])
async def test_a_cursor_whose_time_leaves_the_calendar_in_utc_is_a_400(
    client: Client, auth: Auth, forged: str
) -> None:
    cursor = base64.urlsafe_b64encode(forged.encode()).decode()
    response = await client.get(f"/api/outbox?state=sent&cursor={cursor}", headers=auth())
    assert response.status == 400
    assert (await response.json())["detail"][0]["field"] == "cursor"


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


# --- e-mail: subject, HTML part, one-click unsubscribe -------------------------------------------


def _anytime(settings: Settings, **update: Any) -> Settings:
    """Contact allowed at any hour the suite runs, caps out of the way."""
    changes = {"quiet_hours": "US=00:00-00:00", "marketing_max_per_day": 9, **update}
    return settings.model_copy(update=changes)


def _a_day_ahead() -> datetime:
    return utcnow() + timedelta(days=1)


async def _drain_email(sessionmaker: SessionMaker) -> list[Any]:
    """Send what is queued by e-mail through `SmtpEmail` to a local SMTP server; what it got."""
    async with smtp_peer() as peer:
        smtp = SmtpEmail(
            host="127.0.0.1",
            port=peer.port,
            sender="Tienda <hola@tienda.example>",
            tls="none",
            unsubscribe_mailto="baja@tienda.example",
        )
        async with smtp:
            # A day ahead: whatever the contact policy deferred to the morning is due by then.
            later = Worker(sessionmaker, {ChannelName.EMAIL: smtp}, clock=_a_day_ahead)
            await later.drain()
    return [received.message for received in peer.received]


async def test_marketing_email_carries_one_click_unsubscribe_that_works(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth, sessionmaker: SessionMaker
) -> None:
    client = await aiohttp_client(create_app(_anytime(settings)))
    customer = await _customer(client, auth)
    await _record(client, auth, customer)
    await _record(client, auth, customer, action="confirm")
    status, body = await _send(
        client,
        auth,
        customer_id=customer,
        text="New autumn fabrics are in!",
        purpose="marketing",
        channel="email",
    )
    assert status == 202, body
    sent = [m for m in await _drain_email(sessionmaker) if "autumn" in str(m.get_body())]
    (mail,) = sent
    https, mailto = (link.strip(" <>") for link in mail["List-Unsubscribe"].split(","))
    assert https.startswith(settings.external_url + "/u/")
    assert mailto == "mailto:baja@tienda.example?subject=unsubscribe"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = mail.get_body(("plain",)).get_content()
    assert text.startswith("New autumn fabrics are in!")
    assert f"To unsubscribe, open {https}" in text  # visible in the mail itself too
    assert f'<a href="{https}">' in mail.get_body(("html",)).get_content()
    # The link is one the service itself honours: one click, and marketing is revoked.
    path = https.removeprefix(settings.external_url)
    clicked = await client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert clicked.status == 200
    consents = await (await client.get(f"/api/customers/{customer}/consent", headers=auth())).json()
    (state,) = [c for c in consents["consents"] if c["purpose"] == "marketing"]
    assert state["status"] == "revoked"


def _all_day_in_us_and_spain(settings: Settings) -> Settings:
    """Settings under which the English and Spanish customers are in contact hours at any time."""
    return _anytime(settings, quiet_hours="US=00:00-00:00,ES=00:00-00:00")


async def _english_and_spanish(client: Client, auth: Auth) -> tuple[int, int]:
    """Two customers, one writing in English, one in Spanish."""
    english = await _customer(client, auth)
    spanish = await _customer(
        client,
        auth,
        external_id="C-2",
        email="lucia@example.es",
        phone="+34609281590",
        language="es",
    )
    return english, spanish


async def test_marketing_email_carries_the_postal_address_in_the_customers_language(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth, sessionmaker: SessionMaker
) -> None:
    """CAN-SPAM: commercial mail shows the sender's postal address, in both of its parts."""
    client = await aiohttp_client(create_app(_all_day_in_us_and_spain(settings)))
    english, spanish = await _english_and_spanish(client, auth)
    for customer in (english, spanish):
        await _record(client, auth, customer)
        await _record(client, auth, customer, action="confirm")
        status, body = await _send(
            client, auth, customer_id=customer, text="Sale!", purpose="marketing", channel="email"
        )
        assert status == 202, body
    sent = await _drain_email(sessionmaker)  # the opt-ins' confirmations too
    mails = {str(m["To"]): m for m in sent if "Sale!" in str(m.get_body(("plain",)))}
    for to, line in (
        ("ana@example.com", f"Sent by Sastre, {POSTAL_ADDRESS}."),
        ("lucia@example.es", f"Enviado por Sastre, {POSTAL_ADDRESS}."),
    ):
        assert line in mails[to].get_body(("plain",)).get_content(), to
        assert line in mails[to].get_body(("html",)).get_content(), to


async def test_marketing_email_without_a_postal_address_is_refused_naming_the_setting(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth, sessionmaker: SessionMaker
) -> None:
    client = await aiohttp_client(create_app(_anytime(settings, postal_address=None)))
    customer = await _customer(client, auth)
    await _record(client, auth, customer)
    await _record(client, auth, customer, action="confirm")
    sale: dict[str, Any] = {"customer_id": customer, "text": "Sale!", "purpose": "marketing"}
    for chosen in ({"channel": "email"}, {}):  # asked for, or the policy's choice
        status, body = await _send(client, auth, **sale, **chosen)
        assert (status, body["error"]) == (409, "no_postal_address"), body
        assert "SASTRE_POSTAL_ADDRESS" in body["detail"]["explanation"]
    async with sessionmaker() as session:  # (the opt-in's confirmation e-mail is service)
        marketing = select(OutboxEntry).where(OutboxEntry.purpose == "marketing")
        assert (await session.scalars(marketing)).all() == []


async def test_a_service_email_has_no_unsubscribe_headers(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth, sessionmaker: SessionMaker
) -> None:
    client = await aiohttp_client(create_app(_anytime(settings)))
    customer = await _customer(client, auth)
    status, _ = await _send(
        client, auth, customer_id=customer, text="Shipped", purpose="service", channel="email"
    )
    assert status == 202
    (mail,) = await _drain_email(sessionmaker)
    assert mail["List-Unsubscribe"] is None
    assert "unsubscribe" not in mail.get_body(("plain",)).get_content()


async def test_a_staff_email_has_its_subject_and_an_html_part(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth, sessionmaker: SessionMaker
) -> None:
    client = await aiohttp_client(create_app(_anytime(settings)))
    customer = await _customer(client, auth)
    status, body = await _send(
        client,
        auth,
        customer_id=customer,
        text="Your <order> shipped.\n\nTrack it at https://track.example/1?a=1&b=2.",
        purpose="service",
        channel="email",
        subject="Your order 1042",
    )
    assert status == 202, body
    (mail,) = await _drain_email(sessionmaker)
    assert mail["Subject"] == "Your order 1042"
    assert mail.get_content_type() == "multipart/alternative"
    html = mail.get_body(("html",)).get_content()
    assert "<p>Your &lt;order&gt; shipped.</p>" in html
    link = "https://track.example/1?a=1&amp;b=2"
    assert f'<a href="{link}">{link}</a>.' in html


async def test_without_a_subject_a_localized_one_not_the_bare_brand(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth, sessionmaker: SessionMaker
) -> None:
    client = await aiohttp_client(create_app(_all_day_in_us_and_spain(settings)))
    english, spanish = await _english_and_spanish(client, auth)
    for customer in (english, spanish):
        status, body = await _send(
            client, auth, customer_id=customer, text="Hola", purpose="service", channel="email"
        )
        assert status == 202, body
    subjects = {str(m["To"]): m["Subject"] for m in await _drain_email(sessionmaker)}
    assert subjects == {
        "ana@example.com": "A message from Sastre",
        "lucia@example.es": "Mensaje de Sastre",
    }


async def test_a_subject_on_another_channel_is_a_400(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    status, body = await _send(
        client, auth, customer_id=customer, text="x", purpose="service", channel="sms", subject="S"
    )
    assert status == 400
    assert body["detail"][0]["field"] == "subject"
    status, body = await _send(
        client, auth, customer_id=customer, text="x", purpose="service", subject="a\r\nBcc: x@y"
    )
    assert status == 400
    assert body["detail"][0]["field"] == "subject"


async def test_a_subject_of_any_printable_text_is_taken(client: Client, auth: Auth) -> None:
    """A no-break space (French typography's before ":"), an emoji joined by zero-width joiners:
    text, not line breaks."""
    customer = await _customer(client, auth)
    for subject in ("Commande n°\u00a01234", "Prix\u202f: 10 €", "Ofertas 👨\u200d👩\u200d👧"):
        status, body = await _send(
            client, auth, customer_id=customer, text="x", purpose="service", subject=subject
        )
        assert status != 400 or body["detail"][0]["field"] != "subject", (subject, body)


async def test_a_subject_with_any_line_separator_is_a_400_not_a_failed_send(
    client: Client, auth: Auth
) -> None:
    """A vertical tab or U+2028 is a line break to the mail library: taken, the e-mail failed
    at the worker ("cannot be built") after a 202."""
    customer = await _customer(client, auth)
    for subject in ("a\x0bb", "a\u2028b", "a\x85b", "a\x1bb", "a\u2029b"):
        status, body = await _send(
            client, auth, customer_id=customer, text="x", purpose="service", subject=subject
        )
        assert status == 400, subject
        assert body["detail"][0]["field"] == "subject"
        assert "one line" in body["detail"][0]["reason"]


# --- only channels someone can send on, only texts they take -------------------------------------


async def test_a_channel_without_a_sender_is_refused_by_name(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth
) -> None:
    client = await aiohttp_client(create_app(settings))  # SMS and e-mail, no Telegram
    customer = await _customer(client, auth, telegram="123456789")
    status, body = await _send(
        client, auth, customer_id=customer, text="x", purpose="service", channel="telegram"
    )
    assert (status, body["error"]) == (409, "no_sender")
    assert body["detail"]["explanation"] == "no sender is configured for telegram"
    bare = settings.model_copy(update={"twilio_account_sid": None, "smtp_host": None})
    client = await aiohttp_client(create_app(bare))
    status, body = await _send(client, auth, customer_id=customer, text="x", purpose="service")
    assert (status, body["error"]) == (409, "no_sender")


async def test_the_policy_chooses_among_sendable_channels_only(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth
) -> None:
    sms_only = _anytime(settings, smtp_host=None, email_from=None)
    client = await aiohttp_client(create_app(sms_only))
    customer = await _customer(client, auth, telegram="123456789")
    # E-mail comes first in the policy's order; Telegram is the customer's favourite.
    changed = await client.put(
        f"/api/customers/{customer}/preferences",
        json={"channels": ["telegram", "email", "sms"]},
        headers=auth(),
    )
    assert changed.status == 200, await changed.text()
    status, body = await _send(client, auth, customer_id=customer, text="x", purpose="service")
    assert status == 202, body
    assert body["channel"] == "sms"


async def test_an_sms_longer_than_sms_takes_is_a_400_naming_text(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth
) -> None:
    client = await aiohttp_client(create_app(_anytime(settings)))
    customer = await _customer(client, auth)
    long = "y" * 2000
    status, body = await _send(
        client, auth, customer_id=customer, text=long, purpose="service", channel="sms"
    )
    assert status == 400
    assert body["detail"] == [
        {"field": "text", "reason": "the text is 2,000 characters; sms takes at most 1,600"}
    ]
    # Left to the policy, it goes where it fits.
    status, body = await _send(client, auth, customer_id=customer, text=long, purpose="service")
    assert (status, body["channel"]) == (202, "email")
    sms_only = settings.model_copy(update={"smtp_host": None, "email_from": None})
    client = await aiohttp_client(create_app(sms_only))
    status, body = await _send(client, auth, customer_id=customer, text=long, purpose="service")
    assert status == 400
    assert body["detail"][0]["field"] == "text"
    assert "1,600" in body["detail"][0]["reason"]


async def test_an_unknown_customer_is_a_404_with_a_reason(client: Client, auth: Auth) -> None:
    status, body = await _send(client, auth, customer_id=99999, text="x", purpose="service")
    assert status == 404
    assert body["detail"]["field"] == "customer_id"
    assert "99999" in body["detail"]["reason"]


# --- retry asks the policy ------------------------------------------------------------------------


async def _sms_keyword(client: Client, auth: Auth, customer: int, action: str, text: str) -> None:
    """The customer's SMS keyword (STOP, START), as the ledger records it for service messages."""
    await _record(
        client,
        auth,
        customer,
        channel="sms",
        purpose="service",
        action=action,
        source="keyword",
        evidence={"text": text, "wording": text},
    )


async def test_a_retry_after_stop_is_refused_with_the_reason(
    client: Client, auth: Auth, sessionmaker: SessionMaker
) -> None:
    customer, body = await _failed_sms(client, auth, sessionmaker, code="30003")
    await _sms_keyword(client, auth, customer, "revoke", "STOP")
    again = await client.post(f"/api/messages/{body['id']}/retry", headers=auth())
    answer = await again.json()
    assert again.status == 409
    assert answer["error"] == "revoked"
    shown = await (await client.get(f"/api/messages/{body['id']}", headers=auth())).json()
    assert shown["delivery"]["state"] == "failed"  # untouched


async def test_a_retry_after_stop_and_start_is_sent(
    client: Client, auth: Auth, sessionmaker: SessionMaker
) -> None:
    """The retry is a new delivery, queued when it is asked for: a STOP before it, undone by a
    START, is no reason for the worker to refuse what the policy allowed (202)."""
    customer, body = await _failed_sms(client, auth, sessionmaker, code="30003")
    for action, text in (("revoke", "STOP"), ("grant", "START")):
        await _sms_keyword(client, auth, customer, action, text)
    status, answer = await _retry(client, auth, body["id"])
    assert status == 202
    again = FakeSender()
    await _worker(sessionmaker, again, answer["due_at"]).drain()
    assert [sent.message.text for sent in again.sent] == ["hi"]


async def _report(
    sessionmaker: SessionMaker, provider_id: str, state: DeliveryState, code: str | None = None
) -> bool:
    """A provider's report on an SMS (a status callback), as the webhook records it."""
    async with sessionmaker.begin() as session:
        return await record_delivery(
            session, channel=ChannelName.SMS, provider_id=provider_id, state=state, code=code
        )


async def _sent_then(
    client: Client, auth: Auth, sessionmaker: SessionMaker, state: DeliveryState
) -> tuple[int, FakeSender]:
    """A service SMS handed to the provider as fake-sms-1, which then reported `state` (30008,
    Twilio's "unknown error": nothing said about the number)."""
    customer = await _customer(client, auth)
    _, body = await _send(
        client, auth, customer_id=customer, text="hi", purpose="service", channel="sms"
    )
    fake = FakeSender()
    await _worker(sessionmaker, fake, body["due_at"]).drain()
    assert await _report(sessionmaker, "fake-sms-1", state, "30008")
    return int(body["id"]), fake


async def _retry(client: Client, auth: Auth, message_id: int) -> tuple[int, Any]:
    response = await client.post(f"/api/messages/{message_id}/retry", headers=auth())
    return response.status, await response.json()


async def _delivery(client: Client, auth: Auth, message_id: int) -> Any:
    return await (await client.get(f"/api/messages/{message_id}", headers=auth())).json()


async def test_an_undelivered_message_is_retried_as_a_new_delivery(
    client: Client, auth: Auth, sessionmaker: SessionMaker
) -> None:
    message_id, fake = await _sent_then(client, auth, sessionmaker, DeliveryState.UNDELIVERED)
    status, body = await _retry(client, auth, message_id)
    assert status == 202, body
    await _worker(sessionmaker, fake, body["due_at"]).drain()
    shown = await _delivery(client, auth, message_id)
    assert (shown["delivery"]["state"], shown["delivery"]["provider_id"]) == ("sent", "fake-sms-2")
    # The first delivery is kept: how it ended, and the provider id it had.
    assert [(a["outcome"], a["provider_id"], a["code"]) for a in shown["attempts"]] == [
        ("sent", "fake-sms-1", None),
        ("retried", "fake-sms-1", "30008"),
        ("sent", "fake-sms-2", None),
    ]
    # A message of its own for the provider (an e-mail's Message-ID is made from it).
    assert [s.message.reference for s in fake.sent] == [
        f"sastre-{message_id}",
        f"sastre-{message_id}.1",
    ]
    # The customer's timeline shows who sent it again, between the two deliveries' states.
    async with sessionmaker() as session:
        entries = await session.scalars(
            select(Interaction)
            .where(Interaction.kind == "delivery")
            .order_by(Interaction.occurred_at, Interaction.id)
        )
        states = [
            (e.data["state"], e.actor, e.data.get("retry", False))
            for e in entries
            if e.data["message_id"] == message_id
        ]
    (retry,) = [n for n, (_, _, again) in enumerate(states) if again]
    assert states[retry][0] == "queued"
    assert states[retry][1] not in (None, "system")  # the staff member who asked
    assert states[retry - 1][0] == "undelivered"
    assert states[-1][0] == "sent"


async def test_a_late_report_on_the_first_delivery_leaves_the_retry_alone(
    client: Client, auth: Auth, sessionmaker: SessionMaker
) -> None:
    message_id, fake = await _sent_then(client, auth, sessionmaker, DeliveryState.FAILED)
    status, body = await _retry(client, auth, message_id)
    assert status == 202, body
    # The carrier's last word on the first send comes after the retry was queued.
    assert not await _report(sessionmaker, "fake-sms-1", DeliveryState.UNDELIVERED, "30008")
    assert (await _delivery(client, auth, message_id))["delivery"]["state"] == "queued"
    await _worker(sessionmaker, fake, body["due_at"]).drain()
    assert not await _report(sessionmaker, "fake-sms-1", DeliveryState.UNDELIVERED, "30008")
    assert await _report(sessionmaker, "fake-sms-2", DeliveryState.DELIVERED)
    shown = await _delivery(client, auth, message_id)
    assert (shown["delivery"]["state"], shown["delivery"]["provider_id"]) == (
        "delivered",
        "fake-sms-2",
    )


@pytest.mark.parametrize("refusal", ["revoked", "undeliverable"])
async def test_an_undelivered_message_is_still_refused_by_stop_or_a_marked_number(
    client: Client, auth: Auth, sessionmaker: SessionMaker, refusal: str
) -> None:
    message_id, fake = await _sent_then(client, auth, sessionmaker, DeliveryState.UNDELIVERED)
    customer = (await _delivery(client, auth, message_id))["customer_id"]
    # Another number: SMS as a channel stays reachable, only the one this message went to is not.
    async with sessionmaker.begin() as session:
        session.add(Identity(kind="phone", value="+12125550198", customer_id=customer))
    if refusal == "revoked":
        stop = {"channel": "sms", "purpose": "service", "action": "revoke", "source": "keyword"}
        await _record(client, auth, customer, **stop, evidence={"text": "STOP"})
    else:
        await _bounced(sessionmaker, customer, fake.sent[0].message.address)
    status, body = await _retry(client, auth, message_id)
    assert (status, body["error"]) == (409, refusal), body
    assert (await _delivery(client, auth, message_id))["delivery"]["state"] == "undelivered"


async def test_a_failed_stop_confirmation_is_sent_again_whatever_the_stop_says(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth, sessionmaker: SessionMaker
) -> None:
    signed = settings.model_copy(
        update={"public_url": PUBLIC, "twilio_auth_token": SecretStr(TOKEN)}
    )
    client = await aiohttp_client(create_app(signed))
    assert (await post(client, INBOUND, sms("STOP", 1))).status == 200
    async with sessionmaker() as session:
        (entry,) = (await session.scalars(select(OutboxEntry))).all()
        confirmation = await session.get(Message, entry.message_id)
    assert confirmation is not None
    assert entry.purpose == "compliance"  # sent whatever consent says: it confirms the STOP
    fake = FakeSender()
    fake.fail_next(DeliveryFailed("unknown error", retryable=False, code="30008"))
    await _worker(sessionmaker, fake, entry.due_at.isoformat()).drain()
    status, body = await _retry(client, auth, entry.message_id)
    assert status == 202, body
    assert body["decision"]["outcome"] == "allow"
    await _worker(sessionmaker, fake, body["due_at"]).drain()
    assert [r.message.text for r in fake.sent] == [confirmation.text]
    assert (await _delivery(client, auth, entry.message_id))["delivery"]["state"] == "sent"


async def test_a_stop_confirmation_a_later_keyword_superseded_is_not_sent_again(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth, sessionmaker: SessionMaker
) -> None:
    """After START (and STOP again, with its own confirmation), the first confirmation is
    nobody's to get: "you are unsubscribed" to a customer opted in, or a second one for one
    STOP."""
    signed = settings.model_copy(
        update={"public_url": PUBLIC, "twilio_auth_token": SecretStr(TOKEN)}
    )
    client = await aiohttp_client(create_app(signed))
    assert (await post(client, INBOUND, sms("STOP", 1))).status == 200
    async with sessionmaker() as session:
        (first,) = (await session.scalars(select(OutboxEntry))).all()
    fake = FakeSender()
    fake.fail_next(DeliveryFailed("unknown error", retryable=False, code="30008"))
    await _worker(sessionmaker, fake, first.due_at.isoformat()).drain()
    assert (await post(client, INBOUND, sms("START", 2))).status == 200
    status, body = await _retry(client, auth, first.message_id)
    assert (status, body["error"]) == (409, "superseded"), body
    assert (await _delivery(client, auth, first.message_id))["delivery"]["state"] == "failed"


# --- the outbox a page at a time ------------------------------------------------------------------


async def test_the_outbox_is_paged_and_a_bad_limit_is_a_400(
    client: Client, auth: Auth, sessionmaker: SessionMaker
) -> None:
    customer = await _customer(client, auth)
    ids = []
    for n in range(3):
        _, body = await _send(
            client, auth, customer_id=customer, text=f"m{n}", purpose="service", channel="sms"
        )
        ids.append(body["id"])
    async with sessionmaker.begin() as session:
        await session.execute(update(OutboxEntry).values(state="failed", updated_at=utcnow()))
    for bad in ("abc", "-1", "0", "201", "1.5"):
        response = await client.get(f"/api/outbox?state=failed&limit={bad}", headers=auth())
        assert response.status == 400, bad
        assert (await response.json())["detail"][0]["field"] == "limit"
    first = await (await client.get("/api/outbox?state=failed&limit=2", headers=auth())).json()
    assert [m["id"] for m in first["messages"]] == ids[:0:-1]  # newest first
    cursor = first["next_cursor"]
    second = await (
        await client.get(f"/api/outbox?state=failed&limit=2&cursor={cursor}", headers=auth())
    ).json()
    assert [m["id"] for m in second["messages"]] == ids[:1]
    assert second["next_cursor"] is None
    response = await client.get("/api/outbox?state=failed&cursor=nonsense", headers=auth())
    assert response.status == 400
    assert (await response.json())["detail"][0]["field"] == "cursor"


async def test_a_staff_email_without_subject_continues_the_customers_thread(
    aiohttp_client: ClientFactory, settings: Settings, auth: Auth, sessionmaker: SessionMaker
) -> None:
    inbound = _anytime(settings, inbound_email_token=SecretStr(EMAIL_TOKEN))
    client = await aiohttp_client(create_app(inbound))
    received = await client.post(
        "/webhooks/email",
        data=(EMAIL_FIXTURES / "gmail_reply_en.eml").read_bytes(),
        headers={"Authorization": f"Bearer {EMAIL_TOKEN}", "Content-Type": "message/rfc822"},
    )
    shown = await client.get(
        f"/api/messages/{(await received.json())['message_id']}", headers=auth()
    )
    customer = (await shown.json())["customer_id"]
    status, body = await _send(
        client, auth, customer_id=customer, text="A person here.", purpose="service"
    )
    assert (status, body["channel"]) == (202, "email")
    sent = await _drain_email(sessionmaker)
    (staff,) = [m for m in sent if "A person here." in str(m.get_body(("plain",)))]
    replied = "<CAJx8Zk1Gm4iLrEpLyEn+abcdef0123456789@mail.example.com>"
    assert staff["Subject"] == "Re: Your return"
    assert staff["In-Reply-To"] == replied
    assert replied in staff["References"].split()
