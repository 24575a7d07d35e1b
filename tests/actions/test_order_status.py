"""Reading customers' orders: one at a time, and a batch's read ahead."""

from __future__ import annotations

from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncEngine

from actions.order_status import customer_orders, orders_known, read_orders
from crm_core.models import customers_table
from sastre.db import SessionMaker
from tests.actions.test_actions import add_purchase, new_customer


async def test_orders_read_together_are_what_each_reads_alone(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        ana = await new_customer(session, "C-1", language="es")
        bob = await new_customer(session, "C-2", language="en", timezone="America/New_York")
        nobody = await new_customer(session, "C-3", language="en")
        merged = await new_customer(session, "C-4", language="en")
        await add_purchase(session, ana, order_id="SO-1", item="scarf")
        await add_purchase(session, ana, order_id="SO-2", status="shipped")
        await add_purchase(session, bob, order_id="SO-3", item="coat")
        await session.execute(
            update(customers_table)
            .where(customers_table.c.id == merged)
            .values(merged_into_id=ana, status="merged")
        )
    async with sessionmaker() as session:
        together = await read_orders(session, [bob, ana, nobody, merged, ana])
        alone = {id_: await customer_orders(session, id_) for id_ in (ana, bob, nobody)}
    assert together == alone  # a merged record is left to customer_orders, which follows it
    assert {p.order_id for p in together[ana].purchases} == {"SO-1", "SO-2"}
    assert together[nobody].purchases == ()


async def test_orders_known_answer_in_their_session_only(
    sessionmaker: SessionMaker, engine: AsyncEngine
) -> None:
    async with sessionmaker.begin() as session:
        ana = await new_customer(session, "C-1", language="es")
        bob = await new_customer(session, "C-2", language="en")
        await add_purchase(session, ana, order_id="SO-1")
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    async with sessionmaker() as session:
        known = await read_orders(session, [ana])
        statements.clear()
        with orders_known(session, known):
            assert await customer_orders(session, ana) == known[ana]
            assert statements == []  # answered from what was read ahead
            await customer_orders(session, bob)  # not read ahead: its own query
    with orders_known(session, known):
        async with sessionmaker() as other:
            await customer_orders(other, ana)  # another session: its own query
    assert len([s for s in statements if s.lstrip().startswith("SELECT")]) == 2
