"""Bearer-token authentication for the staff API under /api/, and role checks."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from sastre.appkeys import READER
from sastre.auth import Permission, Staff, allowed, authenticate
from sastre.web.errors import ApiError

__all__ = ["STAFF", "auth_middleware", "require"]

STAFF = web.RequestKey("staff", Staff)
API_PREFIX = "/api/"


def _bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "authentication required", "send Authorization: Bearer <token>")
    return token.strip()


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    token = _bearer_token(request)
    # A reader: checking a token must not queue behind an import or a burst of chat messages.
    async with request.app[READER]() as session:
        staff = await authenticate(session, token)
    if staff is None:
        raise ApiError(401, "invalid or revoked token")
    request[STAFF] = staff
    return await handler(request)


def require(request: web.Request, permission: Permission) -> Staff:
    """The caller, if their role may do `permission`; otherwise a 403 naming what is missing."""
    staff = request[STAFF]
    if not allowed(staff.role, permission):
        raise ApiError(403, f"the {staff.role} role may not do this", {"needs": permission.value})
    return staff
