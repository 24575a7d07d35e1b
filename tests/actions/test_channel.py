"""The consent channel of a conversation's medium, read from the one registry of media."""

from __future__ import annotations

import pytest

from actions.channel import consent_channel
from dialog.media import media


def test_every_medium_is_its_registered_consent_channel() -> None:
    for entry in media():
        assert consent_channel(entry.name.value) is entry.consent


@pytest.mark.parametrize("value", [None, "", "fax", 3])
def test_no_channel_or_an_unknown_one_is_none(value: object) -> None:
    assert consent_channel(value) is None
