"""What Twilio posts to us: incoming messages and delivery states, signed by Twilio.

Twilio signs every webhook: `X-Twilio-Signature` is base64(HMAC-SHA1(auth token, the full URL
it requested + every POST parameter's name and value, sorted by name)). The URL is the one
Twilio knows, our public one: behind a proxy the host we see is not it, so the caller passes the
configured public URL. `twilio.request_validator.RequestValidator` is the reference: ours computes
the same (tests/channels/test_sms_webhooks.py), and the library checks the URL's port variants.

A webhook whose URL a Webhook Rule points at a Webhook Setting with a signature is signed with
that Setting's SharedKey instead, and says so in `X-Twilio-Webhooks-Signature-Settings`
(`key=<SharedKey id>,algorithm=HMAC_SHA256`): the same string signed with the key's secret and
that algorithm. Several keys can be held at once, by id, so a key is rotated without a moment in
which Twilio's signatures are refused. The library checks those (its `validate` takes the
algorithm); an algorithm it does not know is refused.

The forms are parsed into our own types: an incoming message into an `InboundMessage` (its
MessageSid is the key for idempotency, MMS media are its attachments, and Twilio's own reading of
a keyword, `OptOutType`, rides along in its metadata), a status callback into a
`DeliveryReport` with our vocabulary of delivery states. Pure: nothing here touches a database.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from channels.base import ChannelName, InboundMessage
from channels.sms_senders import read_sender

__all__ = [
    "EMPTY_TWIML",
    "KEYWORD",
    "SIGNATURE_HEADER",
    "SIGNATURE_SETTINGS_HEADER",
    "DeliveryReport",
    "MalformedWebhook",
    "WebhookSignature",
    "delivery_state",
    "parse_inbound",
    "parse_status",
]

SIGNATURE_HEADER: Final = "X-Twilio-Signature"
# The answer to an incoming message: nothing to say now, replies go through the outbox (tracked,
# retried and rate-limited like every message).
EMPTY_TWIML: Final = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
# The metadata key under which a channel says what keyword the provider read in the message:
# a value of consent.keywords.KeywordKind ("opt_out", "opt_in", "help").
KEYWORD: Final = "keyword"
MAX_MEDIA: Final = 10  # Twilio's own bound on media per MMS
_ALGORITHMS: Final = frozenset({HMAC_SHA1, HMAC_SHA256})  # what RequestValidator can check
_KEY_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a SharedKey id, or an algorithm's name

_OPT_OUT_TYPES: Final = {"STOP": "opt_out", "START": "opt_in", "HELP": "help"}
# Twilio's message states, in our words. `accepted` and `scheduled` are Messaging Service
# states before `queued`; `canceled` (a scheduled message called off) never went out.
_STATES: Final = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "sending",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "partially_delivered": "sent",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",
}
_SID: Final = re.compile(r"(SM|MM)[0-9a-fA-F]{32}")
# Extras worth keeping with the message (the rest are Twilio's guesses at geography).
_EXTRAS: Final = ("To", "MessagingServiceSid", "NumSegments", "FromCountry", "OptOutType")


# A POSTed form: aiohttp's MultiDict (every value of a repeated name is signed), or a dict.
Form = Mapping[str, str]


class MalformedWebhook(ValueError):
    """A signed form that is not what Twilio sends (a 400, naming the field)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


class WebhookSignature:
    """Checks `X-Twilio-Signature` against our public URL and the auth token, or the SharedKey
    a Webhook Setting signed with (`shared_keys`: secrets by SharedKey id)."""

    def __init__(
        self, auth_token: str, public_url: str, shared_keys: Mapping[str, str] | None = None
    ) -> None:
        self._validator = RequestValidator(auth_token)
        self._key = auth_token.encode("utf-8")
        self._public_url = public_url.rstrip("/")
        self._shared = {
            key: RequestValidator(secret) for key, secret in (shared_keys or {}).items()
        }

    def url_for(self, path_qs: str) -> str:
        """The URL Twilio requested: our public base, and the path and query it used."""
        return self._public_url + path_qs

    def valid(
        self,
        path_qs: str,
        params: Mapping[str, str],
        signature: str | None,
        settings: str | None = None,
    ) -> bool:
        return self.refusal(path_qs, params, signature, settings) is None

    def refusal(
        self,
        path_qs: str,
        params: Mapping[str, str],
        signature: str | None,
        settings: str | None = None,
    ) -> str | None:
        """Why the request is not Twilio's, or None when its signature holds. `settings` is
        `X-Twilio-Webhooks-Signature-Settings`, when the request has one."""
        if not signature:
            return f"{SIGNATURE_HEADER} is missing"
        url = self.url_for(path_qs)
        if settings:
            return self._shared_refusal(url, params, signature, settings)
        if not self._valid_with_token(url, params, signature):
            return f"{SIGNATURE_HEADER} does not match"
        return None

    def _shared_refusal(
        self, url: str, params: Mapping[str, str], signature: str, settings: str
    ) -> str | None:
        key = _setting(settings, "key")
        validator = self._shared.get(key)
        if validator is None:
            # Named when it looks like an id, so whoever reads Twilio's error log knows which
            # key to add here; anything else a sender put there is not repeated.
            named = f": {key}" if _KEY_ID.fullmatch(key) else ""
            return f"signed with a shared key not held here{named}"
        algorithm = get_signature_algorithm(settings)
        if algorithm.upper() not in _ALGORITHMS:
            shown = algorithm if _KEY_ID.fullmatch(algorithm) else "an algorithm"
            return f"signed with {shown}, which the twilio library here cannot check"
        if not validator.validate(url, params, signature, algorithm):
            return f"{SIGNATURE_HEADER} does not match shared key {key} ({algorithm})"
        return None

    def _valid_with_token(self, url: str, params: Mapping[str, str], signature: str) -> bool:
        # Twilio signs the URL it requested; the validator also tries it with the port added and
        # removed (two HMACs and URL parsing for every request). The URL as configured is the
        # usual one: checked first, compared in constant time.
        expected = self.signature(url, params).encode("ascii")
        if hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
            return True
        return bool(self._validator.validate(url, params, signature))

    def sign(self, path_qs: str, params: Mapping[str, str]) -> str:
        """The signature Twilio would send (the fake and the benchmark post with it)."""
        return self.signature(self.url_for(path_qs), params)

    def signature(self, url: str, params: Mapping[str, str]) -> str:
        """Twilio's signature of a request to `url` with `params`: what
        `RequestValidator.compute_signature` computes (tests hold it to that), in one C call for
        the HMAC instead of the library's pure-Python set-up of one, on every webhook.

        base64(HMAC-SHA1(token, url + each name and value, by name, each value once, sorted)).
        A MultiDict signs every value of a repeated name."""
        every = getattr(params, "getall", None)
        signed = url + "".join(
            name + value
            for name in sorted(set(params))
            for value in sorted(set(every(name) if every else (params[name],)))
        )
        return base64.b64encode(hmac.digest(self._key, signed.encode("utf-8"), "sha1")).decode()


def _setting(header: str, name: str) -> str:
    """One `name=value` of X-Twilio-Webhooks-Signature-Settings ("" when absent), read as the
    library reads its algorithm (`get_signature_algorithm`)."""
    for part in header.split(","):
        key, separator, value = part.partition("=")
        if separator and key.strip() == name and value.strip():
            return value.strip()
    return ""


def _required(form: Form, name: str) -> str:
    value = (form.get(name) or "").strip()
    if not value:
        raise MalformedWebhook(name, "is missing")
    return value


def _sid(form: Form) -> str:
    sid = _required(form, "MessageSid")
    if not _SID.fullmatch(sid):
        raise MalformedWebhook("MessageSid", "is not a Twilio message SID")
    return sid


def _media(form: Form) -> tuple[tuple[str, ...], dict[str, str]]:
    raw = (form.get("NumMedia") or "0").strip()
    if not raw.isdecimal() or int(raw) > MAX_MEDIA:
        raise MalformedWebhook("NumMedia", f"must be a number from 0 to {MAX_MEDIA}")
    urls: list[str] = []
    types: dict[str, str] = {}
    for n in range(int(raw)):
        url = _required(form, f"MediaUrl{n}")
        if not url.startswith(("https://", "http://")):
            raise MalformedWebhook(f"MediaUrl{n}", "is not an http(s) URL")
        urls.append(url)
        types[f"MediaContentType{n}"] = (form.get(f"MediaContentType{n}") or "").strip()
    return tuple(urls), types


def parse_inbound(form: Form) -> InboundMessage:
    """An incoming SMS or MMS as the inbound path takes it. MalformedWebhook if it is not one.

    The text is kept exactly as sent (an empty body is an MMS with only media). The media are
    the attachments, by URL (Twilio keeps them until deleted), their types in the metadata."""
    sid = _sid(form)
    sender = _required(form, "From")
    if (read := read_sender(sender)).refused:  # another channel's address (whatsapp:): no SMS
        raise MalformedWebhook("From", f"{read.address!r} {read.reason}")
    attachments, types = _media(form)
    metadata = {name: value for name in _EXTRAS if (value := (form.get(name) or "").strip())}
    metadata.update(types)
    opt_out = metadata.get("OptOutType", "").upper()
    if opt_out in _OPT_OUT_TYPES:
        # Twilio acted on it already (it blocks the number after STOP): our books must agree,
        # even for a keyword it was taught that ours does not know.
        metadata[KEYWORD] = _OPT_OUT_TYPES[opt_out]
    return InboundMessage(
        ChannelName.SMS,
        sender,
        form.get("Body") or "",
        provider_id=sid,
        attachments=attachments,
        metadata=metadata,
    )


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """One status callback: which message, the state it reached, and Twilio's error if any."""

    provider_id: str
    state: str  # queued, sending, sent, delivered, read, failed, undelivered
    address: str  # the recipient ('To')
    code: str | None = None
    reason: str | None = None


def delivery_state(status: str) -> str:
    """Twilio's MessageStatus in our words; MalformedWebhook for one Twilio does not send."""
    try:
        return _STATES[status.strip().lower()]
    except KeyError:
        raise MalformedWebhook("MessageStatus", f"{status!r} is not a message status") from None


def parse_status(form: Form) -> DeliveryReport:
    status = _required(form, "MessageStatus")
    code = (form.get("ErrorCode") or "").strip() or None
    # Twilio's codes are five digits; the outbox keeps ten at most (`CODE_LENGTH` is more).
    if code is not None and not (code.isascii() and code.isdecimal() and len(code) <= 10):
        raise MalformedWebhook("ErrorCode", "is not an error code (at most 10 digits)")
    return DeliveryReport(
        provider_id=_sid(form),
        state=delivery_state(status),
        address=_required(form, "To"),
        code=code,
        reason=(form.get("ErrorMessage") or "").strip() or None,
    )
