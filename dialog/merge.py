"""Two customer records of one person merged: their conversations become the person's.

A person has at most one open conversation (the database enforces it), so when both records have
one, one of them lives on with every message of both and the other is closed. Which one is a pure
rule, `choose_kept`; `merge_conversations` applies it in the caller's transaction. The messages'
own owner moves with the other tables a customer owns (`sastre.operations.owned`).

A conversation that came from the other record, alone or combined, is now the survivor's and
waits with the survivor's priority: a queued lead merged into a CMV customer is a CMV customer
waiting, and the routing queue orders by the conversation's `priority_tier`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dialog.models import Conversation, ConversationState, Message, is_open

__all__ = ["Choice", "OpenConversation", "choose_kept", "merge_conversations"]

# How far a conversation has got towards a human: the further one is the one the person is in.
_HANDOFF_RANK = {
    ConversationState.BOT.value: 0,
    ConversationState.QUEUED.value: 1,
    ConversationState.ASSIGNED.value: 2,
}


@dataclass(frozen=True, slots=True)
class OpenConversation:
    """What the choice needs to know of an open conversation."""

    id: int
    state: str
    waiting_since: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Choice:
    kept: OpenConversation
    closed: OpenConversation
    waiting_since: datetime | None  # the kept one's place in the queue after the merge
    reason: str


def choose_kept(first: OpenConversation, second: OpenConversation) -> Choice:
    """Which of one person's two open conversations lives on, and its place in the queue.

    The one further towards a human wins (held by an agent, then waiting for one, then the bot's):
    the person asked for a human and must not be sent back to the bot. Between equals, the one
    that has waited longer keeps its place, then the older one. The kept one waits since the
    earlier of the two moments: the person has been waiting since then, whichever record it was.
    """

    def order(c: OpenConversation) -> tuple[int, bool, datetime, datetime, int]:
        waiting = c.waiting_since or c.created_at
        return (-_HANDOFF_RANK[c.state], c.waiting_since is None, waiting, c.created_at, c.id)

    kept, closed = sorted((first, second), key=order)
    if kept.state != closed.state:
        reason = f"{kept.state} is further towards a human than {closed.state}"
    elif kept.waiting_since is not None and kept.waiting_since != closed.waiting_since:
        reason = "both wait for a human; this one waited longer"
    else:
        reason = "the older conversation"
    waiting = [w for w in (first.waiting_since, second.waiting_since) if w is not None]
    if kept.state == ConversationState.BOT.value or not waiting:
        return Choice(kept, closed, kept.waiting_since, reason)
    return Choice(kept, closed, min(waiting), reason)


def _facts(row: Conversation) -> OpenConversation:
    return OpenConversation(row.id, row.state, row.waiting_since, row.created_at)


async def merge_conversations(
    session: AsyncSession,
    survivor_id: int,
    other_id: int,
    *,
    survivor_tier: str,
    now: datetime,
) -> dict[str, Any]:
    """Give the other record's conversations to the survivor; two open ones become one.

    The closed one's messages move into the kept one (a transcript is read by conversation), it
    is resolved and says where it went; the open one that came from the other record, or was
    combined with it, takes `survivor_tier` as its priority once handed off. Returns what the
    merge's audit entry keeps of it."""
    open_rows: Sequence[Conversation] = list(
        await session.scalars(
            select(Conversation)
            .where(
                Conversation.customer_id.in_((survivor_id, other_id)),
                is_open(Conversation.state),
            )
            .order_by(Conversation.id)
            .with_for_update()
        )
    )
    # Read before the move below rewrites the rows' owner in the session.
    came_over = any(row.customer_id == other_id for row in open_rows)
    still_open = open_rows[0] if len(open_rows) == 1 else None
    combined: dict[str, Any] | None = None
    if len(open_rows) == 2:
        rows = {row.id: row for row in open_rows}
        choice = choose_kept(_facts(open_rows[0]), _facts(open_rows[1]))
        kept, closed = rows[choice.kept.id], rows[choice.closed.id]
        latest = max((kept, closed), key=lambda c: (c.updated_at, c.id))
        # Close first: the database allows one open conversation per customer.
        closed.state = ConversationState.RESOLVED.value
        closed.resolved_at = now
        closed.flags = {**(closed.flags or {}), "merged_into_conversation": kept.id}
        await session.flush()
        kept.waiting_since = choice.waiting_since
        kept.failed_turns = max(kept.failed_turns, closed.failed_turns)
        inherited = {k: v for k, v in closed.flags.items() if k != "merged_into_conversation"}
        kept.flags = {**inherited, **(kept.flags or {})}
        # Replies go where the person wrote last.
        kept.channel, kept.address, kept.language = latest.channel, latest.address, latest.language
        moved = await session.execute(
            update(Message)
            .where(Message.conversation_id == closed.id)
            .values(conversation_id=kept.id)
        )
        combined = {
            "kept": kept.id,
            "closed": closed.id,
            "reason": choice.reason,
            "messages_moved": int(moved.rowcount),  # type: ignore[attr-defined]
        }
        still_open = kept
    result = await session.execute(
        update(Conversation)
        .where(Conversation.customer_id == other_id)
        .values(customer_id=survivor_id)
        .execution_options(synchronize_session="fetch")
    )
    moved_rows = int(result.rowcount)  # type: ignore[attr-defined]
    facts: dict[str, Any] = {"moved": moved_rows, "combined": combined}
    if came_over and still_open is not None and _takes_a_tier(still_open, survivor_tier):
        facts["priority_tier"] = {
            "conversation": still_open.id,
            "from": still_open.priority_tier,
            "to": survivor_tier,
        }
        still_open.priority_tier = survivor_tier
    await session.flush()
    return facts


def _takes_a_tier(row: Conversation, tier: str) -> bool:
    """A conversation waiting for or held by a person is ordered by its tier; one still with the
    bot has none until it is handed off, which sets the customer's tier then."""
    handed_off = row.state != ConversationState.BOT.value or row.priority_tier is not None
    return handed_off and row.priority_tier != tier
