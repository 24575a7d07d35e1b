"""The hand-off: a conversation queued for a person, with everything they need to pick it up.

The snapshot taken here (the transcript's last messages, their intents, the customer's card) is
what the agent reads first; the queue orders conversations by the tier and waiting time set here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.customers import customer_view
from dialog.models import ConversationState, Message
from dialog.turns import ConversationFacts, CustomerFacts

__all__ = [
    "HELD_BY_A_PERSON",
    "TRANSCRIPT_FOR_HANDOFF",
    "TURN_ATTRIBUTES",
    "hand_off",
    "retention_flags",
]

TRANSCRIPT_FOR_HANDOFF = 20
HELD_BY_A_PERSON = (ConversationState.QUEUED.value, ConversationState.ASSIGNED.value)
_CARD = (
    "id",
    "name",
    "language",
    "timezone",
    "tier",
    "tier_reason",
    "value",
    "identities",
    "attributes",
    "interactions",
)


# The customer attributes a turn reads (`CustomerFacts.attributes`): the inbound path loads these
# alone, not the whole JSON an import may have filled with dozens of fields.
TURN_ATTRIBUTES = ("churn_risk",)


def retention_flags(customer: CustomerFacts) -> dict[str, Any]:
    """Service recovery: an at-risk customer (`churn_risk=high`) reaching out is a last chance
    to keep them, so the conversation is flagged for the retention team (docs/product.md)."""
    at_risk = str(customer.attributes.get("churn_risk", "")).lower() == "high"
    return {"retention": True} if at_risk else {}


async def hand_off(
    session: AsyncSession,
    *,
    customer: CustomerFacts,
    conversation: ConversationFacts,
    reason: str,
    now: datetime,
    message_id: int | None,
    intent: str | None,
) -> dict[str, Any]:
    """The conversation's changes that queue it for a person.

    The message being answered (`message_id`) is in the transcript with `intent`, which is not
    written yet. Its timeline entry must be written before the call: the card shows it."""

    def intent_of(message: Message) -> str | None:
        return intent if message.id == message_id else message.intent

    history = await _transcript(session, conversation.id)
    card = await customer_view(session, customer.id, interactions=10)
    return {
        "state": ConversationState.QUEUED.value,
        "handoff_reason": reason,
        "priority_tier": customer.tier,
        "waiting_since": now,
        "flags": {**conversation.flags, **retention_flags(customer)},
        "context": {
            "reason": reason,
            "transcript": [
                {
                    "direction": m.direction,
                    "author": m.author,
                    "text": m.text,
                    "intent": intent_of(m),
                    "at": m.created_at.isoformat(),
                }
                for m in history
            ],
            "intents": [found for m in history if (found := intent_of(m))],
            "customer": {key: card[key] for key in _CARD},
        },
    }


async def _transcript(session: AsyncSession, conversation_id: int) -> list[Message]:
    rows = await session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.id.desc())
        .limit(TRANSCRIPT_FOR_HANDOFF)
    )
    return list(reversed(list(rows)))
