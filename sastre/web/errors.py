"""JSON errors, always `{"error": "...", "detail": ...}`, and the middleware that guarantees it.

Domain exceptions become 4xx here, through one table (`DOMAIN_ERRORS`), so handlers stay about
the happy path and never catch a domain error just to rename it. A new domain error is one line
in the table. A database too busy to take the request in time (SQLite's write lock held past the
busy timeout by a long import, PostgreSQL's lock timeout, a serialization failure or deadlock) is
not a bug but a moment: a 503 with `Retry-After`, logged as one warning line. So is a database
that cannot be reached (refused, no such socket or host, shutting down, the connection lost),
and a remote bot that gave no answer in time (the message is stored, awaiting it): an inbound
webhook's sender keeps the message and posts it again later, which a 500 does not promise. An
unexpected exception is logged with its traceback and answered with a 500 that reveals nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError
from sqlalchemy.exc import DBAPIError

from channels.sms_webhooks import MalformedWebhook
from consent.ledger import InvalidTopic, NothingToConfirm
from consent.preferences import InvalidPreferences
from consent.tokens import BadToken
from crm_core.customers import CustomerNotFound, IdentityConflict, MergeRefused
from crm_core.identities import InvalidIdentity
from crm_core.records import RecordErrors
from dialog.faq import FaqEntryInvalid
from dialog.turns import BotUnanswered
from sastre.email_intake import NoSender
from sastre.operations.messages import MessageNotFound, NotRetryable, Refused
from sastre.operations.outreach import NoSuchRecipient, TextTooLong
from sastre.web.form_input import UnreadableForm
from sastre.web.json_input import UnacceptableJson
from sastre.web.json_input import loads as load_json

__all__ = [
    "BUSY_RETRY_AFTER",
    "DOMAIN_ERRORS",
    "UNREACHABLE_RETRY_AFTER",
    "ApiError",
    "api_error_for",
    "database_busy",
    "database_unreachable",
    "error_middleware",
    "http_error_detail",
    "json_error",
    "read_json_object",
]

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Exception)

# Seconds a client is asked to wait when the database is busy: long enough for the lock holder
# to make progress, short enough that a person retrying by hand is not kept waiting.
BUSY_RETRY_AFTER: Final = 5
# PostgreSQL's "try again" states: lock_not_available (lock_timeout, NOWAIT),
# serialization_failure, deadlock_detected.
_PG_TRANSIENT: Final = frozenset({"55P03", "40001", "40P01"})
# Seconds a client is asked to wait when the database cannot be reached: a restart or a
# fail-over takes tens of seconds, and every sender retrying at once would not help it.
UNREACHABLE_RETRY_AFTER: Final = 30
# Seconds a sender is asked to wait when the bot gave no answer in time: asked again at once,
# a bot that is hanging would only be kept busier.
BOT_RETRY_AFTER: Final = 30
# PostgreSQL's "not there now" states: the connection_exception class (08xxx), the server
# shutting down, crashed or starting (admin_shutdown, crash_shutdown, cannot_connect_now), and
# too_many_connections.
_PG_UNREACHABLE: Final = frozenset(
    {"08000", "08001", "08003", "08004", "08006", "57P01", "57P02", "57P03", "53300"}
)
# The modules whose frames show that an exception came from talking to the database: the
# PostgreSQL driver raises a refused connection as the bare OSError it got from the socket.
_DATABASE_MODULES: Final = ("sqlalchemy.", "asyncpg.", "aiosqlite.", "psycopg")


# The headers of an aiohttp exception that describe its own body, replaced by the JSON one.
_BODY_HEADERS: Final = frozenset({"content-type", "content-length", "content-encoding"})


class ApiError(Exception):
    """Raise from a handler to answer with a JSON error."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail
        self.headers: Mapping[str, str] = headers or {}


class _Problem(Protocol):
    """A field and what is wrong with it, as every domain's validation errors carry."""

    @property
    def field(self) -> str: ...
    @property
    def reason(self) -> str: ...


def _fields(problems: Iterable[_Problem]) -> list[dict[str, str]]:
    return [{"field": p.field, "reason": p.reason} for p in problems]


Answer = Callable[[Any], ApiError | None]


def _rule(kind: type[E], answer: Callable[[E], ApiError | None]) -> tuple[type[Exception], Answer]:
    # Types each lambda below by its own exception class; the table then holds them side by side.
    return kind, answer


def database_busy(exc: DBAPIError) -> bool:
    """Did the database refuse for a lock it could not get in time (not for a bug)?"""
    orig = exc.orig
    if orig is None:
        return False
    if getattr(orig, "sqlstate", None) in _PG_TRANSIENT:
        return True
    # SQLite says it in words; "database table is locked" is a shared-cache variant.
    return "is locked" in str(orig) and "database" in str(orig)


def _raised_by_database(exc: BaseException) -> bool:
    """Did `exc` come up through the database's driver or SQLAlchemy (not, say, a file write)?"""
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.startswith(_DATABASE_MODULES):
            return True
        tb = tb.tb_next
    return False


def database_unreachable(exc: BaseException) -> bool:
    """Could the database not be reached at all (as opposed to refusing the statement)?"""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:  # SQLAlchemy saw the connection drop mid-statement
            return True
        orig = exc.orig
        if getattr(orig, "sqlstate", None) in _PG_UNREACHABLE:
            return True
        # SQLite: the file's directory is gone or cannot be read.
        return "unable to open database file" in str(orig)
    if getattr(exc, "sqlstate", None) in _PG_UNREACHABLE:  # the driver's own, at connect
        return _raised_by_database(exc)
    # Connection refused, no such socket or host, a connect timeout (TimeoutError is one).
    return isinstance(exc, OSError) and _raised_by_database(exc)


def _unreachable(exc: BaseException) -> ApiError | None:
    if not database_unreachable(exc):
        return None
    return ApiError(
        503,
        "the database is unavailable; try again",
        f"the database cannot be reached; retry in {UNREACHABLE_RETRY_AFTER} seconds",
        {"Retry-After": str(UNREACHABLE_RETRY_AFTER)},
    )


def _database(exc: DBAPIError) -> ApiError | None:
    if database_busy(exc):
        return ApiError(
            503,
            "the database is busy; try again",
            f"another operation holds the lock; retry in {BUSY_RETRY_AFTER} seconds",
            {"Retry-After": str(BUSY_RETRY_AFTER)},
        )
    # Not there at all: a 503 too. Any other database error is a bug: a 500 with its traceback.
    return _unreachable(exc)


def _merge_refused(exc: MergeRefused) -> ApiError:
    conflicts = [
        {"kind": c.kind, "survivor": list(c.values[0]), "other": list(c.values[1])}
        for c in exc.conflicts
    ]
    return ApiError(409, f"merge refused: {exc.reason}", {"conflicts": conflicts})


# Domain exception -> HTTP answer. A subclass not listed gets its closest listed ancestor's.
# An answer of None means "not one of ours after all": a 500.
def _refused(e: Refused) -> ApiError:
    """The contact policy said no: its reason, and the whole decision when there was one."""
    detail: dict[str, Any] = {"reason": e.reason, "explanation": e.explanation}
    if e.decision is not None:
        detail["decision"] = e.decision.to_json()
    return ApiError(409, e.reason, detail)


DOMAIN_ERRORS: Final[Mapping[type[Exception], Answer]] = dict(
    [
        # crm_core
        _rule(CustomerNotFound, lambda e: ApiError(404, str(e))),
        _rule(
            InvalidIdentity,
            lambda e: ApiError(400, f"invalid {e.kind}", {"field": e.kind, "reason": e.reason}),
        ),
        _rule(RecordErrors, lambda e: ApiError(400, "invalid customer", _fields(e.errors))),
        _rule(
            IdentityConflict,
            lambda e: ApiError(
                409,
                "identity belongs to another customer",
                {"kind": e.kind, "value": e.value, "customer_id": e.owner_id},
            ),
        ),
        _rule(MergeRefused, _merge_refused),
        # consent
        _rule(NothingToConfirm, lambda e: ApiError(409, str(e))),
        _rule(InvalidTopic, lambda e: ApiError(400, "invalid request body", _fields([e]))),
        _rule(InvalidPreferences, lambda e: ApiError(400, "invalid preferences", _fields([e]))),
        _rule(BadToken, lambda e: ApiError(400, "invalid link", str(e))),
        # dialog
        _rule(FaqEntryInvalid, lambda e: ApiError(400, "invalid FAQ entry", _fields(e.problems))),
        # channels: a signed webhook whose form is not what the provider sends; a raw e-mail
        # with no address to file it under
        _rule(
            MalformedWebhook,
            lambda e: ApiError(400, "invalid webhook", {"field": e.field, "reason": e.reason}),
        ),
        _rule(NoSender, lambda e: ApiError(422, "no sender", str(e))),
        # operations
        _rule(Refused, _refused),
        _rule(MessageNotFound, lambda e: ApiError(404, "not_found", str(e))),
        _rule(NotRetryable, lambda e: ApiError(409, "not_failed", str(e))),
        _rule(TextTooLong, lambda e: ApiError(400, "invalid request body", _fields([e]))),
        _rule(
            NoSuchRecipient,
            lambda e: ApiError(404, str(e), {"field": e.field, "reason": e.reason}),
        ),
        # the HTTP edge
        _rule(UnacceptableJson, lambda e: ApiError(400, "invalid request body", _fields([e]))),
        _rule(UnreadableForm, lambda e: ApiError(400, "invalid form body", _fields([e]))),
        # a body that is not what its Content-Encoding says (gzip that is not gzip)
        _rule(RequestPayloadError, lambda e: ApiError(400, "the body could not be read", str(e))),
        # the database: a lock not granted in time, or no database to talk to
        _rule(DBAPIError, _database),
        # a remote bot gave no answer in time: stored, and asked again on redelivery
        _rule(
            BotUnanswered,
            lambda e: ApiError(
                503,
                "the bot did not answer; try again",
                str(e),
                {"Retry-After": str(BOT_RETRY_AFTER)},
            ),
        ),
    ]
)


def api_error_for(exc: Exception) -> ApiError | None:
    """The answer for a domain exception, or None for one nobody expected (a bug: a 500)."""
    if isinstance(exc, ApiError):
        return exc
    for kind in type(exc).__mro__:
        answer = DOMAIN_ERRORS.get(kind)
        if answer is not None:
            return answer(exc)
    # Not ours by type: the driver's bare OSError when the database refuses connections.
    return _unreachable(exc)


def json_error(
    status: int, error: str, detail: Any = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status, headers=headers)


def http_error_detail(request: web.Request, exc: web.HTTPException) -> str | None:
    """The reason aiohttp's own 4xx answers leave out: the methods a route takes (405), the
    size a body may have (413). The route's own text, when it gave one, otherwise."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"{request.path} takes {allowed}, not {exc.method}"
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return f"a request body may be at most {request.client_max_size} bytes"
    text = exc.text
    if text and text != f"{exc.status}: {exc.reason}":  # aiohttp's placeholder says nothing
        return text
    return None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.empty_body or exc.status < 400:
            raise
        # Its headers stay (a 405's Allow); only the body becomes ours.
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
        return json_error(exc.status, exc.reason, http_error_detail(request, exc), headers)
    except Exception as exc:
        api_error = api_error_for(exc)
        if api_error is None:
            log.exception("unhandled error in %s %s", request.method, request.path)
            return json_error(500, "internal error")
        if api_error.status >= 500:
            # Expected and transient (a busy database): one line, not a traceback.
            log.warning(
                "%s %s answered %d: %s (%s)",
                request.method,
                request.path,
                api_error.status,
                api_error.error,
                str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            )
        return json_error(api_error.status, api_error.error, api_error.detail, api_error.headers)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong with it (and where)."""
    raw = await request.read()
    charset = request.charset or "utf-8"
    try:
        text = raw.decode(charset)
    except LookupError:  # Content-Type's charset names no codec
        raise ApiError(400, "the body is not valid JSON", f"unknown charset {charset!r}") from None
    except UnicodeDecodeError as e:
        raise ApiError(400, "the body is not valid JSON", str(e)) from None
    try:
        body = load_json(text)
    except json.JSONDecodeError as e:
        raise ApiError(400, "the body is not valid JSON", str(e)) from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body
