"""The KB's gaps read from the transcript: recent inbound messages the bot did not answer, each
with the first answer a person of the staff wrote after it in the same conversation.

Bounded whatever the database holds: at most `MAX_GAPS` gap messages are read, newest first, and
only among the newest `SCAN_WINDOW` messages by id (the primary key: no index on the time or the
outcome is needed to stop early). `GapScan.complete` says whether every gap since the asked date
was read; when it is not, the newest ones were.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from dialog.gaps import GAP_HANDOFFS_LEFT_OUT, AgentAnswer, Gap
from dialog.models import Conversation, Direction, LabelledExample, Message
from dialog.nlu import detect_language

__all__ = ["MAX_GAPS", "SCAN_WINDOW", "GapScan", "gap_condition", "read_gaps"]

MAX_GAPS: Final = 2000  # gap messages read for one report: grouping them is < 1 s of CPU
SCAN_WINDOW: Final = 200_000  # of the newest messages by id: a primary-key range, always cheap


@dataclass(frozen=True, slots=True)
class GapScan:
    gaps: list[Gap]  # newest first
    complete: bool  # every gap since the date asked for was read (else the newest MAX_GAPS)


def gap_condition(outcome: Any = Message.outcome) -> ColumnElement[bool]:
    """`dialog.gaps.is_gap` as SQL: rephrase, choices offered, hand-offs but the left-out ones."""
    left_out = [f"handoff:{reason}" for reason in sorted(GAP_HANDOFFS_LEFT_OUT)]
    return or_(
        outcome == "rephrase",
        outcome.like("choices:%"),
        and_(outcome.like("handoff:%"), not_(outcome.in_(left_out))),
    )


def _staff_answer(gap: Any) -> Any:
    """The id of the first message a person of the staff wrote in the gap's conversation after
    it. Staff write as `<role>:<name>` (agent:, supervisor:, admin:); the bot and the system as
    plain words. One index range per gap (ix_messages_conversation)."""
    later = aliased(Message)
    return (
        select(func.min(later.id))
        .where(
            later.conversation_id == gap.conversation_id,
            later.id > gap.id,
            later.direction == Direction.OUT.value,
            later.author.like("%:%"),
        )
        .scalar_subquery()
    )


def _chosen(gap: Any) -> Any:
    """The option the customer picked when the bot offered choices for this message, if any."""
    return (
        select(func.max(LabelledExample.label))
        .where(LabelledExample.message_id == gap.id)
        .scalar_subquery()
    )


async def _floor(session: AsyncSession, since: datetime) -> tuple[int, bool]:
    """The id above which messages are read, and whether messages since `since` lie below it."""
    newest = (await session.execute(select(func.max(Message.id)))).scalar_one_or_none() or 0
    floor = max(0, newest - SCAN_WINDOW)
    if floor == 0:
        return 0, False
    below = await session.execute(
        select(Message.created_at).where(Message.id <= floor).order_by(Message.id.desc()).limit(1)
    )
    at = below.scalar_one_or_none()
    return floor, at is not None and at >= since


async def read_gaps(
    session: AsyncSession,
    *,
    since: datetime,
    channel: str | None = None,
    language: str | None = None,
    limit: int = MAX_GAPS,
    default_language: str = "en",
) -> GapScan:
    """The gaps since `since` (newest first), on `channel` and in `language` if given.

    A message's language is read from its text as the bot reads it, the conversation's language
    breaking a tie ("ok", an order number); `language` filters the gaps read, so with a capped
    read a language rare among recent gaps may show fewer than it has."""
    floor, cut = await _floor(session, since)
    gap = aliased(Message)
    inner = (
        select(
            gap.id,
            gap.text,
            gap.channel,
            gap.created_at,
            gap.outcome,
            Conversation.language.label("conversation_language"),
            _staff_answer(gap).label("answer_id"),
            _chosen(gap).label("chosen"),
        )
        .join(Conversation, Conversation.id == gap.conversation_id)
        .where(
            gap.id > floor,
            gap.direction == Direction.IN.value,
            gap.created_at >= since,
            gap_condition(gap.outcome),
        )
        .order_by(gap.id.desc())
        .limit(limit + 1)  # one more: whether there were more
    )
    if channel is not None:
        inner = inner.where(gap.channel == channel)
    found = inner.subquery()
    answer = aliased(Message)
    query = (
        select(
            found,
            answer.text.label("answer_text"),
            answer.author.label("answer_author"),
            answer.created_at.label("answer_at"),
        )
        .outerjoin(answer, answer.id == found.c.answer_id)
        .order_by(found.c.id.desc())
    )
    rows = (await session.execute(query)).all()
    complete = len(rows) <= limit and not cut
    gaps = []
    for row in rows[:limit]:
        read_in = detect_language(row.text, hint=row.conversation_language or default_language)
        if language is not None and read_in != language:
            continue
        reply = (
            AgentAnswer(row.answer_id, row.answer_text, row.answer_author, row.answer_at)
            if row.answer_id is not None
            else None
        )
        gaps.append(
            Gap(
                message_id=row.id,
                text=row.text,
                language=read_in,
                channel=row.channel,
                at=row.created_at,
                outcome=row.outcome,
                answer=reply,
                chosen=row.chosen,
            )
        )
    return GapScan(gaps, complete)
