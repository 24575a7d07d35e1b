"""Acts on customers: create or update one, add to its timeline, merge two records of a person."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from crm_core.customers import customer_view, get_customer, plan_merge, upsert_customer
from crm_core.models import InteractionKind
from crm_core.records import CustomerRecord
from crm_core.sqltypes import utcnow
from crm_core.timeline import add_interaction, interaction_view
from sastre.db import SessionMaker
from sastre.operations.owned import OWNED_TABLES, Merging
from sastre.operations.unit import unit_of_work

__all__ = ["do_add_interaction", "do_merge_customers", "do_upsert_customer"]


async def do_upsert_customer(
    sessionmaker: SessionMaker, record: CustomerRecord, *, actor: str
) -> tuple[dict[str, Any], bool]:
    """Create the customer with this external id, or update it: (360 view, created)."""
    async with unit_of_work(sessionmaker, actor) as unit:
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
        session = unit.session
        plan = await plan_merge(session, survivor_id, other_id, force=force)
        merging = Merging(plan, actor, utcnow())
        tables = {owned.name: await owned.merge(session, merging) for owned in OWNED_TABLES}
        customer_facts = tables.pop("customers")
        unit.audit(
            "customer.merge",
            survivor_id,
            {
                "survivor_id": survivor_id,
                "merged_id": other_id,
                **customer_facts,
                "tables": {name: facts for name, facts in tables.items() if facts is not None},
            },
        )
        await add_interaction(
            session,
            survivor_id,
            InteractionKind.NOTE,
            f"Customer {other_id} merged into this one" + (" (forced)" if force else ""),
            actor=actor,
            data={"merged_id": other_id},
        )
        unit.publish("customer.merged", survivor_id, merged_id=other_id)
        return await customer_view(session, survivor_id)
