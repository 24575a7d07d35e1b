"""E-mail in over HTTP: a relay (an MX service's inbound route, a forwarding rule) posts each
raw message.

    POST /webhooks/email   Content-Type: message/rfc822, Authorization: Bearer <token>

The token is SASTRE_INBOUND_EMAIL_TOKEN, compared in constant time; without it set the route is
404. The answer comes after the message is stored (and for a bounce, after the address is
marked): a relay that got no 200 posts it again, and the Message-ID makes that one message.
`X-Envelope-From`, when the relay sends it, is the SMTP envelope's sender, used only when the
message has no From. A message with neither (or whose sender is no e-mail address) is stored all
the same, filed as unattributed and not answered (`"unattributed": true`): never a 4xx.
"""

from __future__ import annotations

import hmac
from typing import Final

from aiohttp import web

from sastre.appkeys import SETTINGS
from sastre.email_listener import EMAIL_INTAKE
from sastre.web.errors import ApiError

__all__ = ["CONTENT_TYPE", "INBOUND_PATH", "routes"]

routes = web.RouteTableDef()
INBOUND_PATH: Final = "/webhooks/email"
CONTENT_TYPE: Final = "message/rfc822"
ENVELOPE_HEADER: Final = "X-Envelope-From"


def _authorised(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # A header's bytes that are not UTF-8 reach us as surrogates: they match no token either.
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token.encode())


async def _raw(request: web.Request) -> bytes:
    """The body, up to SASTRE_EMAIL_MAX_BYTES as at the SMTP listener (the app's default limit
    is for JSON)."""
    limit = request.app[SETTINGS].email_max_bytes
    too_large = ApiError(
        413, "message too large", f"a message may be at most {limit} bytes (SASTRE_EMAIL_MAX_BYTES)"
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


@routes.post(INBOUND_PATH)
async def incoming_email(request: web.Request) -> web.Response:
    token = request.app[SETTINGS].inbound_email_token
    if token is None:
        raise ApiError(404, "e-mail webhook not configured", "set SASTRE_INBOUND_EMAIL_TOKEN")
    if not _authorised(request, token.get_secret_value()):
        raise ApiError(
            401, "invalid token", "send Authorization: Bearer <the inbound e-mail token>"
        )
    if request.content_type != CONTENT_TYPE:
        raise ApiError(
            400,
            "wrong content type",
            f"post the raw message as {CONTENT_TYPE}, not {request.content_type or 'nothing'}",
        )
    raw = await _raw(request)
    if not raw.strip():
        raise ApiError(400, "empty message", "the body must be the raw RFC 5322 message")
    # Whatever we could parse is stored: with no usable sender, filed as unattributed (200).
    taken = await request.app[EMAIL_INTAKE].take(
        raw, envelope_from=request.headers.get(ENVELOPE_HEADER)
    )
    return web.json_response(
        {
            "status": taken.kind,
            "message_id": taken.message_id,
            "auto": taken.auto,
            "proven": taken.proven,
            "malformed": taken.malformed,
            "unattributed": taken.unattributed,
        }
    )
