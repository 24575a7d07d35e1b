"""The one-trip aiosqlite connection behind every SQLite engine (`sastre.sqlite_driver`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from sastre.db import create_engine, quick_writer_for, sessionmaker_for
from sastre.sqlite_driver import OneTripConnection
from tests.support.sqlite_trips import thread_trips


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'trips.db'}")
    async with engine.begin() as connection:
        await connection.execute(
            text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT UNIQUE NOT NULL)")
        )
    yield engine
    await engine.dispose()


async def test_every_sqlite_engine_uses_the_one_trip_connection(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        assert isinstance(raw.driver_connection, OneTripConnection)


async def test_a_query_is_one_trip_to_the_thread(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO notes (body) VALUES ('a'), ('b')"))
        trips = thread_trips(monkeypatch)
        rows = (await connection.execute(text("SELECT id, body FROM notes ORDER BY id"))).all()
    assert [tuple(row) for row in rows] == [(1, "a"), (2, "b")]
    assert trips == ["<lambda>", "commit"]  # the query, then the COMMIT; no reset after it


async def test_rowcount_lastrowid_and_many_rows(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        inserted = await connection.execute(text("INSERT INTO notes (body) VALUES ('x')"))
        assert inserted.lastrowid == 1
        many = await connection.execute(
            text("INSERT INTO notes (body) VALUES (:body)"),
            [{"body": f"n{n}"} for n in range(300)],
        )
        assert many.rowcount == 300
        updated = await connection.execute(
            text("UPDATE notes SET body = body || '!' WHERE body LIKE 'n1%'")
        )
        assert updated.rowcount == 111  # n1, n10..n19, n100..n199
        result = await connection.execute(text("SELECT body FROM notes ORDER BY id"))
        assert result.fetchone() == ("x",)
        assert len(result.fetchmany(10)) == 10
        assert len(result.fetchall()) == 290


async def test_an_error_is_sqlalchemys_and_the_connection_lives_on(engine: AsyncEngine) -> None:
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO notes (body) VALUES ('same'), ('same')"))
    async with engine.connect() as connection:
        count = await connection.scalar(text("SELECT count(*) FROM notes"))
    assert count == 0  # the failed transaction left nothing half-written


async def test_a_quick_writer_holding_the_lock_takes_no_trip(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = thread_trips(monkeypatch)
    async with quick_writer_for(engine).begin() as session:
        await session.execute(text("INSERT INTO notes (body) VALUES ('quick')"))
        assert await session.scalar(text("SELECT count(*) FROM notes")) == 1
        await session.execute(text("SAVEPOINT inner"))
        await session.execute(text("RELEASE inner"))
    # The BEGIN IMMEDIATE (it may wait for another writer) and the COMMIT; nothing between.
    assert trips == ["<lambda>", "commit"]


async def test_a_plain_writer_still_takes_a_trip_a_statement(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its connection served a quick writer last: that does not carry over.
    async with quick_writer_for(engine).begin() as session:
        await session.execute(text("INSERT INTO notes (body) VALUES ('quick')"))
    trips = thread_trips(monkeypatch)
    async with sessionmaker_for(engine).begin() as session:
        await session.execute(text("INSERT INTO notes (body) VALUES ('plain')"))
    assert trips == ["<lambda>", "<lambda>", "commit"]


async def test_a_quick_writer_waits_for_the_lock_without_holding_up_the_loop(
    engine: AsyncEngine,
) -> None:
    held, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with sessionmaker_for(engine).begin() as session:
            await session.execute(text("INSERT INTO notes (body) VALUES ('first')"))
            held.set()
            await release.wait()

    async def quick(body: str = "second") -> None:
        async with quick_writer_for(engine).begin() as session:
            await session.execute(
                text("INSERT OR IGNORE INTO notes (body) VALUES (:body)"), {"body": body}
            )

    await asyncio.gather(
        quick("warm"), quick("warmer")
    )  # both pooled connections last served a quick writer
    holding = asyncio.create_task(holder())
    await held.wait()
    waiting = asyncio.create_task(quick())
    for _ in range(20):  # the loop goes on while the quick writer's BEGIN waits in its thread
        await asyncio.sleep(0)
    assert not waiting.done()
    release.set()  # only the loop can let the holder commit: had it been blocked, no end
    await asyncio.gather(holding, waiting)
    async with engine.connect() as connection:
        bodies = (await connection.execute(text("SELECT body FROM notes ORDER BY id"))).all()
    assert [body for (body,) in bodies] == ["warm", "warmer", "first", "second"]


async def test_a_quick_writers_failed_statement_rolls_back_the_whole_transaction(
    engine: AsyncEngine,
) -> None:
    async def failing() -> None:
        async with quick_writer_for(engine).begin() as session:
            await session.execute(text("INSERT INTO notes (body) VALUES ('kept?')"))
            await session.execute(text("INSERT INTO notes (body) VALUES ('same'), ('same')"))

    with pytest.raises(IntegrityError):
        await failing()
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM notes")) == 0


async def test_a_database_without_wal_takes_a_trip_a_statement_even_when_quick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In memory SQLite keeps its own journal: a writer may wait for locks mid-transaction, so
    # nothing runs on the event loop (and sqlite3 allows the connection's own thread only).
    engine = create_engine("sqlite+aiosqlite://")
    try:
        async with engine.begin() as connection:  # connected (its set-up is trips of its own)
            await connection.execute(text("CREATE TABLE t (x INTEGER)"))
        trips = thread_trips(monkeypatch)
        async with quick_writer_for(engine).begin() as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
            await session.execute(text("INSERT INTO t VALUES (2)"))
        assert trips == ["<lambda>", "<lambda>", "<lambda>", "commit"]
    finally:
        await engine.dispose()
