"""The channel port: what every medium turns its traffic into, and what it sends.

An adapter (one module per medium) verifies and parses the upstream's payload into an
`InboundMessage`, hands it to the dialog layer, and delivers the replies. It knows nothing of
customers, consent or conversations. The web chat, the only medium so far, answers on the
visitor's own socket; `Sender`, `OutboundMessage` and `DeliveryFailed` are the sending side that
the SMS, e-mail and Telegram adapters will implement, and nothing implements them yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

__all__ = ["ChannelName", "DeliveryFailed", "InboundMessage", "OutboundMessage", "Sender"]


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


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    channel: ChannelName
    address: str
    text: str
    reference: str = ""  # our id for the message (idempotency at the provider)
    metadata: dict[str, str] = field(default_factory=dict)


class DeliveryFailed(Exception):
    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


class Sender(Protocol):
    async def send(self, message: OutboundMessage) -> str:
        """Deliver, return the provider's message id; raise DeliveryFailed."""
        ...
