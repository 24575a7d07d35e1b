"""The consent channel of the conversation an action answers in.

The `channel` slot holds the conversation's medium, as Sastre names it (`ChannelName`: where the
customer wrote last). Which consent channel that is comes from the one registry of media
(`dialog.media`), never from the two names happening to match. `dialog.media` is a leaf of
`dialog` (it imports only channels, consent and crm_core), so the actions that `dialog` runs can
read it without a cycle.
"""

from __future__ import annotations

from consent.types import Channel
from dialog.media import medium

__all__ = ["consent_channel"]


def consent_channel(value: object) -> Channel | None:
    """The consent channel of a medium's name; None for no name or one nobody registered (an
    action then says it cannot tell which channel, rather than guess one)."""
    if not isinstance(value, str):
        return None
    try:
        return medium(value).consent
    except (KeyError, ValueError):  # ValueError: not a ChannelName at all
        return None
