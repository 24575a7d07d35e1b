"""The identity an incoming message's sender is known by, and whether the bot may answer them.

Most senders are an address crm_core can normalise (an E.164 number, an e-mail address), and
that is the identity looked up. An SMS can also come from a sender no customer writes from: a
short code, an alphanumeric sender id, or a number the phone number tables do not know (a new
range, a fictional one). Twilio does not post a message again after a 4xx, so such a message is
not refused: it is stored under a lead whose `phone` identity is the address exactly as Twilio
wrote it (so the next one from the same sender lands in the same place), marked `auto` so that
nothing answers it (no reply loops with a service's own autoresponder, and no account data for a
sender nobody can tie to a customer), with its reason in the metadata staff see on the timeline
(`sender`, `unanswered`). A sender on another channel (`whatsapp:`) is refused as not an SMS
(`channels.sms_senders`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from channels.base import ChannelName, InboundMessage
from channels.sms_senders import SenderKind, read_sender
from crm_core.identities import InvalidIdentity, normalise
from dialog.media import Medium

__all__ = ["SENDER", "UNANSWERED", "UNRECOGNISED", "identify"]

# Metadata keys on the stored message (and its timeline entry): what the sender is, and why
# nothing answered it.
SENDER: Final = "sender"
UNANSWERED: Final = "unanswered"
UNRECOGNISED: Final = "unrecognised_number"  # a SENDER value beside channels' SenderKind


def identify(on: Medium, message: InboundMessage, region: str) -> tuple[InboundMessage, str]:
    """The message as the turn takes it, and its sender's identity value.

    Raises InvalidIdentity for a sender that is no address on this medium (for an SMS: another
    channel's address, or nothing Twilio sends)."""
    if on.name is not ChannelName.SMS:
        return message, normalise(on.identity, message.address, region)
    sender = read_sender(message.address)
    if sender.refused:
        raise InvalidIdentity(on.identity, f"{sender.address!r} {sender.reason}")
    if sender.kind is SenderKind.NUMBER:
        try:
            return message, normalise(on.identity, sender.address, region)
        except InvalidIdentity as invalid:
            kind, reason = (
                UNRECOGNISED,
                f"not a number the phone number tables know ({invalid.reason}): "
                "stored as written, not answered",
            )
    else:
        kind, reason = sender.kind.value, sender.reason
    unanswered = replace(
        message, auto=True, metadata={**message.metadata, SENDER: kind, UNANSWERED: reason}
    )
    return unanswered, sender.address
