"""aiosqlite, one trip to its thread per statement.

aiosqlite runs every sqlite3 call in the connection's own thread and hands the result back to the
event loop: each call is a trip (a queue put, a thread wake-up, a `call_soon_threadsafe`, a loop
wake-up). SQLAlchemy's aiosqlite adapter makes four per statement: open a cursor, execute, fetch
every row (it always buffers them: it has no streaming use here), close the cursor. The statement
itself usually takes a few microseconds; the trips cost far more, and while they are under way a
batch of the inbound path holds the write lock and its event loop waits. Measured on the inbound
SMS path: about fifty trips a batch, the loop idle a third of the time.

`OneTripConnection` is an aiosqlite connection whose cursors do all four in one trip: the sqlite3
cursor is opened, run, read to the end and closed in the connection's thread, and what SQLAlchemy
reads afterwards (rows, description, rowcount, lastrowid) is kept on the cursor. Everything else
(commit, closing, functions) is aiosqlite's own, and a rollback with no transaction open
(the pool's reset of every connection it gets back) is no trip at all. `sastre.db` uses it for
every SQLite engine, through SQLAlchemy's documented `async_creator` hook.

A *quick* write transaction (`quick`, set by `sastre.db` for `quick_writer_for` sessions, on a
database in WAL mode opened for use from any thread, as SQLAlchemy opens a file) takes
no trip at all once it holds the write lock: its statements run where they are called, on the
event loop's thread. In WAL mode a writer that holds the lock waits for nobody (readers read
their snapshots, checkpoints never block it), so such a statement takes its own microseconds,
where a trip cost the event loop about 50 µs of its own time and the batch waiting behind it a
thread wake-up and a loop wake-up. The BEGIN IMMEDIATE, which may wait for another writer, and
the COMMIT, which may copy the WAL back, still go to the thread. Only for transactions of short
statements: one that ran long would hold up the event loop, and every request with it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator, Iterable, Sequence
from functools import partial
from typing import Any, Self

import aiosqlite
from typing_extensions import override

__all__ = ["OneTripConnection", "OneTripCursor", "connect"]

Row = tuple[Any, ...]
Description = tuple[tuple[str, None, None, None, None, None, None], ...] | None


class _Outcome:
    """What one statement left behind, read in the connection's thread."""

    __slots__ = ("description", "lastrowid", "rowcount", "rows")

    def __init__(self, cursor: sqlite3.Cursor, rows: list[Row]) -> None:
        self.rows = rows
        self.description: Description = cursor.description
        self.rowcount: int = cursor.rowcount
        self.lastrowid: int | None = cursor.lastrowid


def _run(
    connection: sqlite3.Connection, sql: str, parameters: Any, *, many: bool = False
) -> _Outcome:
    # In the connection's thread: sqlite3 objects must not leave it.
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        elif parameters is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, parameters)
        return _Outcome(cursor, cursor.fetchall() if cursor.description else [])
    finally:
        cursor.close()


class OneTripCursor:
    """The part of aiosqlite's `Cursor` SQLAlchemy uses, each statement one trip."""

    arraysize = 1

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self._rows: list[Row] = []
        self._next = 0
        self.description: Description = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def execute(self, sql: str, parameters: Any = None) -> Self:
        self._keep(
            await self._connection.run_statement(partial(_run, sql=sql, parameters=parameters))
        )
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Self:
        statement = partial(_run, sql=sql, parameters=parameters, many=True)
        self._keep(await self._connection.run_statement(statement))
        return self

    def _keep(self, outcome: _Outcome) -> None:
        self._rows, self._next = outcome.rows, 0
        self.description, self.rowcount, self.lastrowid = (
            outcome.description,
            outcome.rowcount,
            outcome.lastrowid,
        )

    async def fetchone(self) -> Row | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    async def fetchmany(self, size: int | None = None) -> Sequence[Row]:
        end = self._next + (self.arraysize if size is None else size)
        rows = self._rows[self._next : end]
        self._next += len(rows)
        return rows

    async def fetchall(self) -> Sequence[Row]:
        rows = self._rows[self._next :]
        self._next = len(self._rows)
        return rows

    async def close(self) -> None:
        # The sqlite3 cursor was closed in the statement's own trip.
        self._rows, self._next = [], 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


class _NewCursor:
    """`connection.cursor()`: awaitable, or an async context manager, like aiosqlite's; opening
    one costs no trip."""

    __slots__ = ("_cursor",)

    def __init__(self, connection: OneTripConnection) -> None:
        self._cursor = OneTripCursor(connection)

    def __await__(self) -> Generator[Any, None, OneTripCursor]:
        yield from ()
        return self._cursor

    async def __aenter__(self) -> OneTripCursor:
        return self._cursor

    async def __aexit__(self, *_: object) -> None:
        await self._cursor.close()


class OneTripConnection(aiosqlite.Connection):
    """An aiosqlite connection whose cursors run each statement in one trip to its thread, or in
    none inside a quick write transaction."""

    # Whether the transaction begun last is a quick writer's (see the module's note): set at
    # every BEGIN, so it holds until the next one; outside a transaction it means nothing.
    quick = False
    # Whether sqlite3 lets another thread than the connection's use it (check_same_thread off,
    # as SQLAlchemy opens a database file): a quick writer's statements need it.
    any_thread = False

    @override
    def cursor(self) -> _NewCursor:  # type: ignore[override]
        return _NewCursor(self)

    @override
    async def rollback(self) -> None:
        # The pool rolls back every connection it is handed back, committed or not: with no
        # transaction open there is nothing to undo, and no reason to wake the thread.
        if self._connection is not None and not self._connection.in_transaction:
            return
        await super().rollback()

    async def run_statement(self, statement: Callable[[sqlite3.Connection], _Outcome]) -> _Outcome:
        connection = self._connection
        if self.quick and connection is not None and connection.in_transaction:
            # A quick writer holding the write lock: here, now (the thread is idle: a session
            # awaits each statement before it sends the next).
            return statement(connection)
        outcome: _Outcome = await self._execute(  # type: ignore[no-untyped-call]
            lambda: statement(self._conn)
        )
        return outcome


async def connect(database: str, **kwargs: Any) -> OneTripConnection:
    """As `aiosqlite.connect`, for a `OneTripConnection`, opened."""
    connection = OneTripConnection(partial(sqlite3.connect, database, **kwargs), iter_chunk_size=64)
    # As SQLAlchemy does for aiosqlite's own: a forgotten connection must not keep the
    # interpreter from exiting.
    connection._thread.daemon = True
    connection.any_thread = not kwargs.get("check_same_thread", True)
    _ = await connection  # starts its thread and opens the database there
    return connection
