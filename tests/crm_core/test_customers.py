"""Customers: create or update from a record, refuse identities that belong to someone else, merge
two records of one person (keeping everything, leaving a tombstone), and the 360 view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core import (
    Customer,
    CustomerNotFound,
    Identity,
    IdentityConflict,
    IdentityKind,
    InvalidIdentity,
    MergeRefused,
    add_interaction,
    customer_view,
    find_customer,
    get_customer,
    resolve,
    upsert_customer,
)
from crm_core.customers import (
    Lead,
    MergeConflict,
    attach_identity,
    create_leads,
    fold_customer,
    merged_into,
    plan_merge,
)
from crm_core.models import AuditEntry, InteractionKind
from crm_core.records import parse_customer
from sastre.db import SessionMaker

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


async def upsert(session: AsyncSession, external_id: str, **fields: Any) -> tuple[Customer, bool]:
    return await upsert_customer(
        session, parse_customer({"external_id": external_id, **fields}, "US")
    )


async def new_customer(session: AsyncSession, external_id: str, **fields: Any) -> Customer:
    customer, created = await upsert(session, external_id, **fields)
    assert created
    return customer


async def identities_of(session: AsyncSession, customer_id: int) -> list[tuple[str, str, bool]]:
    rows = await session.execute(
        select(Identity.kind, Identity.value, Identity.verified)
        .where(Identity.customer_id == customer_id)
        .order_by(Identity.kind, Identity.value)
    )
    return [(kind, value, verified) for kind, value, verified in rows]


async def count(session: AsyncSession, model: type[Customer] | type[AuditEntry]) -> int:
    return await session.scalar(select(func.count()).select_from(model)) or 0


async def merge_audit(session: AsyncSession) -> dict[str, Any]:
    entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "customer.merge"))
    assert entry is not None
    return entry.data


# --- create or update ---------------------------------------------------------------------------


async def test_upsert_creates_a_customer_with_its_identities(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        customer, created = await upsert(
            session,
            "CRM-1",
            name="Ana",
            email="Ana@Example.com",
            phone="(415) 555-2671",
            revenue="12.5",
            loyalty="gold",
        )
    assert created
    async with sessionmaker() as session:
        stored = await session.get_one(Customer, customer.id)
        assert await identities_of(session, customer.id) == [
            ("email", "ana@example.com", False),
            ("external", "CRM-1", False),
            ("phone", "+14155552671", False),
        ]
    assert (stored.status, stored.name, stored.revenue_cents, stored.attributes) == (
        "customer",
        "Ana",
        1250,
        {"loyalty": "gold"},
    )


async def test_upsert_updates_the_customer_with_that_external_id(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        first = await new_customer(
            session, "CRM-1", name="Ana", language="es", revenue="10", loyalty="gold", segment="a"
        )
    async with sessionmaker.begin() as session:
        again, created = await upsert(
            session, "CRM-1", name="Ana García", revenue="", segment="b", store="Madrid"
        )
    assert not created
    assert again.id == first.id
    async with sessionmaker() as session:
        stored = await session.get_one(Customer, first.id)
        assert await count(session, Customer) == 1
    assert (stored.name, stored.language, stored.revenue_cents) == ("Ana García", "es", 1000)
    assert stored.attributes == {"loyalty": "gold", "segment": "b", "store": "Madrid"}


async def test_upsert_adds_new_identities_and_keeps_the_old(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        customer = await new_customer(session, "CRM-1", email="ana@example.com")
    async with sessionmaker.begin() as session:
        await upsert(session, "CRM-1", email="ana.garcia@example.com", telegram="4242")
    async with sessionmaker() as session:
        assert await identities_of(session, customer.id) == [
            ("email", "ana.garcia@example.com", False),
            ("email", "ana@example.com", False),
            ("external", "CRM-1", False),
            ("telegram", "4242", False),
        ]


async def test_upsert_refuses_an_email_that_belongs_to_another_customer(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        lead, _ = await resolve(session, IdentityKind.EMAIL, "ana@example.com", "US")
    with pytest.raises(IdentityConflict) as caught:
        async with sessionmaker.begin() as session:
            await upsert(session, "CRM-1", email="ANA@example.com")
    assert (caught.value.kind, caught.value.value, caught.value.owner_id) == (
        "email",
        "ana@example.com",
        lead.id,
    )
    assert str(caught.value) == f"email: ana@example.com already belongs to customer {lead.id}"
    async with sessionmaker() as session:
        assert await count(session, Customer) == 1
        assert (await session.get_one(Customer, lead.id)).status == "lead"


async def test_upsert_refuses_an_update_claiming_another_customers_phone(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        ana = await new_customer(session, "CRM-1", phone="(415) 555-2671")
        await new_customer(session, "CRM-2", name="Bob")
    with pytest.raises(IdentityConflict) as caught:
        async with sessionmaker.begin() as session:
            await upsert(session, "CRM-2", name="Robert", phone="+1 415 555 2671")
    assert caught.value.owner_id == ana.id
    async with sessionmaker() as session:
        assert (await find_customer(session, "external", "CRM-2", "US")).name == "Bob"


# --- finding ------------------------------------------------------------------------------------


async def test_find_customer_normalises_the_value(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        customer = await new_customer(session, "CRM-1", email="ana@bücher.de")
    async with sessionmaker() as session:
        found = await find_customer(session, IdentityKind.EMAIL, " Ana@BÜCHER.de", "US")
    assert found.id == customer.id


async def test_find_customer_without_a_match_is_not_found(sessionmaker: SessionMaker) -> None:
    async with sessionmaker() as session:
        with pytest.raises(CustomerNotFound, match=r"no customer with email nobody@example\.com"):
            await find_customer(session, IdentityKind.EMAIL, "nobody@example.com", "US")


async def test_find_customer_with_an_invalid_value_is_refused(sessionmaker: SessionMaker) -> None:
    async with sessionmaker() as session:
        with pytest.raises(InvalidIdentity):
            await find_customer(session, IdentityKind.PHONE, "call me", "US")


async def test_get_customer_of_an_unknown_id_is_not_found(sessionmaker: SessionMaker) -> None:
    async with sessionmaker() as session:
        with pytest.raises(CustomerNotFound, match="no customer 999"):
            await get_customer(session, 999)


# --- merging ------------------------------------------------------------------------------------


async def two_records_of_ana(session: AsyncSession) -> tuple[Customer, Customer]:
    """The survivor from the shop, the other from the call centre, with a timeline each."""
    survivor = await new_customer(
        session,
        "SHOP-1",
        name="Ana",
        email="ana@example.com",
        revenue="100",
        cost_to_serve="10",
        potential_value="500",
        loyalty="gold",
        store="Madrid",
    )
    other = await new_customer(
        session,
        "CALL-7",
        name="Ana García",
        language="es",
        phone="(415) 555-2671",
        revenue="50",
        cost_to_serve="5",
        potential_value="800",
        loyalty="silver",
        channel="phone",
    )
    await add_interaction(session, survivor.id, InteractionKind.PURCHASE, "shoes", occurred_at=T0)
    for hour in (1, 2):
        await add_interaction(
            session,
            other.id,
            InteractionKind.CALLBACK,
            f"call {hour}",
            occurred_at=T0 + timedelta(hours=hour),
        )
    return survivor, other


async def fold(
    session: AsyncSession, survivor_id: int, other_id: int, *, force: bool = False
) -> tuple[Customer, dict[str, Any]]:
    """The customer rows' part of a merge; the whole act, every table a customer owns, is
    `sastre.operations.do_merge_customers` (tests/sastre/operations/test_merge.py)."""
    plan = await plan_merge(session, survivor_id, other_id, force=force)
    facts = await fold_customer(session, plan)
    return plan.survivor, facts


async def test_merge_keeps_every_attribute_and_the_survivors_value_wins(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        survivor, other = await two_records_of_ana(session)
        merged, _ = await fold(session, survivor.id, other.id)
    assert merged.attributes == {"loyalty": "gold", "store": "Madrid", "channel": "phone"}


async def test_fold_reports_the_overridden_attribute_and_the_snapshot(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        survivor, other = await two_records_of_ana(session)
        _, facts = await fold(session, survivor.id, other.id)
    assert facts["overridden_attributes"] == {"loyalty": "silver"}
    assert (facts["forced"], facts["conflicts"]) == (False, [])
    assert facts["merged_snapshot"] == {
        "id": other.id,
        "status": "customer",
        "name": "Ana García",
        "language": "es",
        "timezone": None,
        "country": None,
        "revenue_cents": 5000,
        "cost_to_serve_cents": 500,
        "potential_value_cents": 80000,
        "attributes": {"loyalty": "silver", "channel": "phone"},
    }


async def test_merge_adds_up_value_and_keeps_the_higher_potential(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        survivor, other = await two_records_of_ana(session)
        await fold(session, survivor.id, other.id)
    async with sessionmaker() as session:
        stored = await session.get_one(Customer, survivor.id)
    assert (
        stored.revenue_cents,
        stored.cost_to_serve_cents,
        stored.profit_cents,
        stored.potential_value_cents,
    ) == (15000, 1500, 13500, 80000)


async def test_merge_fills_only_the_survivors_missing_fields(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        survivor, other = await two_records_of_ana(session)
        await fold(session, survivor.id, other.id)
    async with sessionmaker() as session:
        stored = await session.get_one(Customer, survivor.id)
    assert (stored.name, stored.language) == ("Ana", "es")


async def test_merge_leaves_a_tombstone_that_get_customer_follows(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        survivor, other = await two_records_of_ana(session)
        await fold(session, survivor.id, other.id)
    async with sessionmaker() as session:
        tombstone = await session.get_one(Customer, other.id)
        assert (tombstone.status, tombstone.merged_into_id) == ("merged", survivor.id)
        assert (await get_customer(session, other.id)).id == survivor.id


async def test_merge_chain_is_followed_to_the_last_survivor(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        first = await new_customer(session, "CRM-1")
        second = await new_customer(session, "CRM-2")
        third = await new_customer(session, "CRM-3")
        await fold(session, second.id, first.id)
        await fold(session, third.id, second.id)
    async with sessionmaker() as session:
        assert (await get_customer(session, first.id)).id == third.id
        assert await merged_into(session, third.id) == [second.id, first.id]
        assert await merged_into(session, first.id) == []


async def test_merging_a_customer_into_a_lead_makes_it_a_customer(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        lead, _ = await resolve(session, IdentityKind.TELEGRAM, "4242", "US")
        known = await new_customer(session, "CRM-1")
        merged, _ = await fold(session, lead.id, known.id)
    assert merged.status == "customer"


async def verified_leads(session: AsyncSession, *emails: str) -> list[Customer]:
    return [
        (await resolve(session, IdentityKind.EMAIL, email, "US", verified=True))[0]
        for email in emails
    ]


async def test_merge_is_refused_when_both_hold_different_verified_identities_of_a_kind(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        ana, other_ana = await verified_leads(session, "ana@example.com", "ana@work.example")
    with pytest.raises(MergeRefused) as caught:
        async with sessionmaker.begin() as session:
            await plan_merge(session, ana.id, other_ana.id)
    assert caught.value.conflicts == [
        MergeConflict("email", (("ana@example.com",), ("ana@work.example",)))
    ]
    async with sessionmaker() as session:
        assert (await get_customer(session, other_ana.id)).id == other_ana.id


async def test_merge_of_verified_and_unverified_identities_is_not_a_conflict(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        (ana,) = await verified_leads(session, "ana@example.com")
        other, _ = await resolve(session, IdentityKind.EMAIL, "ana@work.example", "US")
        plan = await plan_merge(session, ana.id, other.id)
    assert plan.conflicts == ()


async def test_forced_merge_goes_through_and_is_recorded_as_forced(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        ana, other_ana = await verified_leads(session, "ana@example.com", "ana@work.example")
    async with sessionmaker.begin() as session:
        _, facts = await fold(session, ana.id, other_ana.id, force=True)
    async with sessionmaker() as session:
        assert (await get_customer(session, other_ana.id)).id == ana.id
    assert facts["forced"] is True
    assert facts["conflicts"] == [
        {"kind": "email", "survivor": ["ana@example.com"], "merged": ["ana@work.example"]}
    ]


async def test_merging_a_customer_with_itself_is_refused(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        customer = await new_customer(session, "CRM-1")
        with pytest.raises(MergeRefused, match="cannot be merged with itself"):
            await plan_merge(session, customer.id, customer.id)


@pytest.mark.parametrize("tombstone_is", ["survivor", "other"])
async def test_merging_an_already_merged_customer_is_refused(
    sessionmaker: SessionMaker, tombstone_is: str
) -> None:
    async with sessionmaker.begin() as session:
        first = await new_customer(session, "CRM-1")
        second = await new_customer(session, "CRM-2")
        third = await new_customer(session, "CRM-3")
        await fold(session, second.id, first.id)
    pair = (first.id, third.id) if tombstone_is == "survivor" else (third.id, first.id)
    async with sessionmaker.begin() as session:
        with pytest.raises(MergeRefused, match=f"customer {first.id} was already merged"):
            await plan_merge(session, *pair)


async def test_merging_an_unknown_customer_is_not_found(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        customer = await new_customer(session, "CRM-1")
        with pytest.raises(CustomerNotFound, match="no customer 999"):
            await plan_merge(session, customer.id, 999)


# --- the 360 view -------------------------------------------------------------------------------


async def test_customer_view_has_the_documented_shape(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        customer = await new_customer(
            session,
            "CRM-1",
            name="Ana",
            language="es",
            timezone="Europe/Madrid",
            country="ES",
            email="ana@example.com",
            revenue="1234.5",
            cost_to_serve="34.5",
            potential_value="5000",
            loyalty="gold",
        )
        await add_interaction(
            session, customer.id, InteractionKind.NOTE, "likes mornings", occurred_at=T0
        )
    async with sessionmaker() as session:
        view = await customer_view(session, customer.id)
    assert {
        "id",
        "name",
        "language",
        "timezone",
        "tier",
        "tier_reason",
        "value",
        "identities",
        "attributes",
        "interactions",
    } <= view.keys()
    assert (view["id"], view["name"], view["language"], view["timezone"]) == (
        customer.id,
        "Ana",
        "es",
        "Europe/Madrid",
    )
    assert (view["tier"], view["tier_reason"]) == ("STANDARD", "not computed yet")
    assert view["value"] == {
        "revenue": 1234.5,
        "cost_to_serve": 34.5,
        "profit": 1200,
        "potential_value": 5000,
    }
    assert view["identities"] == [
        {"kind": "email", "value": "ana@example.com", "verified": False},
        {"kind": "external", "value": "CRM-1", "verified": False},
    ]
    assert view["attributes"] == {"loyalty": "gold"}
    assert [i["summary"] for i in view["interactions"]] == ["likes mornings"]
    assert view["interactions"][0]["occurred_at"] == T0.isoformat()


async def test_customer_view_shows_the_50_newest_interactions_newest_first(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        customer = await new_customer(session, "CRM-1")
        for minute in range(55):
            await add_interaction(
                session,
                customer.id,
                InteractionKind.MESSAGE_IN,
                f"message {minute}",
                occurred_at=T0 + timedelta(minutes=minute),
            )
    async with sessionmaker() as session:
        view = await customer_view(session, customer.id)
    assert [i["summary"] for i in view["interactions"]] == [
        f"message {minute}" for minute in range(54, 4, -1)
    ]


async def test_customer_view_of_a_merged_id_shows_the_survivor(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        survivor, other = await two_records_of_ana(session)
        await fold(session, survivor.id, other.id)
    async with sessionmaker() as session:
        view = await customer_view(session, other.id)
    assert view["id"] == survivor.id
    assert view["name"] == "Ana"


async def test_attach_identity_adds_a_free_identity_once(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        customer, _ = await upsert_customer(session, parse_customer({"external_id": "CRM-1"}, "US"))
        assert await attach_identity(
            session, customer.id, "webchat", "visitor-0001", "US", verified=True
        )
        assert not await attach_identity(session, customer.id, "webchat", "visitor-0001", "US")


async def test_attach_identity_refuses_someone_elses(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        ana, _ = await upsert_customer(session, parse_customer({"external_id": "CRM-1"}, "US"))
        bob, _ = await upsert_customer(session, parse_customer({"external_id": "CRM-2"}, "US"))
        await attach_identity(session, ana.id, "webchat", "visitor-0001", "US")
        with pytest.raises(IdentityConflict):
            await attach_identity(session, bob.id, "webchat", "visitor-0001", "US")


async def test_a_phone_identity_kept_as_written_is_found_by_that_value(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        created = await create_leads(session, [Lead("phone", "22395"), Lead("phone", "ACME")])
    async with sessionmaker() as session:
        for (_, value), lead in created.items():
            for asked in (value, f" {value} "):
                assert (await find_customer(session, "phone", asked, "US")).id == lead.id
        with pytest.raises(InvalidIdentity, match="not a valid number"):
            await find_customer(session, "phone", "22396", "US")  # held by nobody: its reason
