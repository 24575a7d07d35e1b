"""Readers and writers on one engine: a reader never waits for a writer and never writes."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError

from crm_core.models import Customer, customers_table
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
