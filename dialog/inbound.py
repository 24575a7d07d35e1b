"""The inbound path: every channel's messages go through `InboundProcessor.handle`, and only it.

    dedupe (channel, provider id) → resolve the customer → keywords (STOP/START/HELP: compliance
    replies, never the bot) → the conversation → self-service or hand-off → replies stored on the
    timeline and handed back to the channel

All of it is one transaction: the message, its effects and its replies are committed together
before the channel acknowledges anything. The same message delivered twice, or twice at the same
moment, is stored once and answered once: a unique index on (channel, provider id) decides.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.base import ChannelName, InboundMessage
from consent.keywords import KeywordKind, classify
from consent.replies import Brand, apply_keyword, service_revoked
from consent.types import Channel
from crm_core.customers import customer_view, resolve
from crm_core.models import Customer, IdentityKind, InteractionKind
from crm_core.sqltypes import utcnow
from crm_core.timeline import add_interaction
from dialog.models import Conversation, ConversationState, Direction, Message

__all__ = [
    "BotTurn",
    "Brain",
    "InboundProcessor",
    "InboundResult",
    "Reply",
    "Turn",
]

CHANNEL_IDENTITY = {
    ChannelName.SMS: IdentityKind.PHONE,
    ChannelName.EMAIL: IdentityKind.EMAIL,
    ChannelName.TELEGRAM: IdentityKind.TELEGRAM,
    ChannelName.WEBCHAT: IdentityKind.WEBCHAT,
}
TRANSCRIPT_FOR_HANDOFF = 20
SessionMaker = async_sessionmaker[AsyncSession]
MAX_TEXT = 4000


@dataclass(frozen=True, slots=True)
class Reply:
    channel: ChannelName
    address: str
    text: str
    message_id: int


@dataclass(frozen=True, slots=True)
class InboundResult:
    duplicate: bool
    customer_id: int | None = None
    conversation_id: int | None = None
    message_id: int | None = None
    replies: tuple[Reply, ...] = ()
    handed_off: bool = False
    intent: str | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """What the bot is told about one customer message."""

    customer: Customer
    conversation: Conversation
    text: str
    language: str
    timezone: str
    received_at: datetime


@dataclass(slots=True)
class BotTurn:
    """What the bot decided: its replies, whether it understood, and whether to hand off."""

    replies: list[str] = field(default_factory=list)
    understood: bool = True
    handoff: str | None = None  # the reason: customer_asked, not_understood, complaint, cmv, ...
    intent: str | None = None
    confidence: float | None = None
    language: str | None = None
    complaint: bool = False


class Brain(Protocol):
    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn: ...


class InboundProcessor:
    def __init__(
        self,
        sessionmaker: SessionMaker,
        brain: Brain,
        *,
        default_region: str,
        default_language: str,
        default_timezone: str,
        brand: Brand,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._brain = brain
        self._region = default_region
        self._language = default_language
        self._timezone = default_timezone
        self._brand = brand
        self._now = now

    async def handle(self, message: InboundMessage) -> InboundResult:
        if len(message.text) > MAX_TEXT:
            raise ValueError(f"the message is longer than {MAX_TEXT} characters")
        try:
            async with self._sessionmaker.begin() as session:
                return await self._handle(session, message)
        except IntegrityError:
            # Rolled back. The unique index on (channel, provider id) is the usual cause: the
            # same message stored by a retry or by a concurrent delivery. Anything else is real.
            if await self._stored(message):
                return InboundResult(duplicate=True)
            raise

    async def _stored(self, message: InboundMessage) -> bool:
        async with self._sessionmaker() as session:
            return await _already_stored(session, message)

    async def _handle(self, session: AsyncSession, message: InboundMessage) -> InboundResult:
        now = message.received_at or self._now()
        kind = CHANNEL_IDENTITY[message.channel]
        customer, _ = await resolve(
            session, kind, message.address, self._region, verified=message.verified
        )
        conversation = await self._open_conversation(session, customer, message)
        inbound = Message(
            conversation_id=conversation.id,
            customer_id=customer.id,
            channel=message.channel.value,
            direction=Direction.IN.value,
            provider_id=message.provider_id,
            address=message.address,
            text=message.text,
            attachments=list(message.attachments),
            author="customer",
            created_at=now,
        )
        session.add(inbound)
        await session.flush()  # a duplicate fails here, before any reply is decided
        await add_interaction(
            session,
            customer.id,
            InteractionKind.MESSAGE_IN,
            message.text,
            channel=message.channel.value,
            actor="customer",
            occurred_at=now,
            data={"message_id": inbound.id, "conversation_id": conversation.id},
            flush=False,
        )
        language = self._language_of(customer, message)
        keyword = classify(message.text)
        if keyword.kind is not KeywordKind.NONE:
            outcome = await apply_keyword(
                session,
                customer.id,
                Channel(message.channel.value),
                keyword,
                language=language,
                brand=self._brand,
                evidence={"message_id": message.provider_id, "text": message.text},
            )
            if outcome.handled:
                replies = [outcome.reply] if outcome.reply else []
                return await self._finish(
                    session, customer, conversation, inbound, replies, now, intent="keyword"
                )
        if await service_revoked(session, customer.id, Channel(message.channel.value)):
            # STOP is in force here: store what they wrote, send nothing until START.
            return await self._finish(session, customer, conversation, inbound, [], now)
        if conversation.state in (ConversationState.QUEUED, ConversationState.ASSIGNED):
            return await self._finish(session, customer, conversation, inbound, [], now)
        turn = Turn(
            customer=customer,
            conversation=conversation,
            text=message.text,
            language=language,
            timezone=customer.timezone or self._timezone,
            received_at=now,
        )
        decided = await self._brain.respond(session, turn)
        inbound.intent, inbound.confidence = decided.intent, decided.confidence
        if decided.language:
            conversation.language = decided.language
        conversation.failed_turns = 0 if decided.understood else conversation.failed_turns + 1
        if decided.complaint:
            await add_interaction(
                session,
                customer.id,
                InteractionKind.COMPLAINT,
                message.text,
                channel=message.channel.value,
                actor="customer",
                occurred_at=now,
                data={"message_id": inbound.id},
                flush=False,
            )
        if decided.handoff:
            history = await _transcript(session, conversation.id)
            await _hand_off(session, customer, conversation, decided, history, now)
        return await self._finish(
            session,
            customer,
            conversation,
            inbound,
            decided.replies,
            now,
            intent=decided.intent,
            handed_off=decided.handoff is not None,
        )

    def _language_of(self, customer: Customer, message: InboundMessage) -> str:
        return customer.language or message.language_hint or self._language

    async def _open_conversation(
        self, session: AsyncSession, customer: Customer, message: InboundMessage
    ) -> Conversation:
        """The customer's open conversation (replies follow their latest channel), or a new one.

        The partial unique index allows one open conversation per customer; two first messages
        racing for it both end up in the same one."""
        for _ in range(2):
            conversation = await session.scalar(
                select(Conversation).where(
                    Conversation.customer_id == customer.id,
                    Conversation.state != ConversationState.RESOLVED.value,
                )
            )
            if conversation is not None:
                conversation.channel = message.channel.value
                conversation.address = message.address
                return conversation
            try:
                async with session.begin_nested():
                    conversation = Conversation(
                        customer_id=customer.id,
                        state=ConversationState.BOT.value,
                        channel=message.channel.value,
                        address=message.address,
                        language=customer.language or self._language,
                        flags=_flags(customer),
                    )
                    session.add(conversation)
                    await session.flush()
                return conversation
            except IntegrityError:
                continue
        raise RuntimeError("could not open a conversation")  # pragma: no cover

    async def _finish(
        self,
        session: AsyncSession,
        customer: Customer,
        conversation: Conversation,
        inbound: Message,
        texts: Sequence[str],
        now: datetime,
        *,
        intent: str | None = None,
        handed_off: bool = False,
    ) -> InboundResult:
        replies = []
        for text in texts:
            out = Message(
                conversation_id=conversation.id,
                customer_id=customer.id,
                channel=conversation.channel,
                direction=Direction.OUT.value,
                provider_id=f"sastre-{uuid.uuid4()}",
                address=conversation.address,
                text=text,
                author="bot",
                in_reply_to=inbound.id,
                created_at=now,
            )
            session.add(out)
            await session.flush()
            await add_interaction(
                session,
                customer.id,
                InteractionKind.MESSAGE_OUT,
                text,
                channel=conversation.channel,
                actor="bot",
                occurred_at=now,
                data={"message_id": out.id, "conversation_id": conversation.id},
                flush=False,
            )
            replies.append(
                Reply(ChannelName(conversation.channel), conversation.address, text, out.id)
            )
        return InboundResult(
            duplicate=False,
            customer_id=customer.id,
            conversation_id=conversation.id,
            message_id=inbound.id,
            replies=tuple(replies),
            handed_off=handed_off,
            intent=intent,
        )


async def _already_stored(session: AsyncSession, message: InboundMessage) -> bool:
    found = await session.scalar(
        select(Message.id).where(
            Message.channel == message.channel.value,
            Message.direction == Direction.IN.value,
            Message.provider_id == message.provider_id,
        )
    )
    return found is not None


async def _transcript(session: AsyncSession, conversation_id: int) -> list[Message]:
    rows = await session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.id.desc())
        .limit(TRANSCRIPT_FOR_HANDOFF)
    )
    return list(reversed(list(rows)))


def _flags(customer: Customer) -> dict[str, Any]:
    """Service recovery: an at-risk customer reaching out is a last chance (seed 002)."""
    attributes = customer.attributes or {}
    at_risk = str(attributes.get("churn_risk", "")).lower() == "high"
    return {"retention": True} if at_risk else {}


async def _hand_off(
    session: AsyncSession,
    customer: Customer,
    conversation: Conversation,
    decided: BotTurn,
    history: Sequence[Message],
    now: datetime,
) -> None:
    """Queue the conversation for a human with everything they need to pick it up."""
    snapshot = await customer_view(session, customer.id, interactions=10)
    conversation.state = ConversationState.QUEUED.value
    conversation.handoff_reason = decided.handoff
    conversation.priority_tier = customer.tier
    conversation.waiting_since = now
    conversation.flags = {**(conversation.flags or {}), **_flags(customer)}
    conversation.context = {
        "reason": decided.handoff,
        "transcript": [
            {
                "direction": m.direction,
                "author": m.author,
                "text": m.text,
                "intent": m.intent,
                "at": m.created_at.isoformat(),
            }
            for m in history
        ],
        "intents": [m.intent for m in history if m.intent],
        "customer": {
            key: snapshot[key]
            for key in (
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
        },
    }
