"""Readers and writers on one engine: a reader never waits for a writer and never writes; a
pooled PostgreSQL connection is pinged only after idling."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_core.models import Customer, customers_table
from sastre import db
from sastre.db import create_engine, reader_for, sessionmaker_for
from tests.support.held_write import write_held


async def test_a_reader_reads_while_a_writer_holds_the_lock(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with write_held(sessionmaker_for(engine)) as writer:
            async with reader_for(engine)() as session:
                # The snapshot before the writer's row: it is not committed yet.
                assert await session.scalar(select(func.count()).select_from(Customer)) == 0
            assert not writer.done()
    finally:
        await engine.dispose()


async def test_a_reader_may_not_write(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with reader_for(engine)() as session:
            with pytest.raises(DBAPIError):
                await session.execute(insert(customers_table).values(name="sneaky"))
    finally:
        await engine.dispose()


async def test_a_connection_that_served_a_reader_writes_again(database_url: str) -> None:
    # One connection in the pool: the writer gets the very connection the reader had.
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with reader_for(engine)() as session:
            await session.scalar(select(func.count()).select_from(Customer))
        async with sessionmaker_for(engine).begin() as session:
            await session.execute(insert(customers_table).values(name="after a reader"))
        async with reader_for(engine)() as session:
            assert await session.scalar(select(func.count()).select_from(Customer)) == 1
    finally:
        await engine.dispose()


async def _backend(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text("SELECT pg_backend_pid()")))


@pytest.mark.postgres
async def test_a_connection_used_moments_ago_is_taken_without_a_ping(
    postgres_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(postgres_admin_url, pool_size=1)
    pings: list[object] = []
    ping = engine.sync_engine.dialect.do_ping

    def counted(connection: Any) -> bool:
        pings.append(connection)
        return ping(connection)

    monkeypatch.setattr(engine.sync_engine.dialect, "do_ping", counted)
    try:
        first = await _backend(engine)
        assert await _backend(engine) == first
        assert pings == []
        monkeypatch.setattr(db, "PING_IDLE", 0.0)  # from now on every connection has idled
        assert await _backend(engine) == first
        assert len(pings) == 1
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_connection_cut_while_idle_is_replaced_before_use(
    postgres_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(postgres_admin_url, pool_size=1)
    admin = create_engine(postgres_admin_url)
    try:
        cut = await _backend(engine)
        async with admin.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": cut})
        monkeypatch.setattr(db, "PING_IDLE", 0.0)
        assert await _backend(engine) != cut  # the ping failed: a new connection, no error
    finally:
        await engine.dispose()
        await admin.dispose()
