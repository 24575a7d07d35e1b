"""The web chat: GET /chat (a demo shop page with the widget) and GET /ws/chat (its WebSocket).

The visitor is the random id in a signed, HttpOnly cookie scoped to the socket's path. Every
message goes through the one inbound path (`InboundProcessor.handle`) with the client's message id
in its provider id, so a message re-sent after a reconnect is stored and answered once. A
(re)connect first receives the open conversation's history: a reload resumes the conversation.

Identity verification (Chatwoot's scheme): the embedding site passes `user_id` and
`user_hash = hex(hmac_sha256(SASTRE_WEBCHAT_IDENTITY_SECRET, user_id))`. When it checks out and a
customer has that external id, the visitor's webchat identity is attached to them (verified)
before the first message, so the chat lands on the known customer. A chat tied that way is only
resumed with the proof again: on a shared computer, the next person who opens the widget without
being signed in gets a new visitor, not the previous user's conversation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
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
    IdentityProof,
    MessageRate,
    ProtocolError,
    VisitorCookies,
    error_frame,
    handoff_frame,
    history_frame,
    message_frame,
    new_visitor_id,
    origin_allowed,
    parse_client_frame,
    parse_language,
)
from crm_core.customers import CustomerNotFound, IdentityConflict, attach_identity, find_customer
from crm_core.identities import InvalidIdentity
from crm_core.models import Identity, IdentityKind
from dialog.history import open_conversation, transcript
from dialog.models import ConversationState, Direction, Message
from sastre.appkeys import INBOUND, SESSIONMAKER, SETTINGS
from sastre.config import Settings
from sastre.web.console import HEADERS as STATIC_HEADERS
from sastre.web.console import STATIC_DIR
from sastre.web.errors import json_error

__all__ = ["HANDOFF_NOTICE", "HEADERS", "routes"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

PAGE: Final = "chat.html"
SOCKET_PATH: Final = "/ws/chat"
HISTORY_LIMIT: Final = 50
# The console's policy, plus the one thing this page needs: its own WebSocket ('self' covers
# ws:/wss: on the same host in CSP3; said explicitly for older engines).
HEADERS: Final = {
    **STATIC_HEADERS,
    "Content-Security-Policy": STATIC_HEADERS["Content-Security-Policy"] + "; connect-src 'self'",
}
HANDOFF_NOTICE: Final[Mapping[str, str]] = {
    "es": "Te pasamos con una persona de nuestro equipo: seguirá la conversación aquí.",
    "en": "A person from our team will take over this conversation here.",
}


@routes.get("/chat")
async def chat_page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / PAGE, headers=HEADERS)


@routes.get(SOCKET_PATH)
async def chat_socket(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    origin = request.headers.get("Origin")
    own_hosts = {request.host, urlsplit(settings.external_url).netloc}
    if not origin_allowed(origin, own_hosts, settings.webchat_origin_list):
        return json_error(
            403,
            "origin not allowed",
            f"{origin} may not open the chat: list it in SASTRE_WEBCHAT_ORIGINS",
        )
    cookies = VisitorCookies(settings.secret())
    language = parse_language(request.query.get("lang")) or parse_language(
        request.headers.get("Accept-Language")
    )
    errors: list[str] = []
    async with request.app[SESSIONMAKER].begin() as session:
        visitor_id, verified, problem = await _visitor(
            session, settings, cookies.read(request.cookies.get(VISITOR_COOKIE)), request.query
        )
        if problem:
            errors.append(problem)
        history = await transcript(
            session, ChannelName.WEBCHAT, visitor_id, HISTORY_LIMIT, region=settings.default_region
        )
        conversation = await open_conversation(
            session, ChannelName.WEBCHAT, visitor_id, region=settings.default_region
        )
        with_human = conversation is not None and conversation.state in (
            ConversationState.QUEUED.value,
            ConversationState.ASSIGNED.value,
        )

    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
    ws.set_cookie(
        VISITOR_COOKIE,
        cookies.sign(visitor_id),
        max_age=COOKIE_MAX_AGE,
        path=SOCKET_PATH,
        httponly=True,
        samesite="Lax",
        secure=settings.public_url.startswith("https://"),
    )
    await ws.prepare(request)
    try:
        for reason in errors:
            await ws.send_json(error_frame(reason))
        await ws.send_json(history_frame(_line(m) for m in history))
        if with_human:
            await ws.send_json(handoff_frame(_notice(language, settings)))
        rate = MessageRate()
        async for frame in ws:
            if frame.type is WSMsgType.TEXT and not rate.allow(time.monotonic()):
                await ws.send_json(error_frame("too many messages: wait a moment and send again"))
            elif frame.type is WSMsgType.TEXT:
                await _answer(request, ws, frame.data, visitor_id, verified, language)
            elif frame.type is WSMsgType.BINARY:
                await ws.send_json(error_frame("send JSON text frames"))
            elif frame.type is WSMsgType.ERROR:
                break
    except ConnectionResetError:
        pass  # the visitor left mid-answer: what they sent is stored, the history has the reply
    return ws


async def _visitor(
    session: AsyncSession,
    settings: Settings,
    visitor_id: str | None,
    query: Mapping[str, str],
) -> tuple[str, bool, str | None]:
    """(visitor id, verified, a problem to tell the visitor) for this connection."""
    user_id, user_hash = query.get("user_id"), query.get("user_hash")
    if not user_id and not user_hash:
        if visitor_id is not None and await _verified(session, visitor_id):
            visitor_id = None  # a verified chat is resumed only with its proof
        return visitor_id or new_visitor_id(), False, None
    visitor_id = visitor_id or new_visitor_id()
    if not user_id or not user_hash:
        return visitor_id, False, "identity verification needs both user_id and user_hash"
    secret = _site_secret(settings)
    if secret is None:
        return visitor_id, False, "identity verification is not configured on this server"
    if not IdentityProof(user_id, user_hash).verify(secret):
        return visitor_id, False, "identity verification failed: the chat continues anonymously"
    try:
        customer = await find_customer(
            session, IdentityKind.EXTERNAL, user_id, settings.default_region
        )
    except (CustomerNotFound, InvalidIdentity):
        return visitor_id, False, None  # a site user we do not know yet: an anonymous lead
    for candidate in (visitor_id, new_visitor_id()):
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
            # This browser chatted as somebody else (anonymously, or another signed-in user):
            # the known customer gets a fresh visitor id rather than that conversation.
            continue
        return candidate, True, None
    raise RuntimeError("a fresh visitor id is already taken")  # pragma: no cover


async def _verified(session: AsyncSession, visitor_id: str) -> bool:
    verified = await session.scalar(
        select(Identity.verified).where(
            Identity.kind == IdentityKind.WEBCHAT.value, Identity.value == visitor_id
        )
    )
    return bool(verified)


def _site_secret(settings: Settings) -> bytes | None:
    secret: Any = getattr(settings, "webchat_identity_secret", None)
    if secret is None:
        return None
    value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
    return str(value).encode() or None


async def _answer(
    request: web.Request,
    ws: web.WebSocketResponse,
    data: str,
    visitor_id: str,
    verified: bool,
    language: str | None,
) -> None:
    try:
        incoming = parse_client_frame(data)
    except ProtocolError as e:
        await ws.send_json(error_frame(e.reason, e.message_id))
        return
    message = InboundMessage(
        ChannelName.WEBCHAT,
        visitor_id,
        incoming.text,
        provider_id=f"{visitor_id}:{incoming.id}",
        language_hint=language,
        verified=verified,
    )
    try:
        result = await request.app[INBOUND].handle(message)
    except Exception:
        log.exception("webchat: could not handle message %s", message.provider_id)
        await ws.send_json(
            error_frame("the message could not be delivered: please try again", incoming.id)
        )
        return
    now = datetime.now(UTC)
    # The echo acknowledges the message (also a duplicate: it was stored the first time, and its
    # answer is in the history the client got on reconnecting).
    await ws.send_json(message_frame(ChatLine(incoming.id, "customer", incoming.text, now)))
    for reply in result.replies:
        await ws.send_json(message_frame(ChatLine(f"m{reply.message_id}", "bot", reply.text, now)))
    if result.handed_off:
        await ws.send_json(handoff_frame(_notice(language, request.app[SETTINGS])))


def _line(message: Message) -> ChatLine:
    if message.direction == Direction.IN.value:
        client_id = message.provider_id.partition(":")[2]
        own = message.channel == ChannelName.WEBCHAT.value and client_id
        return ChatLine(
            client_id if own else f"m{message.id}", "customer", message.text, _utc(message)
        )
    author: Author = "agent" if message.author.startswith("agent") else "bot"
    return ChatLine(f"m{message.id}", author, message.text, _utc(message))


def _utc(message: Message) -> datetime:
    at = message.created_at
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _notice(language: str | None, settings: Settings) -> str:
    for candidate in (language, settings.default_language):
        if candidate is not None and candidate in HANDOFF_NOTICE:
            return HANDOFF_NOTICE[candidate]
    return HANDOFF_NOTICE["en"]
