"""The locks a merge takes on PostgreSQL, against the writers that only refer to a customer.

A merge locks both customer rows first, then each table's rows as it moves them. The inbound
path locks a conversation, then inserts messages and timeline entries that refer to the customer
(a foreign key: PostgreSQL takes a KEY SHARE lock on the customer row). Were the merge's lock
`FOR UPDATE`, which conflicts with KEY SHARE, the two would wait for each other whenever a merge
met a turn being written: a deadlock, and one of them aborted. `FOR NO KEY UPDATE` still keeps
two merges (and any update of the row) apart, but lets rows that refer to the customer be added.
SQLite has one writer at a time, so only PostgreSQL has anything to prove.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from crm_core.customers import plan_merge, upsert_customer
from crm_core.models import InteractionKind
from crm_core.records import parse_customer
from crm_core.timeline import add_interaction
from sastre.db import SessionMaker, create_engine, migrate, sessionmaker_for
from tests.conftest import _fresh_postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_sessionmaker(postgres_admin_url: str) -> AsyncIterator[SessionMaker]:
    url = await _fresh_postgres_database(postgres_admin_url)
    await migrate(url)
    engine = create_engine(url)
    yield sessionmaker_for(engine)
    await engine.dispose()


async def _two_customers(sessionmaker: SessionMaker) -> tuple[int, int]:
    async with sessionmaker.begin() as session:
        ana, _ = await upsert_customer(session, parse_customer({"external_id": "A-1"}, "US"))
        other, _ = await upsert_customer(session, parse_customer({"external_id": "A-2"}, "US"))
        return ana.id, other.id


async def test_a_merge_under_way_lets_rows_about_its_customers_be_added(
    pg_sessionmaker: SessionMaker,
) -> None:
    survivor, other = await _two_customers(pg_sessionmaker)
    async with pg_sessionmaker.begin() as merging:
        await plan_merge(merging, survivor, other)  # both customer rows locked, nothing moved
        async with pg_sessionmaker.begin() as writer:
            # Fail at once instead of waiting for the merge: waiting is the bug.
            await writer.execute(text("SET LOCAL lock_timeout = '2s'"))
            for customer_id in (survivor, other):
                await add_interaction(
                    writer, customer_id, InteractionKind.NOTE, "written while merging"
                )


async def test_a_merge_under_way_still_keeps_a_second_merge_out(
    pg_sessionmaker: SessionMaker,
) -> None:
    survivor, other = await _two_customers(pg_sessionmaker)
    async with pg_sessionmaker.begin() as merging:
        await plan_merge(merging, survivor, other)
        async with pg_sessionmaker() as second:
            await second.execute(text("SET lock_timeout = '200ms'"))
            with pytest.raises(Exception, match="lock timeout"):
                await plan_merge(second, other, survivor)
            await second.rollback()
