"""The database: engine set-up for SQLite and PostgreSQL, sessions, and Alembic migrations.

Two kinds of session share one engine and its pool. A *writer* (`sessionmaker_for`) starts with
SQLite's `BEGIN IMMEDIATE`, so writers queue for the one write lock instead of failing half-way.
A *reader* (`reader_for`) starts a plain deferred `BEGIN`: under WAL it reads a snapshot and never
waits for a writer, so a token check, a health check or a customer page stays fast while an
import or a burst of chat messages writes. Readers are read-only in fact, not only by convention:
SQLite's `query_only` on that connection, a `READ ONLY` transaction on PostgreSQL.

A *quick writer* (`quick_writer_for`) is a writer whose transactions are a few short statements
that requests wait on (the inbound path's batches): on SQLite, once it holds the write lock, its
statements run on the event loop's thread instead of a trip to the connection's thread
(`sastre.sqlite_driver`). On PostgreSQL it is a writer like any other.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, exc
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sastre import sqlite_driver
from sastre.sqlite_driver import OneTripConnection
from sastre.wal_checkpoints import BACKSTOP_PAGES, sqlite_file

__all__ = [
    "QUICK",
    "READ_ONLY",
    "SessionMaker",
    "create_engine",
    "database",
    "migrate",
    "quick_writer_for",
    "reader_for",
    "sessionmaker_for",
]

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

SessionMaker = async_sessionmaker[AsyncSession]
MIGRATIONS = Path(__file__).parent / "migrations"
# The execution options that mark a reader's engine (see `reader_for`) and a quick writer's
# (`quick_writer_for`).
READ_ONLY = "sastre_read_only"
QUICK = "sastre_quick"
WAL = "sastre_wal"  # a pooled SQLite connection's info: its journal is the WAL
# A pooled PostgreSQL connection idle longer than this (seconds) is pinged before it is used
# (`_ping_when_idle`).
PING_IDLE = 1.0


def _prepare_sqlite(engine: AsyncEngine, url: str, *, checkpoints_apart: bool) -> None:
    path = sqlite_file(url)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy, not the driver, open transactions (needed for SAVEPOINT) ...
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # ... WAL so readers never wait for the writer, a busy timeout instead of instant errors,
        # and foreign keys enforced as on PostgreSQL.
        cursor.execute("PRAGMA journal_mode=WAL")
        # Not every database can (one in memory stays "memory"): quick writes need WAL.
        record.info[WAL] = str(cursor.fetchone()[0]).lower() == "wal"
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # A bigger page cache (the default is 2 MB) and temporary tables in memory: bulk
        # imports and tier recomputes touch far more than 2 MB of index pages.
        cursor.execute("PRAGMA cache_size=-262144")
        cursor.execute("PRAGMA temp_store=MEMORY")
        # Helper threads for large sorts (the window sorts of a tier recompute, index builds).
        cursor.execute(f"PRAGMA threads={min(os.cpu_count() or 1, 4)}")
        if checkpoints_apart:  # a Checkpointer copies the WAL back; past this, commits do
            cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = bool(connection.get_execution_options().get(READ_ONLY, False))
        # query_only belongs to the driver's connection, which the pool hands to readers and
        # writers alike: switch it only when this connection last served the other kind.
        info = connection.connection.info
        if info.get(READ_ONLY, False) != read_only:
            connection.exec_driver_sql(f"PRAGMA query_only={int(read_only)}")
            info[READ_ONLY] = read_only
        # A writer's IMMEDIATE takes the write lock up front: two writers queue instead of one
        # failing with "database is locked" when it upgrades a read lock half-way through.
        # A reader's deferred BEGIN takes no lock at all: WAL gives it a snapshot.
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
        # Holding the lock now: a quick writer's statements need no trip (`sastre.sqlite_driver`).
        driver = connection.connection.driver_connection
        if isinstance(driver, OneTripConnection):
            options = connection.get_execution_options()
            driver.quick = (
                bool(options.get(QUICK, False))
                and not read_only
                and bool(info.get(WAL, False))  # a writer waits for nobody only under WAL
                and driver.any_thread
            )


def _sqlite_creator(url: str) -> Callable[[], Awaitable[OneTripConnection]]:
    """aiosqlite connections that take one trip to their thread per statement
    (`sastre.sqlite_driver`), opened with the arguments SQLAlchemy's own dialect would use."""
    args, kwargs = SQLiteDialect_aiosqlite().create_connect_args(make_url(url))

    async def connection() -> OneTripConnection:
        return await sqlite_driver.connect(*args, **kwargs)

    return connection


def create_engine(url: str, *, checkpoints_apart: bool = False, **kwargs: Any) -> AsyncEngine:
    """An engine for `url`. With `checkpoints_apart`, SQLite's commits leave the WAL's
    checkpoints to a `sastre.wal_checkpoints.Checkpointer` the caller runs (PostgreSQL: no
    effect)."""
    if url.startswith("sqlite"):
        kwargs.setdefault("async_creator", _sqlite_creator(url))
        engine = create_async_engine(url, **kwargs)
        _prepare_sqlite(engine, url, checkpoints_apart=checkpoints_apart)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    engine = create_async_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):  # asked for: every checkout pings
        _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled connection before use only if it has been idle over `PING_IDLE`.

    SQLAlchemy's pre-ping checks every connection taken from the pool, and with asyncpg a ping is
    three round trips (a transaction around `;`, for pgbouncer): under load that was a fifth of
    an inbound batch's round trips, each waiting its turn on a busy event loop. A connection
    that finished a transaction moments ago is alive; one idle for a while may have been cut
    (the server restarted, a firewall forgot it), and that is what a ping is for (HikariCP
    skips the check within 500 ms of a use, for the same reason). A connection that died in
    that second fails its statement instead, and SQLAlchemy replaces it and every connection
    pooled before it, as a failed ping does."""
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "connect")
    def _connected(_dbapi_connection: Any, record: Any) -> None:
        record.info["sastre_used_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["sastre_used_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        used_at = record.info.get("sastre_used_at")
        if used_at is not None and time.monotonic() - used_at < PING_IDLE:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.InvalidatePoolError(f"the connection failed its ping: {error}") from error
        if not alive:
            raise exc.InvalidatePoolError("the connection failed its ping")


def sessionmaker_for(engine: AsyncEngine) -> SessionMaker:
    """Sessions for units of work that write (and may read first)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def reader_for(engine: AsyncEngine) -> SessionMaker:
    """Sessions that only read, on the same pool: they never wait for a writer's lock, and a
    write through one fails at once ("attempt to write a readonly database" on SQLite, "read-only
    transaction" on PostgreSQL) instead of taking the lock behind the caller's back."""
    readers = engine.execution_options(**{READ_ONLY: True, "postgresql_readonly": True})
    return async_sessionmaker(readers, expire_on_commit=False)


def quick_writer_for(engine: AsyncEngine) -> SessionMaker:
    """Sessions for write transactions of a few short statements that requests wait on (the
    inbound path's batches): on SQLite their statements run on the event loop once the write
    lock is held (see the module's note). Never for a long statement (an import, a recompute):
    it would hold up every request while it ran."""
    return async_sessionmaker(engine.execution_options(**{QUICK: True}), expire_on_commit=False)


@asynccontextmanager
async def database(url: str) -> AsyncIterator[tuple[AsyncEngine, SessionMaker]]:
    engine = create_engine(url)
    try:
        yield engine, sessionmaker_for(engine)
    finally:
        await engine.dispose()


def _alembic_config(url: str) -> AlembicConfig:
    # Alembic is loaded only to migrate: a command on an up-to-date database never needs it.
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


def _upgrade(url: str) -> None:
    from alembic import command

    command.upgrade(_alembic_config(url), "head")


async def migrate(url: str) -> None:
    """Apply every Alembic migration. Alembic's env.py runs its own event loop, hence the thread."""
    await asyncio.to_thread(_upgrade, url)
