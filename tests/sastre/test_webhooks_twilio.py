"""Twilio's webhooks through the whole service: signatures, storing before answering, dedupe,
keywords, and status callbacks moving delivery state forward only (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select, update
from twilio.request_validator import RequestValidator
from typing_extensions import override

import sastre.app as app_module
from channels.sms_webhooks import EMPTY_TWIML, WebhookSignature
from consent.ledger import record_consent
from consent.models import ConsentEvent, Undeliverable
from consent.replies import opted_out_of_all, service_revoked
from consent.snapshot import load_contact_state
from consent.types import Action, Channel, Purpose, Source
from crm_core.customers import find_customer, resolve
from crm_core.models import AuditEntry, Customer, IdentityKind
from crm_core.sqltypes import utcnow
from dialog.inbound.reask import reask_forever
from dialog.models import AwaitingBot, Direction, Message
from dialog.outbox import DeliveryAttempt, DeliveryState, OutboxEntry
from dialog.turns import BotTurn, Turn
from sastre.app import create_app
from sastre.appkeys import INBOUND as INBOUND_PATH_PROCESSOR
from sastre.config import Settings
from sastre.db import SessionMaker
from tests.sastre.conftest import ClientFactory
from tests.support.silent_bot import SilentBot

Client = TestClient[web.Request, web.Application]

FIXTURES = Path(__file__).parents[1] / "channels" / "fixtures" / "twilio"
PUBLIC = "https://sastre.example.com"
TOKEN = "twilio-auth-token-for-tests-0123"
INBOUND = "/webhooks/twilio/sms"
STATUS = "/webhooks/twilio/status"
CUSTOMER = "+14155552671"  # the sender in the fixtures, the recipient in the status callbacks
SIGNER = WebhookSignature(TOKEN, PUBLIC)


def fixture(name: str, **change: str) -> dict[str, str]:
    form = dict(parse_qsl((FIXTURES / name).read_text().strip(), keep_blank_values=True))
    return {**form, **change}


def sms(body: str, n: int, sender: str = CUSTOMER, **change: str) -> dict[str, str]:
    sid = f"SM{n:032x}"
    return (
        fixture(
            "inbound_plain.txt",
            Body=body,
            MessageSid=sid,
            SmsSid=sid,
            SmsMessageSid=sid,
            From=sender,
        )
        | change
    )


def with_sms(settings: Settings) -> Settings:
    """`settings` with SMS configured as these tests sign their webhooks."""
    return settings.model_copy(
        update={
            "public_url": PUBLIC,
            "twilio_account_sid": "AC" + "0" * 32,
            "twilio_auth_token": SecretStr(TOKEN),
            "twilio_from": "+14155550100",
        }
    )


@pytest.fixture
def sms_settings(settings: Settings) -> Settings:
    return with_sms(settings)


@pytest.fixture
async def twilio_client(aiohttp_client: ClientFactory, sms_settings: Settings) -> Client:
    return await aiohttp_client(create_app(sms_settings))


async def post(
    client: Client, path: str, form: dict[str, str], *, signature: str | None = None
) -> Any:
    signed = SIGNER.sign(path, form) if signature is None else signature
    return await client.post(path, data=form, headers={"X-Twilio-Signature": signed})


async def count(sessionmaker: SessionMaker, *where: Any) -> int:
    async with sessionmaker() as session:
        found = await session.scalar(select(func.count()).select_from(Message).where(*where))
        return int(found or 0)


async def replies_to(sessionmaker: SessionMaker, address: str = CUSTOMER) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Message.text)
            .where(Message.direction == Direction.OUT.value, Message.address == address)
            .order_by(Message.id)
        )
        return list(rows)


# --- incoming messages --------------------------------------------------------------------------


async def test_a_signed_sms_is_stored_then_answered_with_empty_twiml(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    answer = await post(twilio_client, INBOUND, fixture("inbound_plain.txt"))
    assert answer.status == 200
    assert answer.content_type == "text/xml"
    assert await answer.text() == EMPTY_TWIML
    async with sessionmaker() as session:
        stored = (await session.scalars(select(Message).where(Message.direction == "in"))).one()
    assert (stored.channel, stored.provider_id) == ("sms", "SM" + "a1" * 16)
    assert stored.text == "Where is my order?"
    # The answer is not in the TwiML: it waits in the outbox for a worker to send it.
    async with sessionmaker() as session:
        queued = list(await session.scalars(select(OutboxEntry)))
    assert [(q.channel, q.state) for q in queued] == [("sms", DeliveryState.QUEUED.value)]


@pytest.mark.parametrize("signature", ["", "bm90IHRoZSBzaWduYXR1cmU=", "tampered"])
async def test_a_bad_signature_is_403_and_stores_nothing(
    twilio_client: Client, sessionmaker: SessionMaker, signature: str
) -> None:
    form = fixture("inbound_plain.txt")
    if signature == "tampered":  # signed, then changed on the way
        signature = SIGNER.sign(INBOUND, form)
        form = {**form, "Body": "STOP"}
    answer = await post(twilio_client, INBOUND, form, signature=signature)
    assert answer.status == 403
    assert (await answer.json())["error"] == "invalid signature"
    assert await count(sessionmaker) == 0
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Customer)) == 0


async def test_a_signature_for_another_host_is_refused(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    form = fixture("inbound_plain.txt")
    elsewhere = WebhookSignature(TOKEN, "http://127.0.0.1:8080").sign(INBOUND, form)
    assert (await post(twilio_client, INBOUND, form, signature=elsewhere)).status == 403
    assert await count(sessionmaker) == 0


# A Webhook Setting signing with a SharedKey instead of the auth token (two held: a rotation).
SHARED_KEYS = {"webhooks_sharedkey_2025": "shared-secret-of-2025", "webhooks_sharedkey_2026": "s26"}


def shared_headers(path: str, form: dict[str, str], key: str, secret: str) -> dict[str, str]:
    """What Twilio sends for a Setting signing with this SharedKey (the library's signature)."""
    signature = RequestValidator(secret).compute_signature(PUBLIC + path, form, "HMAC_SHA256")
    return {
        "X-Twilio-Signature": str(signature),
        "X-Twilio-Webhooks-Signature-Settings": f"key={key},algorithm=HMAC_SHA256",
    }


@pytest.fixture
async def shared_key_client(aiohttp_client: ClientFactory, sms_settings: Settings) -> Client:
    keys = ",".join(f"{key}={secret}" for key, secret in SHARED_KEYS.items())
    configured = sms_settings.model_copy(update={"twilio_webhook_keys": SecretStr(keys)})
    return await aiohttp_client(create_app(configured))


@pytest.mark.parametrize("key", sorted(SHARED_KEYS))
async def test_an_sms_signed_with_a_shared_key_is_stored(
    shared_key_client: Client, sessionmaker: SessionMaker, key: str
) -> None:
    form = fixture("inbound_plain.txt")
    headers = shared_headers(INBOUND, form, key, SHARED_KEYS[key])
    answer = await shared_key_client.post(INBOUND, data=form, headers=headers)
    assert answer.status == 200
    assert await count(sessionmaker, Message.direction == "in") == 1
    # The auth token still signs what no Webhook Rule matches.
    again = fixture("inbound_plain.txt", MessageSid="SM" + "b2" * 16)
    assert (await post(shared_key_client, INBOUND, again)).status == 200


async def test_a_shared_key_not_held_here_is_403_naming_it(
    shared_key_client: Client, sessionmaker: SessionMaker
) -> None:
    form = fixture("inbound_plain.txt")
    headers = shared_headers(INBOUND, form, "webhooks_sharedkey_2027", "a-secret-not-given-us")
    answer = await shared_key_client.post(INBOUND, data=form, headers=headers)
    assert answer.status == 403
    assert await answer.json() == {
        "error": "invalid signature",
        "detail": "signed with a shared key not held here: webhooks_sharedkey_2027",
    }
    assert await count(sessionmaker) == 0


async def test_a_form_changed_after_a_shared_key_signed_it_is_403_and_stores_nothing(
    shared_key_client: Client, sessionmaker: SessionMaker
) -> None:
    form = fixture("inbound_plain.txt")
    key = "webhooks_sharedkey_2026"
    headers = shared_headers(INBOUND, form, key, SHARED_KEYS[key])
    answer = await shared_key_client.post(INBOUND, data={**form, "Body": "STOP"}, headers=headers)
    assert answer.status == 403
    assert "does not match shared key webhooks_sharedkey_2026" in (await answer.json())["detail"]
    assert await count(sessionmaker) == 0


async def test_a_status_callback_signed_with_a_shared_key_moves_the_message(
    shared_key_client: Client, sessionmaker: SessionMaker
) -> None:
    message_id = await sent_reply(shared_key_client, sessionmaker)
    form = fixture("status_delivered.txt")
    key = "webhooks_sharedkey_2026"
    headers = shared_headers(STATUS, form, key, SHARED_KEYS[key])
    assert (await shared_key_client.post(STATUS, data=form, headers=headers)).status == 200
    assert (await state_of(sessionmaker, message_id))[0] == "delivered"


async def test_the_same_message_sid_twice_is_stored_and_answered_once(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    form = fixture("inbound_plain.txt")
    first = await post(twilio_client, INBOUND, form)
    again = await post(twilio_client, INBOUND, form)
    # Twilio's retry after a lost answer, and another at the same moment.
    together = await asyncio.gather(*(post(twilio_client, INBOUND, form) for _ in range(4)))
    assert [a.status for a in (first, again, *together)] == [200] * 6
    assert await count(sessionmaker, Message.direction == "in") == 1
    assert len(await replies_to(sessionmaker)) == 1


async def test_a_bot_that_never_answers_is_a_503_and_the_redelivery_is_answered(
    aiohttp_client: ClientFactory, sms_settings: Settings, sessionmaker: SessionMaker
) -> None:
    bot = SilentBot()
    configured = sms_settings.model_copy(update={"bot_timeout": 0.05})
    client = await aiohttp_client(create_app(configured, brain=bot))
    form = fixture("inbound_plain.txt")
    first = await post(client, INBOUND, form)
    # Not a 500: the message is stored, awaiting the bot, and Twilio may post it again.
    assert first.status == 503
    assert first.headers["Retry-After"] == "30"
    assert "did not answer within 0.05 s" in (await first.json())["detail"]
    async with sessionmaker() as session:
        awaiting = await session.scalars(
            select(Message.text).join(AwaitingBot, AwaitingBot.message_id == Message.id)
        )
        assert list(awaiting) == ["Where is my order?"]
    bot.back = True
    again = await post(client, INBOUND, form)
    assert again.status == 200
    assert await count(sessionmaker, Message.direction == "in") == 1
    assert await replies_to(sessionmaker) == ["back: Where is my order?"]


class ReturningBot(SilentBot):
    """A silent bot that says when it has answered, once it is back."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = asyncio.Event()

    @override
    async def ask(self, turn: Turn) -> BotTurn:
        answer = await super().ask(turn)
        self.answered.set()
        return answer


async def test_an_sms_the_bot_gave_no_answer_is_asked_again_without_a_redelivery(
    aiohttp_client: ClientFactory,
    sms_settings: Settings,
    sessionmaker: SessionMaker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twilio posts once: the web process asks the bot again about an SMS left awaiting it
    (`dialog.inbound.reask`; here at once, instead of a minute later)."""
    monkeypatch.setattr(app_module, "reask_after", lambda timeout: timedelta(0))
    monkeypatch.setattr(app_module, "reask_forever", functools.partial(reask_forever, every=0.01))
    bot = ReturningBot()
    configured = sms_settings.model_copy(update={"bot_timeout": 0.05})
    app = create_app(configured, brain=bot)
    client = await aiohttp_client(app)
    assert (await post(client, INBOUND, fixture("inbound_plain.txt"))).status == 503
    bot.back = True
    async with asyncio.timeout(30):
        await bot.answered.wait()
    await app[INBOUND_PATH_PROCESSOR].drained()
    assert await replies_to(sessionmaker) == ["back: Where is my order?"]
    assert await count(sessionmaker, Message.direction == "in") == 1


PARAGRAPH = ("Para devolver un pedido entra en tu cuenta y elige el pedido. " * 15).strip()


class LongAnswers:
    """A bot outside the database whose answer (two paragraphs of 929 characters) is longer
    than one SMS may be."""

    async def ask(self, turn: Turn) -> BotTurn:
        return BotTurn(replies=[f"{PARAGRAPH}\n\n{PARAGRAPH}"])


async def test_an_answer_longer_than_an_sms_goes_in_parts_that_twilio_takes(
    aiohttp_client: ClientFactory, sms_settings: Settings, sessionmaker: SessionMaker
) -> None:
    """Twilio refuses a body over 1,600 characters for good (21617): a longer answer is
    queued as messages that each fit, cut between its paragraphs."""
    client = await aiohttp_client(create_app(sms_settings, brain=LongAnswers()))
    assert (await post(client, INBOUND, fixture("inbound_plain.txt"))).status == 200
    assert await replies_to(sessionmaker) == [PARAGRAPH, PARAGRAPH]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxEntry)) == 2


async def test_an_mms_keeps_its_media_and_accents_are_kept(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    assert (await post(twilio_client, INBOUND, fixture("inbound_mms_two_media.txt"))).status == 200
    assert (await post(twilio_client, INBOUND, fixture("inbound_spanish.txt"))).status == 200
    async with sessionmaker() as session:
        mms = (await session.scalars(select(Message).where(Message.provider_id.like("MM%")))).one()
        spanish = (
            await session.scalars(
                select(Message).where(
                    Message.address == "+34612345678", Message.direction == Direction.IN.value
                )
            )
        ).one()
    assert [url.rsplit("/", 1)[1] for url in mms.attachments] == [
        "ME" + "01" * 16,
        "ME" + "02" * 16,
    ]
    assert spanish.text == "¿Dónde está mi pedido? Gracias, señora Muñoz"


async def test_an_sms_holding_a_nul_is_stored_with_it_replaced_and_answered(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    """Carriers put NULs in real messages (for an "@", say). The signature is checked over the
    body as sent; the NUL, which the database cannot store, becomes U+FFFD."""
    assert (
        await post(twilio_client, INBOUND, sms("mi correo es ana\x00example.com", 1))
    ).status == 200
    async with sessionmaker() as session:
        stored = (
            await session.scalars(select(Message.text).where(Message.direction == "in"))
        ).one()
    assert stored == "mi correo es ana\ufffdexample.com"
    assert len(await replies_to(sessionmaker)) == 1


async def test_stop_gets_one_confirmation_and_nothing_else_until_start(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    assert (await post(twilio_client, INBOUND, sms("STOP", 1))).status == 200
    [confirmation] = await replies_to(sessionmaker)
    assert "START" in confirmation
    for n, text in enumerate(["Where is my order?", "hello?", "HELP me with my order"], start=2):
        assert (await post(twilio_client, INBOUND, sms(text, n))).status == 200
    assert await replies_to(sessionmaker) == [confirmation]  # stored, never answered
    assert await count(sessionmaker, Message.direction == "in") == 4
    assert (await post(twilio_client, INBOUND, sms("START", 9))).status == 200
    assert (await post(twilio_client, INBOUND, sms("Where is my order?", 10))).status == 200
    assert len(await replies_to(sessionmaker)) == 3  # START's answer, then the bot again


async def test_keywords_twilio_acted_on_are_recorded_and_not_answered_again(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    """With Advanced Opt-Out Twilio answers STOP, HELP and START itself (OptOutType): our books
    follow, our replies would be second ones (and after STOP refused, 21610)."""
    for n, keyword in enumerate(("HELP", "STOP", "START"), start=1):
        form = sms(keyword, n, OptOutType=keyword)
        assert (await post(twilio_client, INBOUND, form)).status == 200
        if keyword == "STOP":
            async with sessionmaker() as session:
                customer = await find_customer(session, "phone", CUSTOMER, "US")
                assert await service_revoked(session, customer.id, Channel.SMS)
    async with sessionmaker() as session:
        assert not await service_revoked(session, customer.id, Channel.SMS)
    assert await replies_to(sessionmaker) == []
    assert (await post(twilio_client, INBOUND, sms("Where is my order?", 9))).status == 200
    assert len(await replies_to(sessionmaker)) == 1  # the bot answers as before


async def test_stop_is_confirmed_in_the_customer_s_language(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    async with sessionmaker.begin() as session:
        await resolve(session, IdentityKind.PHONE, CUSTOMER, "US", language="es")
    assert (await post(twilio_client, INBOUND, sms("STOP", 1))).status == 200
    [confirmation] = await replies_to(sessionmaker)
    assert "ALTA" in confirmation  # Spanish: "Responda ALTA para volver a suscribirse."


async def test_twilio_s_opt_out_type_is_honoured_for_a_word_we_do_not_know(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    answer = await post(twilio_client, INBOUND, fixture("inbound_opt_out_type_stop.txt"))
    assert answer.status == 200
    async with sessionmaker() as session:
        customer = await find_customer(session, "phone", CUSTOMER, "US")
        assert await service_revoked(session, customer.id, Channel.SMS)
    assert await replies_to(sessionmaker) == []  # Twilio confirmed it, as configured there


async def test_a_signed_form_that_is_not_an_sms_is_400_naming_the_field(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    form = fixture("inbound_plain.txt", MessageSid="")
    answer = await post(twilio_client, INBOUND, form)
    assert answer.status == 400
    assert (await answer.json())["detail"]["field"] == "MessageSid"
    assert await count(sessionmaker) == 0


async def test_a_sender_that_is_no_phone_number_is_400(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    answer = await post(twilio_client, INBOUND, fixture("inbound_plain.txt", From="not a number"))
    assert answer.status == 400
    assert await count(sessionmaker) == 0


async def test_only_forms_are_taken(twilio_client: Client) -> None:
    answer = await twilio_client.post(
        INBOUND, json={"MessageSid": "x"}, headers={"X-Twilio-Signature": "x"}
    )
    assert answer.status == 415


async def test_with_sms_off_the_webhooks_are_not_there(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    for path in (INBOUND, STATUS):
        assert (await post(client, path, fixture("inbound_plain.txt"))).status == 404


# --- status callbacks ---------------------------------------------------------------------------

SENT_SID = "SM" + "9f" * 16  # the MessageSid of the status fixtures


async def sent_reply(client: Client, sessionmaker: SessionMaker) -> int:
    """An answer the worker handed to Twilio as SENT_SID: the outbox row as a send leaves it."""
    assert (await post(client, INBOUND, fixture("inbound_plain.txt"))).status == 200
    async with sessionmaker.begin() as session:
        message_id = (await session.scalars(select(OutboxEntry.message_id))).one()
        await session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.message_id == message_id)
            .values(provider_id=SENT_SID, state=DeliveryState.SENDING.value)
        )
    return int(message_id)


async def state_of(sessionmaker: SessionMaker, message_id: int) -> tuple[str, str | None]:
    async with sessionmaker() as session:
        row = await session.get(OutboxEntry, message_id)
        assert row is not None
        return row.state, row.error_code


async def test_status_callbacks_out_of_order_never_move_backwards(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    message_id = await sent_reply(twilio_client, sessionmaker)
    for name in ("status_delivered.txt", "status_sent.txt", "status_queued.txt"):
        assert (await post(twilio_client, STATUS, fixture(name))).status == 200
        assert (await state_of(sessionmaker, message_id))[0] == "delivered"
    failed_late = await post(twilio_client, STATUS, fixture("status_failed_21610.txt"))
    assert failed_late.status == 200
    assert await state_of(sessionmaker, message_id) == ("delivered", None)


@pytest.mark.parametrize("late", ["status_failed_21610.txt", "status_undelivered_30003.txt"])
async def test_an_error_about_a_message_already_delivered_changes_nothing_about_the_number(
    twilio_client: Client, sessionmaker: SessionMaker, late: str
) -> None:
    """Callbacks come in any order: the handset took this very message, so an error reported
    after its delivery neither revokes SMS consent nor marks the number."""
    message_id = await sent_reply(twilio_client, sessionmaker)
    assert (await post(twilio_client, STATUS, fixture("status_delivered.txt"))).status == 200
    assert (await post(twilio_client, STATUS, fixture(late))).status == 200
    assert await state_of(sessionmaker, message_id) == ("delivered", None)
    async with sessionmaker() as session:
        customer = await find_customer(session, "phone", CUSTOMER, "US")
        assert not await service_revoked(session, customer.id, Channel.SMS)
        assert await session.scalar(select(func.count()).select_from(Undeliverable)) == 0
        audits = list(
            await session.scalars(
                select(AuditEntry.action).where(AuditEntry.customer_id == customer.id)
            )
        )
    assert "sms.error_report_stale" in audits


async def test_a_message_delivered_after_its_own_failure_was_reported_clears_the_mark(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    """The same send: "undelivered 30003" first, then "delivered" (out of order). The handset
    took it, so the mark made from its failure goes."""
    message_id = await sent_reply(twilio_client, sessionmaker)
    async with sessionmaker.begin() as session:
        session.add(_attempt(message_id, SENT_SID, minutes_ago=1))
    assert (
        await post(twilio_client, STATUS, fixture("status_undelivered_30003.txt"))
    ).status == 200
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Undeliverable)) == 1
    assert (await post(twilio_client, STATUS, fixture("status_delivered.txt"))).status == 200
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Undeliverable)) == 0


async def test_a_status_callback_must_be_signed(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    message_id = await sent_reply(twilio_client, sessionmaker)
    form = fixture("status_delivered.txt")
    answer = await post(twilio_client, STATUS, form, signature=SIGNER.sign(INBOUND, form))
    assert answer.status == 403
    assert (await state_of(sessionmaker, message_id))[0] == "sending"


async def test_error_21610_fails_the_message_and_revokes_sms_consent_from_the_provider(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    message_id = await sent_reply(twilio_client, sessionmaker)
    for _ in range(2):  # a repeated callback records nothing twice
        assert (await post(twilio_client, STATUS, fixture("status_failed_21610.txt"))).status == 200
    assert await state_of(sessionmaker, message_id) == ("failed", "21610")
    async with sessionmaker() as session:
        customer = await find_customer(session, "phone", CUSTOMER, "US")
        assert await service_revoked(session, customer.id, Channel.SMS)
        events = list(
            await session.scalars(select(ConsentEvent).where(ConsentEvent.source == "provider"))
        )
    assert sorted(e.purpose for e in events) == ["marketing", "service"]
    assert {e.action for e in events} == {"revoke"}


async def test_a_21610_revokes_sms_marketing_too_when_only_service_was_revoked(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    """An agent had revoked SMS service alone: the carrier's opt-out is not "recorded already"
    (marketing by SMS stayed granted, and resumed once service was granted again)."""
    await sent_reply(twilio_client, sessionmaker)
    async with sessionmaker.begin() as session:
        customer = await find_customer(session, "phone", CUSTOMER, "US")
        for purpose, action in (
            (Purpose.MARKETING, Action.GRANT),
            (Purpose.SERVICE, Action.REVOKE),
        ):
            await record_consent(
                session, customer.id, Channel.SMS, purpose, action, Source.AGENT, actor="ana"
            )
    assert (await post(twilio_client, STATUS, fixture("status_failed_21610.txt"))).status == 200
    async with sessionmaker() as session:
        assert await opted_out_of_all(session, customer.id, Channel.SMS)


async def _late_21610_after_stop_and_start(client: Client, sessionmaker: SessionMaker) -> None:
    """STOP, then START: Twilio unblocks the number, then calls back about SENT_SID, an old
    send. Nothing is revoked; the report is audited as stale."""
    assert (await post(client, INBOUND, sms("STOP", 901))).status == 200
    assert (await post(client, INBOUND, sms("START", 902))).status == 200
    assert (await post(client, STATUS, fixture("status_failed_21610.txt"))).status == 200
    async with sessionmaker() as session:
        customer = await find_customer(session, "phone", CUSTOMER, "US")
        assert not await service_revoked(session, customer.id, Channel.SMS)
        stale = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "sms.opt_out_report_stale")
        )
    assert stale == 1


def _attempt(message_id: int, provider_id: str, minutes_ago: int) -> DeliveryAttempt:
    """The worker's record of a send Twilio took."""
    return DeliveryAttempt(
        message_id=message_id,
        worker="w",
        outcome="sent",
        provider_id=provider_id,
        at=utcnow() - timedelta(minutes=minutes_ago),
    )


async def test_a_late_21610_about_a_message_sent_before_start_revokes_nothing(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    message_id = await sent_reply(twilio_client, sessionmaker)
    async with sessionmaker.begin() as session:
        session.add(_attempt(message_id, SENT_SID, minutes_ago=5))
    await _late_21610_after_stop_and_start(twilio_client, sessionmaker)
    assert await state_of(sessionmaker, message_id) == ("failed", "21610")


async def test_a_late_21610_about_an_earlier_attempt_of_a_retried_message_revokes_nothing(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    """Staff retried the message: the outbox holds the second attempt's id, and the report is
    about the first, found by its attempt."""
    message_id = await sent_reply(twilio_client, sessionmaker)
    retried = "SM" + "b" * 32
    async with sessionmaker.begin() as session:
        session.add_all(
            [_attempt(message_id, SENT_SID, minutes_ago=9), _attempt(message_id, retried, 5)]
        )
        await session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.message_id == message_id)
            .values(provider_id=retried, state=DeliveryState.SENT.value)
        )
    await _late_21610_after_stop_and_start(twilio_client, sessionmaker)
    assert await state_of(sessionmaker, message_id) == ("sent", None)  # not this attempt's


async def test_a_late_21610_about_a_send_staff_retried_after_start_revokes_nothing(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    """The retry records the delivery it replaced under the old id, at the time of the retry
    (after START): the report is still dated by the send itself, which went before START."""
    message_id = await sent_reply(twilio_client, sessionmaker)
    async with sessionmaker.begin() as session:
        session.add(_attempt(message_id, SENT_SID, minutes_ago=9))
    assert (await post(twilio_client, INBOUND, sms("STOP", 901))).status == 200
    assert (await post(twilio_client, INBOUND, sms("START", 902))).status == 200
    async with sessionmaker.begin() as session:
        session.add(
            DeliveryAttempt(
                message_id=message_id, worker="staff", outcome="retried", provider_id=SENT_SID
            )
        )
    assert (await post(twilio_client, STATUS, fixture("status_failed_21610.txt"))).status == 200
    async with sessionmaker() as session:
        customer = await find_customer(session, "phone", CUSTOMER, "US")
        assert not await service_revoked(session, customer.id, Channel.SMS)


async def _two_replies_sent(client: Client, sessionmaker: SessionMaker) -> list[str]:
    """Two answers to one number, handed to Twilio: their MessageSids."""
    assert (await post(client, INBOUND, fixture("inbound_plain.txt"))).status == 200
    again = "SM" + "1" * 32
    form = fixture("inbound_plain.txt", MessageSid=again, SmsSid=again, SmsMessageSid=again)
    assert (await post(client, INBOUND, {**form, "Body": "and another thing"})).status == 200
    sids = ["SM" + "a" * 32, "SM" + "b" * 32]
    async with sessionmaker.begin() as session:
        ids = list(await session.scalars(select(OutboxEntry.message_id).order_by("message_id")))
        assert len(ids) == 2
        for message_id, sid in zip(ids, sids, strict=True):
            await session.execute(
                update(OutboxEntry)
                .where(OutboxEntry.message_id == message_id)
                .values(provider_id=sid, state=DeliveryState.SENT.value)
            )
    return sids


@pytest.mark.parametrize("name", ["status_failed_21610.txt", "status_undelivered_30003.txt"])
async def test_two_refusals_for_one_number_at_once_are_both_recorded(
    twilio_client: Client, sessionmaker: SessionMaker, name: str
) -> None:
    """Both found nothing recorded yet and both wrote it: on PostgreSQL the second failed on the
    key, a 500 that lost its message's state for good (Twilio does not call back again)."""
    sids = await _two_replies_sent(twilio_client, sessionmaker)
    forms = [fixture(name, MessageSid=sid, SmsSid=sid) for sid in sids]
    answers = await asyncio.gather(*(post(twilio_client, STATUS, form) for form in forms))
    assert [answer.status for answer in answers] == [200, 200]
    async with sessionmaker() as session:
        states = set(await session.scalars(select(OutboxEntry.state)))
    assert states == {"failed" if "21610" in name else "undelivered"}


async def test_error_30003_marks_the_number_undeliverable_for_the_contact_policy(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    message_id = await sent_reply(twilio_client, sessionmaker)
    for _ in range(2):
        form = fixture("status_undelivered_30003.txt")
        assert (await post(twilio_client, STATUS, form)).status == 200
    assert await state_of(sessionmaker, message_id) == ("undelivered", "30003")
    async with sessionmaker() as session:
        marks = list(await session.scalars(select(Undeliverable)))
        customer = await find_customer(session, "phone", CUSTOMER, "US")
        assert not await service_revoked(session, customer.id, Channel.SMS)
    assert [(m.customer_id, m.channel, m.address) for m in marks] == [
        (customer.id, "sms", CUSTOMER)
    ]


async def test_a_message_delivered_to_the_number_clears_its_mark(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    """30003 is often a phone switched off for a while: once the carrier delivers a message to
    the number again (the answer to the customer's next SMS), the contact policy may choose SMS."""
    await sent_reply(twilio_client, sessionmaker)
    unreachable = fixture("status_undelivered_30003.txt")
    assert (await post(twilio_client, STATUS, unreachable)).status == 200
    later = "SM" + "7" * 32
    delivered = fixture("status_delivered.txt", MessageSid=later, SmsSid=later)
    assert (await post(twilio_client, STATUS, delivered)).status == 200
    async with sessionmaker() as session:
        customer = await find_customer(session, "phone", CUSTOMER, "US")
        state = await load_contact_state(session, customer.id, at=utcnow(), default_timezone="UTC")
        assert await session.scalar(select(func.count()).select_from(Undeliverable)) == 0
        audits = list(
            await session.scalars(
                select(AuditEntry.action).where(AuditEntry.customer_id == customer.id)
            )
        )
    assert Channel.SMS not in state.undeliverable
    assert audits.count("sms.undeliverable") == audits.count("sms.deliverable") == 1


async def test_a_late_delivered_report_about_an_older_send_keeps_a_newer_mark(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    """Delivered five minutes ago, unreachable since: the mark stays until a message sent after
    the failed one is delivered."""
    message_id = await sent_reply(twilio_client, sessionmaker)
    older, newer = "SM" + "a" * 32, "SM" + "c" * 32
    async with sessionmaker.begin() as session:
        session.add_all(
            [
                _attempt(message_id, older, minutes_ago=9),
                _attempt(message_id, SENT_SID, minutes_ago=5),
                _attempt(message_id, newer, minutes_ago=1),
            ]
        )
    unreachable = fixture("status_undelivered_30003.txt")
    assert (await post(twilio_client, STATUS, unreachable)).status == 200

    async def marks() -> int:
        async with sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(Undeliverable)) or 0)

    late = fixture("status_delivered.txt", MessageSid=older, SmsSid=older)
    assert (await post(twilio_client, STATUS, late)).status == 200
    assert await marks() == 1
    delivered = fixture("status_delivered.txt", MessageSid=newer, SmsSid=newer)
    assert (await post(twilio_client, STATUS, delivered)).status == 200
    assert await marks() == 0


async def _delivered_then_unreachable(
    client: Client, sessionmaker: SessionMaker, *, delivered_sent: int, failed_sent: int
) -> int:
    """Two answers to the customer's number: the second, sent `delivered_sent` minutes ago, is
    reported delivered; then the first, sent `failed_sent` minutes ago, is reported 30003.
    Returns how many undeliverable marks there are."""
    first = await sent_reply(client, sessionmaker)
    assert (await post(client, INBOUND, sms("¿y el envío?", 7))).status == 200
    other = "SM" + "d" * 32
    async with sessionmaker.begin() as session:
        second = (
            await session.scalars(
                select(OutboxEntry.message_id).where(OutboxEntry.provider_id.is_(None))
            )
        ).one()
        await session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.message_id == second)
            .values(provider_id=other, state=DeliveryState.SENDING.value)
        )
        session.add_all(
            [
                _attempt(first, SENT_SID, minutes_ago=failed_sent),
                _attempt(second, other, minutes_ago=delivered_sent),
            ]
        )
    delivered = fixture("status_delivered.txt", MessageSid=other, SmsSid=other)
    assert (await post(client, STATUS, delivered)).status == 200
    unreachable = fixture("status_undelivered_30003.txt")
    assert (await post(client, STATUS, unreachable)).status == 200
    assert await state_of(sessionmaker, first) == ("undelivered", "30003")  # its own state moves
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Undeliverable)) or 0)


async def test_a_late_30003_about_an_older_send_marks_nothing_once_a_newer_was_delivered(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    """Unreachable nine minutes ago, a message delivered to the number since: the failure
    reported late is history, not a reason to stop texting a handset that works."""
    marks = await _delivered_then_unreachable(
        twilio_client, sessionmaker, delivered_sent=2, failed_sent=9
    )
    assert marks == 0
    async with sessionmaker() as session:
        audits = list(await session.scalars(select(AuditEntry.action)))
    assert "sms.undeliverable_report_stale" in audits
    assert "sms.undeliverable" not in audits


async def test_a_30003_about_a_newer_send_than_one_delivered_marks_the_number(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    """Delivered twelve minutes ago, unreachable nine minutes ago: the failure is the news."""
    marks = await _delivered_then_unreachable(
        twilio_client, sessionmaker, delivered_sent=12, failed_sent=9
    )
    assert marks == 1


async def test_a_callback_for_a_message_we_do_not_know_changes_nothing(
    twilio_client: Client, sessionmaker: SessionMaker
) -> None:
    answer = await post(twilio_client, STATUS, fixture("status_delivered.txt"))
    assert answer.status == 200
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxEntry)) == 0


async def test_a_status_twilio_does_not_send_is_400(twilio_client: Client) -> None:
    form = fixture("status_sent.txt", MessageStatus="teleported")
    answer = await post(twilio_client, STATUS, form)
    assert answer.status == 400
    assert (await answer.json())["detail"]["field"] == "MessageStatus"
