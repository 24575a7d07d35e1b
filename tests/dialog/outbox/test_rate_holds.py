"""A row the rate limit holds back keeps its place in line: a channel's messages leave in the
order they became due, however many are queued meanwhile, and the claims leave a full channel out
until it has room, so the other channels' rows are not crowded out and an idle worker sleeps
until then (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from channels.base import ChannelName
from crm_core.sqltypes import utcnow
from dialog.outbox import Result, next_due
from sastre.db import SessionMaker
from tests.dialog.outbox.claims import Gate, entry, queue_replies, report, take

SECOND = timedelta(seconds=1)


async def test_messages_held_by_the_rate_limit_go_before_those_queued_after_them(
    sessionmaker: SessionMaker,
) -> None:
    """One a second may go, and one new message comes each second: the backlog still goes, in
    turn (it once went to the back of the line at each hold, for good)."""
    backlog = await queue_replies(sessionmaker, 3)
    start = utcnow()
    gate = Gate(until=start)
    sent: list[int] = []
    newer: list[int] = []
    for n in range(6):
        at = start + n * SECOND
        gate.room, gate.until = 1, at + SECOND
        for claimed in await take(sessionmaker, "w", at, admit=gate):
            sent.append(claimed.message_id)
            result = Result(claimed, "sent", provider_id=f"SM{claimed.message_id}")
            await report(sessionmaker, result, worker="w", at=at)
        newer += await queue_replies(sessionmaker, 1)
    assert sent == (backlog + newer)[:6]


async def test_a_full_channel_is_left_out_of_claims_until_it_has_room(
    sessionmaker: SessionMaker,
) -> None:
    first, second = await queue_replies(sessionmaker, 2)
    [mail] = await queue_replies(sessionmaker, 1, ChannelName.EMAIL)
    due = (await entry(sessionmaker, second)).due_at
    start = utcnow()
    # `next_due` reads the clock: a window no slow run outlasts, and shorter than the lease.
    window = timedelta(seconds=20)
    gate = Gate(until=start + window, room=1)
    claimed = await take(sessionmaker, "w", start, admit=gate)
    assert [c.message_id for c in claimed] == [first, mail]
    held = await entry(sessionmaker, second)
    assert (held.state, held.due_at, held.claimed_by) == ("queued", due, None)  # in its place
    # Until the window has room, claims go on for the other channels without asking for it.
    [later_mail] = await queue_replies(sessionmaker, 1, ChannelName.EMAIL)
    asked = list(gate.asked)
    claimed = await take(sessionmaker, "w", start + window / 2, admit=gate)
    assert [c.message_id for c in claimed] == [later_mail]
    assert gate.asked == [*asked, later_mail]
    # Its rows are due all along; a worker waits for the room, not for them.
    async with sessionmaker() as session:
        assert await next_due(session, [ChannelName.SMS]) == start + window
    gate.room = 1
    claimed = await take(sessionmaker, "w", start + window, admit=gate)
    assert [c.message_id for c in claimed] == [second]
