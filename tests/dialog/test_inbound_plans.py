"""The inbound path's first query finds each sender through the indexes, whatever the table sizes.

It runs for every batch, so a scan in it grows with the whole customer base. PostgreSQL caches a
generic plan for a prepared statement after a few runs, planned without the parameters' values:
the plan is checked as that generic plan, with scans priced out, so a usable index is taken
whatever the statistics of a small test database say.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import event

from dialog.inbound import InboundProcessor
from sastre.db import SessionMaker
from tests.dialog.test_inbound import FakeBrain, make_processor, sms

_numbers = (f"+1415555{n:04d}" for n in itertools.count(1000))


async def _context_query(sessionmaker: SessionMaker) -> tuple[Any, str, Any]:
    """The dialect, and the statement and parameters of the query that loads a batch's senders."""
    seen: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT identities.kind"):
            seen.append((statement, parameters))

    async with sessionmaker() as session:
        engine = session.get_bind()  # the driver-level engine under the async one
    processor: InboundProcessor = make_processor(sessionmaker, FakeBrain())
    known = [next(_numbers) for _ in range(3)]
    for number in known:
        await processor.handle(sms("hello", number))
    event.listen(engine, "before_cursor_execute", note)
    try:  # together: the first is a batch of its own, the other two one batch
        await asyncio.gather(*(processor.handle(sms("hello again", n)) for n in known))
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert len(seen) == 2
    return engine.dialect.name, *seen[-1]


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):  # an array literal, its type the prepared parameter's
        return "'{" + ",".join(_element(item) for item in value).replace("'", "''") + "}'"
    assert isinstance(value, str), value
    return "'" + value.replace("'", "''") + "'"


def _element(value: Any) -> str:
    if value is None:
        return "NULL"
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _plan(sessionmaker: SessionMaker, dialect: str, statement: str, parameters: Any) -> str:
    async with sessionmaker() as session:
        connection = await session.connection()
        if dialect == "sqlite":
            plan = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(str(row[-1]) for row in plan)
        for setting in ("plan_cache_mode = force_generic_plan", "enable_seqscan = off"):
            await connection.exec_driver_sql(f"SET LOCAL {setting}")
        await connection.exec_driver_sql(f"PREPARE checked AS {statement}")
        arguments = ", ".join(_literal(value) for value in parameters)
        plan = await connection.exec_driver_sql(f"EXPLAIN EXECUTE checked({arguments})")
        return "\n".join(str(row[0]) for row in plan)


async def test_a_senders_open_conversation_is_found_through_the_partial_index(
    sessionmaker: SessionMaker,
) -> None:
    """Spelt with the index's own predicate: bound as a parameter, 'resolved' left PostgreSQL's
    cached plan reading every conversation for each sender."""
    dialect, statement, parameters = await _context_query(sessionmaker)
    plan = await _plan(sessionmaker, dialect, statement, parameters)
    assert "uq_conversations_open_per_customer" in plan, plan
    assert "SCAN conversations" not in plan, plan
    assert "Seq Scan on conversations" not in plan, plan


async def test_each_sender_is_looked_up_by_kind_and_value_together(
    sessionmaker: SessionMaker,
) -> None:
    """SQLite read a list of `(kind, value)` pairs by scanning every identity; on PostgreSQL
    the senders are a table joined on the primary key, each a probe on both columns."""
    dialect, statement, parameters = await _context_query(sessionmaker)
    plan = await _plan(sessionmaker, dialect, statement, parameters)
    if dialect == "sqlite":
        assert (
            "SEARCH identities USING INDEX sqlite_autoindex_identities_1 (kind=? AND value=?)"
            in plan
        ), plan
    else:
        probes = [line for line in plan.splitlines() if "Index Cond" in line and "value" in line]
        assert probes, plan


async def test_a_redelivery_is_looked_up_through_the_inbound_index(
    sessionmaker: SessionMaker,
) -> None:
    """A batch with a duplicate asks whether its first delivery still awaits the bot. As a
    list of (channel, provider id) pairs SQLite read every message for it, inside a batch that
    requests wait on; as two lists each is a probe of the index of inbound provider ids."""
    seen: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "JOIN awaiting_bot" in statement:
            seen.append((statement, parameters))

    async with sessionmaker() as session:
        engine = session.get_bind()
    processor = make_processor(sessionmaker, FakeBrain())
    firsts = [sms("hello", next(_numbers), provider_id=f"SM-first-{n}") for n in range(3)]
    for message in firsts:
        await processor.handle(message)
    event.listen(engine, "before_cursor_execute", note)
    try:  # together: the first is a batch of its own, the other two one batch
        again = await asyncio.gather(*(processor.handle(message) for message in firsts))
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert all(result.duplicate for result in again)
    statement, parameters = seen[-1]
    plan = await _plan(sessionmaker, engine.dialect.name, statement, parameters)
    assert "uq_messages_inbound_provider_id" in plan, plan
    assert "SCAN messages" not in plan, plan
    assert "Seq Scan on messages" not in plan, plan


async def _one_write_plan(sessionmaker: SessionMaker, text: str, cte: str) -> str:
    """The generic plan of the batch's one write (`dialog.inbound.one_write`) from its part
    `cte` on, for three new senders writing `text` at once (PostgreSQL only)."""
    seen: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().startswith("WITH reply AS") and f"{cte} AS" in statement:
            seen.append((statement, parameters))

    async with sessionmaker() as session:
        engine = session.get_bind()
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite writes row by row: one statement per table there")
    processor = make_processor(sessionmaker, FakeBrain())
    event.listen(engine, "before_cursor_execute", note)
    try:
        await asyncio.gather(*(processor.handle(sms(text, next(_numbers))) for _ in range(3)))
    finally:
        event.remove(engine, "before_cursor_execute", note)
    statement, parameters = seen[-1]
    plan = await _plan(sessionmaker, engine.dialect.name, statement, parameters)
    return plan[plan.index(f"CTE {cte}") :]


async def test_what_the_bot_made_of_a_message_is_written_through_the_primary_key(
    sessionmaker: SessionMaker,
) -> None:
    """On PostgreSQL the intents go in the batch's one write (`dialog.inbound.one_write`) as an
    UPDATE by `id = ANY(...)`: a probe of the primary key for each message, where a join with
    the unnested arrays was answered by reading every message."""
    update = await _one_write_plan(sessionmaker, "hello", "read")
    assert "Index Cond: (id = ANY" in update, update
    assert "pk_messages" in update, update
    assert "Seq Scan on messages" not in update, update


async def test_a_batchs_conversation_changes_are_written_through_the_primary_key(
    sessionmaker: SessionMaker,
) -> None:
    """The conversations' changes ride the same statement (`changed`), found by key too."""
    update = await _one_write_plan(sessionmaker, "???", "changed")
    assert "Index Cond: (id = ANY" in update, update
    assert "pk_conversations" in update, update
    assert "Seq Scan on conversations" not in update, update
