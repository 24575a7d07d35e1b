"""The GDPR access request (Art. 15): everything Sastre holds about one person."""

from __future__ import annotations

from typing import Any

from crm_core.customers import get_customer, merged_into
from crm_core.sqltypes import utcnow
from sastre.db import SessionMaker
from sastre.operations.owned import OWNED_TABLES, Exporting
from sastre.operations.unit import unit_of_work

__all__ = ["do_export_customer"]


async def do_export_customer(
    sessionmaker: SessionMaker, customer_id: int, *, actor: str
) -> dict[str, Any]:
    """One section per table in `OWNED_TABLES`, for the live customer and every record merged
    into it (a merged id is exported as its survivor: it is the same person).

    An export is itself recorded, in the same transaction that reads it: who saw everything,
    and when. The entry is written first, so the document lists it too."""
    async with unit_of_work(sessionmaker, actor) as unit:
        customer = await get_customer(unit.session, customer_id)
        ids = (customer.id, *await merged_into(unit.session, customer.id))
        unit.audit("customer.export", customer.id, {"asked_for": customer_id})
        await unit.session.flush()
        exporting = Exporting(customer.id, ids)
        document: dict[str, Any] = {
            "exported_at": utcnow().isoformat(),
            "customer_id": customer.id,
            "merged_ids": list(ids[1:]),
        }
        for owned in OWNED_TABLES:
            document[owned.key] = await owned.export(unit.session, exporting)
        unit.publish("customer.exported", customer.id)
    return document
