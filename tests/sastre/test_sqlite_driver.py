"""The one-trip aiosqlite connection behind every SQLite engine (`sastre.sqlite_driver`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from sastre.db import create_engine
from sastre.sqlite_driver import OneTripConnection


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'trips.db'}")
    async with engine.begin() as connection:
        await connection.execute(
            text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT UNIQUE NOT NULL)")
        )
    yield engine
    await engine.dispose()


def _trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts every call sent to a connection's thread."""
    trips: list[str] = []
    original = OneTripConnection._execute

    async def counted(self: OneTripConnection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(OneTripConnection, "_execute", counted)
    return trips


async def test_every_sqlite_engine_uses_the_one_trip_connection(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        assert isinstance(raw.driver_connection, OneTripConnection)


async def test_a_query_is_one_trip_to_the_thread(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO notes (body) VALUES ('a'), ('b')"))
        trips = _trips(monkeypatch)
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
