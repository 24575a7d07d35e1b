"""Outbound messages in the API: their delivery, the failed ones, a retry, and staff sending.

GET  /api/messages/{id}            states, attempts, provider id, error
GET  /api/outbox?state=failed      the outbox by state, newest first
POST /api/messages/{id}/retry      a failed message queued again (202)
POST /api/messages                 {"customer_id", "text", "purpose", "channel"?} (202, 409)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import select

from consent.types import Channel, Purpose
from dialog.models import Message
from dialog.outbox import DeliveryState
from dialog.outbox.models import DeliveryAttempt, OutboxEntry
from sastre.appkeys import READER, REDIS, SESSIONMAKER, SETTINGS
from sastre.auth import Permission
from sastre.operations.messages import do_retry_message, do_send_message
from sastre.web.auth import require
from sastre.web.customers import validated
from sastre.web.errors import ApiError, read_json_object
from sastre.web.json_input import RecordId
from sastre.worker.process import publish_wakeups

__all__ = ["outbox_wakeups", "routes"]

routes = web.RouteTableDef()
MAX_ID = 2**63
LIST_LIMIT = 200


class SendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: RecordId
    text: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
    purpose: Purpose
    channel: Channel | None = None


def _message_id(request: web.Request) -> int:
    raw = request.match_info["message_id"]
    if not raw.isdecimal() or int(raw) >= MAX_ID:
        raise ApiError(400, "bad_message_id", "a message id is a positive integer")
    return int(raw)


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


@routes.get("/api/outbox")
async def list_outbox(request: web.Request) -> web.Response:
    require(request, Permission.CUSTOMERS_READ)
    raw = request.query.get("state", DeliveryState.FAILED.value)
    names = [s.value for s in DeliveryState]
    if raw not in names:
        raise ApiError(400, "bad_state", f"state is one of {', '.join(names)}")
    state = DeliveryState(raw)
    async with request.app[READER]() as session:
        rows = (
            await session.execute(
                select(OutboxEntry, Message.customer_id, Message.address)
                .join(Message, Message.id == OutboxEntry.message_id)
                .where(OutboxEntry.state == state.value)
                .order_by(OutboxEntry.updated_at.desc(), OutboxEntry.message_id.desc())
                .limit(LIST_LIMIT)
            )
        ).all()
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
    return web.json_response({"state": state.value, "messages": items})


@routes.post("/api/messages/{message_id}/retry")
async def retry_message(request: web.Request) -> web.Response:
    staff = require(request, Permission.CUSTOMERS_WRITE)
    message_id = _message_id(request)
    await do_retry_message(request.app[SESSIONMAKER], message_id, actor=staff.actor)
    return web.json_response({"id": message_id, "state": DeliveryState.QUEUED.value}, status=202)


@routes.post("/api/messages")
async def send_message(request: web.Request) -> web.Response:
    staff = require(request, Permission.CUSTOMERS_WRITE)
    body = validated(SendIn, await read_json_object(request))
    settings = request.app[SETTINGS]
    queued = await do_send_message(
        request.app[SESSIONMAKER],
        customer_id=body.customer_id,
        text=body.text,
        purpose=body.purpose,
        channel=body.channel,
        actor=staff.actor,
        default_timezone=settings.default_timezone,
        rules=settings.policy_rules,
        quiet_overrides=settings.quiet_hour_overrides,
    )
    return web.json_response(
        {
            "id": queued.message_id,
            "channel": queued.channel,
            "state": DeliveryState.QUEUED.value,
            "due_at": queued.due_at.isoformat(),
            "decision": queued.decision,
        },
        status=202,
    )


async def outbox_wakeups(app: web.Application) -> AsyncIterator[None]:
    """Workers in other processes hear of every commit that queued (Redis pub/sub when set)."""
    async with publish_wakeups(app[REDIS]):
        yield
