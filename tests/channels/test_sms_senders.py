"""Reading Twilio's `From`: numbers, short codes, alphanumeric sender ids, other channels."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.sms_senders import MAX_SENDER, SenderKind, read_sender
from channels.sms_webhooks import MalformedWebhook, parse_inbound


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("+14155552671", SenderKind.NUMBER),
        (" +447700900123 ", SenderKind.NUMBER),
        ("22395", SenderKind.SHORT_CODE),
        ("729", SenderKind.SHORT_CODE),
        ("MyBank", SenderKind.ALPHANUMERIC),
        ("VERIFY 2", SenderKind.ALPHANUMERIC),
        ("whatsapp:+12136116957", SenderKind.OTHER_CHANNEL),
        ("messenger:1234567890", SenderKind.OTHER_CHANNEL),
        ("rcs:+12136116957", SenderKind.OTHER_CHANNEL),
        ("", SenderKind.MALFORMED),
        ("not a number", SenderKind.MALFORMED),  # longer than a sender id may be
        ("+1 415 CALL-NOW", SenderKind.MALFORMED),
        ("+1415\n5552671", SenderKind.MALFORMED),
        ("9" * (MAX_SENDER + 1), SenderKind.MALFORMED),
    ],
)
def test_a_sender_is_read_by_its_shape(raw: str, kind: SenderKind) -> None:
    sender = read_sender(raw)
    assert sender.kind is kind
    assert sender.address == raw.strip()


@given(st.from_regex(r"[0-9]{3,8}", fullmatch=True))
def test_three_to_eight_digits_without_a_plus_are_a_short_code_never_answered(raw: str) -> None:
    sender = read_sender(raw)
    assert sender.kind is SenderKind.SHORT_CODE
    assert not sender.answerable
    assert not sender.refused


@given(
    st.from_regex(r"[a-z][a-z0-9]{1,12}", fullmatch=True),
    st.from_regex(r"\+[1-9][0-9]{6,13}", fullmatch=True),
)
def test_any_channel_prefix_is_refused_as_not_an_sms(channel: str, number: str) -> None:
    sender = read_sender(f"{channel}:{number}")
    assert sender.refused
    assert not sender.answerable
    assert channel in sender.reason
    assert "SMS" in sender.reason


@given(st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True))
def test_an_e164_shaped_sender_is_a_number_to_normalise(raw: str) -> None:
    assert read_sender(raw).answerable


def test_the_webhook_form_from_another_channel_is_refused_naming_from() -> None:
    form = {"MessageSid": "SM" + "a1" * 16, "From": "whatsapp:+12136116957", "Body": "hi"}
    with pytest.raises(MalformedWebhook) as refused:
        parse_inbound(form)
    assert refused.value.field == "From"
    assert "whatsapp" in refused.value.reason


def test_a_short_code_s_form_is_parsed_as_written() -> None:
    form = {"MessageSid": "SM" + "a1" * 16, "From": "22395", "Body": "Your code is 1234"}
    assert parse_inbound(form).address == "22395"
