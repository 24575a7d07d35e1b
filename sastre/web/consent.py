"""The staff consent API: current state, history, recording, preferences, GDPR export, and the
contact decision integrators and marketers can ask for.

Handlers parse, call one act of `sastre.operations` (or a read on the reader), and render.
Evidence behind a consent is shown whole only to roles with `consent:evidence`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from aiohttp import web
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from consent.ledger import consent_history, current_consents, event_view
from consent.models import ConsentEvent, ConsentState
from consent.policy import decide
from consent.preferences import load_preferences
from consent.snapshot import load_contact_state
from consent.types import Action, Channel, Purpose, Source
from crm_core.customers import get_customer
from crm_core.sqltypes import utcnow
from sastre.appkeys import READER, SESSIONMAKER, SETTINGS
from sastre.auth import Permission, allowed
from sastre.operations import (
    do_export_customer,
    do_record_consent,
    do_update_preferences,
)
from sastre.operations.outreach import Outreach
from sastre.web.auth import require
from sastre.web.customers import customer_id_of, validated
from sastre.web.errors import ApiError, read_json_object
from sastre.web.json_input import RecordId

__all__ = ["routes"]

routes = web.RouteTableDef()

# The instants a request may name: wide enough for any real question, narrow enough that moving
# one to any time zone, or a week either way, stays a valid date (year 1 or 9999 would not).
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9000, 1, 1, tzinfo=UTC)


def _within_range(value: datetime) -> datetime:
    try:
        inside = EARLIEST <= value.astimezone(UTC) < LATEST
    except OverflowError:  # year 1 east of UTC, year 9999 west of it: not even a UTC time
        inside = False
    if not inside:
        raise ValueError(
            f"must be between {EARLIEST.date().isoformat()} and {LATEST.date().isoformat()} (UTC)"
        )
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_within_range)]

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
    occurred_at: Instant | None = None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: RecordId
    purpose: Purpose
    channel: Channel | None = None
    topic: str | None = Field(default=None, max_length=64)
    at: Instant | None = None


def _request_facts(request: web.Request) -> dict[str, Any]:
    return {"ip": request.remote, "user_agent": request.headers.get("User-Agent", "")}


def _sees_evidence(request: web.Request) -> bool:
    return allowed(require(request, Permission.CUSTOMERS_READ).role, Permission.CONSENT_EVIDENCE)


def _state_view(state: ConsentState, event: ConsentEvent, *, evidence: bool) -> dict[str, Any]:
    return {
        "channel": state.channel,
        "purpose": state.purpose,
        "topic": state.topic or None,
        "status": state.status,
        "since": state.updated_at.isoformat(),
        "event": event_view(event, full_evidence=evidence),
    }


@routes.get("/api/customers/{customer_id}/consent")
async def show_consent(request: web.Request) -> web.Response:
    evidence = _sees_evidence(request)
    async with request.app[READER]() as session:
        customer = await get_customer(session, customer_id_of(request))
        rows = await current_consents(session, customer.id)
        preferences = await load_preferences(session, customer.id)
    return web.json_response(
        {
            "customer_id": customer.id,
            "consents": [_state_view(s, e, evidence=evidence) for s, e in rows],
            "preferences": preferences.to_json(),
        }
    )


@routes.get("/api/customers/{customer_id}/consent/history")
async def show_history(request: web.Request) -> web.Response:
    evidence = _sees_evidence(request)
    async with request.app[READER]() as session:
        customer = await get_customer(session, customer_id_of(request))
        events = await consent_history(session, customer.id)
    return web.json_response(
        {
            "customer_id": customer.id,
            "events": [event_view(e, full_evidence=evidence) for e in events],
        }
    )


@routes.post("/api/customers/{customer_id}/consent")
async def add_consent(request: web.Request) -> web.Response:
    staff = require(request, Permission.CONSENT_WRITE)
    evidence = allowed(staff.role, Permission.CONSENT_EVIDENCE)
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
    recorded = await do_record_consent(
        request.app[SESSIONMAKER],
        customer_id_of(request),
        body.channel,
        body.purpose,
        body.action,
        Source(body.source),
        actor=staff.actor,
        evidence={**body.evidence, "recorded_via": _request_facts(request)},
        topic=body.topic,
        occurred_at=body.occurred_at,
        outreach=Outreach.from_settings(request.app[SETTINGS]),
    )
    confirmation = recorded.confirmation
    return web.json_response(
        {
            "event": event_view(recorded.event, full_evidence=evidence),
            "consents": [_state_view(s, e, evidence=evidence) for s, e in recorded.current],
            # A double opt-in grant: the request to confirm it, queued (or why not).
            "confirmation": None if confirmation is None else confirmation.to_json(),
        },
        status=201,
    )


@routes.get("/api/customers/{customer_id}/preferences")
async def show_preferences(request: web.Request) -> web.Response:
    require(request, Permission.CUSTOMERS_READ)
    async with request.app[READER]() as session:
        customer = await get_customer(session, customer_id_of(request))
        preferences = await load_preferences(session, customer.id)
    return web.json_response(preferences.to_json())


@routes.put("/api/customers/{customer_id}/preferences")
async def change_preferences(request: web.Request) -> web.Response:
    staff = require(request, Permission.CONSENT_WRITE)
    changes = await read_json_object(request)
    preferences = await do_update_preferences(
        request.app[SESSIONMAKER],
        customer_id_of(request),
        changes,
        actor=staff.actor,
        source=Source.AGENT,
        evidence={"recorded_via": _request_facts(request)},
    )
    return web.json_response(preferences.to_json())


@routes.get("/api/customers/{customer_id}/export")
async def export(request: web.Request) -> web.Response:
    """Everything Sastre holds about the customer (GDPR Art. 15 access request)."""
    staff = require(request, Permission.CUSTOMERS_EXPORT)
    document = await do_export_customer(
        request.app[SESSIONMAKER], customer_id_of(request), actor=staff.actor
    )
    # Personal data in full: no cache on the way may keep a copy.
    return web.json_response(document, headers={"Cache-Control": "no-store"})


@routes.post("/api/contact-decision")
async def contact_decision(request: web.Request) -> web.Response:
    require(request, Permission.CUSTOMERS_READ)
    body = validated(DecisionIn, await read_json_object(request))
    at: datetime = body.at or utcnow()
    settings = request.app[SETTINGS]
    async with request.app[READER]() as session:
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
