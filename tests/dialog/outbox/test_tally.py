"""`/metrics`' delivery attempts by (channel, outcome), counted incrementally
(`dialog.outbox.tally`): always what counting them all would say, without counting them all
again (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from channels.base import ChannelName
from crm_core.sqltypes import utcnow
from dialog.outbox import DeliveryAttempt, OutboxEntry
from dialog.outbox.tally import SETTLE_AFTER, AttemptTally
from sastre.db import SessionMaker
from tests.dialog.outbox.claims import queue_replies

OUTCOMES = ("sent", "retry", "failed", "interrupted")
Attempt = tuple[int, str, int]  # (which message, outcome, seconds old)


async def record(
    sessionmaker: SessionMaker, messages: Sequence[int], attempts: Sequence[Attempt], now: datetime
) -> None:
    async with sessionmaker.begin() as session:
        session.add_all(
            DeliveryAttempt(
                message_id=messages[which % len(messages)],
                worker="w",
                outcome=outcome,
                at=now - timedelta(seconds=age),
            )
            for which, outcome, age in attempts
        )


async def all_counted(sessionmaker: SessionMaker) -> dict[tuple[str, str], int]:
    """Every attempt counted afresh: what the tally must always say."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(OutboxEntry.channel, DeliveryAttempt.outcome, func.count())
            .join(OutboxEntry, OutboxEntry.message_id == DeliveryAttempt.message_id)
            .group_by(OutboxEntry.channel, DeliveryAttempt.outcome)
        )
        return {(row[0], row[1]): int(row[2]) for row in rows}


async def tallied(
    sessionmaker: SessionMaker, tally: AttemptTally, now: datetime
) -> dict[tuple[str, str], int]:
    async with sessionmaker() as session:
        return await tally.counts(session, now)


async def messages_on_both_channels(sessionmaker: SessionMaker) -> list[int]:
    sms = await queue_replies(sessionmaker, 2)
    email = await queue_replies(sessionmaker, 1, ChannelName.EMAIL)
    return [*sms, *email]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rounds=st.lists(
        st.lists(
            st.tuples(
                st.integers(0, 2),
                st.sampled_from(OUTCOMES),
                # Around the settling age, whatever the order of ids (a younger attempt may
                # have a lower id).
                st.integers(0, int(SETTLE_AFTER.total_seconds()) * 3),
            ),
            max_size=6,
        ),
        min_size=1,
        max_size=4,
    )
)
async def test_the_tally_is_always_every_attempt_counted(
    sessionmaker: SessionMaker, rounds: list[list[Attempt]]
) -> None:
    messages = await messages_on_both_channels(sessionmaker)
    tally = AttemptTally()  # a process starting: its first scrape counts what is there already
    now = utcnow()
    for attempts in rounds:
        await record(sessionmaker, messages, attempts, now)
        assert await tallied(sessionmaker, tally, now) == await all_counted(sessionmaker)
        now += SETTLE_AFTER / 2  # scrapes go on; attempts written earlier age past settling


async def test_settled_attempts_are_not_counted_again(sessionmaker: SessionMaker) -> None:
    messages = await messages_on_both_channels(sessionmaker)
    now = utcnow()
    old = int(SETTLE_AFTER.total_seconds()) * 2
    await record(
        sessionmaker, messages, [(0, "sent", old), (2, "failed", old), (1, "sent", 0)], now
    )
    tally = AttemptTally()
    assert await tallied(sessionmaker, tally, now) == {
        ("sms", "sent"): 2,
        ("email", "failed"): 1,
    }
    # The old ones are settled: the next scrape reads past them. Gone from the database (an
    # erasure), they stay counted; the young one is counted from the database each time.
    async with sessionmaker.begin() as session:
        await session.execute(delete(DeliveryAttempt))
    assert await tallied(sessionmaker, tally, now) == {("sms", "sent"): 1, ("email", "failed"): 1}


async def test_a_young_attempt_is_not_settled_even_below_an_older_ones_id(
    sessionmaker: SessionMaker,
) -> None:
    """Ids follow the writes, not the commits: an attempt under the settling age stays counted
    from the database, whatever ids older attempts have (deleting it shows which it was)."""
    messages = await messages_on_both_channels(sessionmaker)
    now = utcnow()
    old = int(SETTLE_AFTER.total_seconds()) * 2
    await record(sessionmaker, messages, [(0, "sent", 0)], now)  # the lower id, young
    await record(sessionmaker, messages, [(1, "sent", old)], now)  # the higher id, old
    tally = AttemptTally()
    assert await tallied(sessionmaker, tally, now) == {("sms", "sent"): 2}
    async with sessionmaker.begin() as session:
        await session.execute(delete(DeliveryAttempt))
    assert await tallied(sessionmaker, tally, now) == {}  # neither was settled


async def test_an_attempt_after_an_erasure_is_counted(sessionmaker: SessionMaker) -> None:
    """Erased attempts' ids are never given again (AUTOINCREMENT on SQLite): the next attempt's
    id is above the settled mark, so it is counted."""
    messages = await messages_on_both_channels(sessionmaker)
    now = utcnow()
    old = int(SETTLE_AFTER.total_seconds()) * 2
    await record(sessionmaker, messages, [(0, "sent", old), (1, "sent", old)], now)
    tally = AttemptTally()
    assert await tallied(sessionmaker, tally, now) == {("sms", "sent"): 2}
    async with sessionmaker.begin() as session:
        await session.execute(delete(DeliveryAttempt))  # the erasure
    await record(sessionmaker, messages, [(0, "sent", old)], now)
    assert await tallied(sessionmaker, tally, now) == {("sms", "sent"): 3}
