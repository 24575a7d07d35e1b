"""Resolving a sender address to one customer."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, func, select

from crm_core import Customer, Identity, IdentityKind, resolve
from crm_core.customers import Lead, create_leads
from sastre.db import SessionMaker


async def test_resolve_creates_a_lead_once(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        first, created = await resolve(session, IdentityKind.PHONE, "(415) 555-2671", "US")
    async with sessionmaker.begin() as session:
        again, created_again = await resolve(session, IdentityKind.PHONE, "+14155552671", "US")
    assert created
    assert not created_again
    assert first.id == again.id
    assert first.status == "lead"


async def test_concurrent_first_messages_resolve_to_one_customer(
    sessionmaker: SessionMaker,
) -> None:
    async def one() -> int:
        async with sessionmaker.begin() as session:
            customer, _ = await resolve(session, IdentityKind.EMAIL, "Same@Example.com", "US")
            return customer.id

    ids = await asyncio.gather(*(one() for _ in range(8)))
    assert len(set(ids)) == 1
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Customer)) == 1


async def test_create_leads_makes_what_resolve_would_for_the_unheld_addresses(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        held, _ = await resolve(session, IdentityKind.PHONE, "+14155550001", "US")
    leads = [
        Lead(IdentityKind.PHONE.value, "+14155550001"),  # held already: left alone
        Lead(IdentityKind.PHONE.value, "+14155550002", language="es"),
        Lead(IdentityKind.PHONE.value, "+14155550003"),
        Lead(IdentityKind.EMAIL.value, "ana@example.com", verified=True, language="es"),
        Lead(IdentityKind.PHONE.value, "+14155550003", language="fr"),  # twice: the first wins
    ]
    async with sessionmaker.begin() as session:
        created = await create_leads(session, leads)
    assert sorted(created) == [
        ("email", "ana@example.com"),
        ("phone", "+14155550002"),
        ("phone", "+14155550003"),
    ]
    assert created[("phone", "+14155550002")].language == "es"
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(Identity.value, Identity.verified, Customer.language, Customer.status)
                .join(Customer, Customer.id == Identity.customer_id)
                .order_by(Identity.value)
            )
        ).all()
        again, created_now = await resolve(session, IdentityKind.PHONE, "+14155550002", "US")
    assert [tuple(row) for row in rows] == [
        ("+14155550001", False, None, "lead"),
        ("+14155550002", False, "es", "lead"),
        ("+14155550003", False, None, "lead"),
        ("ana@example.com", True, "es", "lead"),
    ]
    assert (again.id, created_now) == (created[("phone", "+14155550002")].id, False)
    assert held.id != again.id


async def test_create_leads_leaves_a_held_address_alone_and_no_customer_for_it(
    sessionmaker: SessionMaker,
) -> None:
    # Held already, or by another process's lead created meanwhile: skipped, the transaction
    # goes on, and no customer is left without an identity.
    async with sessionmaker.begin() as session:
        held, _ = await resolve(session, IdentityKind.PHONE, "+14155550001", "US")
    leads = [Lead(IdentityKind.PHONE.value, v) for v in ("+14155550002", "+14155550001")]
    async with sessionmaker.begin() as session:
        assert list(await create_leads(session, leads)) == [("phone", "+14155550002")]
        again, created = await resolve(session, IdentityKind.PHONE, "+14155550001", "US")
    assert (again.id, created) == (held.id, False)
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Customer)) == 2


async def test_create_leads_is_one_statement_on_postgresql_and_two_on_sqlite(
    sessionmaker: SessionMaker,
) -> None:
    """A burst of first messages costs one round trip on PostgreSQL, where round trips cost."""
    statements: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith("BEGIN"):  # SQLite's own, for its write lock
            statements.append(statement)

    async with sessionmaker() as session:
        engine = session.get_bind()
    leads = [Lead(IdentityKind.PHONE.value, f"+1415555000{n}", language="es") for n in range(3)]
    event.listen(engine, "before_cursor_execute", note)
    try:
        async with sessionmaker.begin() as session:
            created = await create_leads(session, leads)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert len(created) == 3
    assert len(statements) == (1 if engine.dialect.name == "postgresql" else 2)
    async with sessionmaker() as session:
        stored = (await session.execute(select(Customer).order_by(Customer.id))).scalars().all()
    # The columns' own defaults, as a customer made one at a time gets them.
    assert [(c.status, c.tier, c.revenue_cents, c.attributes, c.language) for c in stored] == [
        ("lead", "STANDARD", 0, {}, "es")
    ] * 3
    assert {c.id for c in stored} == {row.id for row in created.values()}
