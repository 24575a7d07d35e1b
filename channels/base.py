"""The channel port: what every medium turns its traffic into, and what it sends.

An adapter (one module per medium) verifies and parses the upstream's payload into an
`InboundMessage`, hands it to the dialog layer, and delivers the replies. It knows nothing of
customers, consent or conversations. The web chat, the only medium so far, answers on the
visitor's own socket. Every other medium sends through `Sender`: the outbox worker hands it an
`OutboundMessage` and the adapter turns the vendor's errors into `DeliveryFailed`, saying whether a
retry may help (and when, for a 429's Retry-After) and the provider's own error code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final, Protocol

__all__ = [
    "ChannelName",
    "DeliveryFailed",
    "InboundMessage",
    "OutboundMessage",
    "Sender",
    "storable",
]


class ChannelName(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    TELEGRAM = "telegram"
    WEBCHAT = "webchat"
    VOICE = "voice"  # call-backs: we call the customer's phone


@dataclass(frozen=True, slots=True)
class InboundMessage:
    channel: ChannelName
    address: str  # the sender on that channel: phone, e-mail, Telegram user id, web visitor id
    text: str
    provider_id: str  # the upstream's id for this message: the key for idempotency
    attachments: tuple[str, ...] = ()
    received_at: datetime | None = None
    language_hint: str | None = None  # e.g. the browser's language for the web chat
    verified: bool = False  # the channel proved the sender owns the address (signed web user id)
    subject: str | None = None  # e-mail's Subject
    thread_key: str | None = None  # e-mail's Message-ID, for threading the answer
    auto: bool = False  # an auto-reply or bulk mail: stored, never answered (no loops)
    metadata: dict[str, str] = field(default_factory=dict)  # provider extras (OptOutType, DKIM)
    # What the bot and the keywords read when it is not the whole text: an e-mail's newest reply,
    # without the quoted thread and the signature (the whole text is stored all the same).
    bot_text: str | None = None
    # Handed back by the re-ask sweeper, which took the message's wait for the bot already
    # (`dialog.inbound.reask`): asked again as it is, where a provider's redelivery must take it.
    reasked: bool = False

    def __post_init__(self) -> None:
        # What no database takes (`storable`) is replaced once, here, for every channel and
        # every field that is stored, so the message is kept and answered, never an error.
        for name in ("address", "text", "provider_id", "subject", "thread_key", "bot_text"):
            value = getattr(self, name)
            if value is not None and _UNSTORABLE.search(value):
                object.__setattr__(self, name, storable(value))
        if any(_UNSTORABLE.search(name) for name in self.attachments):
            object.__setattr__(self, "attachments", tuple(map(storable, self.attachments)))
        if any(_UNSTORABLE.search(k + v) for k, v in self.metadata.items()):
            clean = {storable(key): storable(value) for key, value in self.metadata.items()}
            object.__setattr__(self, "metadata", clean)


# A NUL (an SMS gateway's padding, a broken mail client): PostgreSQL refuses it in every text and
# JSON column. A lone surrogate (half of a UTF-16 pair, as decoding UTF-7 or `\\ud800` escapes
# leaves one): no UTF-8 writes it, so neither database driver can send it.
_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` with what no database column takes (see `_UNSTORABLE`) replaced by U+FFFD, the
    replacement character: something was there."""
    return _UNSTORABLE.sub("\ufffd", text)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    channel: ChannelName
    address: str
    text: str
    reference: str = ""  # our id for the message (idempotency at the provider)
    metadata: dict[str, str] = field(default_factory=dict)
    html: str | None = None  # e-mail's HTML part beside the text
    subject: str | None = None
    in_reply_to: str | None = None  # the Message-ID this answers (e-mail threading)
    references: tuple[str, ...] = ()
    unsubscribe_url: str | None = None  # marketing e-mail: List-Unsubscribe one-click target
    status_callback: str | None = None  # where the provider posts delivery states (SMS)


class DeliveryFailed(Exception):
    """A send that did not happen; `retryable` says whether trying again may help.

    `code` is the provider's own error code (Twilio's 21610, an SMTP 550), kept on the message
    for staff; `retry_after` is the seconds the provider asked us to wait (a 429's Retry-After),
    which the worker honours over its own backoff.
    """

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.code = code
        self.retry_after = retry_after


class Sender(Protocol):
    async def send(self, message: OutboundMessage) -> str:
        """Deliver, return the provider's message id; raise DeliveryFailed."""
        ...
