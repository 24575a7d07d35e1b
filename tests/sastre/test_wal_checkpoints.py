"""SQLite's WAL checkpoints off the write path: commits leave them to the Checkpointer, which
copies the WAL back in the background and lets the next writer rewind it."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sastre.appkeys import ENGINE
from sastre.config import Settings
from sastre.db import create_engine
from sastre.wal_checkpoints import BACKSTOP_PAGES, Checkpointer, Progress, sqlite_file
from tests.sastre.conftest import Client

ROWS = 64  # rows of 4 KB: a page or more each, so a commit appends dozens of WAL frames


def _url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def _write(engine: AsyncEngine, rows: int = ROWS) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE IF NOT EXISTS t (body BLOB)"))
        for _ in range(rows):
            await connection.execute(text("INSERT INTO t VALUES (randomblob(4096))"))


def _rows_in_the_file(path: Path, tmp_path: Path) -> int:
    """The rows the database file itself holds, without its WAL: what checkpoints copied.
    Read from a copy of the file alone (opening the file would read its WAL too, and a
    connection closing last would checkpoint it)."""
    alone = tmp_path / "alone.db"
    shutil.copyfile(path, alone)
    with closing(sqlite3.connect(alone)) as observer:
        tables = observer.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'")
        if tables.fetchone()[0] == 0:
            return 0
        return int(observer.execute("SELECT count(*) FROM t").fetchone()[0])


def test_sqlite_file_is_the_path_of_a_file_database() -> None:
    assert (
        sqlite_file("sqlite+aiosqlite:////var/lib/sastre/sastre.db") == "/var/lib/sastre/sastre.db"
    )
    assert sqlite_file("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_file("sqlite+aiosqlite://") is None
    assert sqlite_file("postgresql+asyncpg://sastre@db/sastre") is None


async def test_commits_leave_checkpoints_to_the_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    engine = create_engine(_url(path), checkpoints_apart=True)
    try:
        async with engine.connect() as connection:
            pages = await connection.scalar(text("PRAGMA wal_autocheckpoint"))
        assert pages == BACKSTOP_PAGES
        for _ in range(1200 // ROWS + 1):  # past SQLite's own 1,000 pages
            await _write(engine)
        assert _rows_in_the_file(path, tmp_path) == 0
    finally:
        await engine.dispose()


async def test_an_engine_of_its_own_checkpoints_in_its_commits(tmp_path: Path) -> None:
    # The CLI and the worker keep SQLite's default: nobody else copies their WAL back.
    engine = create_engine(_url(tmp_path / "a.db"))
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("PRAGMA wal_autocheckpoint")) == 1000
    finally:
        await engine.dispose()


async def test_a_checkpoint_copies_every_frame_and_the_next_writer_rewinds(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.db"
    engine = create_engine(_url(path), checkpoints_apart=True)
    checkpointer = Checkpointer(str(path), interval=3600).start()
    try:
        await _write(engine)
        wal = path.with_name("a.db-wal")
        grown = wal.stat().st_size
        progress = await checkpointer.checkpoint()
        assert progress.complete
        assert progress.frames >= ROWS
        assert _rows_in_the_file(path, tmp_path) == ROWS
        # Rewound: the next commit writes from the WAL's start, so its frames are few.
        await _write(engine, rows=1)
        after = await checkpointer.checkpoint()
        assert after.frames < ROWS
        assert wal.stat().st_size <= grown  # the file is reused, not grown
    finally:
        await checkpointer.close()
        await engine.dispose()


async def test_the_checkpointer_copies_the_wal_back_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    engine = create_engine(_url(path), checkpoints_apart=True)
    checkpointer = Checkpointer(str(path), interval=0.01).start()
    try:
        await _write(engine)
        # The rows reach the database file itself (not only the WAL) with nobody asking.
        async with asyncio.timeout(30):
            while path.stat().st_size < ROWS * 4096:  # noqa: ASYNC110 - a file, no event
                await asyncio.sleep(0.01)
        assert _rows_in_the_file(path, tmp_path) == ROWS
    finally:
        await checkpointer.close()
        await engine.dispose()


async def test_a_checkpoint_that_fails_is_tried_again_at_the_next_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a.db"
    engine = create_engine(_url(path), checkpoints_apart=True)
    checkpointer = Checkpointer(str(path), interval=0.01)
    passive = Checkpointer._passive
    calls = 0
    tried_again = asyncio.Event()

    async def failing_once(self: Checkpointer) -> Progress:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sqlite3.OperationalError("disk I/O error")
        if calls == 3:  # the second interval's checkpoint, and its report, are done
            tried_again.set()
        return await passive(self)

    monkeypatch.setattr(Checkpointer, "_passive", failing_once)
    checkpointer.start()
    try:
        await _write(engine)
        async with asyncio.timeout(30):
            await tried_again.wait()
    finally:
        await checkpointer.close()
        await engine.dispose()
    assert "WAL checkpoints failing, retried every 0.01 s: disk I/O error" in caplog.text
    assert "WAL checkpoints work again" in caplog.text


async def test_commits_overtaking_a_checkpoint_are_caught_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.db"
    engine = create_engine(_url(path), checkpoints_apart=True)
    checkpointer = Checkpointer(str(path), interval=3600).start()
    passive = Checkpointer._passive
    rounds = 0

    async def overtaken_once(self: Checkpointer) -> Progress:
        nonlocal rounds
        rounds += 1
        progress = await passive(self)
        if rounds == 1:  # a commit lands while the first round copies
            await _write(engine, rows=4)
            return progress._replace(frames=progress.frames + 4)
        return progress

    monkeypatch.setattr(Checkpointer, "_passive", overtaken_once)
    try:
        await _write(engine)
        assert (await checkpointer.checkpoint()).complete
        assert rounds == 2
        assert _rows_in_the_file(path, tmp_path) == ROWS + 4
    finally:
        await checkpointer.close()
        await engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_web_process_leaves_its_checkpoints_to_a_checkpointer(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    async with client.app[ENGINE].connect() as connection:
        assert await connection.scalar(text("PRAGMA wal_autocheckpoint")) == BACKSTOP_PAGES
        await connection.execute(text("CREATE TABLE t (body BLOB)"))
        await connection.execute(text("INSERT INTO t VALUES (randomblob(4096))"))
        await connection.commit()
    path = Path(sqlite_file(settings.database_url) or "")
    async with asyncio.timeout(30):  # its checkpointer copies the row into the file
        while _rows_in_the_file(path, tmp_path) == 0:  # noqa: ASYNC110 - a file, no event
            await asyncio.sleep(0.05)


async def test_a_connection_that_fails_its_close_too_is_dropped_and_checkpoints_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.db"
    engine = create_engine(_url(path), checkpoints_apart=True)
    checkpointer = Checkpointer(str(path), interval=0.01)
    passive = Checkpointer._passive
    close = aiosqlite.Connection.close
    calls = 0
    went_on = asyncio.Event()

    async def failing_once(self: Checkpointer) -> Progress:
        nonlocal calls
        calls += 1
        progress = await passive(self)  # the connection is open by now
        if calls == 1:
            raise sqlite3.OperationalError("disk I/O error")
        if calls == 3:
            went_on.set()
        return progress

    async def failing_close(self: aiosqlite.Connection) -> None:
        await close(self)
        monkeypatch.setattr(aiosqlite.Connection, "close", close)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Checkpointer, "_passive", failing_once)
    monkeypatch.setattr(aiosqlite.Connection, "close", failing_close)
    checkpointer.start()
    try:
        await _write(engine)
        async with asyncio.timeout(30):
            await went_on.wait()
        assert _rows_in_the_file(path, tmp_path) == ROWS
    finally:
        await checkpointer.close()
        await engine.dispose()
