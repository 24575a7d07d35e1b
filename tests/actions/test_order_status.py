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


async def _plans(sessionmaker: SessionMaker, engine: AsyncEngine, customer_id: int) -> list[str]:
    """The plans of the order queries as run (one customer, and a batch's read ahead); on
    PostgreSQL as the cached generic plan, scans priced out (see tests/dialog/
    test_inbound_plans.py): the plan a busy server settles on, whatever a small table's
    statistics say."""
    seen: list[tuple[str, object]] = []

    def note(conn: object, cursor: object, statement: str, parameters: object, *_: object) -> None:
        if "interactions.data" in statement:
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        async with sessionmaker() as session:
            await customer_orders(session, customer_id)
            await read_orders(session, [customer_id, customer_id + 1])
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)
    assert len(seen) == 2
    plans: list[str] = []
    async with sessionmaker() as session:
        connection = await session.connection()
        for n, (statement, parameters) in enumerate(seen):
            assert isinstance(parameters, tuple | list)
            if engine.dialect.name == "sqlite":
                explain = f"EXPLAIN QUERY PLAN {statement}"
                rows = await connection.exec_driver_sql(explain, parameters)
                plans.append("\n".join(str(row[-1]) for row in rows))
                continue
            for setting in ("plan_cache_mode = force_generic_plan", "enable_seqscan = off"):
                await connection.exec_driver_sql(f"SET LOCAL {setting}")
            await connection.exec_driver_sql(f"PREPARE orders{n} AS {statement}")
            arguments = ", ".join(repr(value) for value in parameters)
            rows = await connection.exec_driver_sql(f"EXPLAIN EXECUTE orders{n}({arguments})")
            plans.append("\n".join(str(row[0]) for row in rows))
    return plans


async def test_orders_are_found_without_reading_the_rest_of_the_timeline(
    sessionmaker: SessionMaker, engine: AsyncEngine
) -> None:
    """Every message in or out is an entry on the timeline too: through the timeline's index an
    order status read every one of them, and grew slower with every message exchanged."""
    async with sessionmaker.begin() as session:
        ana = await new_customer(session, "C-1", language="es")
        await add_purchase(session, ana, order_id="SO-1")
    for plan in await _plans(sessionmaker, engine, ana):
        assert "ix_interactions_purchases" in plan, plan
        assert "ix_interactions_timeline" not in plan, plan
