"""Outbound messages in the API: their delivery, the failed ones, a retry, and staff sending.

GET  /api/messages/{id}            states, attempts, provider id, error
GET  /api/outbox?state=failed      the outbox by state, newest first, a page at a time
                                   (`limit`, 1-200, default 50; `cursor`: the previous page's
                                   `next_cursor`)
POST /api/messages/{id}/retry      a failed or undelivered message sent again, as a new
                                   delivery (202, 409)
POST /api/messages                 {"customer_id", "text", "purpose", "channel"?, "subject"?}
                                   (202, 400, 404, 409)

`text` must hold more than spaces and line breaks (1-10,000 characters, sent as written).
`subject` is an e-mail's: with an explicit channel other than e-mail it is a 400; when the
policy picks the channel, it is used if that is e-mail and has nothing to apply to otherwise.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Final

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints
from pydantic_core import PydanticCustomError
from sqlalchemy import and_, or_, select

from consent.types import Channel, Purpose
from dialog.models import Message
from dialog.outbox import DeliveryState
from dialog.outbox.models import DeliveryAttempt, OutboxEntry
from sastre.appkeys import READER, REDIS, SESSIONMAKER, SETTINGS
from sastre.auth import Permission
from sastre.operations.messages import Queued, do_retry_message, do_send_message
from sastre.operations.outreach import Outreach
from sastre.web.auth import require
from sastre.web.customers import validated
from sastre.web.errors import ApiError, read_json_object
from sastre.web.json_input import RecordId
from sastre.web.paging import MAX_ID, read_cursor, whole_number, write_cursor
from sastre.worker.process import publish_wakeups

__all__ = ["outbox_wakeups", "routes"]

routes = web.RouteTableDef()
LIST_LIMIT: Final = 200  # the most rows one page of /api/outbox holds
LIST_DEFAULT: Final = 50


# A subject is one line of printable characters: a CR or LF in it would be a header of its own
# (header injection), and the other line separators and control characters (a vertical tab,
# U+2028) no mail library writes in a header: accepted, the e-mail would fail at the send.
def _one_line(subject: str) -> str:
    # Control characters (C0, C1: line feeds, vertical tabs, NEL) and the line and paragraph
    # separators; a no-break space or an emoji's zero-width joiner is text like any other.
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in subject):
        raise PydanticCustomError(
            "not_one_line", "a subject is one line: no line breaks or control characters"
        )
    return subject


Subject = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_one_line),
]


# The text is sent as the staff wrote it (line breaks, indentation), but it must say something:
# a text of only spaces and line breaks would reach the customer as a blank SMS or e-mail.
def _not_blank(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("blank", "the text is empty or only spaces and line breaks")
    return text


Text = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_not_blank)]


class SendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: RecordId
    text: Text
    purpose: Purpose
    channel: Channel | None = None
    subject: Subject | None = None


def _message_id(request: web.Request) -> int:
    number = whole_number(request.match_info["message_id"], below=MAX_ID)
    if number is None:
        raise ApiError(400, "bad_message_id", "a message id is a positive integer")
    return number


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def _entry_view(entry: OutboxEntry) -> dict[str, Any]:
    return {
        "state": entry.state,
        "purpose": entry.purpose,
        "attempts": entry.attempts,
        "provider_id": entry.provider_id,
        "error": None
        if entry.error is None and entry.error_code is None
        else {"code": entry.error_code, "reason": entry.error},
        "due_at": _iso(entry.due_at),
        "updated_at": _iso(entry.updated_at),
    }


@routes.get("/api/messages/{message_id}")
async def show_message(request: web.Request) -> web.Response:
    require(request, Permission.CUSTOMERS_READ)
    message_id = _message_id(request)
    async with request.app[READER]() as session:
        message = await session.get(Message, message_id)
        if message is None:
            raise ApiError(404, "not_found", f"no message {message_id}")
        entry = await session.get(OutboxEntry, message_id)
        attempts = (
            await session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.message_id == message_id)
                .order_by(DeliveryAttempt.id)
            )
        ).all()
    body: dict[str, Any] = {
        "id": message.id,
        "customer_id": message.customer_id,
        "conversation_id": message.conversation_id,
        "channel": message.channel,
        "direction": message.direction,
        "address": message.address,
        "text": message.text,
        "author": message.author,
        "in_reply_to": message.in_reply_to,  # the message it answers (ours, for an e-mail)
        "created_at": _iso(message.created_at),
        "delivery": None if entry is None else _entry_view(entry),
        "attempts": [
            {
                "at": _iso(a.at),
                "outcome": a.outcome,
                "code": a.code,
                "reason": a.reason,
                "provider_id": a.provider_id,
                "worker": a.worker,
            }
            for a in attempts
        ],
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def _limit(request: web.Request) -> int:
    number = whole_number(request.query.get("limit", str(LIST_DEFAULT)), below=LIST_LIMIT + 1)
    if number is None or number < 1:
        raise ApiError(
            400,
            "invalid query",
            [{"field": "limit", "reason": f"a whole number from 1 to {LIST_LIMIT}"}],
        )
    return number


def _cursor(request: web.Request) -> tuple[datetime, int] | None:
    raw = request.query.get("cursor")
    if raw is None:
        return None
    after = read_cursor(raw)
    if after is None:
        reason = "not a cursor this list gave (next_cursor)"
        raise ApiError(400, "invalid query", [{"field": "cursor", "reason": reason}])
    return after


@routes.get("/api/outbox")
async def list_outbox(request: web.Request) -> web.Response:
    require(request, Permission.CUSTOMERS_READ)
    raw = request.query.get("state", DeliveryState.FAILED.value)
    names = [s.value for s in DeliveryState]
    if raw not in names:
        raise ApiError(400, "bad_state", f"state is one of {', '.join(names)}")
    state = DeliveryState(raw)
    limit, after = _limit(request), _cursor(request)
    query = (
        select(OutboxEntry, Message.customer_id, Message.address)
        .join(Message, Message.id == OutboxEntry.message_id)
        .where(OutboxEntry.state == state.value)
        .order_by(OutboxEntry.updated_at.desc(), OutboxEntry.message_id.desc())
        .limit(limit + 1)  # one more: whether there is a next page
    )
    if after is not None:
        at, message_id = after
        query = query.where(
            or_(
                OutboxEntry.updated_at < at,
                and_(OutboxEntry.updated_at == at, OutboxEntry.message_id < message_id),
            )
        )
    async with request.app[READER]() as session:
        rows = (await session.execute(query)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        {
            "id": entry.message_id,
            "customer_id": customer_id,
            "channel": entry.channel,
            "address": address,
            **_entry_view(entry),
        }
        for entry, customer_id, address in rows
    ]
    return web.json_response(
        {
            "state": state.value,
            "messages": items,
            "next_cursor": write_cursor(rows[-1][0].updated_at, rows[-1][0].message_id)
            if more
            else None,
        }
    )


def _queued_view(queued: Queued) -> dict[str, Any]:
    return {
        "id": queued.message_id,
        "channel": queued.channel,
        "state": DeliveryState.QUEUED.value,
        "due_at": queued.due_at.isoformat(),
        "decision": queued.decision,
    }


@routes.post("/api/messages/{message_id}/retry")
async def retry_message(request: web.Request) -> web.Response:
    staff = require(request, Permission.CUSTOMERS_WRITE)
    message_id = _message_id(request)
    queued = await do_retry_message(
        request.app[SESSIONMAKER],
        message_id,
        actor=staff.actor,
        outreach=Outreach.from_settings(request.app[SETTINGS]),
    )
    return web.json_response(_queued_view(queued), status=202)


@routes.post("/api/messages")
async def send_message(request: web.Request) -> web.Response:
    staff = require(request, Permission.CUSTOMERS_WRITE)
    body = validated(SendIn, await read_json_object(request))
    if body.subject is not None and body.channel not in (None, Channel.EMAIL):
        reason = f"only an e-mail has a subject, not a message by {body.channel}"
        raise ApiError(400, "invalid request body", [{"field": "subject", "reason": reason}])
    queued = await do_send_message(
        request.app[SESSIONMAKER],
        customer_id=body.customer_id,
        text=body.text,
        purpose=body.purpose,
        channel=body.channel,
        subject=body.subject,
        actor=staff.actor,
        outreach=Outreach.from_settings(request.app[SETTINGS]),
    )
    return web.json_response(_queued_view(queued), status=202)


async def outbox_wakeups(app: web.Application) -> AsyncIterator[None]:
    """Workers in other processes hear of every commit that queued (Redis pub/sub when set)."""
    async with publish_wakeups(app[REDIS]):
        yield
