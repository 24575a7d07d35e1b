"""The identity an incoming message's sender is known by (`dialog.senders.identify`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.base import ChannelName, InboundMessage
from crm_core.identities import InvalidIdentity
from dialog.media import medium
from dialog.senders import SENDER, UNANSWERED, identify

SMS = medium(ChannelName.SMS)


def from_(address: str, channel: ChannelName = ChannelName.SMS) -> InboundMessage:
    return InboundMessage(channel, address, "hello", provider_id="p1", metadata={"To": "+1"})


def test_a_valid_number_is_normalised_and_answered() -> None:
    message = from_("+1 (415) 555-2671")
    taken, sender = identify(SMS, message, "US")
    assert (taken, sender) == (message, "+14155552671")


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("22395", "short_code"),
        ("MyBank", "alphanumeric"),
        ("+447700900123", "unrecognised_number"),
    ],
)
def test_a_sender_no_customer_writes_from_is_kept_as_written_and_not_answered(
    address: str, kind: str
) -> None:
    taken, sender = identify(SMS, from_(f" {address} "), "US")
    assert sender == address
    assert taken.auto  # stored, never answered
    assert taken.metadata[SENDER] == kind
    assert taken.metadata["To"] == "+1"  # the provider's extras are kept
    assert "not answered" in taken.metadata[UNANSWERED]


def test_an_unknown_number_s_reason_names_its_own_country() -> None:
    taken, _ = identify(SMS, from_("+447700900123"), "US")
    assert "in GB" in taken.metadata[UNANSWERED]
    assert "in US" not in taken.metadata[UNANSWERED]


def test_a_whatsapp_address_is_not_an_sms_sender() -> None:
    with pytest.raises(InvalidIdentity, match="takes SMS and MMS only"):
        identify(SMS, from_("whatsapp:+12136116957"), "US")


def test_other_media_are_normalised_as_before() -> None:
    email = medium(ChannelName.EMAIL)
    _, sender = identify(email, from_("Ana@Example.COM", ChannelName.EMAIL), "US")
    assert sender == "ana@example.com"
    with pytest.raises(InvalidIdentity):
        identify(email, from_("22395", ChannelName.EMAIL), "US")


@given(st.from_regex(r"[0-9]{3,8}|[A-Za-z][A-Za-z0-9 ]{0,10}", fullmatch=True))
def test_whatever_the_sender_the_message_is_kept_or_refused_never_an_answer_to_a_stranger(
    address: str,
) -> None:
    try:
        taken, sender = identify(SMS, from_(address), "US")
    except InvalidIdentity:
        return
    if taken.auto:
        assert sender == address.strip()
        assert taken.metadata[UNANSWERED]
    else:
        assert sender.startswith("+")  # answered only when it is a valid E.164 number
