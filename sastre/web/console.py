"""The staff console: one static page (GET / and /console), its files under /static/, and
GET /api/me, which tells the page who its token belongs to and what that role may do.

The page is plain HTML, CSS and JavaScript that talks to the staff JSON API with the token the
agent types in; the server renders no customer data into HTML at all. Customer names and messages
are untrusted, so the page is served with a Content-Security-Policy that allows only our own
files (no inline script or style) and demands Trusted Types, so a stray `innerHTML = ...` in the
page's script fails loudly instead of running somebody's markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

from sastre.auth import Permission, allowed
from sastre.web.auth import STAFF

__all__ = ["STATIC_DIR", "routes"]

routes = web.RouteTableDef()

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"
PAGE: Final = "console.html"

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        # The forms are handled by the script; if it never loads, a native submit must not put
        # the token into a URL (and so into access logs).
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
# On every file, not only the page: /static/console.html is the page too, and an SVG is a document.
HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # No build step means no hashed file names: revalidate every time (a cheap 304 by ETag), so
    # an upgrade never pairs a new page with a cached old script.
    "Cache-Control": "no-cache",
}


@routes.get("/")
@routes.get("/console")
async def console_page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / PAGE, headers=HEADERS)


@routes.get("/static/{name}")
async def static_file(request: web.Request) -> web.StreamResponse:
    # A flat directory of our own files: no sub-paths, no dot-files. FileResponse answers 404
    # for a missing file (and stats it off the event loop).
    name = request.match_info["name"]
    if name.startswith(".") or Path(name).name != name:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC_DIR / name, headers=HEADERS)


@routes.get("/api/me")
async def who_am_i(request: web.Request) -> web.Response:
    """The caller's name, role and permissions: the console checks a token with it at sign-in
    and shows only what the role may do (the API still checks every call)."""
    staff = request[STAFF]
    return web.json_response(
        {
            "name": staff.name,
            "role": staff.role.value,
            "permissions": [p.value for p in Permission if allowed(staff.role, p)],
        }
    )
