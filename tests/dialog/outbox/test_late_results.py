"""A result settles only the claim that made it. A worker whose lease ran out before its result
was written has lost the row to whoever took it over: its call is recorded, as every call is, but
moves nothing, or two workers would send one row at once. Only a `sent` is kept whatever holds the
row: the provider has the message (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from crm_core.sqltypes import utcnow
from dialog.outbox import Claimed, Result
from sastre.db import SessionMaker
from tests.dialog.outbox.claims import (
    LEASE,
    attempts,
    entry,
    queue_replies,
    report,
    take,
    timeline,
)

SECOND = timedelta(seconds=1)


class TakenOver(NamedTuple):
    """One message: claimed by `first_worker`, whose lease ran out, then by `then`."""

    message: int
    late: Claimed  # the first claim, whose result comes too late
    current: Claimed  # the claim that took it over
    later: datetime  # when the take-over happened


async def taken_over(sessionmaker: SessionMaker, first_worker: str, then: str) -> TakenOver:
    [message] = await queue_replies(sessionmaker, 1)
    start = utcnow()
    [late] = await take(sessionmaker, first_worker, start)
    later = start + LEASE + SECOND
    [current] = await take(sessionmaker, then, later)
    return TakenOver(message, late, current, later)


async def test_a_late_retry_leaves_the_message_to_the_worker_that_took_it_over(
    sessionmaker: SessionMaker,
) -> None:
    # a's lease ran out: b sends it again.
    message, late, current, later = await taken_over(sessionmaker, "a", "b")
    # a's call comes back at last, a failure worth retrying, while b's call is out.
    retry = Result(late, "retry", code="503", reason="busy", retry_at=later)
    await report(sessionmaker, retry, worker="a", at=later)
    row = await entry(sessionmaker, message)
    assert (row.state, row.claimed_by, row.error_code) == ("sending", "b", None)
    assert await take(sessionmaker, "c", later + SECOND) == []  # no third sender
    await report(sessionmaker, Result(current, "sent", provider_id="SMb"), worker="b", at=later)
    row = await entry(sessionmaker, message)
    assert (row.state, row.provider_id, row.claimed_by) == ("sent", "SMb", None)
    recorded = [(a.worker, a.outcome) for a in await attempts(sessionmaker, message)]
    assert recorded == [("b", "interrupted"), ("a", "retry"), ("b", "sent")]


async def test_a_workers_late_result_does_not_move_its_own_newer_claim(
    sessionmaker: SessionMaker,
) -> None:
    """The worker's name alone does not tell its claims apart: it may take the row over
    itself once its first lease ran out."""
    message, first, second, later = await taken_over(sessionmaker, "a", "a")
    retry = Result(first, "retry", code="503", reason="busy", retry_at=later)
    await report(sessionmaker, retry, worker="a", at=later)
    row = await entry(sessionmaker, message)
    assert (row.state, row.claimed_by, row.attempts) == ("sending", "a", 2)
    assert await take(sessionmaker, "c", later + SECOND) == []
    failed = Result(second, "failed", code="21211", reason="invalid number")
    await report(sessionmaker, failed, worker="a", at=later)
    assert (await entry(sessionmaker, message)).state == "failed"


async def test_a_late_failure_is_recorded_but_neither_fails_the_message_nor_says_so(
    sessionmaker: SessionMaker,
) -> None:
    message, late, current, later = await taken_over(sessionmaker, "a", "b")
    failed = Result(late, "failed", code="30007", reason="filtered")
    await report(sessionmaker, failed, worker="a", at=later)
    row = await entry(sessionmaker, message)
    assert (row.state, row.claimed_by, row.error_code) == ("sending", "b", None)
    assert await timeline(sessionmaker) == []
    [_, recorded] = await attempts(sessionmaker, message)
    assert (recorded.worker, recorded.outcome, recorded.code) == ("a", "failed", "30007")
    assert recorded.reason is not None
    assert recorded.reason.startswith("filtered")
    await report(sessionmaker, Result(current, "sent", provider_id="SMb"), worker="b", at=later)
    assert (await entry(sessionmaker, message)).state == "sent"
    assert await timeline(sessionmaker) == ["sent"]


async def test_a_late_sent_is_kept_and_the_take_over_cannot_undo_it(
    sessionmaker: SessionMaker,
) -> None:
    message, late, current, later = await taken_over(sessionmaker, "a", "b")
    # The provider took a's copy: its id is kept (its delivery reports match it), and the row
    # leaves b's hands; b's call, out already, cannot be called back.
    await report(sessionmaker, Result(late, "sent", provider_id="SMa"), worker="a", at=later)
    row = await entry(sessionmaker, message)
    assert (row.state, row.provider_id, row.claimed_by) == ("sent", "SMa", None)
    # b's copy is refused: recorded, but the message was sent, and says so alone.
    failed = Result(current, "failed", code="30007", reason="filtered")
    await report(sessionmaker, failed, worker="b", at=later)
    row = await entry(sessionmaker, message)
    assert (row.state, row.provider_id, row.error_code) == ("sent", "SMa", None)
    assert await timeline(sessionmaker) == ["sent"]
    recorded = [(a.worker, a.outcome, a.provider_id) for a in await attempts(sessionmaker, message)]
    assert recorded == [("b", "interrupted", None), ("a", "sent", "SMa"), ("b", "failed", None)]


async def test_a_late_sent_after_the_take_over_gave_the_message_back_is_not_sent_again(
    sessionmaker: SessionMaker,
) -> None:
    message, late, current, later = await taken_over(sessionmaker, "a", "b")
    retry = Result(current, "retry", code="503", reason="busy", retry_at=later)
    await report(sessionmaker, retry, worker="b", at=later)
    assert (await entry(sessionmaker, message)).state == "queued"
    await report(sessionmaker, Result(late, "sent", provider_id="SMa"), worker="a", at=later)
    row = await entry(sessionmaker, message)
    assert (row.state, row.provider_id) == ("sent", "SMa")
    assert await take(sessionmaker, "c", later + SECOND) == []
