"""SMS through Twilio: the sender against a local fake of the REST API, the webhooks' forms and
signatures as Twilio posts them (fixtures/twilio, one file per message condition)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.base import ChannelName, DeliveryFailed, OutboundMessage
from channels.sms import (
    ACCOUNT_CODES,
    PERMANENT_CODES,
    RETRYABLE_CODES,
    TwilioSms,
    failure_for,
    retry_after_seconds,
)
from channels.sms_webhooks import (
    KEYWORD,
    DeliveryReport,
    MalformedWebhook,
    WebhookSignature,
    parse_inbound,
    parse_status,
)
from tests.support.fake_twilio import FakeTwilio, Programmed

FIXTURES = Path(__file__).parent / "fixtures" / "twilio"
PUBLIC = "https://sastre.example.com"
CALLBACK = f"{PUBLIC}/webhooks/twilio/status"


def form(name: str) -> dict[str, str]:
    return dict(parse_qsl((FIXTURES / name).read_text().strip(), keep_blank_values=True))


def sms(text: str, to: str = "+14155552671", **extra: str) -> OutboundMessage:
    return OutboundMessage(ChannelName.SMS, to, text, reference="r1", **extra)  # type: ignore[arg-type]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as twilio:
        yield twilio


def adapter(fake: FakeTwilio, **options: object) -> TwilioSms:
    settings: dict[str, object] = {
        "sender": "+14155550100",
        "status_callback": CALLBACK,
        "api_base": fake.base_url,
        **options,
    }
    return TwilioSms(fake.account_sid, fake.auth_token, **settings)  # type: ignore[arg-type]


# --- sending ------------------------------------------------------------------------------------


async def test_a_message_goes_to_the_configured_api_base_with_our_status_callback(
    fake: FakeTwilio,
) -> None:
    async with adapter(fake) as sender:
        sid = await sender.send(sms("Your order shipped"))
    [taken] = fake.messages
    assert sid == taken.sid
    assert (taken.to, taken.sender, taken.body) == (
        "+14155552671",
        "+14155550100",
        "Your order shipped",
    )
    assert taken.status_callback == CALLBACK


async def test_a_message_may_name_its_own_status_callback(fake: FakeTwilio) -> None:
    async with adapter(fake) as sender:
        await sender.send(sms("hi", status_callback=f"{PUBLIC}/webhooks/twilio/status?m=7"))
    assert fake.messages[0].status_callback == f"{PUBLIC}/webhooks/twilio/status?m=7"


async def test_a_messaging_service_chooses_the_sender(fake: FakeTwilio) -> None:
    service = "MG" + "1" * 32
    async with adapter(fake, messaging_service_sid=service) as sender:
        await sender.send(sms("hi"))
    assert (fake.messages[0].messaging_service_sid, fake.messages[0].sender) == (service, None)


async def test_a_long_text_is_sent_whole_in_one_request(fake: FakeTwilio) -> None:
    text = ("Su pedido nº 1234 llegará mañana por la tarde. " * 33)[:1590]
    async with adapter(fake) as sender:
        await sender.send(sms(text))
    assert fake.requests == 1
    assert fake.messages[0].body == text


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, 21211, "The 'To' number +1555 is not a valid phone number."),
        (400, 21610, "Attempt to send to unsubscribed recipient"),
        (400, 21614, "'To' number is not a valid mobile number"),
    ],
)
async def test_a_refusal_about_the_recipient_is_permanent_with_its_code(
    fake: FakeTwilio, status: int, code: int, message: str
) -> None:
    fake.fail_next(Programmed(status, code, message))
    async with adapter(fake) as sender:
        with pytest.raises(DeliveryFailed) as failed:
            await sender.send(sms("hi"))
    assert failed.value.retryable is False
    assert failed.value.code == str(code)
    assert message in failed.value.reason


async def test_too_many_requests_is_retryable_after_what_twilio_asked(fake: FakeTwilio) -> None:
    fake.fail_next(Programmed(429, 20429, "Too Many Requests", retry_after="7"))
    async with adapter(fake) as sender:
        with pytest.raises(DeliveryFailed) as failed:
            await sender.send(sms("hi"))
    assert (failed.value.retryable, failed.value.retry_after, failed.value.code) == (
        True,
        7.0,
        "20429",
    )


async def test_a_server_error_is_retryable(fake: FakeTwilio) -> None:
    fake.fail_next(Programmed(503, None, "Service Unavailable"))
    async with adapter(fake) as sender:
        with pytest.raises(DeliveryFailed) as failed:
            await sender.send(sms("hi"))
        assert (failed.value.retryable, failed.value.code) == (True, "503")
        assert await sender.send(sms("again")) == fake.messages[0].sid  # the next one goes


async def test_wrong_credentials_are_retried_until_the_account_is_put_right(
    fake: FakeTwilio,
) -> None:
    sender = TwilioSms(fake.account_sid, "not-the-token", sender="+1", api_base=fake.base_url)
    async with sender:
        with pytest.raises(DeliveryFailed) as failed:
            await sender.send(sms("hi"))
    assert (failed.value.retryable, failed.value.code) == (True, "20003")


async def test_no_answer_in_time_is_retryable(fake: FakeTwilio) -> None:
    fake.delay = 5.0
    async with adapter(fake, timeout=0.05) as sender:
        with pytest.raises(DeliveryFailed) as failed:
            await sender.send(sms("hi"))
    assert failed.value.retryable is True


async def test_calls_in_flight_share_kept_alive_connections_up_to_the_limit(
    fake: FakeTwilio,
) -> None:
    fake.delay = 0.05  # every call is still out when the next ones start
    async with adapter(fake, connections=2) as sender:
        await asyncio.gather(*(sender.send(sms(f"hello {n}")) for n in range(6)))
        await asyncio.gather(*(sender.send(sms(f"again {n}")) for n in range(6)))
    assert fake.accepted == 12
    assert len(fake.clients) == 2


def test_at_least_one_connection_is_needed() -> None:
    with pytest.raises(ValueError, match="connection"):
        TwilioSms("AC" + "0" * 32, "token", sender="+14155550100", connections=0)


async def test_the_form_reaches_twilio_as_the_library_built_it(fake: FakeTwilio) -> None:
    text = "¿Dónde está mi pedido? 50% & más + = ok"
    async with adapter(fake) as sender:
        await sender.send(sms(text, to="+34600111222"))
    (taken,) = fake.messages
    assert (taken.to, taken.body) == ("+34600111222", text)


async def test_an_unreachable_api_is_retryable() -> None:
    # Bound, never listening: connections are refused, and no other process can take the port
    # (closed first, it could be anyone's by the time the adapter connects).
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        async with TwilioSms(
            "AC" + "0" * 32, "token", sender="+1", api_base=f"http://127.0.0.1:{port}"
        ) as sender:
            with pytest.raises(DeliveryFailed) as failed:
                await sender.send(sms("hi"))
    assert failed.value.retryable is True


async def test_only_sms_is_sent_and_only_with_a_text(fake: FakeTwilio) -> None:
    async with adapter(fake) as sender:
        for wrong in (OutboundMessage(ChannelName.EMAIL, "a@b.c", "hi"), sms("")):
            with pytest.raises(DeliveryFailed) as failed:
                await sender.send(wrong)
            assert failed.value.retryable is False
    assert fake.requests == 0


def test_a_sender_needs_a_from_number_or_a_messaging_service() -> None:
    with pytest.raises(ValueError, match="Messaging Service"):
        TwilioSms("AC" + "0" * 32, "token")


# --- what a refusal means ----------------------------------------------------------------------


@given(
    status=st.integers(min_value=400, max_value=599),
    code=st.sampled_from(sorted(PERMANENT_CODES)),
)
def test_a_permanent_code_is_never_retried_whatever_the_status(status: int, code: int) -> None:
    failed = failure_for(status, code, "x", retry_after=3.0)
    assert failed.retryable is False
    assert failed.retry_after is None


@given(status=st.integers(min_value=500, max_value=599))
def test_a_server_error_without_a_code_is_retried(status: int) -> None:
    assert failure_for(status, None, "x").retryable is True


@given(status=st.integers(min_value=400, max_value=499).filter(lambda s: s not in (401, 429)))
def test_a_client_error_without_a_known_code_is_not_retried(status: int) -> None:
    assert failure_for(status, None, "x").retryable is False


@given(
    status=st.integers(min_value=400, max_value=599),
    code=st.sampled_from(sorted(RETRYABLE_CODES)),
)
def test_a_code_of_a_passing_overload_is_retried_whatever_the_status(
    status: int, code: int
) -> None:
    """Among them 21611, a 400: the sender's queue is full, and it drains."""
    assert failure_for(status, code, "x").retryable is True


@given(
    status=st.integers(min_value=400, max_value=499),
    code=st.sampled_from(sorted(ACCOUNT_CODES)) | st.none(),
)
def test_a_refusal_of_our_account_is_retried(status: int, code: int | None) -> None:
    if code is None:
        status = 401  # Unauthorized with no Twilio code: our credentials too
    assert failure_for(status, code, "x").retryable is True


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("Wed, 01 Apr 2026 12:00:30 GMT", 30.0),
        ("Wed, 01 Apr 2026 11:00:00 GMT", 0.0),  # already past
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date(
    header: str | None, seconds: float | None
) -> None:
    now = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds(header, now=now) == seconds


# --- incoming messages --------------------------------------------------------------------------


def test_a_plain_sms_becomes_an_inbound_message_keyed_by_its_sid() -> None:
    message = parse_inbound(form("inbound_plain.txt"))
    assert message.channel is ChannelName.SMS
    assert (message.address, message.text) == ("+14155552671", "Where is my order?")
    assert message.provider_id == "SM" + "a1" * 16
    assert message.attachments == ()
    assert KEYWORD not in message.metadata
    assert message.metadata["To"] == "+14155550100"


def test_accents_are_kept_exactly() -> None:
    message = parse_inbound(form("inbound_spanish.txt"))
    assert message.text == "¿Dónde está mi pedido? Gracias, señora Muñoz"
    assert message.address == "+34612345678"


def test_mms_media_are_the_attachments_with_their_types() -> None:
    message = parse_inbound(form("inbound_mms_two_media.txt"))
    assert len(message.attachments) == 2
    assert message.attachments[0].endswith("/Media/ME" + "01" * 16)
    assert message.attachments[1].endswith("/Media/ME" + "02" * 16)
    assert message.metadata["MediaContentType0"] == "image/jpeg"
    assert message.metadata["MediaContentType1"] == "image/png"


@pytest.mark.parametrize(
    ("fixture", "keyword"),
    [
        ("inbound_stop.txt", "opt_out"),
        ("inbound_start.txt", "opt_in"),
        ("inbound_help.txt", "help"),
        ("inbound_opt_out_type_stop.txt", "opt_out"),  # a keyword Twilio knows and we do not
        ("inbound_baja.txt", None),  # no OptOutType: our own classifier decides
    ],
)
def test_twilio_s_reading_of_a_keyword_rides_along(fixture: str, keyword: str | None) -> None:
    assert parse_inbound(form(fixture)).metadata.get(KEYWORD) == keyword


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"MessageSid": ""}, "MessageSid"),
        ({"MessageSid": "not-a-sid"}, "MessageSid"),
        ({"From": ""}, "From"),
        ({"NumMedia": "many"}, "NumMedia"),
        ({"NumMedia": "11"}, "NumMedia"),
        ({"NumMedia": "1"}, "MediaUrl0"),
        ({"NumMedia": "1", "MediaUrl0": "file:///etc/passwd"}, "MediaUrl0"),
    ],
)
def test_a_form_that_is_not_an_sms_is_refused_by_field(change: dict[str, str], field: str) -> None:
    with pytest.raises(MalformedWebhook) as refused:
        parse_inbound({**form("inbound_plain.txt"), **change})
    assert refused.value.field == field


# --- status callbacks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "state", "code"),
    [
        ("status_queued.txt", "queued", None),
        ("status_sent.txt", "sent", None),
        ("status_delivered.txt", "delivered", None),
        ("status_undelivered_30003.txt", "undelivered", "30003"),
        ("status_failed_21610.txt", "failed", "21610"),
    ],
)
def test_a_status_callback_is_a_delivery_report(fixture: str, state: str, code: str | None) -> None:
    report = parse_status(form(fixture))
    assert report == DeliveryReport("SM" + "9f" * 16, state, "+14155552671", code, None)


def test_the_out_of_order_fixture_names_real_callbacks() -> None:
    sequence = json.loads((FIXTURES / "status_out_of_order.json").read_text())
    states = [parse_status(form(name)).state for name in sequence["arrives"]]
    assert states == ["delivered", "sent", "queued"]


@pytest.mark.parametrize(
    "change",
    [
        {"MessageStatus": "teleported"},
        {"MessageStatus": ""},
        {"ErrorCode": "x1"},
        {"ErrorCode": "3" * 40},  # longer than any code: refused, not a database error later
        {"ErrorCode": "٣٠٠٠٣"},  # digits, but not ASCII ones
    ],
)
def test_a_status_twilio_does_not_send_is_refused(change: dict[str, str]) -> None:
    with pytest.raises(MalformedWebhook):
        parse_status({**form("status_sent.txt"), **change})


# --- signatures ---------------------------------------------------------------------------------

PATH = "/webhooks/twilio/sms"


def test_a_signature_made_with_the_auth_token_for_our_public_url_is_valid() -> None:
    params = form("inbound_plain.txt")
    signature = WebhookSignature("secret-token", PUBLIC).sign(PATH, params)
    assert WebhookSignature("secret-token", PUBLIC + "/").valid(PATH, params, signature)


def test_a_signature_over_our_url_with_its_default_port_is_valid_too() -> None:
    """Twilio may sign the URL with the port spelled out (the validator accepts both forms);
    the quick check of the URL as configured must not lose that."""
    params = form("inbound_plain.txt")
    assert PUBLIC.startswith("https://")
    assert ":" not in PUBLIC.removeprefix("https://")
    signature = WebhookSignature("secret-token", PUBLIC + ":443").sign(PATH, params)
    assert WebhookSignature("secret-token", PUBLIC).valid(PATH, params, signature)


@pytest.mark.parametrize("what", ["token", "url", "param", "missing"])
def test_any_difference_makes_a_signature_invalid(what: str) -> None:
    params = form("inbound_plain.txt")
    signature: str | None = WebhookSignature("secret-token", PUBLIC).sign(PATH, params)
    token, public = "secret-token", PUBLIC
    if what == "token":
        token = "other-token"
    elif what == "url":
        public = "https://proxy.internal:8080"
    elif what == "param":
        params = {**params, "Body": "Where is my order?!"}
    else:
        signature = None
    assert not WebhookSignature(token, public).valid(PATH, params, signature)
