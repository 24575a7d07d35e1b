"""Staff send a message, or send a failed one again: both through the outbox, never directly.

Nothing company-initiated skips the contact policy: `do_send_message` asks
`consent.policy.decide` inside the act's transaction (so a STOP committed a moment before is
seen), queues on `allow`, queues for `defer_until` on `defer`, and refuses on `deny` with the
decision's reason. The worker checks consent once more when it sends. A marketing message is
a contact made (`consent.models.ContactMade`, dated when it is due to go) as soon as it is
queued, so the next decision's frequency caps count it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from channels.base import ChannelName
from consent.models import ContactMade
from consent.policy import ContactHours, Decision, Outcome, PolicyRules, decide
from consent.snapshot import load_contact_state
from consent.types import Channel, Purpose
from crm_core.models import Identity, InteractionKind
from crm_core.sqltypes import utcnow
from crm_core.timeline import add_interaction
from dialog.media import by_consent_channel
from dialog.models import Conversation, ConversationState, Direction, Message
from dialog.outbox import DeliveryState, announce, enqueue, outbox_row, through_outbox
from dialog.outbox.models import OutboxEntry
from sastre.db import SessionMaker
from sastre.operations.unit import unit_of_work

__all__ = ["NotRetryable", "Queued", "Refused", "do_retry_message", "do_send_message"]


class Refused(Exception):
    """The contact policy said no (or there is nowhere to send it)."""

    def __init__(self, reason: str, explanation: str, decision: Decision | None = None) -> None:
        super().__init__(explanation)
        self.reason, self.explanation, self.decision = reason, explanation, decision


class NotRetryable(Exception):
    """Only a failed message can be sent again."""


class MessageNotFound(LookupError):
    """No outbound message has that id."""


@dataclass(frozen=True, slots=True)
class Queued:
    message_id: int
    channel: str
    due_at: datetime
    decision: dict[str, Any]


async def _address(session: Any, customer_id: int, channel: Channel) -> str | None:
    kind = by_consent_channel(channel).identity
    query = (
        select(Identity.value)
        .where(Identity.customer_id == customer_id, Identity.kind == kind.value)
        .order_by(Identity.verified.desc(), Identity.created_at)
        .limit(1)
    )
    address: str | None = await session.scalar(query)
    return address


async def _conversation(session: Any, customer_id: int, channel: str, address: str) -> int:
    query = select(Conversation.id).where(
        Conversation.customer_id == customer_id,
        Conversation.state != ConversationState.RESOLVED.value,
    )
    found = await session.scalar(query)
    if found is not None:
        return int(found)
    opened = Conversation(customer_id=customer_id, channel=channel, address=address)
    session.add(opened)
    await session.flush()
    return opened.id


async def do_send_message(
    sessionmaker: SessionMaker,
    *,
    customer_id: int,
    text: str,
    purpose: Purpose,
    channel: Channel | None,
    actor: str,
    default_timezone: str,
    rules: PolicyRules,
    quiet_overrides: dict[str, ContactHours] | None = None,
) -> Queued:
    """Queue a staff message after the contact policy allows (or defers) it; raises Refused."""
    now = utcnow()
    async with unit_of_work(sessionmaker, actor) as unit:
        session = unit.session
        state = await load_contact_state(
            session,
            customer_id,
            at=now,
            default_timezone=default_timezone,
            quiet_overrides=quiet_overrides,
        )
        decision = decide(state, purpose, channel, now, rules=rules)
        if decision.outcome is Outcome.DENY or decision.channel is None:
            raise Refused(decision.reason.value, decision.explanation, decision)
        address = await _address(session, customer_id, decision.channel)
        if address is None:
            raise Refused("no_address", f"no address on {decision.channel.value}", decision)
        medium = by_consent_channel(decision.channel).name
        if not through_outbox(medium) or medium is ChannelName.VOICE:
            raise Refused("not_sendable", f"staff messages do not go out by {medium.value}")
        conversation_id = await _conversation(session, customer_id, medium.value, address)
        message = Message(
            conversation_id=conversation_id,
            customer_id=customer_id,
            channel=medium.value,
            direction=Direction.OUT.value,
            provider_id=f"staff-{now.timestamp()}-{customer_id}",
            address=address,
            text=text,
            author=actor,
        )
        session.add(message)
        await session.flush()
        due = decision.defer_until if decision.outcome is Outcome.DEFER else None
        await enqueue(
            session,
            [outbox_row(message.id, medium.value, now, purpose=purpose.value, due_at=due)],
        )
        if purpose is Purpose.MARKETING:
            session.add(
                ContactMade(
                    customer_id=customer_id,
                    channel=decision.channel.value,
                    purpose=purpose.value,
                    reference=f"message:{message.id}",
                    at=due or now,
                )
            )
        await add_interaction(
            session,
            customer_id,
            InteractionKind.MESSAGE_OUT,
            text,
            channel=medium.value,
            actor=actor,
            data={"message_id": message.id, "conversation_id": conversation_id},
            flush=False,
        )
        unit.audit(
            "message.queued",
            customer_id,
            {"message_id": message.id, "decision": decision.to_json()},
        )
        unit.publish("message.queued", customer_id, message_id=message.id)
        queued = Queued(message.id, medium.value, due or now, decision.to_json())
    announce()
    return queued


async def do_retry_message(sessionmaker: SessionMaker, message_id: int, *, actor: str) -> int:
    """Queue a failed message again, now; returns its customer's id. Raises MessageNotFound,
    NotRetryable. The worker checks consent again before it sends."""
    now = utcnow()
    async with unit_of_work(sessionmaker, actor) as unit:
        session = unit.session
        entry = await session.get(OutboxEntry, message_id, with_for_update=True)
        message = await session.get(Message, message_id)
        if entry is None or message is None:
            raise MessageNotFound(f"no outbound message {message_id}")
        if entry.state != DeliveryState.FAILED.value:
            raise NotRetryable(f"message {message_id} is {entry.state}, not failed")
        # A staff decision to try again: a new delivery, not a provider's report going back.
        entry.state, entry.due_at, entry.attempts = DeliveryState.QUEUED.value, now, 0
        entry.error_code = entry.error = entry.claimed_by = None
        entry.updated_at = now
        unit.audit("message.retried", message.customer_id, {"message_id": message_id})
        customer_id = message.customer_id
    announce()
    return customer_id
