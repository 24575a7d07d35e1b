"""Staff send through the contact policy and the outbox; delivery is visible and retryable."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import update

from channels.base import ChannelName, DeliveryFailed
from channels.email import SmtpEmail
from channels.fake import FakeSender
from consent.models import Undeliverable
from crm_core.models import Identity
from crm_core.sqltypes import utcnow
from dialog.outbox.models import OutboxEntry
from sastre.app import create_app
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.worker import Worker
from tests.sastre.conftest import Client, ClientFactory
from tests.sastre.test_api_consent import _customer, _record
from tests.support.smtp_peer import smtp_peer

# What makes SMS and e-mail sendable: a Twilio account and an SMTP server with a From address.
SENDERS: dict[str, Any] = {
    "twilio_account_sid": "AC" + "0" * 32,
    "twilio_auth_token": SecretStr("0" * 32),
    "twilio_from": "+14155550100",
    "smtp_host": "127.0.0.1",
    "email_from": "Tienda <hola@tienda.example>",
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
    client = await aiohttp_client(
        create_app(_anytime(settings, quiet_hours="US=00:00-00:00,ES=00:00-00:00"))
    )
    english = await _customer(client, auth)
    spanish = await _customer(
        client,
        auth,
        external_id="C-2",
        email="lucia@example.es",
        phone="+34609281590",
        language="es",
    )
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


async def test_a_retry_after_stop_is_refused_with_the_reason(
    client: Client, auth: Auth, sessionmaker: SessionMaker
) -> None:
    customer = await _customer(client, auth)
    _, body = await _send(
        client, auth, customer_id=customer, text="hi", purpose="service", channel="sms"
    )
    fake = FakeSender()
    fake.fail_next(DeliveryFailed("unreachable", retryable=False, code="30003"))
    await _worker(sessionmaker, fake, body["due_at"]).drain()
    await _record(
        client,
        auth,
        customer,
        channel="sms",
        purpose="service",
        action="revoke",
        source="keyword",
        evidence={"text": "STOP"},
    )
    again = await client.post(f"/api/messages/{body['id']}/retry", headers=auth())
    answer = await again.json()
    assert again.status == 409
    assert answer["error"] == "revoked"
    shown = await (await client.get(f"/api/messages/{body['id']}", headers=auth())).json()
    assert shown["delivery"]["state"] == "failed"  # untouched


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
