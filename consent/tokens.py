"""Signed links for customers: unsubscribe (RFC 8058 one-click), the confirmation of a double
opt-in, and the preference centre.

HMAC-signed with the service's secret key (itsdangerous): the link alone identifies the
customer, channel and topic, and cannot be forged or altered. They do not expire: CAN-SPAM wants
an unsubscribe link to keep working for at least 30 days after each send, and a customer should
be able to act on an old message.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from consent.types import GENERAL, Channel
from crm_core.sqltypes import MAX_ID, whole_number

__all__ = ["BadToken", "ConfirmLink", "LinkSigner", "PreferenceLink", "UnsubscribeLink"]


class BadToken(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class UnsubscribeLink:
    customer_id: int
    channel: Channel
    topic: str = GENERAL


@dataclass(frozen=True, slots=True)
class ConfirmLink:
    """The second step of double opt-in; the message carrying it must carry no advertising."""

    customer_id: int
    channel: Channel
    topic: str = GENERAL


@dataclass(frozen=True, slots=True)
class PreferenceLink:
    customer_id: int
    channel: Channel  # the channel the link was delivered on: opening it proves that address


class LinkSigner:
    def __init__(self, secret: bytes) -> None:
        self._unsubscribe = URLSafeSerializer(secret, salt="sastre.unsubscribe")
        self._preferences = URLSafeSerializer(secret, salt="sastre.preferences")
        self._confirm = URLSafeSerializer(secret, salt="sastre.confirm")

    def confirm_token(self, link: ConfirmLink) -> str:
        return str(self._confirm.dumps([link.customer_id, link.channel.value, link.topic]))

    def read_confirm(self, token: str) -> ConfirmLink:
        customer_id, channel, topic = self._load(self._confirm, token, 3)
        return ConfirmLink(int(customer_id), Channel(channel), topic)

    def unsubscribe_token(self, link: UnsubscribeLink) -> str:
        return str(self._unsubscribe.dumps([link.customer_id, link.channel.value, link.topic]))

    def preferences_token(self, link: PreferenceLink) -> str:
        return str(self._preferences.dumps([link.customer_id, link.channel.value]))

    def read_unsubscribe(self, token: str) -> UnsubscribeLink:
        customer_id, channel, topic = self._load(self._unsubscribe, token, 3)
        return UnsubscribeLink(int(customer_id), Channel(channel), topic)

    def read_preferences(self, token: str) -> PreferenceLink:
        customer_id, channel = self._load(self._preferences, token, 2)
        return PreferenceLink(int(customer_id), Channel(channel))

    @staticmethod
    def _load(serializer: URLSafeSerializer, token: str, size: int) -> list[str]:
        """The payload as strings, or BadToken: a signed payload is still checked for shape."""
        try:
            payload = serializer.loads(token)
        except BadSignature:
            raise BadToken("this link is not valid: it may be incomplete or altered") from None
        if not isinstance(payload, list) or len(payload) != size:
            raise BadToken("this link is not valid")
        values = [str(item) for item in payload]
        # A customer id the databases can hold (a signed link with a larger one is still none).
        if whole_number(values[0], below=MAX_ID) is None or values[1] not in set(Channel):
            raise BadToken("this link is not valid")
        return values
