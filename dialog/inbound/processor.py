"""The inbound path: every channel's messages go through `InboundProcessor.handle`, and only it.

    dedupe (channel, provider id) → resolve the customer → keywords (STOP/START/HELP: compliance
    replies, never the bot) → the conversation → self-service or hand-off → replies stored on the
    timeline and handed back to the channel

All of it is one transaction: the message, its effects and its replies are committed together
before the channel acknowledges anything. The same message delivered twice, or twice at the same
moment, is stored once and answered once: a unique index on (channel, provider id) decides.

A bot outside the database (a Rasa server) is the exception: the messages it must answer are
stored first, each awaiting it in a row of `awaiting_bot`; it is asked with no transaction open;
its answers are written in a second transaction that deletes those rows. Should the process stop
in between, the channel never acknowledged the message: its redelivery finds it still awaiting,
and it is asked again rather than dropped as a duplicate.

Messages that arrive together are written together (group commit): while one batch is in the
database the next one queues, and a batch costs the same handful of statements whether it holds
one message or thirty-two: BEGIN, one query for every sender's customer, open conversation and
STOP-in-force, one INSERT ... ON CONFLICT DO NOTHING for the inbound messages (the rows that come
back are the new ones; the others are duplicates), one for the replies, one for the timeline, one
UPDATE for the intents, COMMIT. First messages, keywords and hand-offs take longer, rarer paths
inside the same transaction.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    Row,
    Select,
    String,
    and_,
    bindparam,
    case,
    delete,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.base import Executable

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
    INBOUND_ONLY,
    ConversationState,
    Direction,
    Message,
    awaiting_bot_table,
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
MAX_BATCH = 32  # messages per transaction at most: a bound on how long one batch holds the lock
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
    # Whether `respond` reads or writes through the session. One that does not (a Rasa server,
    # over the network) is asked with no transaction open, every turn of a batch at once: no
    # transaction (on SQLite: the database's write lock) waits on the network.
    uses_database: bool

    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn: ...


@dataclass(slots=True)
class _Context:
    """The customer, their open conversation (if any) and whether STOP is in force here."""

    customer: CustomerFacts
    conversation: ConversationFacts | None
    revoked: bool


@dataclass(slots=True)
class _Pending:
    """A message waiting for the next batch, and the caller waiting for its result."""

    message: InboundMessage
    kind: IdentityKind
    sender: str  # the normalised address: the identity to look up
    received_at: datetime
    result: asyncio.Future[InboundResult]

    def settle(self, result: InboundResult | BaseException) -> None:
        if self.result.done():  # the caller gave up waiting; the message was still handled
            return
        if isinstance(result, BaseException):
            self.result.set_exception(result)
        else:
            self.result.set_result(result)


@dataclass(slots=True)
class _Work:
    """One message's turn: what it found, and what it decided to write."""

    pending: _Pending
    customer: CustomerFacts
    conversation: ConversationFacts
    revoked: bool
    inbound_id: int | None = None  # None: a duplicate, already stored
    replies: list[str] = field(default_factory=list)
    sent: list[tuple[str, int]] = field(default_factory=list)  # (text, message id) once stored
    handed_off: bool = False
    intent: str | None = None
    confidence: float | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    conversation_changes: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False  # stored before, and still awaiting the bot: asked again

    @property
    def message(self) -> InboundMessage:
        return self.pending.message

    @property
    def now(self) -> datetime:
        return self.pending.received_at

    def written(self) -> None:
        """What was decided so far is stored: what follows starts from nothing."""
        self.timeline.clear()
        self.conversation_changes.clear()

    def forget_answer(self) -> None:
        """Undo what applying an answer did to this work, to apply it again after a rollback."""
        self.written()
        self.replies, self.sent = [], []
        self.handed_off, self.intent, self.confidence = False, None, None

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
    """The one way in. Messages that arrive while a batch is being written form the next batch.

    Group commit: a batch is one transaction whose statements each carry every message in it, so
    eight conversations at once cost about what one does. A lone message is a batch of one and
    waits for nothing. The same customer twice in a batch waits for the next one, so each turn
    sees the one before. If anything in a batch fails, it is rolled back and every message in it
    is run again on its own: only the one at fault fails.
    """

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
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._brain = brain
        self._region = default_region
        self._language = default_language
        self._timezone = default_timezone
        self._brand = brand
        self._now = now
        self._max_batch = max_batch
        self._queue: deque[_Pending] = deque()
        self._writer: asyncio.Task[None] | None = None

    async def handle(self, message: InboundMessage) -> InboundResult:
        """Store, answer and commit one message; its replies are for the channel to send.

        Raises ValueError (InvalidIdentity among them) for a message no channel should pass on.
        """
        if len(message.text) > MAX_TEXT:
            raise ValueError(f"the message is longer than {MAX_TEXT} characters")
        kind = CHANNEL_IDENTITY[message.channel]
        pending = _Pending(
            message,
            kind,
            normalise(kind, message.address, self._region),
            message.received_at or self._now(),
            asyncio.get_running_loop().create_future(),
        )
        self._queue.append(pending)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="sastre-inbound-writer")
        return await pending.result

    async def drained(self) -> None:
        """Wait until every message handed in so far is written (at shutdown)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])

    async def _drain(self) -> None:
        try:
            while self._queue:
                size = min(len(self._queue), self._max_batch)
                batch = [self._queue.popleft() for _ in range(size)]
                later = await self._run(batch)
                self._queue.extendleft(reversed(later))
        except BaseException as stopped:  # cancelled at shutdown: nobody is left waiting forever
            for pending in self._queue:
                pending.settle(stopped)
            self._queue.clear()
            raise

    async def _run(self, batch: list[_Pending]) -> list[_Pending]:
        """Handle a batch in one transaction (a bot outside the database is asked after it);
        returns the messages that wait for the next batch."""
        try:
            async with self._sessionmaker.begin() as session:
                done, later, asking = await self._batch(session, batch)
        except Exception as error:
            if len(batch) == 1:
                batch[0].settle(error)
                return []
            later = []
            for pending in batch:
                later.extend(await self._run([pending]))
            return later
        except BaseException as stopped:
            for pending in batch:
                pending.settle(stopped)
            raise
        for work in done:
            work.pending.settle(_result(work))
        if asking:
            await self._answer(asking)
        return later

    async def _batch(
        self, session: AsyncSession, batch: list[_Pending]
    ) -> tuple[list[_Work], list[_Pending], list[tuple[_Work, Turn]]]:
        """Every message of the batch: stored, and answered unless the bot is outside the
        database. Returns the works done, the messages for the next batch, and the turns for
        a bot outside the database (their messages stored, each awaiting it in a row)."""
        contexts = await _load_contexts(session, batch)
        works: list[_Work] = []
        later: list[_Pending] = []
        customers: set[int] = set()
        for pending in batch:
            context = contexts.get((pending.kind.value, pending.sender))
            if context is None:
                context = await self._resolve(session, pending)
            if context.customer.id in customers:
                later.append(pending)  # their earlier message first: this turn must see it
                continue
            customers.add(context.customer.id)
            conversation = await self._conversation(session, context, pending.message)
            works.append(_Work(pending, context.customer, conversation, context.revoked))
        await _store_inbound(session, works)
        await _resume_awaiting(session, works)
        answered = [work for work in works if work.inbound_id is not None]
        asking: list[tuple[_Work, Turn]] = []
        for work in answered:
            turn = await self._prepare(session, work)
            if turn is not None:
                asking.append((work, turn))
        if self._brain.uses_database:
            for work, turn in asking:
                await self._apply(session, work, await self._brain.respond(session, turn))
            await _write(session, answered)
            await _answered(session, [work for work in answered if work.resumed])
            return works, later, []
        await _write(session, answered)
        waiting = {id(work) for work, _ in asking}
        await _await_bot(session, [work for work, _ in asking if not work.resumed])
        # A message asked again that needs no bot now (a STOP came meanwhile) is done with.
        await _answered(session, [w for w in answered if w.resumed and id(w) not in waiting])
        for work, _ in asking:
            work.written()
        return [work for work in works if id(work) not in waiting], later, asking

    async def _answer(self, asking: list[tuple[_Work, Turn]]) -> None:
        """Put every turn to the bot outside the database at once, with no transaction open
        (on SQLite the write lock stays free meanwhile: Rasa's actions may write), then write
        the answers in one transaction. A turn the bot fails on keeps awaiting it."""
        try:
            async with self._sessionmaker() as unused:  # the bot does not use it: nothing begins
                answers = await asyncio.gather(
                    *(self._brain.respond(unused, turn) for _, turn in asking),
                    return_exceptions=True,
                )
        except BaseException as stopped:  # cancelled at shutdown: nobody is left waiting
            for work, _ in asking:
                work.pending.settle(stopped)
            raise
        decided: list[tuple[_Work, BotTurn]] = []
        for (work, _), answer in zip(asking, answers, strict=True):
            if isinstance(answer, BotTurn):
                decided.append((work, answer))
            else:
                work.pending.settle(answer)
        if decided:
            await self._write_answers(decided)

    async def _write_answers(self, decided: list[tuple[_Work, BotTurn]]) -> None:
        """The bot's answers and their effects, in one transaction; if it fails, each again on
        its own, so only the one at fault fails."""
        try:
            async with self._sessionmaker.begin() as session:
                for work, answer in decided:
                    await self._apply(session, work, answer)
                works = [work for work, _ in decided]
                await _write(session, works)
                await _answered(session, works)
        except Exception as error:
            if len(decided) == 1:
                decided[0][0].pending.settle(error)
                return
            for work, answer in decided:
                work.forget_answer()
                await self._write_answers([(work, answer)])
            return
        except BaseException as stopped:
            for work, _ in decided:
                work.pending.settle(stopped)
            raise
        for work, _ in decided:
            work.pending.settle(_result(work))

    async def _prepare(self, session: AsyncSession, work: _Work) -> Turn | None:
        """Keywords and silence; the turn to put to the bot, if it is the bot's to answer."""
        message, conversation = work.message, work.conversation
        if conversation.channel != message.channel.value or conversation.address != message.address:
            work.conversation_changes.update(channel=message.channel.value, address=message.address)
            work.conversation = replace(
                conversation, channel=message.channel.value, address=message.address
            )
        if not work.resumed:  # a message asked again is on the timeline already
            work.note(
                InteractionKind.MESSAGE_IN,
                message.text,
                "customer",
                message_id=work.inbound_id,
                conversation_id=conversation.id,
            )
        channel = Channel(message.channel.value)
        language = work.customer.language or message.language_hint or self._language
        keyword = classify(message.text)
        if keyword.kind is not KeywordKind.NONE:
            outcome = await apply_keyword(
                session,
                work.customer.id,
                channel,
                keyword,
                language=language,
                brand=self._brand,
                evidence={"message_id": message.provider_id, "text": message.text},
            )
            if outcome.handled:
                work.intent = "keyword"
                work.replies = [outcome.reply] if outcome.reply else []
                return None
            work.revoked = await service_revoked(session, work.customer.id, channel)
        if work.revoked or conversation.state in HELD_BY_A_PERSON:
            # STOP in force here: store what they wrote, send nothing until START. A person
            # holding the conversation: the bot stays silent.
            return None
        return Turn(
            customer=work.customer,
            conversation=work.conversation,
            text=message.text,
            language=language,
            timezone=work.customer.timezone or self._timezone,
            received_at=work.now,
        )

    async def _apply(self, session: AsyncSession, work: _Work, decided: BotTurn) -> None:
        """What the bot decided becomes this message's replies and effects."""
        conversation = work.conversation
        work.intent, work.confidence = decided.intent, decided.confidence
        work.replies = list(decided.replies)
        failed_turns = 0 if decided.understood else conversation.failed_turns + 1
        if failed_turns != conversation.failed_turns:
            work.conversation_changes["failed_turns"] = failed_turns
        if decided.language and decided.language != conversation.language:
            work.conversation_changes["language"] = decided.language
        if decided.complaint:
            work.note(
                InteractionKind.COMPLAINT, work.message.text, "customer", message_id=work.inbound_id
            )
        if decided.handoff:
            work.handed_off = True
            await _hand_off(session, work, decided)

    async def _resolve(self, session: AsyncSession, pending: _Pending) -> _Context:
        """A first message (or a merged tombstone's identity): find or create the customer."""
        message = pending.message
        customer, _ = await resolve(
            session, pending.kind, pending.sender, self._region, verified=message.verified
        )
        context = await _load_context(session, customer.id, message.channel.value)
        assert context is not None  # resolve has just found or created them
        return context

    async def _conversation(
        self, session: AsyncSession, context: _Context, message: InboundMessage
    ) -> ConversationFacts:
        """The customer's open conversation, or a new one.

        The partial unique index allows one open conversation per customer; two first messages
        racing for it (from two processes) both end up in the same one."""
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
                        _OPEN_CONVERSATION,
                        {
                            "customer_id": customer.id,
                            "state": opening.state,
                            "channel": opening.channel,
                            "address": opening.address,
                            "language": opening.language,
                            "flags": opening.flags,
                        },
                    )
            except IntegrityError:
                reloaded = await _load_context(session, customer.id, message.channel.value)
                assert reloaded is not None
                context.conversation = reloaded.conversation
                continue
            assert opened is not None
            return replace(opening, id=opened)
        raise RuntimeError("could not open a conversation")  # pragma: no cover


def _result(work: _Work) -> InboundResult:
    if work.inbound_id is None:
        return InboundResult(duplicate=True)
    return InboundResult(
        duplicate=False,
        customer_id=work.customer.id,
        conversation_id=work.conversation.id,
        message_id=work.inbound_id,
        replies=tuple(
            Reply(ChannelName(work.conversation.channel), work.conversation.address, text, id_)
            for text, id_ in work.sent
        ),
        handed_off=work.handed_off,
        intent=work.intent,
    )


# --- the statements, built once --------------------------------------------------------------

# The consent channel a sender's identity writes on (a phone number writes by SMS).
_IDENTITY_CHANNEL = {kind.value: channel.value for channel, kind in CHANNEL_IDENTITY.items()}


def _context_query(*, by_identity: bool) -> Select[Any]:
    """Customers with their open conversation and the service consent on the channel at hand.

    By identity: every sender of a batch at once, (kind, value) IN (...), the channel following
    from the identity's kind. By customer: one customer, the channel a parameter."""
    customers, conversations, consent = customers_table, conversations_table, consent_state_table
    identities = identities_table
    channel = (
        case(_IDENTITY_CHANNEL, value=identities.c.kind)
        if by_identity
        else bindparam("channel", type_=String)
    )
    service = (
        select(consent.c.status)
        .where(
            consent.c.customer_id == customers.c.id,
            consent.c.channel == channel,
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
    columns = [
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
    ]
    if not by_identity:
        return (
            select(*columns).select_from(source).where(customers.c.id == bindparam("customer_id"))
        )
    # A merged tombstone holds no identities, but the guard keeps a half-done merge harmless.
    return (
        select(identities.c.kind, identities.c.value, *columns)
        .select_from(identities.join(source, identities.c.customer_id == customers.c.id))
        .where(
            tuple_(identities.c.kind, identities.c.value).in_(bindparam("senders", expanding=True)),
            customers.c.merged_into_id.is_(None),
        )
    )


def _store_inbound_statement(dialect: str) -> Executable:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: a message already stored is skipped, and
    the rows that come back are the new ones. Both databases spell it the same way."""
    messages = messages_table
    target: dict[str, Any] = {
        "index_elements": [messages.c.channel, messages.c.provider_id],
        "index_where": text(INBOUND_ONLY),  # the partial index's own predicate
    }
    returning = (messages.c.id, messages.c.channel, messages.c.provider_id)
    if dialect == "postgresql":
        return postgresql.insert(messages).on_conflict_do_nothing(**target).returning(*returning)
    return sqlite.insert(messages).on_conflict_do_nothing(**target).returning(*returning)


_CONTEXT_BY_IDENTITY = _context_query(by_identity=True)
_CONTEXT_BY_CUSTOMER = _context_query(by_identity=False)
_STORE_INBOUND = {name: _store_inbound_statement(name) for name in ("sqlite", "postgresql")}
_OPEN_CONVERSATION = insert(conversations_table).returning(conversations_table.c.id)
_STORE_REPLIES = insert(messages_table).returning(messages_table.c.id, sort_by_parameter_order=True)
_STORE_TIMELINE = insert(interactions_table)
_AWAITING = (
    select(messages_table.c.id, messages_table.c.channel, messages_table.c.provider_id)
    .join(awaiting_bot_table, awaiting_bot_table.c.message_id == messages_table.c.id)
    .where(
        text(INBOUND_ONLY),
        tuple_(messages_table.c.channel, messages_table.c.provider_id).in_(
            bindparam("keys", expanding=True)
        ),
    )
)
_SET_INTENT = (
    update(messages_table)
    .where(messages_table.c.id == bindparam("message_id"))
    .values(intent=bindparam("new_intent"), confidence=bindparam("new_confidence"))
)


def _context_of(row: Row[Any]) -> _Context:
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


async def _load_contexts(
    session: AsyncSession, batch: Sequence[_Pending]
) -> dict[tuple[str, str], _Context]:
    """Every known sender of the batch, by (kind, normalised value), in one query."""
    senders = list({(pending.kind.value, pending.sender) for pending in batch})
    rows = await session.execute(_CONTEXT_BY_IDENTITY, {"senders": senders})
    return {(row.kind, row.value): _context_of(row) for row in rows}


async def _load_context(session: AsyncSession, customer_id: int, channel: str) -> _Context | None:
    row = (
        await session.execute(
            _CONTEXT_BY_CUSTOMER, {"customer_id": customer_id, "channel": channel}
        )
    ).first()
    return None if row is None else _context_of(row)


async def _store_inbound(session: AsyncSession, works: Sequence[_Work]) -> None:
    """Store the customers' messages; a duplicate gets no id, and no reply."""
    if not works:
        return
    rows = [
        {
            "conversation_id": work.conversation.id,
            "customer_id": work.customer.id,
            "channel": work.message.channel.value,
            "direction": Direction.IN.value,
            "provider_id": work.message.provider_id,
            "address": work.message.address,
            "text": work.message.text,
            "attachments": list(work.message.attachments),
            "author": "customer",
            "intent": None,
            "confidence": None,
            "in_reply_to": None,
            "created_at": work.now,
        }
        for work in works
    ]
    statement = _STORE_INBOUND[session.get_bind().dialect.name]
    stored = await session.execute(statement, rows if len(rows) > 1 else rows[0])
    ids = {(row.channel, row.provider_id): row.id for row in stored}
    for work in works:
        # pop: the same message twice in one batch is stored once, for the first of them
        work.inbound_id = ids.pop((work.message.channel.value, work.message.provider_id), None)


async def _resume_awaiting(session: AsyncSession, works: Sequence[_Work]) -> None:
    """A duplicate whose first delivery is still awaiting the bot (the process stopped before
    the answer) is not dropped: it takes the stored message's id and is asked again (by
    whichever bot is configured now). One query, and only when there are duplicates."""
    duplicates = [work for work in works if work.inbound_id is None]
    if not duplicates:
        return
    keys = list({(work.message.channel.value, work.message.provider_id) for work in duplicates})
    rows = await session.execute(_AWAITING, {"keys": keys})
    waiting = {(row.channel, row.provider_id): row.id for row in rows}
    for work in duplicates:
        # pop: the same message twice in one batch is asked once, for the first of them
        work.inbound_id = waiting.pop((work.message.channel.value, work.message.provider_id), None)
        work.resumed = work.inbound_id is not None


async def _await_bot(session: AsyncSession, works: Sequence[_Work]) -> None:
    if works:
        rows = [{"message_id": work.inbound_id, "asked_at": work.now} for work in works]
        await session.execute(insert(awaiting_bot_table), rows)


async def _answered(session: AsyncSession, works: Sequence[_Work]) -> None:
    if not works:
        return
    ids = [work.inbound_id for work in works]
    await session.execute(
        delete(awaiting_bot_table).where(awaiting_bot_table.c.message_id.in_(ids))
    )


async def _write(session: AsyncSession, works: Sequence[_Work]) -> None:
    """Everything the batch's turns decided, a statement per kind of write."""
    replies = [(work, text) for work in works for text in work.replies]
    if replies:
        rows: list[dict[str, Any]] = [
            {
                "conversation_id": work.conversation.id,
                "customer_id": work.customer.id,
                "channel": work.conversation.channel,
                "direction": Direction.OUT.value,
                "provider_id": f"sastre-{uuid.uuid4()}",
                "address": work.conversation.address,
                "text": text,
                "attachments": [],
                "author": "bot",
                "intent": None,
                "confidence": None,
                "in_reply_to": work.inbound_id,
                "created_at": work.now,
            }
            for work, text in replies
        ]
        stored = await session.execute(_STORE_REPLIES, rows if len(rows) > 1 else rows[0])
        for (work, text), message_id in zip(replies, stored.scalars(), strict=True):
            work.sent.append((text, message_id))
            work.note(
                InteractionKind.MESSAGE_OUT,
                text,
                "bot",
                message_id=message_id,
                conversation_id=work.conversation.id,
            )
    timeline = [entry for work in works for entry in work.timeline]
    if timeline:
        await session.execute(_STORE_TIMELINE, timeline)
    intents = [
        {"message_id": w.inbound_id, "new_intent": w.intent, "new_confidence": w.confidence}
        for w in works
        if w.intent is not None
    ]
    if intents:
        await session.execute(_SET_INTENT, intents)
    await _update_conversations(session, works)


async def _update_conversations(session: AsyncSession, works: Sequence[_Work]) -> None:
    """One UPDATE per set of changed columns (usually none: most turns change nothing)."""
    changes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for work in works:
        if work.conversation_changes:
            columns = tuple(sorted(work.conversation_changes))
            row = {f"new_{name}": value for name, value in work.conversation_changes.items()}
            changes.setdefault(columns, []).append({"conversation_id": work.conversation.id, **row})
    for columns, rows in changes.items():
        statement = (
            update(conversations_table)
            .where(conversations_table.c.id == bindparam("conversation_id"))
            .values({name: bindparam(f"new_{name}") for name in columns})
        )
        await session.execute(statement, rows)


async def _write_timeline(session: AsyncSession, work: _Work) -> None:
    if work.timeline:
        await session.execute(_STORE_TIMELINE, work.timeline)
        work.timeline.clear()


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
