"""The staff consent API: current state, history, recording, preferences, GDPR export, and the
contact decision integrators and marketers can ask for."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select

from consent.ledger import (
    NothingToConfirm,
    consent_history,
    current_consents,
    event_view,
    record_consent,
)
from consent.models import ContactMade, Undeliverable
from consent.policy import decide
from consent.preferences import InvalidPreferences, load_preferences, update_preferences
from consent.snapshot import load_contact_state
from consent.types import Action, Channel, Purpose, Source
from crm_core.customers import customer_view, get_customer
from crm_core.models import AuditEntry
from crm_core.sqltypes import utcnow
from crm_core.timeline import interaction_view, timeline
from sastre.appkeys import SESSIONMAKER, SETTINGS
from sastre.auth import Permission
from sastre.web.auth import require
from sastre.web.customers import customer_id_of, validated
from sastre.web.errors import ApiError, read_json_object

__all__ = ["routes"]

routes = web.RouteTableDef()
EXPORT_TIMELINE_LIMIT = 1_000_000  # an access request gets everything

# Sources staff may record through the API; `merge` is the system's own.
StaffSource = Literal[
    "web_form",
    "keyword",
    "unsubscribe_link",
    "preference_centre",
    "agent",
    "import",
    "api",
    "provider",
]


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel
    purpose: Purpose
    topic: str = Field(default="", max_length=64)
    action: Action
    source: StaffSource
    evidence: dict[str, Any] = Field(default_factory=dict)
    occurred_at: AwareDatetime | None = None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: int = Field(gt=0, lt=2**63)
    purpose: Purpose
    channel: Channel | None = None
    topic: str | None = Field(default=None, max_length=64)
    at: AwareDatetime | None = None


def _request_facts(request: web.Request) -> dict[str, Any]:
    return {"ip": request.remote, "user_agent": request.headers.get("User-Agent", "")}


def _state_view(state: Any, event: Any) -> dict[str, Any]:
    return {
        "channel": state.channel,
        "purpose": state.purpose,
        "topic": state.topic or None,
        "status": state.status,
        "since": state.updated_at.isoformat(),
        "event": event_view(event),
    }


@routes.get("/api/customers/{customer_id}/consent")
async def show_consent(request: web.Request) -> web.Response:
    require(request, Permission.CUSTOMERS_READ)
    async with request.app[SESSIONMAKER]() as session:
        customer = await get_customer(session, customer_id_of(request))
        rows = await current_consents(session, customer.id)
        preferences = await load_preferences(session, customer.id)
    return web.json_response(
        {
            "customer_id": customer.id,
            "consents": [_state_view(s, e) for s, e in rows],
            "preferences": preferences.to_json(),
        }
    )


@routes.get("/api/customers/{customer_id}/consent/history")
async def show_history(request: web.Request) -> web.Response:
    require(request, Permission.CUSTOMERS_READ)
    async with request.app[SESSIONMAKER]() as session:
        customer = await get_customer(session, customer_id_of(request))
        events = await consent_history(session, customer.id)
    return web.json_response(
        {"customer_id": customer.id, "events": [event_view(e) for e in events]}
    )


@routes.post("/api/customers/{customer_id}/consent")
async def add_consent(request: web.Request) -> web.Response:
    staff = require(request, Permission.CONSENT_WRITE)
    body = validated(ConsentIn, await read_json_object(request))
    if (
        body.action in (Action.GRANT, Action.CONFIRM)
        and not str(body.evidence.get("wording", "")).strip()
    ):
        raise ApiError(
            400,
            "invalid request body",
            [{"field": "evidence.wording", "reason": "required: what the customer agreed to"}],
        )
    evidence = {**body.evidence, "recorded_via": _request_facts(request)}
    async with request.app[SESSIONMAKER].begin() as session:
        try:
            event = await record_consent(
                session,
                customer_id_of(request),
                body.channel,
                body.purpose,
                body.action,
                Source(body.source),
                actor=staff.actor,
                evidence=evidence,
                topic=body.topic,
                occurred_at=body.occurred_at,
            )
        except NothingToConfirm as e:
            raise ApiError(409, str(e)) from None
        except ValueError as e:
            detail = [{"field": "topic", "reason": str(e)}]
            raise ApiError(400, "invalid request body", detail) from None
        rows = await current_consents(session, event.customer_id)
    return web.json_response(
        {"event": event_view(event), "consents": [_state_view(s, e) for s, e in rows]},
        status=201,
    )


@routes.get("/api/customers/{customer_id}/preferences")
async def show_preferences(request: web.Request) -> web.Response:
    require(request, Permission.CUSTOMERS_READ)
    async with request.app[SESSIONMAKER]() as session:
        customer = await get_customer(session, customer_id_of(request))
        preferences = await load_preferences(session, customer.id)
    return web.json_response(preferences.to_json())


@routes.put("/api/customers/{customer_id}/preferences")
async def change_preferences(request: web.Request) -> web.Response:
    staff = require(request, Permission.CONSENT_WRITE)
    changes = await read_json_object(request)
    async with request.app[SESSIONMAKER].begin() as session:
        try:
            preferences = await update_preferences(
                session,
                customer_id_of(request),
                changes,
                actor=staff.actor,
                source=Source.AGENT,
                evidence={"recorded_via": _request_facts(request)},
            )
        except InvalidPreferences as e:
            raise ApiError(
                400, "invalid preferences", [{"field": e.field, "reason": e.reason}]
            ) from None
    return web.json_response(preferences.to_json())


@routes.get("/api/customers/{customer_id}/export")
async def export(request: web.Request) -> web.Response:
    """Everything Sastre holds about the customer (GDPR Art. 15 access request)."""
    staff = require(request, Permission.CUSTOMERS_EXPORT)
    async with request.app[SESSIONMAKER].begin() as session:
        customer = await get_customer(session, customer_id_of(request))
        view = await customer_view(session, customer.id, interactions=0)
        interactions = await timeline(session, customer.id, limit=EXPORT_TIMELINE_LIMIT)
        events = await consent_history(session, customer.id)
        rows = await current_consents(session, customer.id)
        preferences = await load_preferences(session, customer.id)
        contacts = await session.scalars(
            select(ContactMade).where(ContactMade.customer_id == customer.id)
        )
        undeliverable = await session.scalars(
            select(Undeliverable).where(Undeliverable.customer_id == customer.id)
        )
        audit = await session.scalars(
            select(AuditEntry).where(AuditEntry.customer_id == customer.id).order_by(AuditEntry.id)
        )
        document = {
            "exported_at": utcnow().isoformat(),
            "customer": {**view, "interactions": [interaction_view(i) for i in interactions]},
            "consent": {
                "current": [_state_view(s, e) for s, e in rows],
                "history": [event_view(e) for e in events],
            },
            "preferences": preferences.to_json(),
            "contacts_made": [
                {
                    "channel": c.channel,
                    "purpose": c.purpose,
                    "topic": c.topic or None,
                    "reference": c.reference,
                    "at": c.at.isoformat(),
                }
                for c in contacts
            ],
            "undeliverable": [
                {
                    "channel": u.channel,
                    "address": u.address,
                    "reason": u.reason,
                    "at": u.at.isoformat(),
                }
                for u in undeliverable
            ],
            "audit": [
                {"action": a.action, "actor": a.actor, "at": a.at.isoformat(), "data": a.data}
                for a in audit
            ],
        }
        # An export is itself worth recording: who saw everything, and when.
        session.add(
            AuditEntry(actor=staff.actor, action="customer.export", customer_id=customer.id)
        )
    return web.json_response(document)


@routes.post("/api/contact-decision")
async def contact_decision(request: web.Request) -> web.Response:
    require(request, Permission.CUSTOMERS_READ)
    body = validated(DecisionIn, await read_json_object(request))
    at: datetime = body.at or utcnow()
    settings = request.app[SETTINGS]
    async with request.app[SESSIONMAKER]() as session:
        state = await load_contact_state(
            session,
            body.customer_id,
            at=at,
            default_timezone=settings.default_timezone,
            quiet_overrides=settings.quiet_hour_overrides,
        )
    decision = decide(
        state, body.purpose, body.channel, at, topic=body.topic or None, rules=settings.policy_rules
    )
    return web.json_response({"customer_id": state.customer_id, **decision.to_json()})
