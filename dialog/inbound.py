"""The inbound path: every channel's messages go through `InboundProcessor.handle`, and only it.

    dedupe (channel, provider id) → resolve the customer → keywords (STOP/START/HELP: compliance
    replies, never the bot) → the conversation → self-service or hand-off → replies stored on the
    timeline and handed back to the channel

All of it is one transaction: the message, its effects and its replies are committed together
before the channel acknowledges anything. The same message delivered twice, or twice at the same
moment, is stored once and answered once: a unique index on (channel, provider id) decides.

The usual turn (a known customer writing in an open conversation) is six round trips to the
database, written as Core statements: BEGIN, one query for the customer, their open conversation
and whether STOP is in force, the inbound message, the replies, the timeline entries of both,
COMMIT (plus one UPDATE when the intent or the conversation changed). First messages, keywords and
hand-offs take the longer, rarer paths.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, and_, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.base import ChannelName, InboundMessage
from consent.keywords import KeywordKind, classify
from consent.models import consent_state_table
from consent.replies import Brand, apply_keyword, service_revoked
from consent.types import Channel, ConsentStatus, Purpose
from crm_core.customers import customer_view, resolve
from crm_core.identities import normalise
from crm_core.models import (
    IdentityKind,
    InteractionKind,
    customers_table,
    identities_table,
    interactions_table,
)
from crm_core.sqltypes import utcnow
from dialog.models import (
    ConversationState,
    Direction,
    Message,
    conversations_table,
    messages_table,
)

__all__ = [
    "BotTurn",
    "Brain",
    "ConversationFacts",
    "CustomerFacts",
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
HELD_BY_A_PERSON = (ConversationState.QUEUED.value, ConversationState.ASSIGNED.value)


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
class CustomerFacts:
    """What a turn knows of the customer: read once, with the conversation, in one query."""

    id: int
    name: str | None
    language: str | None
    timezone: str | None
    tier: str
    attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ConversationFacts:
    id: int
    state: str
    channel: str  # where the customer wrote last: replies go there
    address: str
    language: str
    failed_turns: int
    flags: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Turn:
    """What the bot is told about one customer message."""

    customer: CustomerFacts
    conversation: ConversationFacts
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


@dataclass(slots=True)
class _Context:
    """The customer, their open conversation (if any) and whether STOP is in force here."""

    customer: CustomerFacts
    conversation: ConversationFacts | None
    revoked: bool


@dataclass(slots=True)
class _Work:
    """What one message's turn has decided to write, flushed together at the end."""

    customer: CustomerFacts
    conversation: ConversationFacts
    inbound_id: int
    now: datetime
    timeline: list[dict[str, Any]] = field(default_factory=list)
    conversation_changes: dict[str, Any] = field(default_factory=dict)
    intent: str | None = None
    confidence: float | None = None

    def note(self, kind: InteractionKind, summary: str, actor: str, **data: Any) -> None:
        self.timeline.append(
            {
                "customer_id": self.customer.id,
                "kind": kind.value,
                "channel": self.conversation.channel,
                "summary": summary,
                "actor": actor,
                "data": data,
                "occurred_at": self.now,
                "recorded_at": self.now,
            }
        )


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
        channel = Channel(message.channel.value)
        context = await self._context(session, message, channel)
        conversation = await self._conversation(session, context, message)
        work = _Work(
            customer=context.customer,
            conversation=conversation,
            inbound_id=await _store_inbound(session, context.customer, conversation, message, now),
            now=now,
        )
        if conversation.channel != message.channel.value or conversation.address != message.address:
            work.conversation_changes.update(channel=message.channel.value, address=message.address)
            work.conversation = replace(
                conversation, channel=message.channel.value, address=message.address
            )
        work.note(
            InteractionKind.MESSAGE_IN,
            message.text,
            "customer",
            message_id=work.inbound_id,
            conversation_id=conversation.id,
        )
        language = context.customer.language or message.language_hint or self._language
        keyword = classify(message.text)
        if keyword.kind is not KeywordKind.NONE:
            outcome = await apply_keyword(
                session,
                context.customer.id,
                channel,
                keyword,
                language=language,
                brand=self._brand,
                evidence={"message_id": message.provider_id, "text": message.text},
            )
            if outcome.handled:
                work.intent = "keyword"
                return await _finish(session, work, [outcome.reply] if outcome.reply else [])
            context.revoked = await service_revoked(session, context.customer.id, channel)
        if context.revoked or conversation.state in HELD_BY_A_PERSON:
            # STOP in force here: store what they wrote, send nothing until START. A person
            # holding the conversation: the bot stays silent.
            return await _finish(session, work, [])
        turn = Turn(
            customer=context.customer,
            conversation=work.conversation,
            text=message.text,
            language=language,
            timezone=context.customer.timezone or self._timezone,
            received_at=now,
        )
        decided = await self._brain.respond(session, turn)
        work.intent, work.confidence = decided.intent, decided.confidence
        failed_turns = 0 if decided.understood else conversation.failed_turns + 1
        if failed_turns != conversation.failed_turns:
            work.conversation_changes["failed_turns"] = failed_turns
        if decided.language and decided.language != conversation.language:
            work.conversation_changes["language"] = decided.language
        if decided.complaint:
            work.note(
                InteractionKind.COMPLAINT,
                message.text,
                "customer",
                message_id=work.inbound_id,
            )
        if decided.handoff:
            await _hand_off(session, work, decided)
        return await _finish(session, work, decided.replies, handed_off=decided.handoff is not None)

    async def _context(
        self, session: AsyncSession, message: InboundMessage, channel: Channel
    ) -> _Context:
        """One query for a known sender; a first message (or a merged tombstone) resolves first."""
        kind = CHANNEL_IDENTITY[message.channel]
        address = normalise(kind, message.address, self._region)
        context = await _load_context(
            session, _CONTEXT_BY_IDENTITY, kind=kind.value, value=address, channel=channel.value
        )
        if context is not None:
            return context
        customer, _ = await resolve(
            session, kind, message.address, self._region, verified=message.verified
        )
        context = await _load_context(
            session, _CONTEXT_BY_CUSTOMER, customer_id=customer.id, channel=channel.value
        )
        assert context is not None  # resolve has just found or created them
        return context

    async def _conversation(
        self, session: AsyncSession, context: _Context, message: InboundMessage
    ) -> ConversationFacts:
        """The customer's open conversation, or a new one.

        The partial unique index allows one open conversation per customer; two first messages
        racing for it both end up in the same one."""
        for _ in range(2):
            if context.conversation is not None:
                return context.conversation
            customer = context.customer
            opening = ConversationFacts(
                id=0,
                state=ConversationState.BOT.value,
                channel=message.channel.value,
                address=message.address,
                language=customer.language or self._language,
                failed_turns=0,
                flags=_flags(customer),
            )
            try:
                async with session.begin_nested():
                    opened = await session.scalar(
                        insert(conversations_table)
                        .values(
                            customer_id=customer.id,
                            state=opening.state,
                            channel=opening.channel,
                            address=opening.address,
                            language=opening.language,
                            flags=opening.flags,
                        )
                        .returning(conversations_table.c.id)
                    )
            except IntegrityError:
                reloaded = await _load_context(
                    session,
                    _CONTEXT_BY_CUSTOMER,
                    customer_id=customer.id,
                    channel=message.channel.value,
                )
                assert reloaded is not None
                context.conversation = reloaded.conversation
                continue
            assert opened is not None
            return replace(opening, id=opened)
        raise RuntimeError("could not open a conversation")  # pragma: no cover


def _context_query(*, by_identity: bool) -> Select[Any]:
    """The customer, their open conversation and the service consent on one channel, in one
    statement, built once: the bound values (kind, value or customer id, channel) vary."""
    customers, conversations, consent = customers_table, conversations_table, consent_state_table
    service = (
        select(consent.c.status)
        .where(
            consent.c.customer_id == customers.c.id,
            consent.c.channel == bindparam("channel"),
            consent.c.purpose == Purpose.SERVICE.value,
            consent.c.topic == "",
        )
        .scalar_subquery()
    )
    source = customers.outerjoin(
        conversations,
        and_(
            conversations.c.customer_id == customers.c.id,
            conversations.c.state != ConversationState.RESOLVED.value,
        ),
    )
    query = select(
        customers.c.id,
        customers.c.name,
        customers.c.language,
        customers.c.timezone,
        customers.c.tier,
        customers.c.attributes,
        conversations.c.id.label("conversation_id"),
        conversations.c.state,
        conversations.c.channel,
        conversations.c.address,
        conversations.c.language.label("conversation_language"),
        conversations.c.failed_turns,
        conversations.c.flags,
        service.label("service"),
    )
    if not by_identity:
        return query.select_from(source).where(customers.c.id == bindparam("customer_id"))
    # A merged tombstone holds no identities, but the guard keeps a half-done merge harmless.
    return query.select_from(
        identities_table.join(source, identities_table.c.customer_id == customers.c.id)
    ).where(
        identities_table.c.kind == bindparam("kind"),
        identities_table.c.value == bindparam("value"),
        customers.c.merged_into_id.is_(None),
    )


_CONTEXT_BY_IDENTITY = _context_query(by_identity=True)
_CONTEXT_BY_CUSTOMER = _context_query(by_identity=False)
_INSERT_MESSAGE = insert(messages_table).returning(messages_table.c.id)
_INSERT_MESSAGES = insert(messages_table).returning(
    messages_table.c.id, sort_by_parameter_order=True
)
_INSERT_INTERACTIONS = insert(interactions_table)
_SET_INTENT = (
    update(messages_table)
    .where(messages_table.c.id == bindparam("message_id"))
    .values(intent=bindparam("intent"), confidence=bindparam("confidence"))
)


async def _load_context(
    session: AsyncSession, query: Select[Any], **params: Any
) -> _Context | None:
    row = (await session.execute(query, params)).first()
    if row is None:
        return None
    customer = CustomerFacts(
        id=row.id,
        name=row.name,
        language=row.language,
        timezone=row.timezone,
        tier=row.tier,
        attributes=row.attributes or {},
    )
    conversation = None
    if row.conversation_id is not None:
        conversation = ConversationFacts(
            id=row.conversation_id,
            state=row.state,
            channel=row.channel,
            address=row.address,
            language=row.conversation_language,
            failed_turns=row.failed_turns,
            flags=row.flags or {},
        )
    return _Context(customer, conversation, row.service == ConsentStatus.REVOKED.value)


async def _store_inbound(
    session: AsyncSession,
    customer: CustomerFacts,
    conversation: ConversationFacts,
    message: InboundMessage,
    now: datetime,
) -> int:
    """Store the customer's message. A duplicate fails here, before any reply is decided."""
    stored = await session.scalar(
        _INSERT_MESSAGE,
        {
            "conversation_id": conversation.id,
            "customer_id": customer.id,
            "channel": message.channel.value,
            "direction": Direction.IN.value,
            "provider_id": message.provider_id,
            "address": message.address,
            "text": message.text,
            "attachments": list(message.attachments),
            "author": "customer",
            "intent": None,
            "confidence": None,
            "in_reply_to": None,
            "created_at": now,
        },
    )
    assert stored is not None
    return int(stored)


async def _finish(
    session: AsyncSession,
    work: _Work,
    texts: Sequence[str],
    *,
    handed_off: bool = False,
) -> InboundResult:
    """Write what the turn decided: the replies, the timeline, the intent, the conversation."""
    conversation = work.conversation
    replies: list[Reply] = []
    if texts:
        rows = [
            {
                "conversation_id": conversation.id,
                "customer_id": work.customer.id,
                "channel": conversation.channel,
                "direction": Direction.OUT.value,
                "provider_id": f"sastre-{uuid.uuid4()}",
                "address": conversation.address,
                "text": text,
                "attachments": [],
                "author": "bot",
                "in_reply_to": work.inbound_id,
                "intent": None,
                "confidence": None,
                "created_at": work.now,
            }
            for text in texts
        ]
        # One row (the usual case) takes the plain statement; several need their ids in order.
        statement = _INSERT_MESSAGE if len(rows) == 1 else _INSERT_MESSAGES
        stored = await session.execute(statement, rows if len(rows) > 1 else rows[0])
        channel = ChannelName(conversation.channel)
        for text, message_id in zip(texts, stored.scalars(), strict=True):
            work.note(
                InteractionKind.MESSAGE_OUT,
                text,
                "bot",
                message_id=message_id,
                conversation_id=conversation.id,
            )
            replies.append(Reply(channel, conversation.address, text, message_id))
    await _write_timeline(session, work)
    if work.intent is not None:
        await session.execute(
            _SET_INTENT,
            {"message_id": work.inbound_id, "intent": work.intent, "confidence": work.confidence},
        )
    if work.conversation_changes:
        await session.execute(
            update(conversations_table)
            .where(conversations_table.c.id == conversation.id)
            .values(work.conversation_changes)
        )
    return InboundResult(
        duplicate=False,
        customer_id=work.customer.id,
        conversation_id=conversation.id,
        message_id=work.inbound_id,
        replies=tuple(replies),
        handed_off=handed_off,
        intent=work.intent,
    )


async def _write_timeline(session: AsyncSession, work: _Work) -> None:
    if work.timeline:
        await session.execute(_INSERT_INTERACTIONS, work.timeline)
        work.timeline.clear()


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


def _flags(customer: CustomerFacts) -> dict[str, Any]:
    """Service recovery: an at-risk customer reaching out is a last chance (seed 002)."""
    at_risk = str(customer.attributes.get("churn_risk", "")).lower() == "high"
    return {"retention": True} if at_risk else {}


async def _hand_off(session: AsyncSession, work: _Work, decided: BotTurn) -> None:
    """Queue the conversation for a human with everything they need to pick it up."""
    await _write_timeline(session, work)  # the snapshot below shows this message too

    def intent_of(message: Message) -> str | None:  # this message's is written at the end
        return work.intent if message.id == work.inbound_id else message.intent

    history = await _transcript(session, work.conversation.id)
    snapshot = await customer_view(session, work.customer.id, interactions=10)
    work.conversation_changes.update(
        state=ConversationState.QUEUED.value,
        handoff_reason=decided.handoff,
        priority_tier=work.customer.tier,
        waiting_since=work.now,
        flags={**work.conversation.flags, **_flags(work.customer)},
        context={
            "reason": decided.handoff,
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
            "intents": [intent for m in history if (intent := intent_of(m))],
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
        },
    )
