"""A write transaction held open on its own connection, for tests of what must not wait for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import insert

from crm_core.models import customers_table
from sastre.db import SessionMaker

__all__ = ["write_held"]


@asynccontextmanager
async def write_held(sessionmaker: SessionMaker) -> AsyncIterator[asyncio.Task[None]]:
    """A writer that has written a row (a customer named "held") and keeps its transaction, and
    so SQLite's write lock, open until the block ends. Yields the writer's task: a test asserts
    it is still running after what it checks, which proves that the check did not wait for it
    (no clock involved)."""
    written, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with sessionmaker.begin() as session:
            await session.execute(insert(customers_table).values(name="held"))
            written.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await written.wait()
    try:
        yield task
    finally:
        release.set()
        await task
