"""A database whose write lock another client holds, and an engine that gives up on it quickly.

`lock_held` plays the long CSV import: another connection (not the app's pool) takes SQLite's
write lock with `BEGIN IMMEDIATE`, or on PostgreSQL an exclusive lock on the given tables.
`impatient` makes an engine give up waiting for a lock after a few milliseconds instead of the
production busy timeout (10 s), so a test sees the refusal at once and without a clock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sastre.db import create_engine

__all__ = ["impatient", "lock_held"]

_WAIT_MS = 50


@contextmanager
def _sqlite_lock(path: str) -> Iterator[None]:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


@asynccontextmanager
async def lock_held(database_url: str, tables: Sequence[str]) -> AsyncIterator[None]:
    """Hold the write lock (SQLite) or exclusive locks on `tables` (PostgreSQL) for the block."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        with _sqlite_lock(url.database):
            yield
        return
    holder = create_engine(database_url)
    try:
        async with holder.connect() as connection, connection.begin():
            for table in tables:
                await connection.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            yield
    finally:
        await holder.dispose()


async def impatient(engine: AsyncEngine) -> None:
    """From now on, `engine`'s connections wait at most a few milliseconds for a lock."""
    sqlite = engine.dialect.name == "sqlite"

    @event.listens_for(engine.sync_engine, "connect")
    def _short_wait(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if sqlite:
            cursor.execute(f"PRAGMA busy_timeout={_WAIT_MS}")
        else:
            cursor.execute(f"SET lock_timeout = '{_WAIT_MS}ms'")
            # The driver wrapped the SET in a transaction: rolled back, it would be undone.
            dbapi_connection.commit()
        cursor.close()

    await engine.dispose()  # connections already pooled were opened with the long wait
