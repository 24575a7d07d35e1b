"""Delivery attempts by (channel, outcome), counted as they are recorded, not all over again.

`/metrics` shows how many attempts the workers have recorded, and the workers may run in other
processes, so the count comes from the database. Counting every attempt at every scrape grows
with the history (a busy shop records millions a year, and Prometheus scrapes every few
seconds). `AttemptTally` keeps what it has counted: attempts up to an id are *settled* (counted
once, kept), and each scrape counts only the ones after it, through the primary key.

An attempt is settled once it is `SETTLE_AFTER` old (its `at`, stamped by the worker before its
transaction). Ids are taken when a row is written, not when its transaction commits, so a lower
id can become visible after a higher one: a worker's transaction takes well under a second, and
one that committed more than a minute after stamping its attempts would have them missed.
Attempts deleted with their message (an erasure) stay counted until the process restarts: what
it counts is attempts recorded, and Prometheus reads a gauge that goes down as a reset. A
deleted attempt's id is never given to another, on either database (AUTOINCREMENT on SQLite):
a new attempt's id is always above the settled mark.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dialog.outbox.models import delivery_attempts_table, outbox_table

__all__ = ["SETTLE_AFTER", "AttemptTally"]

SETTLE_AFTER = timedelta(minutes=1)

_a, _o = delivery_attempts_table.c, outbox_table.c
Key = tuple[str, str]  # (channel, outcome)


class AttemptTally:
    """Attempts by (channel, outcome) for one process's scrapes (see the module's note)."""

    def __init__(self) -> None:
        self._through = 0  # attempts with an id up to this one are settled ...
        self._settled: Counter[Key] = Counter()  # ... and counted here
        self._lock = asyncio.Lock()  # two scrapes at once must not settle the same rows twice

    async def counts(self, session: AsyncSession, now: datetime) -> dict[Key, int]:
        """Every attempt recorded so far, by (channel, outcome)."""
        async with self._lock:
            await self._settle(session, now - SETTLE_AFTER)
            recent = await _count(session, after=self._through)
            return dict(self._settled + recent)

    async def _settle(self, session: AsyncSession, before: datetime) -> None:
        """Move the settled mark past the attempts written before `before`, up to the first
        one that was not (a late one stays unsettled until it is old enough too)."""
        newer = _a.id > self._through
        last_old = await session.scalar(select(func.max(_a.id)).where(newer, _a.at < before))
        if last_old is None:
            return
        first_young = await session.scalar(
            select(func.min(_a.id)).where(newer, _a.id < last_old, _a.at >= before)
        )
        through = int(last_old if first_young is None else first_young - 1)
        if through <= self._through:
            return
        self._settled.update(await _count(session, after=self._through, through=through))
        self._through = through


async def _count(session: AsyncSession, *, after: int, through: int | None = None) -> Counter[Key]:
    """Attempts with an id after `after` (and up to `through`), by (channel, outcome)."""
    query = (
        select(_o.channel, _a.outcome, func.count())
        .select_from(delivery_attempts_table.join(outbox_table, _o.message_id == _a.message_id))
        .where(_a.id > after)
        .group_by(_o.channel, _a.outcome)
    )
    if through is not None:
        query = query.where(_a.id <= through)
    rows = await session.execute(query)
    return Counter({(row[0], row[1]): int(row[2]) for row in rows})
