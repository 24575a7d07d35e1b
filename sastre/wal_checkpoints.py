"""SQLite's WAL checkpoints, moved off the write path.

In WAL mode every commit appends pages to the `-wal` file, and a *checkpoint* copies them back
into the database file. By default the connection whose commit takes the WAL past 1,000 pages
runs that checkpoint itself, inside its commit. On the inbound path that commit is a batch's:
thirty customers' answers, and thirty more messages queued behind it, waited 7-12 ms for some
4 MB to be copied, every 400 messages or so under load, and those were the slowest batches of a
run (an inbound message stores about 2.6 pages).

So the web process's connections leave checkpoints to `Checkpointer`, a connection of its own in
a thread of its own that runs a PASSIVE checkpoint every `INTERVAL`: it never waits for the
writer, nor the writer for it (SQLite releases the GIL while it copies). The WAL is rewound to
its start only by a writer that finds every frame of it copied, which under a steady load a
background checkpoint seldom leaves it: so the writer still checkpoints past `BACKSTOP_PAGES`,
but then finds almost everything copied already and rewinds the WAL for the price of the
last `INTERVAL`'s frames. The backstop also bounds the WAL should the thread fall behind.

Measured with bench.sms_inbound (SQLite, 6,000 webhooks, three runs of each interleaved): a
batch's commit took 1.06-1.24 ms on average and 8.7-11.8 ms at worst before, 0.76-0.92 ms and
3.8-6.1 ms after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final, NamedTuple, Self

import aiosqlite
from sqlalchemy.engine import make_url

__all__ = ["BACKSTOP_PAGES", "INTERVAL", "Checkpointer", "Progress", "sqlite_file"]

log = logging.getLogger(__name__)

# The writer's own checkpoint (PRAGMA wal_autocheckpoint) for connections that leave it to a
# Checkpointer: ten times SQLite's default, about 40 MB of WAL, some 4,000 inbound messages.
BACKSTOP_PAGES: Final = 10_000
# Seconds between checkpoints: at 1,700 inbound messages a second some 450 pages, what the
# writer copies when it reaches the backstop. A checkpoint with nothing to copy costs a trip.
INTERVAL: Final = 0.1
# Rounds of one checkpoint chasing the commits that overtake it (see `Checkpointer.checkpoint`).
CATCH_UP_ROUNDS: Final = 4


def sqlite_file(database_url: str) -> str | None:
    """The SQLite file of `database_url`, whose WAL a Checkpointer can keep; None for
    PostgreSQL and for an in-memory database (no WAL)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


class Progress(NamedTuple):
    """What a PASSIVE checkpoint reports: the frames in the WAL and those copied so far."""

    busy: int  # 1: another connection's checkpoint was running, this one did nothing
    frames: int
    copied: int

    @property
    def complete(self) -> bool:
        """Every frame the WAL held when it ran is copied: a writer that begins before the
        next commit rewinds the WAL to its start."""
        return not self.busy and self.copied >= self.frames


class Checkpointer:
    """Checkpoints the WAL of one SQLite file in the background until closed.

    Its connection opens at the first checkpoint, not at start-up: the service starts with
    its database unreachable (answering 503 meanwhile), and so does this, trying again every
    interval. A failure is logged when checkpoints start failing and when they work again,
    not at every try."""

    def __init__(self, path: str, *, interval: float = INTERVAL) -> None:
        self._path = path
        self._interval = interval
        self._connection: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="sastre-wal-checkpoints")
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._disconnect()

    async def checkpoint(self) -> Progress:
        """Copy what the WAL holds into the database file, without waiting for anyone.

        Commits that land while it copies leave frames behind it, and a WAL not wholly copied
        is never rewound: it would grow until the writer's backstop. Those frames are few
        (a batch or two), so it runs again for them, a bounded number of times."""
        progress = await self._passive()
        for _ in range(CATCH_UP_ROUNDS):
            if progress.complete or progress.busy:
                break
            progress = await self._passive()
        return progress

    async def _passive(self) -> Progress:
        if self._connection is None:
            self._connection = await aiosqlite.connect(self._path)
        async with self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)") as cursor:
            row = await cursor.fetchone()
        assert row is not None  # the pragma always answers one row
        return Progress(*row)

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # A connection that failed may fail its close too: it is dropped all the same, and
            # the checkpoints go on (a task that died here would stop them for good).
            with contextlib.suppress(aiosqlite.Error, ValueError):
                await connection.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.checkpoint()
            except aiosqlite.Error as error:  # unreachable, the disk full: the backstop holds
                if not self._failing:
                    log.warning(
                        "WAL checkpoints failing, retried every %g s: %s", self._interval, error
                    )
                self._failing = True
                await self._disconnect()  # the next try opens the file afresh
            else:
                if self._failing:
                    log.warning("WAL checkpoints work again")
                self._failing = False
