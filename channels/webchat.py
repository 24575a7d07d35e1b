"""The web chat widget's side of the wire: who the visitor is, and what the JSON frames say.

A visitor is a random id kept in a cookie signed with the service's key (HMAC, itsdangerous), so a
visitor cannot write somebody else's id into their cookie and read that chat. A site that knows who
its signed-in user is may prove it as Chatwoot's widget does: it passes its own user id and
`hmac_sha256(site_secret, user_id)` in hex, which only the site and we can compute.

The protocol, one JSON object per WebSocket text frame:

    client → server  {"type": "message", "id": "<client-made unique id>", "text": "..."}
    server → client  {"type": "history", "messages": [<message>, ...]}   (on connect)
                     {"type": "message", "id", "author": "customer"|"bot"|"agent", "text", "at",
                      "choices"?: ["<label>", ...]}
                     {"type": "handoff", "text"}
                     {"type": "error", "code", "reason", "id"?}

A bot message offering options ("Did you mean…?") lists their labels in `choices`: the widget shows
them as quick-reply buttons under it, and a click sends the label as the visitor's message.

An error's `code` is for programs (`too_long`, `empty`, `unknown_type`...); its `reason` is the
sentence for the visitor, in their language, which the service fills in from the catalogue
(`webchat.<code>`): this module only says what went wrong, not in which words.

The client's id makes a re-sent message (after a reconnect) recognisable: it is part of the
provider id the inbound path dedupes on. Pure: no database, no customers, no dialog.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from itsdangerous import BadSignature, Signer

__all__ = [
    "COOKIE_MAX_AGE",
    "MAX_TEXT",
    "VISITOR_COOKIE",
    "Author",
    "ChatLine",
    "ClientMessage",
    "IdentityProof",
    "MessageRate",
    "ProtocolError",
    "VisitorCookies",
    "error_frame",
    "handoff_frame",
    "history_frame",
    "identity_hash",
    "message_frame",
    "new_visitor_id",
    "origin_allowed",
    "parse_client_frame",
    "parse_language",
    "read_client_frame",
]

MAX_TEXT: Final = 4000
VISITOR_COOKIE: Final = "sastre_chat"
COOKIE_MAX_AGE: Final = 365 * 24 * 3600
_VISITOR_ID: Final = re.compile(r"[A-Za-z0-9_-]{22,128}")
_CLIENT_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LANGUAGE: Final = re.compile(r"([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{1,8})*")
_USER_ID_MAX: Final = 255

Author = Literal["customer", "bot", "agent"]


class ProtocolError(ValueError):
    """A frame we refuse: `code` says why, `params` fill in the visitor's sentence for it, and
    `message_id` names their message if known."""

    def __init__(self, code: str, message_id: str | None = None, **params: object) -> None:
        super().__init__(code, params)
        self.code = code
        self.message_id = message_id
        self.params = params


def new_visitor_id() -> str:
    """A fresh visitor id: 24 random bytes, 32 url-safe characters (a valid webchat identity)."""
    return secrets.token_urlsafe(24)


class VisitorCookies:
    """Signs and checks the visitor cookie. A forged or altered cookie reads as no cookie."""

    def __init__(self, secret: bytes) -> None:
        self._signer = Signer(secret, salt="sastre.webchat.visitor", digest_method=hashlib.sha256)

    def sign(self, visitor_id: str) -> str:
        if not _VISITOR_ID.fullmatch(visitor_id):
            raise ValueError("not a visitor id")
        return self._signer.sign(visitor_id).decode()

    def read(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            visitor_id = self._signer.unsign(cookie).decode()
        except (BadSignature, UnicodeDecodeError):
            return None
        return visitor_id if _VISITOR_ID.fullmatch(visitor_id) else None


def identity_hash(site_secret: bytes, user_id: str) -> str:
    """What the embedding site computes for its user: HMAC-SHA256 in lowercase hex."""
    return hmac.new(site_secret, user_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class IdentityProof:
    """A site's claim "this visitor is my user `user_id`", with its HMAC."""

    user_id: str
    user_hash: str

    def verify(self, site_secret: bytes) -> bool:
        """Constant-time check of the HMAC (a timing difference must not leak the right one)."""
        if not self.user_id or len(self.user_id) > _USER_ID_MAX:
            return False
        expected = identity_hash(site_secret, self.user_id)
        return hmac.compare_digest(expected.encode(), self.user_hash.strip().lower().encode())


@dataclass(frozen=True, slots=True)
class ClientMessage:
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class ChatLine:
    """One message as the widget shows it."""

    id: str
    author: Author
    text: str
    at: datetime
    choices: tuple[str, ...] = ()  # options offered: quick-reply buttons under the message


def parse_client_frame(raw: str | bytes) -> ClientMessage:
    """A client frame, validated; raises ProtocolError saying what is wrong with it."""
    try:
        frame = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("not_json") from None
    return read_client_frame(frame)


def read_client_frame(frame: Any) -> ClientMessage:
    """A client frame already parsed (by a parser with limits of its own), validated."""
    if not isinstance(frame, dict):
        raise ProtocolError("not_an_object")
    kind = frame.get("type")
    if kind != "message":
        raise ProtocolError("unknown_type", type=repr(str(kind)[:40]))
    message_id = frame.get("id")
    if not isinstance(message_id, str) or not _CLIENT_ID.fullmatch(message_id):
        raise ProtocolError("bad_id")
    text = frame.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ProtocolError("empty", message_id)
    if len(text) > MAX_TEXT:
        raise ProtocolError("too_long", message_id, count=len(text), limit=MAX_TEXT)
    return ClientMessage(message_id, text.strip())


def parse_language(value: str | None) -> str | None:
    """The primary language of a tag or an Accept-Language header ("es-ES,es;q=0.9" → "es")."""
    if not value:
        return None
    first = value.split(",", 1)[0].split(";", 1)[0].strip()
    match = _LANGUAGE.fullmatch(first)
    return match.group(1).lower() if match else None


def _line(line: ChatLine) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "message",
        "id": line.id,
        "author": line.author,
        "text": line.text,
        "at": line.at.isoformat(),
    }
    if line.choices:
        frame["choices"] = list(line.choices)
    return frame


def message_frame(line: ChatLine) -> dict[str, Any]:
    return _line(line)


def history_frame(lines: Iterable[ChatLine]) -> dict[str, Any]:
    return {"type": "history", "messages": [_line(line) for line in lines]}


def handoff_frame(text: str) -> dict[str, Any]:
    return {"type": "handoff", "text": text}


def error_frame(code: str, reason: str, message_id: str | None = None) -> Mapping[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "reason": reason}
    if message_id is not None:
        frame["id"] = message_id
    return frame


def origin_allowed(origin: str | None, own_hosts: Iterable[str], allowed: Iterable[str]) -> bool:
    """May a page from `origin` open the chat socket? (Cross-site WebSocket hijacking.)

    Browsers always send Origin on a WebSocket handshake; a client that sends none is not a
    browser and carries no visitor's ambient cookies. Our own host is always allowed; other
    sites embedding the widget must be listed (their origin, or "*" for any)."""
    if origin is None:
        return True
    listed = {entry.rstrip("/").lower() for entry in allowed}
    if "*" in listed or origin.rstrip("/").lower() in listed:
        return True
    try:
        host = urlsplit(origin).netloc.lower()
    except ValueError:  # not a URL at all ("http://[::1"): no page of ours sent it
        return False
    return bool(host) and host in {h.lower() for h in own_hosts}


@dataclass(slots=True)
class MessageRate:
    """A token bucket per chat socket: `burst` messages at once, then `per_second`.

    A person typing never meets it; a script flooding the bot (and the database) does, and is
    told to slow down rather than disconnected."""

    burst: float = 8.0
    per_second: float = 1.0
    _tokens: float = field(init=False, default=0.0)
    _at: float | None = field(init=False, default=None)

    def allow(self, now: float) -> bool:
        if self._at is None:
            self._tokens = self.burst
        else:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
