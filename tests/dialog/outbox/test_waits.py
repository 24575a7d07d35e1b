"""The claim's `wait` (the quiet hours asked again at the send): a row that must wait is queued
again, due when it may go, and not sent; one that never may is failed; a crashed call taken
over is recorded all the same (SQLite and PostgreSQL). Each test's moments follow the clock
that queued its replies: a fixed date goes stale (the rows, queued now, were not yet due then)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.sqltypes import utcnow
from dialog.outbox import Claimed, Result, Wait, claim
from sastre.db import SessionMaker
from tests.dialog.outbox.claims import ALL, LEASE, attempts, entry, queue_replies, report

CLOSED_FOR = timedelta(hours=3, minutes=30)  # how long a held row waits for its window


def waiting(until: Mapping[int, datetime | None]) -> Wait:
    """A `wait` that holds the rows named, until the time given (None: never)."""

    async def wait(
        session: AsyncSession, rows: Sequence[Claimed], now: datetime
    ) -> Mapping[int, datetime | None]:
        return {c.message_id: until[c.message_id] for c in rows if c.message_id in until}

    return wait


async def take(
    sessionmaker: SessionMaker, at: datetime, wait: Wait, worker: str = "w1"
) -> list[int]:
    """The rows claimed, sent at once unless `worker` is "dead" (it dies with its calls out)."""
    async with sessionmaker.begin() as session:
        claimed = await claim(
            session, worker=worker, channels=ALL, limit=10, lease=LEASE, now=at, wait=wait
        )
    if worker != "dead":
        for c in claimed:
            sent = Result(c, "sent", f"SM-{c.message_id}")
            await report(sessionmaker, sent, worker=worker, at=at)
    return [c.message_id for c in claimed]


async def test_a_row_that_must_wait_is_queued_again_for_when_it_may_go(
    sessionmaker: SessionMaker,
) -> None:
    first, second = await queue_replies(sessionmaker, 2)
    now = utcnow()
    opens = now + CLOSED_FOR
    assert await take(sessionmaker, now, waiting({first: opens})) == [second]
    held = await entry(sessionmaker, first)
    assert (held.state, held.due_at, held.claimed_by, held.attempts) == ("queued", opens, None, 0)
    assert await attempts(sessionmaker, first) == []  # no call was made: none is recorded
    # Not before it opens; then it goes.
    assert await take(sessionmaker, opens - timedelta(seconds=1), waiting({})) == []
    assert await take(sessionmaker, opens, waiting({})) == [first]


async def test_a_row_that_may_never_go_is_failed_with_the_reason(
    sessionmaker: SessionMaker,
) -> None:
    [row] = await queue_replies(sessionmaker, 1)
    assert await take(sessionmaker, utcnow(), waiting({row: None})) == []
    failed = await entry(sessionmaker, row)
    assert (failed.state, failed.error_code) == ("failed", "quiet_hours")
    [attempt] = await attempts(sessionmaker, row)
    assert (attempt.outcome, attempt.code) == ("failed", "quiet_hours")


async def test_a_crashed_call_taken_over_in_quiet_hours_is_recorded_once(
    sessionmaker: SessionMaker,
) -> None:
    [row] = await queue_replies(sessionmaker, 1)
    now = utcnow()
    opens = now + CLOSED_FOR
    assert await take(sessionmaker, now, waiting({}), worker="dead") == [row]  # then it died
    after_lease = now + LEASE + timedelta(seconds=1)
    assert await take(sessionmaker, after_lease, waiting({row: opens})) == []
    assert [a.outcome for a in await attempts(sessionmaker, row)] == ["interrupted"]
    assert (await entry(sessionmaker, row)).state == "queued"
    assert await take(sessionmaker, opens, waiting({})) == [row]
    assert [a.outcome for a in await attempts(sessionmaker, row)] == ["interrupted", "sent"]
