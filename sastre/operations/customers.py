"""Acts on customers: create or update one, add to its timeline, merge two records of a person.

A lead known only by identities nobody proved (an e-mail's From without DKIM, which anyone can
forge) does not own those identities against staff: a customer created or updated with one of
them takes the lead in (a merge, audited as such) instead of being refused. Otherwise a forged
mail could claim a future customer's address and block their record (409) until a manual merge.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, Final

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.customers import customer_view, get_customer, plan_merge, upsert_customer
from crm_core.models import Customer, CustomerStatus, Identity, IdentityKind, InteractionKind
from crm_core.records import CustomerRecord
from crm_core.sqltypes import utcnow
from crm_core.timeline import add_interaction, interaction_view
from sastre.db import SessionMaker
from sastre.operations.owned import OWNED_TABLES, Merging
from sastre.operations.unit import Unit, unit_of_work

__all__ = ["do_add_interaction", "do_merge_customers", "do_upsert_customer"]


async def do_upsert_customer(
    sessionmaker: SessionMaker, record: CustomerRecord, *, actor: str
) -> tuple[dict[str, Any], bool]:
    """Create the customer with this external id, or update it: (360 view, created).

    An e-mail, phone or Telegram id held by an unproven lead (see the module's note) is taken
    with the lead: the record is written without it, the lead merged in, then written whole."""
    async with unit_of_work(sessionmaker, actor) as unit:
        leads = await _unproven_leads(unit.session, record)
        if leads:
            held = {kind for kinds in leads.values() for kind in kinds}
            without = replace(
                record,
                email=None if IdentityKind.EMAIL in held else record.email,
                phone=None if IdentityKind.PHONE in held else record.phone,
                telegram=None if IdentityKind.TELEGRAM in held else record.telegram,
            )
            customer, created = await upsert_customer(unit.session, without)
            for lead_id in sorted(leads):
                await _merge(
                    unit, customer.id, lead_id, actor=actor, claimed=sorted(leads[lead_id])
                )
            customer, _ = await upsert_customer(unit.session, record)
        else:
            customer, created = await upsert_customer(unit.session, record)
        given = [f.name for f in fields(record) if getattr(record, f.name) not in (None, {})]
        action = "customer.create" if created else "customer.update"
        unit.audit(action, customer.id, {"external_id": record.external_id, "fields": given})
        unit.publish(action, customer.id)
        view = await customer_view(unit.session, customer.id)
    return view, created


async def do_add_interaction(
    sessionmaker: SessionMaker,
    customer_id: int,
    kind: InteractionKind,
    summary: str,
    *,
    actor: str,
    channel: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A note, purchase, complaint or call-back on the (live) customer's timeline."""
    async with unit_of_work(sessionmaker, actor) as unit:
        customer = await get_customer(unit.session, customer_id)
        interaction = await add_interaction(
            unit.session, customer.id, kind, summary, channel=channel, actor=actor, data=data
        )
        unit.audit(
            "timeline.add", customer.id, {"interaction_id": interaction.id, "kind": kind.value}
        )
        unit.publish("timeline.added", customer.id, interaction_id=interaction.id)
        return interaction_view(interaction)


async def do_merge_customers(
    sessionmaker: SessionMaker,
    survivor_id: int,
    other_id: int,
    *,
    actor: str,
    force: bool = False,
) -> dict[str, Any]:
    """Merge `other_id` into `survivor_id`: everything either record holds becomes the survivor's
    (every table in `OWNED_TABLES`, by its own rule), in one transaction with one audit entry.

    Refused (MergeRefused) for a customer and itself, a record already merged, or two differing
    verified identities of one kind unless `force` (a human's decision, recorded as such).
    Returns the survivor's 360 view.
    """
    async with unit_of_work(sessionmaker, actor) as unit:
        await _merge(unit, survivor_id, other_id, actor=actor, force=force)
        return await customer_view(unit.session, survivor_id)


async def _merge(
    unit: Unit,
    survivor_id: int,
    other_id: int,
    *,
    actor: str,
    force: bool = False,
    claimed: list[str] | None = None,
) -> None:
    """Every owned table's merge step, the audit entry and the note on the timeline.
    `claimed`: the kinds of the unproven lead's identities a staff record claimed."""
    session = unit.session
    plan = await plan_merge(session, survivor_id, other_id, force=force)
    merging = Merging(plan, actor, utcnow())
    tables = {owned.name: await owned.merge(session, merging) for owned in OWNED_TABLES}
    customer_facts = tables.pop("customers")
    facts: dict[str, Any] = {"survivor_id": survivor_id, "merged_id": other_id}
    if claimed is not None:
        facts["reason"] = "unproven lead's identity claimed by a staff record"
        facts["claimed"] = claimed
    unit.audit(
        "customer.merge",
        survivor_id,
        {
            **facts,
            **customer_facts,
            "tables": {name: facts for name, facts in tables.items() if facts is not None},
        },
    )
    why = " (forced)" if force else " (its unproven identity claimed)" if claimed else ""
    await add_interaction(
        session,
        survivor_id,
        InteractionKind.NOTE,
        f"Customer {other_id} merged into this one{why}",
        actor=actor,
        data={"merged_id": other_id},
    )
    unit.publish("customer.merged", survivor_id, merged_id=other_id)


# The identities a staff record may claim from an unproven lead (not its external id).
_CLAIMABLE: Final = frozenset({IdentityKind.EMAIL, IdentityKind.PHONE, IdentityKind.TELEGRAM})


async def _unproven_leads(session: AsyncSession, record: CustomerRecord) -> dict[int, set[str]]:
    """The leads holding one of the record's identities that none of their identities proves:
    {lead id: the kinds it holds}. A lead with any verified identity is somebody: not taken."""
    claims = [(k, v) for k, v in record.identities() if k in _CLAIMABLE]
    if not claims:
        return {}
    rows = await session.execute(
        select(Identity.customer_id, Identity.kind)
        .join(Customer, Customer.id == Identity.customer_id)
        .where(
            or_(*(and_(Identity.kind == k, Identity.value == v) for k, v in claims)),
            Customer.status == CustomerStatus.LEAD.value,
        )
    )
    leads: dict[int, set[str]] = {}
    for lead_id, kind in rows:
        leads.setdefault(lead_id, set()).add(kind)
    if not leads:
        return {}
    proven = set(
        await session.scalars(
            select(Identity.customer_id).where(
                Identity.customer_id.in_(leads), Identity.verified.is_(True)
            )
        )
    )
    return {lead: kinds for lead, kinds in leads.items() if lead not in proven}
