"""The registry of media: every name of the three vocabularies is accounted for, and they agree."""

from __future__ import annotations

import pytest

from channels import webchat
from channels.base import ChannelName
from consent.snapshot import CHANNEL_IDENTITIES
from consent.types import Channel
from crm_core.models import IdentityKind
from dialog.media import (
    NOT_MEDIA,
    Medium,
    bot_part,
    by_consent_channel,
    media,
    medium,
    register,
    writing_channels,
)


def test_every_channel_name_is_a_medium() -> None:
    assert {m.name for m in media()} == set(ChannelName)


def test_every_consent_channel_belongs_to_one_medium() -> None:
    channels = [m.consent for m in media()]
    assert sorted(channels) == sorted(Channel)
    assert all(by_consent_channel(channel).consent is channel for channel in Channel)


def test_every_identity_kind_is_a_medium_or_deliberately_none() -> None:
    assert {m.identity for m in media()} | NOT_MEDIA == set(IdentityKind)
    assert not {m.identity for m in media()} & NOT_MEDIA


def test_a_medium_is_named_as_its_consent_channel() -> None:
    # Conversations store the medium's name, and what reads them (the rasa-sdk actions) takes
    # it for the consent channel of the same name.
    assert all(m.name.value == m.consent.value for m in media())


def test_consent_reaches_a_channel_by_the_identity_its_medium_is_known_by() -> None:
    # consent may not import dialog: its own map must say what the registry says.
    assert {m.consent: m.identity for m in media()} == dict(CHANNEL_IDENTITIES)


def test_each_identity_writes_on_one_medium_and_a_phone_by_sms() -> None:
    written = writing_channels()
    assert written[IdentityKind.PHONE] is Channel.SMS
    assert set(written) == {m.identity for m in media() if m.writes}


def test_the_web_chat_keeps_its_limit_and_e_mail_and_sms_have_none() -> None:
    assert medium(ChannelName.WEBCHAT).max_text == webchat.MAX_TEXT == 4000
    assert medium(ChannelName.EMAIL).max_text is None
    assert medium(ChannelName.SMS).max_text is None


def test_the_bot_is_given_the_start_of_a_long_message() -> None:
    text = "x" * 20_000
    part = bot_part(ChannelName.EMAIL, text)
    assert part == text[: medium(ChannelName.EMAIL).bot_text]
    assert bot_part(ChannelName.SMS, "short") == "short"


def test_a_medium_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError, match="registered already"):
        register(Medium(ChannelName.SMS, IdentityKind.PHONE, Channel.SMS, None, 10))


def test_a_medium_must_give_the_bot_some_text() -> None:
    with pytest.raises(ValueError, match="some of the text"):
        Medium(ChannelName.SMS, IdentityKind.PHONE, Channel.SMS, None, 0)
