"""Resolving a sender address to one customer."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from crm_core import Customer, IdentityKind, resolve
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
