"""The staff customer API: the 360 view, look-ups by identity, create-or-update, merge, notes.

Handlers parse, call one act of `sastre.operations` (or a read), and render."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from crm_core.customers import customer_view, find_customer
from crm_core.models import IdentityKind, InteractionKind
from crm_core.records import parse_customer
from sastre.appkeys import READER, SESSIONMAKER, SETTINGS
from sastre.auth import Permission
from sastre.operations import do_add_interaction, do_merge_customers, do_upsert_customer
from sastre.web.auth import require
from sastre.web.errors import ApiError, read_json_object
from sastre.web.json_input import RecordId
from sastre.web.paging import MAX_ID, whole_number

__all__ = ["routes"]

routes = web.RouteTableDef()
M = TypeVar("M", bound=BaseModel)

LOOKUP_KEYS = {
    "email": IdentityKind.EMAIL,
    "phone": IdentityKind.PHONE,
    "telegram": IdentityKind.TELEGRAM,
    "webchat": IdentityKind.WEBCHAT,
    "external_id": IdentityKind.EXTERNAL,
}


class CustomerIn(BaseModel):
    """POST /api/customers: create or update by external_id; omitted fields stay as stored."""

    model_config = ConfigDict(extra="forbid")

    external_id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    telegram: str | StrictInt | None = None  # a user id; true is not one
    country: str | None = None
    timezone: str | None = None
    language: str | None = None
    revenue: Decimal | None = None
    cost_to_serve: Decimal | None = None
    potential_value: Decimal | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    other_id: RecordId
    force: bool = False


class InteractionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["note", "purchase", "complaint", "callback"]
    summary: str = Field(min_length=1, max_length=10_000)
    channel: str | None = Field(default=None, max_length=16)
    data: dict[str, Any] = Field(default_factory=dict)


def validated(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as e:
        detail = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "reason": err["msg"]}
            for err in e.errors()
        ]
        raise ApiError(400, "invalid request body", detail) from None


def customer_id_of(request: web.Request) -> int:
    raw = request.match_info["customer_id"]
    number = whole_number(raw, below=MAX_ID)
    if number is None:
        raise ApiError(400, "the customer id must be a number below 2**63", {"id": raw[:40]})
    return number


@routes.get("/api/customers/{customer_id}")
async def show_customer(request: web.Request) -> web.Response:
    require(request, Permission.CUSTOMERS_READ)
    async with request.app[READER]() as session:
        return web.json_response(await customer_view(session, customer_id_of(request)))


@routes.get("/api/customers")
async def lookup_customer(request: web.Request) -> web.Response:
    require(request, Permission.CUSTOMERS_READ)
    given = [key for key in LOOKUP_KEYS if key in request.query]
    if len(given) != 1:
        raise ApiError(
            400, "give exactly one of these query parameters", {"parameters": list(LOOKUP_KEYS)}
        )
    key = given[0]
    region = request.app[SETTINGS].default_region
    async with request.app[READER]() as session:
        customer = await find_customer(session, LOOKUP_KEYS[key], request.query[key], region)
        return web.json_response(await customer_view(session, customer.id))


@routes.post("/api/customers")
async def put_customer(request: web.Request) -> web.Response:
    staff = require(request, Permission.CUSTOMERS_WRITE)
    body = validated(CustomerIn, await read_json_object(request))
    fields = body.model_dump(exclude={"attributes"}, exclude_none=True)
    record = parse_customer(
        {name: str(value) for name, value in fields.items()}, request.app[SETTINGS].default_region
    )
    record = dataclasses.replace(record, attributes=body.attributes)
    view, created = await do_upsert_customer(request.app[SESSIONMAKER], record, actor=staff.actor)
    return web.json_response(view, status=201 if created else 200)


@routes.post("/api/customers/{customer_id}/merge")
async def merge(request: web.Request) -> web.Response:
    staff = require(request, Permission.CUSTOMERS_MERGE)
    body = validated(MergeIn, await read_json_object(request))
    if body.force:
        require(request, Permission.CUSTOMERS_FORCE_MERGE)
    view = await do_merge_customers(
        request.app[SESSIONMAKER],
        customer_id_of(request),
        body.other_id,
        actor=staff.actor,
        force=body.force,
    )
    return web.json_response(view)


@routes.post("/api/customers/{customer_id}/interactions")
async def add_note(request: web.Request) -> web.Response:
    staff = require(request, Permission.TIMELINE_WRITE)
    body = validated(InteractionIn, await read_json_object(request))
    created = await do_add_interaction(
        request.app[SESSIONMAKER],
        customer_id_of(request),
        InteractionKind(body.kind),
        body.summary,
        actor=staff.actor,
        channel=body.channel,
        data=body.data,
    )
    return web.json_response(created, status=201)
