"""The web chat: GET /chat (a demo shop page with the widget), GET /ws/chat (its WebSocket) and
GET /chat/texts (the widget's words in the visitor's language, from the catalogue).

The visitor is the random id in a signed, HttpOnly cookie scoped to the socket's path. Every
message goes through the one inbound path (`InboundProcessor.handle`) with the client's message id
in its provider id, so a message re-sent after a reconnect is stored and answered once. A
(re)connect first receives the open conversation's history: a reload resumes the conversation.

Identity verification (Chatwoot's scheme): the embedding site passes `user_id` and
`user_hash = hex(hmac_sha256(SASTRE_WEBCHAT_IDENTITY_SECRET, user_id))`. When it checks out and a
customer has that external id, the visitor's webchat identity is attached to them (verified)
before the first message, so the chat lands on the known customer. A chat tied that way is only
resumed with the proof again: on a shared computer, the next person who opens the widget without
being signed in gets a new visitor, not the previous user's conversation. The user id is
normalised once (as identities are stored), and that one string is both checked and looked up.

Abuse limits (`sastre.web.chat_limits`): a socket without a visitor cookie is a new visitor,
refused with a 429 before the upgrade when its client address has opened too many; a new
visitor's first message makes a lead, refused with an error frame when the address has made too
many. The handshake only reads (a reader session: it never waits for a writer), except when a
verified user's identity is attached.

Every refusal and notice the visitor reads is in the language the socket was opened with (then
the service's default), from the catalogue (`sastre.web.chat_wording`); the error frame's `code`
and the 429's `error` stay the same in every language, for programs.

The widget fetches its texts before it shows itself (`sastre.web.widget_texts`): a public,
cookie-less JSON document that any cache may keep (revalidated by ETag, as the widget's script
is), readable cross-site by the same pages that may open the socket.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import ChannelName, InboundMessage
from channels.webchat import (
    COOKIE_MAX_AGE,
    VISITOR_COOKIE,
    Author,
    ChatLine,
    ClientMessage,
    IdentityProof,
    ProtocolError,
    VisitorCookies,
    error_frame,
    handoff_frame,
    history_frame,
    message_frame,
    new_visitor_id,
    origin_allowed,
    parse_language,
    read_client_frame,
)
from crm_core.customers import CustomerNotFound, IdentityConflict, attach_identity, find_customer
from crm_core.identities import InvalidIdentity, normalise
from crm_core.models import Identity, IdentityKind
from dialog.choices import CHOICE_SLOT, PendingChoice
from dialog.history import open_conversation, transcript
from dialog.models import Conversation, ConversationState, Direction, Message
from dialog.turns import BotUnanswered
from sastre.appkeys import CHAT_LIMITS, INBOUND, READER, SESSIONMAKER, SETTINGS
from sastre.config import Settings
from sastre.web.chat_limits import ChatLimits
from sastre.web.chat_wording import limit_refusal, refusal
from sastre.web.client_address import request_client
from sastre.web.console import HEADERS as STATIC_HEADERS
from sastre.web.console import STATIC_DIR
from sastre.web.errors import json_error
from sastre.web.json_input import UnacceptableJson
from sastre.web.json_input import loads as load_json
from sastre.web.widget_texts import widget_texts
from wording import translate

__all__ = ["HEADERS", "CookiePolicy", "abuse_limits", "cookie_policy", "routes"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

PAGE: Final = "chat.html"
SOCKET_PATH: Final = "/ws/chat"
TEXTS_PATH: Final = "/chat/texts"
HISTORY_LIMIT: Final = 50
# The console's policy, plus the one thing this page needs: its own WebSocket ('self' covers
# ws:/wss: on the same host in CSP3; said explicitly for older engines).
HEADERS: Final = {
    **STATIC_HEADERS,
    "Content-Security-Policy": STATIC_HEADERS["Content-Security-Policy"] + "; connect-src 'self'",
}
# A frame the server cannot take (RFC 6455 1011): the visitor sees the reason, not a traceback.
CLOSE_INTERNAL_ERROR: Final = 1011


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    samesite: Literal["Lax", "None"]
    secure: bool


def cookie_policy(public_url: str, other_origins: Sequence[str]) -> CookiePolicy:
    """The visitor cookie's attributes.

    The widget on another site (listed in SASTRE_WEBCHAT_ORIGINS) opens a cross-site socket,
    which never carries a `SameSite=Lax` cookie: its visitors could not resume a chat. It needs
    `SameSite=None`, which browsers accept only with `Secure`, that is over HTTPS. Without other
    sites, or over plain HTTP (local development, where a Secure cookie is refused), the cookie
    stays `Lax`: all that is needed, and a little stricter."""
    https = public_url.startswith("https://")
    if https and any(other_origins):
        return CookiePolicy("None", secure=True)
    return CookiePolicy("Lax", secure=https)


async def abuse_limits(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the per-address counts of new visitors and leads."""
    settings = app[SETTINGS]
    app[CHAT_LIMITS] = ChatLimits.from_settings(settings)
    if settings.webchat_origin_list and not settings.external_url.startswith("https://"):
        log.warning(
            "SASTRE_WEBCHAT_ORIGINS lists other sites but SASTRE_PUBLIC_URL is not https: "
            "their visitors' chats cannot be resumed (a cross-site cookie needs HTTPS)"
        )
    yield


@dataclass(frozen=True, slots=True)
class Visitor:
    id: str
    verified: bool
    known: bool  # has a customer already: their next message makes no new lead
    problem: str | None = None  # to tell the visitor: a code of sastre.web.chat_wording


@routes.get("/chat")
async def chat_page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / PAGE, headers=HEADERS)


def _foreign_origin(request: web.Request) -> web.Response | None:
    """A 403 for a page from a site that may not embed the chat (nor read its texts)."""
    settings = request.app[SETTINGS]
    origin = request.headers.get("Origin")
    own_hosts = {request.host, urlsplit(settings.external_url).netloc}
    if origin_allowed(origin, own_hosts, settings.webchat_origin_list):
        return None
    return json_error(
        403,
        "origin not allowed",
        f"{origin} may not open the chat: list it in SASTRE_WEBCHAT_ORIGINS",
    )


def _visitor_language(request: web.Request) -> str | None:
    """What the widget asked for (`lang`: its data-language, the page's or the browser's), else
    the browser's Accept-Language."""
    return parse_language(request.query.get("lang")) or parse_language(
        request.headers.get("Accept-Language")
    )


@routes.get(TEXTS_PATH)
async def chat_texts(request: web.Request) -> web.StreamResponse:
    """The widget's words and the chat's length limit, in the visitor's language."""
    forbidden = _foreign_origin(request)
    if forbidden is not None:
        return forbidden
    document = widget_texts(_visitor_language(request), request.app[SETTINGS].default_language)
    body = json.dumps(document, ensure_ascii=False, sort_keys=True).encode()
    headers = {
        "Cache-Control": "public, no-cache",
        # The answer depends on the language header when `lang` is absent, and on the page's
        # origin for the CORS header: a shared cache must keep them apart.
        "Vary": "Origin, Accept-Language",
        "X-Content-Type-Options": "nosniff",
    }
    origin = request.headers.get("Origin")
    if origin is not None:  # allowed, or refused above; no credentials are ever involved
        headers["Access-Control-Allow-Origin"] = origin
    etag = hashlib.sha256(body).hexdigest()[:32]
    if any(tag.value in (etag, "*") for tag in request.if_none_match or ()):
        response = web.Response(status=304, headers=headers)
    else:
        response = web.Response(body=body, content_type="application/json", headers=headers)
    response.etag = etag
    return response


@routes.get(SOCKET_PATH)
async def chat_socket(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    forbidden = _foreign_origin(request)
    if forbidden is not None:
        return forbidden
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
    if not ws.can_prepare(request):
        raise web.HTTPBadRequest(reason="expected a WebSocket upgrade")
    cookies = VisitorCookies(settings.secret())
    returning = cookies.read(request.cookies.get(VISITOR_COOKIE))
    address = request_client(request, settings.trusted_proxy_networks)
    language, default = _visitor_language(request), settings.default_language
    if returning is None:
        refused = await request.app[CHAT_LIMITS].new_visitor(address)
        if refused is not None:
            response = json_error(
                429, "too many new chats", limit_refusal(refused, language, default)
            )
            response.headers["Retry-After"] = str(refused.retry_after)
            return response
    visitor = await _visitor(request.app, settings, returning, request.query)
    async with request.app[READER]() as session:
        history = await transcript(
            session, ChannelName.WEBCHAT, visitor.id, HISTORY_LIMIT, region=settings.default_region
        )
        conversation = await open_conversation(
            session, ChannelName.WEBCHAT, visitor.id, region=settings.default_region
        )
        with_human = conversation is not None and conversation.state in (
            ConversationState.QUEUED.value,
            ConversationState.ASSIGNED.value,
        )

    policy = cookie_policy(settings.external_url, settings.webchat_origin_list)
    ws.set_cookie(
        VISITOR_COOKIE,
        cookies.sign(visitor.id),
        max_age=COOKIE_MAX_AGE,
        path=SOCKET_PATH,
        httponly=True,
        samesite=policy.samesite,
        secure=policy.secure,
    )
    await ws.prepare(request)
    # From here on the connection is a WebSocket: nothing may escape to the error middleware,
    # which would write an HTTP response onto it. A failure closes the socket with a reason.
    try:
        if visitor.problem:
            notice = refusal(visitor.problem, language, default)
            await ws.send_json(error_frame(visitor.problem, notice))
        await ws.send_json(history_frame(_with_offer([_line(m) for m in history], conversation)))
        if with_human:
            notice = translate(language, "webchat.handoff", default=settings.default_language)
            await ws.send_json(handoff_frame(notice))
        state = _Socket(visitor, language, address)
        limits = request.app[CHAT_LIMITS]
        async for frame in ws:
            # The visitor's bucket, shared by all their sockets (a new visitor's id becomes
            # theirs with their first message).
            rate = limits.message_rate(state.visitor.id)
            if frame.type is WSMsgType.TEXT and not rate.allow(time.monotonic()):
                await ws.send_json(
                    error_frame("slow_down", refusal("slow_down", language, default))
                )
            elif frame.type is WSMsgType.TEXT:
                await _answer(request, ws, frame.data, state)
            elif frame.type is WSMsgType.BINARY:
                await ws.send_json(error_frame("binary", refusal("binary", language, default)))
            elif frame.type is WSMsgType.ERROR:
                break
    except ConnectionResetError:
        pass  # the visitor left mid-answer: what they sent is stored, the history has the reply
    except Exception:
        log.exception("webchat: the socket of visitor %s failed", visitor.id[:8])
        await ws.close(
            code=CLOSE_INTERNAL_ERROR, message=b"the chat failed on our side: please reconnect"
        )
    return ws


@dataclass(slots=True)
class _Socket:
    """What one open socket knows of its visitor."""

    visitor: Visitor
    language: str | None
    address: str


async def _visitor(
    app: web.Application,
    settings: Settings,
    returning: str | None,
    query: Mapping[str, str],
) -> Visitor:
    """Who this connection chats as. Reads only, except to attach a verified user's identity.

    A verified chat is resumed only with a valid proof for its user: without one (none given,
    or a wrong one), the browser gets a new visitor rather than that user's conversation."""
    state: bool | None = None  # the returning visitor's identity: None = no customer yet
    if returning is not None:
        async with app[READER]() as session:
            state = await _identity_state(session, returning)

    def anonymous(problem: str | None = None) -> Visitor:
        if returning is None or state is True:
            return Visitor(new_visitor_id(), verified=False, known=False, problem=problem)
        return Visitor(returning, verified=False, known=state is not None, problem=problem)

    user_id, user_hash = query.get("user_id"), query.get("user_hash")
    if not user_id and not user_hash:
        return anonymous()
    if not user_id or not user_hash:
        return anonymous("identity_incomplete")
    secret = _site_secret(settings)
    if secret is None:
        return anonymous("identity_unconfigured")
    # One string, the stored form, is both checked and looked up: a proof for " C-1" (another
    # user of the site, as far as the HMAC goes) must not open C-1's chat.
    try:
        external_id = normalise(IdentityKind.EXTERNAL, user_id, settings.default_region)
    except InvalidIdentity:
        external_id = None
    if external_id is None or not IdentityProof(external_id, user_hash).verify(secret):
        return anonymous("identity_failed")
    async with app[READER]() as session:
        try:
            customer = await find_customer(
                session, IdentityKind.EXTERNAL, external_id, settings.default_region
            )
        except (CustomerNotFound, InvalidIdentity):
            return anonymous()  # a site user we do not know yet: an anonymous lead
    async with app[SESSIONMAKER].begin() as session:
        for candidate in (returning or new_visitor_id(), new_visitor_id()):
            try:
                async with session.begin_nested():
                    await attach_identity(
                        session,
                        customer.id,
                        IdentityKind.WEBCHAT,
                        candidate,
                        settings.default_region,
                        verified=True,
                    )
            except IdentityConflict:
                # This browser chatted as somebody else (anonymously, or another signed-in
                # user): the known customer gets a fresh visitor id rather than that chat.
                continue
            return Visitor(candidate, verified=True, known=True)
    raise RuntimeError("a fresh visitor id is already taken")  # pragma: no cover


async def _identity_state(session: AsyncSession, visitor_id: str) -> bool | None:
    """None if no customer holds this visitor id yet, else whether it was verified."""
    verified: bool | None = await session.scalar(
        select(Identity.verified).where(
            Identity.kind == IdentityKind.WEBCHAT.value, Identity.value == visitor_id
        )
    )
    return None if verified is None else bool(verified)


def _site_secret(settings: Settings) -> bytes | None:
    secret: Any = getattr(settings, "webchat_identity_secret", None)
    if secret is None:
        return None
    value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
    return str(value).encode() or None


async def _answer(
    request: web.Request, ws: web.WebSocketResponse, data: str, socket: _Socket
) -> None:
    default = request.app[SETTINGS].default_language
    try:
        incoming = _read_frame(data)
    except ProtocolError as e:
        reason = refusal(e.code, socket.language, default, **e.params)
        await ws.send_json(error_frame(e.code, reason, e.message_id))
        return
    visitor = socket.visitor
    if not visitor.known:
        refused = await request.app[CHAT_LIMITS].new_lead(socket.address)
        if refused is not None:
            reason = limit_refusal(refused, socket.language, default)
            await ws.send_json(error_frame(refused.code, reason, incoming.id))
            return
    message = InboundMessage(
        ChannelName.WEBCHAT,
        visitor.id,
        incoming.text,
        provider_id=f"{visitor.id}:{incoming.id}",
        language_hint=socket.language,
        verified=visitor.verified,
    )
    try:
        result = await request.app[INBOUND].handle(message)
    except Exception as error:
        if isinstance(error, BotUnanswered):  # stored: the client's resend asks again
            log.warning("webchat: message %s: %s", message.provider_id, error)
            # Its customer exists by now: the resend is not another new lead.
            socket.visitor = Visitor(visitor.id, visitor.verified, known=True)
        else:
            log.exception("webchat: could not handle message %s", message.provider_id)
        reason = refusal("not_delivered", socket.language, default)
        await ws.send_json(error_frame("not_delivered", reason, incoming.id))
        return
    socket.visitor = Visitor(visitor.id, visitor.verified, known=True)
    if result.reused:
        # The client sent another text under an id it had used: storing nothing and echoing it
        # would show the visitor a message we do not have.
        reason = refusal("id_reused", socket.language, default)
        await ws.send_json(error_frame("id_reused", reason, incoming.id))
        return
    now = datetime.now(UTC)
    # The echo acknowledges the message (also a duplicate: it was stored the first time, and its
    # answer is in the history the client got on reconnecting).
    await ws.send_json(message_frame(ChatLine(incoming.id, "customer", incoming.text, now)))
    for reply in result.replies:
        line = ChatLine(f"m{reply.message_id}", "bot", reply.text, now, reply.choices)
        await ws.send_json(message_frame(line))
    if result.handed_off:
        notice = translate(socket.language, "webchat.handoff", default=default)
        await ws.send_json(handoff_frame(notice))


def _line(message: Message) -> ChatLine:
    if message.direction == Direction.IN.value:
        client_id = message.provider_id.partition(":")[2]
        own = message.channel == ChannelName.WEBCHAT.value and client_id
        return ChatLine(
            client_id if own else f"m{message.id}", "customer", message.text, _utc(message)
        )
    author: Author = "agent" if message.author.startswith("agent") else "bot"
    return ChatLine(f"m{message.id}", author, message.text, _utc(message))


def _with_offer(lines: list[ChatLine], conversation: Conversation | None) -> list[ChatLine]:
    """The history with the options still on offer as buttons under the bot's last message (a
    reload must not leave a bare "Did you mean…?")."""
    slots = (conversation.flags.get("slots") or {}) if conversation is not None else {}
    offered = PendingChoice.of(slots.get(CHOICE_SLOT))
    if offered is not None and lines and lines[-1].author == "bot":
        lines[-1] = replace(lines[-1], choices=offered.labels)
    return lines


def _utc(message: Message) -> datetime:
    at = message.created_at
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _read_frame(data: str) -> ClientMessage:
    """A client frame, held to the limits of JSON from outside (`json_input`): nesting too deep,
    NaN, a number past a float, a lone UTF-16 surrogate or a NUL is a ProtocolError."""
    try:
        return read_client_frame(load_json(data))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProtocolError("not_json") from None
    except UnacceptableJson as e:
        if e.whole:  # the frame as a whole: too deep, not an object
            raise ProtocolError("frame_not_taken", reason=e.reason) from None
        # One member is refused (a NUL or a lone surrogate in the text): the refusal names the
        # message if its id can be read, and the widget marks that one as not sent.
        message_id = _claimed_id(data)
        raise ProtocolError("not_taken", message_id, field=e.field, reason=e.reason) from None


def _claimed_id(data: str) -> str | None:
    """The message id of a frame refused for one of its members, if it has a valid one."""
    try:
        return read_client_frame(json.loads(data)).id
    except (ValueError, RecursionError):  # ProtocolError included: no valid id to name
        return None
