"""What every answer carries, and what no request path may hold: the HTTP edge's own rules.

* `Server: Sastre`, never aiohttp's default that names the Python and aiohttp versions (a free
  hint of which known bugs to try).
* `Cache-Control: no-store` on everything under /api/: staff answers hold personal data, the
  GDPR export all of it, and no browser or proxy cache may keep a copy.
* A path holding a control character (`/static/%00`) is refused before routing: a NUL reaches
  the file system only when a file response is sent, after every middleware has returned, where
  the failure would be an empty reply.

The headers are set in `on_response_prepare`, which every routed response passes, including
errors raised past the middlewares; the protocol's own answers (sastre.web.server) set theirs.
"""

from __future__ import annotations

from typing import Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

__all__ = ["API_PREFIX", "SERVER_NAME", "install_headers", "path_guard"]

SERVER_NAME: Final = "Sastre"
API_PREFIX: Final = "/api/"


def _has_control_characters(path: str) -> bool:
    return any(ch < " " or ch == "\x7f" for ch in path)


@web.middleware
async def path_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _has_control_characters(request.path):
        # The shape of sastre.web.errors.json_error, without importing every domain for it:
        # the server (sastre.web.server) imports this module and starts before them.
        detail = {"reason": "holds a control character"}
        return web.json_response({"error": "invalid path", "detail": detail}, status=400)
    return await handler(request)


async def _edge_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[hdrs.SERVER] = SERVER_NAME
    if request.path.startswith(API_PREFIX):
        response.headers[hdrs.CACHE_CONTROL] = "no-store"


def install_headers(app: web.Application) -> None:
    """Every response `app` sends names no versions; its API answers are never cached."""
    app.on_response_prepare.append(_edge_headers)
