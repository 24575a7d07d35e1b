"""Staff records and unproven leads: an address nobody proved does not block the customer who
claims it (a forged From must not make a real customer's record a 409)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crm_core.customers import IdentityConflict
from crm_core.models import AuditEntry, Customer, CustomerStatus, Identity
from crm_core.records import parse_customer
from sastre.db import SessionMaker
from sastre.operations import do_upsert_customer

ACTOR = "staff:ana"
ADDRESS = "newperson@corp.example"


async def lead(sessionmaker: SessionMaker, *identities: tuple[str, str, bool]) -> int:
    """A lead as the inbound path makes one: identities (kind, value, verified)."""
    async with sessionmaker.begin() as session:
        customer = Customer(status=CustomerStatus.LEAD.value)
        session.add(customer)
        await session.flush()
        for kind, value, verified in identities:
            session.add(
                Identity(customer_id=customer.id, kind=kind, value=value, verified=verified)
            )
        return customer.id


def record(**fields: str) -> dict[str, str]:
    return {"external_id": "CRM-777", "name": "New Person", **fields}


async def test_an_unproven_leads_address_is_taken_with_the_lead(
    sessionmaker: SessionMaker,
) -> None:
    forged = await lead(sessionmaker, ("email", ADDRESS, False))
    view, created = await do_upsert_customer(
        sessionmaker, parse_customer(record(email=ADDRESS), "US"), actor=ACTOR
    )
    assert created
    assert view["id"] != forged
    async with sessionmaker() as session:
        owner = await session.scalar(select(Identity.customer_id).where(Identity.value == ADDRESS))
        merged = await session.get_one(Customer, forged)
        audit = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "customer.merge")
        )
    assert owner == view["id"]
    assert merged.merged_into_id == view["id"]
    assert audit is not None
    assert audit.data["claimed"] == ["email"]
    assert audit.data["merged_id"] == forged


async def test_a_lead_with_a_proven_identity_still_conflicts(sessionmaker: SessionMaker) -> None:
    await lead(sessionmaker, ("email", ADDRESS, False), ("phone", "+14155552671", True))
    with pytest.raises(IdentityConflict):
        await do_upsert_customer(
            sessionmaker, parse_customer(record(email=ADDRESS), "US"), actor=ACTOR
        )


async def test_a_proven_address_still_conflicts(sessionmaker: SessionMaker) -> None:
    await lead(sessionmaker, ("email", ADDRESS, True))
    with pytest.raises(IdentityConflict):
        await do_upsert_customer(
            sessionmaker, parse_customer(record(email=ADDRESS), "US"), actor=ACTOR
        )


async def test_an_existing_customer_takes_an_unproven_lead_on_update(
    sessionmaker: SessionMaker,
) -> None:
    first, created = await do_upsert_customer(
        sessionmaker, parse_customer(record(), "US"), actor=ACTOR
    )
    forged = await lead(sessionmaker, ("email", ADDRESS, False))
    view, created = await do_upsert_customer(
        sessionmaker, parse_customer(record(email=ADDRESS), "US"), actor=ACTOR
    )
    assert (view["id"], created) == (first["id"], False)
    async with sessionmaker() as session:
        assert (await session.get_one(Customer, forged)).merged_into_id == first["id"]
