"""Customers: finding, resolving, creating or updating, the customer row's part of a merge, and
the 360 view.

Every function takes the caller's `AsyncSession` (one unit of work) and only flushes: the caller
commits, so a resolution and whatever caused it land together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Select, and_, bindparam, delete, func, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.base import Executable

from crm_core.identities import InvalidIdentity, normalise
from crm_core.models import (
    Customer,
    CustomerStatus,
    Identity,
    IdentityKind,
    customers_table,
    identities_table,
)
from crm_core.records import CustomerRecord, cents_to_units
from crm_core.sqltypes import utcnow
from crm_core.tiers import tier_reason
from crm_core.timeline import TIMELINE_LIMIT, interaction_view, timeline
from crm_core.unnest import given_rows, python_defaults, unnested

__all__ = [
    "CustomerNotFound",
    "IdentityConflict",
    "Lead",
    "MergeConflict",
    "MergePlan",
    "MergeRefused",
    "attach_identity",
    "create_leads",
    "customer_view",
    "find_customer",
    "fold_customer",
    "get_customer",
    "merge_conflicts",
    "merged_into",
    "plan_merge",
    "resolve",
    "upsert_customer",
]


class CustomerNotFound(LookupError):
    pass


class IdentityConflict(ValueError):
    """An identity in the input already belongs to another customer."""

    def __init__(self, kind: str, value: str, owner_id: int) -> None:
        super().__init__(f"{kind}: {value} already belongs to customer {owner_id}")
        self.kind, self.value, self.owner_id = kind, value, owner_id


@dataclass(frozen=True, slots=True)
class MergeConflict:
    kind: str
    values: tuple[tuple[str, ...], tuple[str, ...]]


class MergeRefused(ValueError):
    def __init__(self, reason: str, conflicts: Sequence[MergeConflict] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.conflicts = list(conflicts)


async def get_customer(session: AsyncSession, customer_id: int) -> Customer:
    """The live customer with this id, following merges to the survivor."""
    for _ in range(16):  # a merge chain is short; the bound only guards against a cycle
        customer = await session.get(Customer, customer_id)
        if customer is None:
            raise CustomerNotFound(f"no customer {customer_id}")
        if customer.merged_into_id is None:
            return customer
        customer_id = customer.merged_into_id
    raise CustomerNotFound(f"customer {customer_id} has a broken merge chain")


async def find_customer(session: AsyncSession, kind: str, value: str, region: str) -> Customer:
    """The customer holding identity (kind, value); raises InvalidIdentity or CustomerNotFound.

    A phone identity kept as written (a short code's, a sender id's: `crm_core.phones`) is
    found by that value too; a value that is neither is refused with the number's reason."""
    try:
        normalised = normalise(kind, value, region)
    except InvalidIdentity:
        if kind != IdentityKind.PHONE or not value.strip():
            raise
        written = await _holder_as_written(session, kind, value.strip())
        if written is None:
            raise
        return written
    # One round trip for the usual case; a merged tombstone is followed by get_customer.
    customer = await session.scalar(
        select(Customer)
        .join(Identity, Identity.customer_id == Customer.id)
        .where(Identity.kind == kind, Identity.value == normalised)
    )
    if customer is None:
        raise CustomerNotFound(f"no customer with {kind} {normalised}")
    if customer.merged_into_id is None:
        return customer
    return await get_customer(session, customer.merged_into_id)


async def _holder_as_written(session: AsyncSession, kind: str, value: str) -> Customer | None:
    customer = await session.scalar(
        select(Customer)
        .join(Identity, Identity.customer_id == Customer.id)
        .where(Identity.kind == kind, Identity.value == value)
    )
    if customer is None or customer.merged_into_id is None:
        return customer
    return await get_customer(session, customer.merged_into_id)


async def resolve(
    session: AsyncSession,
    kind: str,
    value: str,
    region: str,
    *,
    verified: bool = False,
    language: str | None = None,
) -> tuple[Customer, bool]:
    """The one customer behind a sender address, creating a lead if nobody has it yet.

    Returns (customer, created). A new lead keeps `language` (a channel's hint, such as the web
    chat's `lang`), so replies after the first one are in it too. Safe under concurrency: two
    first messages from the same new address race on the unique (kind, value) constraint and
    both end up with the same customer.
    """
    normalised = normalise(kind, value, region)
    try:
        return await find_customer(session, kind, normalised, region), False
    except CustomerNotFound:
        pass
    try:
        async with session.begin_nested():
            customer = Customer(status=CustomerStatus.LEAD.value, language=language)
            session.add(customer)
            await session.flush()
            session.add(
                Identity(customer_id=customer.id, kind=kind, value=normalised, verified=verified)
            )
            await session.flush()
    except IntegrityError:
        return await find_customer(session, kind, normalised, region), False
    return customer, True


@dataclass(frozen=True, slots=True)
class Lead:
    """An address nobody may hold yet, already normalised, as `resolve` would create it."""

    kind: str
    value: str
    verified: bool = False
    language: str | None = None


_NEW_CUSTOMERS = insert(customers_table).returning(*customers_table.c)
_ORPHANS = delete(customers_table).where(customers_table.c.id.in_(bindparam("ids", expanding=True)))


def _new_identities(dialect: str) -> Executable:
    """INSERT ... ON CONFLICT DO NOTHING: an address someone holds by now is skipped, not an
    error that would abort the caller's transaction; the rows that come back are the new ones."""
    identities = identities_table
    made = postgresql.insert(identities) if dialect == "postgresql" else sqlite.insert(identities)
    return made.on_conflict_do_nothing(
        index_elements=[identities.c.kind, identities.c.value]
    ).returning(identities.c.kind, identities.c.value)


_NEW_IDENTITIES = {name: _new_identities(name) for name in ("sqlite", "postgresql")}


def _leads_statement() -> Select[Any]:
    """PostgreSQL: the customers and their identities in one statement. Each lead's customer id
    is drawn from the table's sequence first (`made`, which PostgreSQL runs once: it is used
    twice and calls a volatile function), so each identity names its own customer; rows come
    back as the customers inserted, with the address their identity took (NULL where someone
    holds it by now). The foreign key is checked at the end of the statement, when both are
    there. The customers' other columns take their defaults (a lead's status among them)."""
    now = bindparam("lead_now", type_=customers_table.c.created_at.type)
    defaults = python_defaults(customers_table, ("id", "language", "created_at", "updated_at"))
    given = given_rows(
        identities_table, ("kind", "value", "verified"), prefix="lead", keys=("language",)
    )
    made = select(
        func.nextval(func.pg_get_serial_sequence(customers_table.name, "id")).label("id"),
        *given.c,
    ).cte("made")
    customer = (
        postgresql.insert(customers_table)
        .from_select(
            ["id", "language", "created_at", "updated_at", *defaults],
            select(made.c.id, made.c.language, now, now, *defaults.values()),
            include_defaults=False,
        )
        .returning(*customers_table.c)
        .cte("customer")
    )
    identity = (
        postgresql.insert(identities_table)
        .from_select(
            ["kind", "value", "customer_id", "verified", "created_at"],
            select(made.c.kind, made.c.value, made.c.id, made.c.verified, now),
            include_defaults=False,
        )
        .on_conflict_do_nothing(index_elements=["kind", "value"])
        .returning(
            identities_table.c.kind, identities_table.c.value, identities_table.c.customer_id
        )
        .cte("identity")
    )
    return select(
        customer, identity.c.kind.label("lead_kind"), identity.c.value.label("lead_value")
    ).select_from(customer.outerjoin(identity, identity.c.customer_id == customer.c.id))


_LEADS = _leads_statement()


async def create_leads(
    session: AsyncSession, leads: Sequence[Lead]
) -> dict[tuple[str, str], Row[Any]]:
    """A lead for each address nobody holds, in one statement on PostgreSQL and two on SQLite
    however many there are (a burst of first messages); returns the customers rows created, as
    stored, by (kind, value). An address someone holds (a merged record's survivor, or another
    process's lead created meanwhile) is left to `resolve`, and the customer made for it
    deleted (nothing refers to it).

    What `resolve` does for one address, for many at once: the same rows."""
    unique: dict[tuple[str, str], Lead] = {}
    for lead in leads:
        unique.setdefault((lead.kind, lead.value), lead)  # an address twice: the first says how
    if not unique:
        return {}
    if unnested(session):
        return await _create_leads_together(session, list(unique.values()))
    return await _create_leads_apart(session, list(unique.values()))


async def _create_leads_together(
    session: AsyncSession, leads: Sequence[Lead]
) -> dict[tuple[str, str], Row[Any]]:
    parameters = {
        "lead_kind": [lead.kind for lead in leads],
        "lead_value": [lead.value for lead in leads],
        "lead_verified": [lead.verified for lead in leads],
        "lead_language": [lead.language for lead in leads],
        "lead_now": utcnow(),
    }
    made: dict[tuple[str, str], Row[Any]] = {}
    orphans: list[int] = []
    for row in await session.execute(_LEADS, parameters):
        if row.lead_kind is None:
            orphans.append(row.id)
        else:
            made[(row.lead_kind, row.lead_value)] = row
    if orphans:
        await session.execute(_ORPHANS, {"ids": orphans})
    return made


async def _create_leads_apart(
    session: AsyncSession, leads: Sequence[Lead]
) -> dict[tuple[str, str], Row[Any]]:
    """SQLite: one INSERT for the customers and one for their identities. The new customers
    differ only by language, so the ids an INSERT returns (in no promised order) are handed
    out within a language."""
    by_language: dict[str | None, list[Lead]] = {}
    for lead in leads:
        by_language.setdefault(lead.language, []).append(lead)
    now = utcnow()
    identities: list[dict[str, Any]] = []
    made: dict[tuple[str, str], Row[Any]] = {}
    for language, group in by_language.items():
        row = {"status": CustomerStatus.LEAD.value, "language": language}
        rows = [{**row, "created_at": now, "updated_at": now} for _ in group]
        stored = (await session.execute(_NEW_CUSTOMERS, rows if len(rows) > 1 else rows[0])).all()
        for lead, customer in zip(group, stored, strict=True):
            made[(lead.kind, lead.value)] = customer
            identities.append(
                {
                    "kind": lead.kind,
                    "value": lead.value,
                    "customer_id": customer.id,
                    "verified": lead.verified,
                    "created_at": now,
                }
            )
    statement = _NEW_IDENTITIES[session.get_bind().dialect.name]
    taken = await session.execute(statement, identities if len(identities) > 1 else identities[0])
    created = {(row.kind, row.value) for row in taken}
    if orphans := [customer.id for key, customer in made.items() if key not in created]:
        await session.execute(_ORPHANS, {"ids": orphans})
    return {key: customer for key, customer in made.items() if key in created}


async def attach_identity(
    session: AsyncSession,
    customer_id: int,
    kind: str,
    value: str,
    region: str,
    *,
    verified: bool = False,
) -> bool:
    """Give the customer this identity if nobody holds it yet (True), or confirm they already do.

    Raises IdentityConflict when another customer holds it: joining two people is a merge.
    Used when a channel proves who the sender is (a web chat tied to a signed-in site user).
    """
    normalised = normalise(kind, value, region)
    customer = await get_customer(session, customer_id)
    current = await session.get(Identity, (kind, normalised))
    if current is not None:
        if current.customer_id != customer.id:
            raise IdentityConflict(kind, normalised, current.customer_id)
        if verified and not current.verified:
            current.verified = True
        return False
    session.add(Identity(customer_id=customer.id, kind=kind, value=normalised, verified=verified))
    await session.flush()
    return True


async def _identity_owners(
    session: AsyncSession, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    wanted = [and_(Identity.kind == kind, Identity.value == value) for kind, value in pairs]
    if not wanted:
        return {}
    rows = await session.execute(
        select(Identity.kind, Identity.value, Identity.customer_id).where(or_(*wanted))
    )
    return {(kind, value): owner for kind, value, owner in rows}


def _apply_record(customer: Customer, record: CustomerRecord) -> None:
    for name in ("name", "language", "timezone", "country"):
        value = getattr(record, name)
        if value is not None:
            setattr(customer, name, value)
    for name in ("revenue_cents", "cost_to_serve_cents", "potential_value_cents"):
        value = getattr(record, name)
        if value is not None:
            setattr(customer, name, value)
    if record.attributes:
        customer.attributes = {**(customer.attributes or {}), **record.attributes}
    customer.status = CustomerStatus.CUSTOMER.value


async def upsert_customer(session: AsyncSession, record: CustomerRecord) -> tuple[Customer, bool]:
    """Create the customer with this external id, or update it. Returns (customer, created).

    Fields not given keep their stored value; attributes are merged key by key. An e-mail, phone
    or Telegram id that belongs to another customer is refused (IdentityConflict): joining two
    people is a merge, and a merge is a deliberate act.
    """
    owners = await _identity_owners(session, record.identities())
    external_key = (IdentityKind.EXTERNAL.value, record.external_id)
    customer_id = owners.get(external_key)
    for (kind, value), owner in owners.items():
        if owner != customer_id:
            raise IdentityConflict(kind, value, owner)
    created = customer_id is None
    if customer_id is None:
        customer = Customer()
        session.add(customer)
        await session.flush()
    else:
        customer = await get_customer(session, customer_id)
    _apply_record(customer, record)
    for kind, value in record.identities():
        if (kind, value) not in owners:
            session.add(Identity(customer_id=customer.id, kind=kind, value=value))
    await session.flush()
    return customer, created


# --- merging ------------------------------------------------------------------------------------


def merge_conflicts(survivor: Iterable[Identity], other: Iterable[Identity]) -> list[MergeConflict]:
    """Kinds where both customers hold verified identities and they differ: a human must decide.

    Two different verified e-mail addresses are strong evidence of two different people.
    """

    def verified_by_kind(identities: Iterable[Identity]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for identity in identities:
            if identity.verified:
                found.setdefault(identity.kind, set()).add(identity.value)
        return found

    mine, theirs = verified_by_kind(survivor), verified_by_kind(other)
    return [
        MergeConflict(kind, (tuple(sorted(mine[kind])), tuple(sorted(theirs[kind]))))
        for kind in sorted(mine.keys() & theirs.keys())
        if mine[kind] != theirs[kind]
    ]


def _snapshot(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "status": customer.status,
        "name": customer.name,
        "language": customer.language,
        "timezone": customer.timezone,
        "country": customer.country,
        "revenue_cents": customer.revenue_cents,
        "cost_to_serve_cents": customer.cost_to_serve_cents,
        "potential_value_cents": customer.potential_value_cents,
        "attributes": customer.attributes,
    }


def _combine(survivor: Customer, other: Customer) -> dict[str, Any]:
    """Fold `other` into `survivor`; return the attributes where the survivor's value won."""
    for name in ("name", "language", "timezone", "country"):
        if getattr(survivor, name) is None:
            setattr(survivor, name, getattr(other, name))
    # Two records of one person: what they bought and cost adds up; potential is one estimate.
    survivor.revenue_cents += other.revenue_cents
    survivor.cost_to_serve_cents += other.cost_to_serve_cents
    survivor.potential_value_cents = max(
        survivor.potential_value_cents, other.potential_value_cents
    )
    mine, theirs = survivor.attributes or {}, other.attributes or {}
    overridden = {k: v for k, v in theirs.items() if k in mine and mine[k] != v}
    survivor.attributes = {**theirs, **mine}
    if other.status == CustomerStatus.CUSTOMER.value:
        survivor.status = CustomerStatus.CUSTOMER.value
    return overridden


@dataclass(frozen=True, slots=True)
class MergePlan:
    """Two live customer rows, locked, that may be merged: what `fold_customer` and the other
    tables' merge steps (`sastre.operations`) work from."""

    survivor: Customer
    other: Customer
    conflicts: tuple[MergeConflict, ...]
    forced: bool


async def plan_merge(
    session: AsyncSession, survivor_id: int, other_id: int, *, force: bool = False
) -> MergePlan:
    """Lock both customers and check they may be merged; nothing is changed yet.

    Refused (MergeRefused) for a customer and itself, for a record already merged, and when
    both hold differing verified identities of one kind, unless `force` (a human's decision,
    recorded as such). CustomerNotFound for an unknown id.
    """
    if survivor_id == other_id:
        raise MergeRefused("a customer cannot be merged with itself")
    first, second = sorted((survivor_id, other_id))
    # Lock both rows in id order so two crossing merges cannot deadlock (PostgreSQL). FOR NO KEY
    # UPDATE, not FOR UPDATE: it keeps other merges and updates out, yet lets rows that refer to
    # these customers be added meanwhile (a foreign key takes KEY SHARE). With FOR UPDATE, a turn
    # holding its conversation and adding a message would deadlock with a merge waiting for
    # that conversation.
    rows = {
        c.id: c
        for c in await session.scalars(
            select(Customer)
            .where(Customer.id.in_((first, second)))
            .order_by(Customer.id)
            .with_for_update(key_share=True)
        )
    }
    for customer_id in (survivor_id, other_id):
        if customer_id not in rows:
            raise CustomerNotFound(f"no customer {customer_id}")
        if rows[customer_id].merged_into_id is not None:
            raise MergeRefused(
                f"customer {customer_id} was already merged into {rows[customer_id].merged_into_id}"
            )
    identities = list(
        await session.scalars(select(Identity).where(Identity.customer_id.in_((first, second))))
    )
    conflicts = merge_conflicts(
        [i for i in identities if i.customer_id == survivor_id],
        [i for i in identities if i.customer_id == other_id],
    )
    if conflicts and not force:
        raise MergeRefused(
            "both customers hold different verified identities of the same kind", conflicts
        )
    return MergePlan(rows[survivor_id], rows[other_id], tuple(conflicts), force)


async def fold_customer(session: AsyncSession, plan: MergePlan) -> dict[str, Any]:
    """The customer rows' part of a merge: the survivor takes the other's fields and value, the
    other becomes a tombstone pointing at it (old ids keep resolving). Returns what the merge's
    audit entry keeps of it: the other's full snapshot and the attributes the survivor kept.

    Only the `customers` row: every other table a customer owns is carried over by its own step
    in `sastre.operations.owned` (`do_merge_customers` runs them all)."""
    survivor, other = plan.survivor, plan.other
    snapshot = _snapshot(other)
    overridden = _combine(survivor, other)
    other.status = CustomerStatus.MERGED.value
    other.merged_into_id = survivor.id
    await session.flush()
    return {
        "forced": plan.forced,
        "conflicts": [
            {"kind": c.kind, "survivor": list(c.values[0]), "merged": list(c.values[1])}
            for c in plan.conflicts
        ],
        "merged_snapshot": snapshot,
        "overridden_attributes": overridden,
    }


async def merged_into(session: AsyncSession, customer_id: int) -> list[int]:
    """Every record merged into this customer, directly or along a chain, oldest merge first."""
    found: list[int] = []
    frontier = [customer_id]
    for _ in range(16):  # as get_customer: a chain is short, the bound only guards a cycle
        frontier = list(
            await session.scalars(
                select(Customer.id)
                .where(Customer.merged_into_id.in_(frontier))
                .order_by(Customer.id)
            )
        )
        if not frontier:
            break
        found.extend(frontier)
    return found


# --- the 360 view -------------------------------------------------------------------------------


async def customer_view(
    session: AsyncSession, customer_id: int, *, interactions: int = TIMELINE_LIMIT
) -> dict[str, Any]:
    """Everything an agent needs at the moment of contact, JSON-ready."""
    customer = await get_customer(session, customer_id)
    identities = await session.scalars(
        select(Identity)
        .where(Identity.customer_id == customer.id)
        .order_by(Identity.kind, Identity.created_at, Identity.value)
    )
    recent = await timeline(session, customer.id, limit=interactions)
    reason, _ = await tier_reason(session, customer.id)
    return {
        "id": customer.id,
        "status": customer.status,
        "name": customer.name,
        "language": customer.language,
        "timezone": customer.timezone,
        "country": customer.country,
        "tier": customer.tier,
        "tier_reason": reason,
        "value": {
            "revenue": cents_to_units(customer.revenue_cents),
            "cost_to_serve": cents_to_units(customer.cost_to_serve_cents),
            "profit": cents_to_units(customer.revenue_cents - customer.cost_to_serve_cents),
            "potential_value": cents_to_units(customer.potential_value_cents),
        },
        "identities": [
            {"kind": i.kind, "value": i.value, "verified": i.verified} for i in identities
        ],
        "attributes": customer.attributes or {},
        "interactions": [interaction_view(i) for i in recent],
        "created_at": customer.created_at.isoformat(),
        "updated_at": customer.updated_at.isoformat(),
    }
