"""JSON errors, always `{"error": "...", "detail": ...}`, and the middleware that guarantees it.

Domain exceptions are turned into 4xx here, in one place, so handlers stay about the happy path.
An unexpected exception is logged with its traceback and answered with a 500 that reveals nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from crm_core.customers import CustomerNotFound, IdentityConflict, MergeRefused
from crm_core.identities import InvalidIdentity
from crm_core.records import RecordErrors

__all__ = ["ApiError", "error_middleware", "json_error", "read_json_object"]

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raise from a handler to answer with a JSON error."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


def json_error(status: int, error: str, detail: Any = None) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


def _from_domain(exc: Exception) -> ApiError | None:
    match exc:
        case ApiError():
            return exc
        case CustomerNotFound():
            return ApiError(404, str(exc))
        case InvalidIdentity():
            return ApiError(400, f"invalid {exc.kind}", {"field": exc.kind, "reason": exc.reason})
        case RecordErrors():
            return ApiError(
                400,
                "invalid customer",
                [{"field": e.field, "reason": e.reason} for e in exc.errors],
            )
        case IdentityConflict():
            return ApiError(
                409,
                "identity belongs to another customer",
                {"kind": exc.kind, "value": exc.value, "customer_id": exc.owner_id},
            )
        case MergeRefused():
            return ApiError(
                409,
                f"merge refused: {exc.reason}",
                {
                    "conflicts": [
                        {"kind": c.kind, "survivor": list(c.values[0]), "other": list(c.values[1])}
                        for c in exc.conflicts
                    ]
                },
            )
    return None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.empty_body or exc.status < 400:
            raise
        return json_error(exc.status, exc.reason)
    except Exception as exc:
        api_error = _from_domain(exc)
        if api_error is None:
            log.exception("unhandled error in %s %s", request.method, request.path)
            return json_error(500, "internal error")
        return json_error(api_error.status, api_error.error, api_error.detail)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong with it."""
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, "the body is not valid JSON", str(e)) from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body
