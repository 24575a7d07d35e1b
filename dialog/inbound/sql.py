"""The inbound path's statements, built once at import, and the functions that run them.

A batch costs the same handful of statements whether it holds one message or thirty-two: one
query for every sender's customer, open conversation and STOP-in-force (`load_contexts`), one
INSERT ... ON CONFLICT DO NOTHING for the inbound messages (`store_inbound`), then one statement
per kind of write (`write`). On PostgreSQL the INSERTs take their rows as arrays, one per column
(`crm_core.unnest`): one execution on the server and one statement text for any batch, where a
driver's executemany is an execution per row, each row's parameters handled one by one on the
event loop.

On PostgreSQL that first query also locks each open conversation it reads (`FOR UPDATE`): two
processes answering one customer at once take turns on the row, and the second reads what the
first wrote, so no `failed_turns` increment is lost and nobody hands off twice. The lock is taken
in a LATERAL sub-select, because PostgreSQL refuses `FOR UPDATE` on the nullable side of an outer
join (a customer may have no open conversation). Two batches locking the same conversations in
opposite orders deadlock; PostgreSQL aborts one, and the batcher runs its messages again one by
one. SQLite needs no lock: a writer's `BEGIN IMMEDIATE` already serialises write transactions.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Row,
    Select,
    String,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.base import Executable

from channels.base import ChannelName, InboundMessage
from consent.keywords import KeywordKind
from consent.models import consent_state_table
from consent.types import ConsentStatus, Purpose
from crm_core.models import (
    InteractionKind,
    customers_table,
    identities_table,
)
from crm_core.sqltypes import utcnow
from crm_core.timeline import add_interactions
from crm_core.unnest import as_arrays, insert_unnested, unnested
from dialog.handoff import TURN_ATTRIBUTES
from dialog.inbound.one_write import READ_COLUMNS, REPLY, write_together
from dialog.inbound.open_and_store import open_and_store
from dialog.inbound.work import Context, Pending, Work, fingerprint, keyword_plan
from dialog.media import medium, writing_channels
from dialog.models import (
    INBOUND_ONLY,
    OPEN_STATES,
    Direction,
    awaiting_bot_table,
    conversations_table,
    is_open,
    messages_table,
)
from dialog.outbox import enqueue, outbox_row, through_outbox
from dialog.outbox.models import PROVIDER_ID_LENGTH, outbox_table
from dialog.outbox.models import Purpose as SendPurpose
from dialog.text_parts import text_parts
from dialog.turns import ConversationFacts, CustomerFacts

__all__ = [
    "Held",
    "answered",
    "await_bot",
    "check_duplicates",
    "drop_empty_openings",
    "give_up_asking",
    "link_replies",
    "load_context",
    "load_contexts",
    "lock_conversations",
    "open_conversation",
    "open_conversations",
    "store_inbound",
    "write",
    "write_timeline",
]

DIALECTS = ("sqlite", "postgresql")
# What a turn reads of its conversation (not the hand-off snapshot, which can be large).
_FACTS = ("id", "state", "channel", "address", "language", "failed_turns", "flags")


def _context_query(dialect: str, *, by_identity: bool) -> Select[Any]:
    """Customers with their open conversation and the service consent on the channel at hand.

    By identity: every sender of a batch at once, (kind, value) IN (...), the channel following
    from the identity's kind. By customer: one customer, the channel a parameter. On PostgreSQL
    the open conversation is locked for the rest of the transaction."""
    customers, conversations, consent = customers_table, conversations_table, consent_state_table
    identities = identities_table
    # The consent channel a sender's identity writes on (a phone number writes by SMS).
    by_kind = {kind.value: channel.value for kind, channel in writing_channels().items()}
    channel = (
        case(by_kind, value=identities.c.kind)
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
    open_one = and_(conversations.c.customer_id == customers.c.id, is_open(conversations.c.state))
    if dialect == "postgresql":
        facts = [conversations.c[name] for name in _FACTS]
        held = select(*facts).where(open_one).with_for_update().lateral("held")
        open_ = held.c
        source = customers.outerjoin(held, true())
    else:
        open_ = conversations.c
        source = customers.outerjoin(conversations, open_one)
    columns = [
        customers.c.id,
        customers.c.name,
        customers.c.language,
        customers.c.timezone,
        customers.c.tier,
        *(customers.c.attributes[name].as_string().label(name) for name in TURN_ATTRIBUTES),
        open_.id.label("conversation_id"),
        open_.state,
        open_.channel,
        open_.address,
        open_.language.label("conversation_language"),
        open_.failed_turns,
        open_.flags,
        service.label("service"),
    ]
    if not by_identity:
        return (
            select(*columns).select_from(source).where(customers.c.id == bindparam("customer_id"))
        )
    # A merged tombstone holds no identities, but the guard keeps a half-done merge harmless.
    known = customers.c.merged_into_id.is_(None)
    if dialect == "postgresql":
        # The senders as a table, joined on the primary key: one index probe each, and one
        # statement text (one prepared plan) for any number of senders. With `(kind, value)
        # IN (...)` each batch size was a statement of its own, and with few identities
        # PostgreSQL planned it as a search on the kind that filtered every identity of it.
        senders = (
            func.unnest(
                bindparam("kinds", type_=postgresql.ARRAY(String)),
                bindparam("values", type_=postgresql.ARRAY(String)),
            )
            .table_valued("kind", "value")
            .render_derived(name="sender")
        )
        sent_by = and_(identities.c.kind == senders.c.kind, identities.c.value == senders.c.value)
        return (
            select(identities.c.kind, identities.c.value, *columns)
            .select_from(
                senders.join(identities, sent_by).join(
                    source, identities.c.customer_id == customers.c.id
                )
            )
            .where(known)
        )
    # SQLite reads a list of (kind, value) pairs by scanning every identity, but probes the
    # primary key for each kind and value of two plain lists: a pair made of one sender's kind
    # and another's value may come back too, and `load_contexts` leaves it out.
    return (
        select(identities.c.kind, identities.c.value, *columns)
        .select_from(identities.join(source, identities.c.customer_id == customers.c.id))
        .where(
            identities.c.kind.in_(bindparam("kinds", expanding=True)),
            identities.c.value.in_(bindparam("values", expanding=True)),
            known,
        )
    )


# Every column of a message the inbound path writes (`store_inbound`, `write`).
_MESSAGE_COLUMNS = (
    "conversation_id",
    "customer_id",
    "channel",
    "direction",
    "provider_id",
    "address",
    "text",
    "attachments",
    "author",
    "intent",
    "confidence",
    "in_reply_to",
    "created_at",
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
        unnested = insert_unnested(messages, _MESSAGE_COLUMNS)
        return unnested.on_conflict_do_nothing(**target).returning(*returning)
    return sqlite.insert(messages).on_conflict_do_nothing(**target).returning(*returning)


def _conversations_query(dialect: str) -> Select[Any]:
    """Conversations by id, as they are now, with whose they are (a merge may have moved them):
    locked on PostgreSQL (see the module's note)."""
    conversations = conversations_table
    columns = (conversations.c[name] for name in (*_FACTS, "customer_id"))
    query = select(*columns).where(conversations.c.id.in_(bindparam("ids", expanding=True)))
    return query.with_for_update() if dialect == "postgresql" else query


_CONTEXT_BY_IDENTITY = {name: _context_query(name, by_identity=True) for name in DIALECTS}
_CONTEXT_BY_CUSTOMER = {name: _context_query(name, by_identity=False) for name in DIALECTS}
_STORE_INBOUND = {name: _store_inbound_statement(name) for name in DIALECTS}
_CONVERSATIONS = {name: _conversations_query(name) for name in DIALECTS}
_OPEN_CONVERSATION = insert(conversations_table).returning(conversations_table.c.id)


def _open_conversations_statement(dialect: str) -> Executable:
    """INSERT ... ON CONFLICT DO NOTHING on the one-open-conversation-per-customer index: a
    customer whose conversation another process has just opened is skipped, not an error that
    would abort the batch's transaction. Matched back by customer (one opening each), for the
    same reason as the replies below."""
    conversations = conversations_table
    target: dict[str, Any] = {
        "index_elements": [conversations.c.customer_id],
        "index_where": text(OPEN_STATES),  # the partial unique index's own predicate
    }
    returning = (conversations.c.id, conversations.c.customer_id)
    if dialect == "postgresql":
        return (
            postgresql.insert(conversations).on_conflict_do_nothing(**target).returning(*returning)
        )
    return sqlite.insert(conversations).on_conflict_do_nothing(**target).returning(*returning)


_OPEN_CONVERSATIONS = {name: _open_conversations_statement(name) for name in DIALECTS}
# Matched back by provider id: asking for the rows in parameter order would make SQLite insert
# them one statement at a time.
_REPLY_IDS = (messages_table.c.id, messages_table.c.provider_id)
_STORE_REPLIES = insert(messages_table).returning(*_REPLY_IDS)  # SQLite's (`_write_apart`)
_CONFIRMS_STOP = keyword_plan(KeywordKind.OPT_OUT)  # the plan of a turn that answered a STOP
# Two plain lists, not (channel, provider_id) pairs: SQLite reads a list of pairs by scanning
# every message, and probes the index for each channel and id of two lists (a channel of one
# message with the id of another may come back too: `check_duplicates` matches exact pairs).
_STORED = (
    select(
        messages_table.c.id,
        messages_table.c.channel,
        messages_table.c.provider_id,
        messages_table.c.address,
        messages_table.c.text,
        messages_table.c.attachments,
        awaiting_bot_table.c.message_id.label("awaiting"),
    )
    .outerjoin(awaiting_bot_table, awaiting_bot_table.c.message_id == messages_table.c.id)
    .where(
        text(INBOUND_ONLY),
        messages_table.c.channel.in_(bindparam("channels", expanding=True)),
        messages_table.c.provider_id.in_(bindparam("provider_ids", expanding=True)),
    )
)
_SET_INTENT = (  # what `one_write` does on PostgreSQL, one row per execution
    update(messages_table)
    .where(messages_table.c.id == bindparam("message_id"))
    .values({name: bindparam(name) for name in READ_COLUMNS})
)


_MOST_CITED = 21  # In-Reply-To and the twenty nearest References: a reply answers a recent one
# Our e-mails by the Message-ID we gave them (the outbox keeps it as the provider's id), with
# whose they are: what a customer's In-Reply-To and References may name.
_OUR_EMAILS = (
    select(outbox_table.c.provider_id, messages_table.c.id, messages_table.c.customer_id)
    .join(messages_table, messages_table.c.id == outbox_table.c.message_id)
    .where(
        outbox_table.c.channel == ChannelName.EMAIL.value,
        outbox_table.c.provider_id.in_(bindparam("message_ids", expanding=True)),
    )
)


class Held(NamedTuple):
    """A conversation as it is now, and the customer it belongs to now."""

    customer_id: int
    conversation: ConversationFacts


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _conversation_of(row: Row[Any], *, id_: int, language: str) -> ConversationFacts:
    return ConversationFacts(
        id=id_,
        state=row.state,
        channel=row.channel,
        address=row.address,
        language=language,
        failed_turns=row.failed_turns,
        flags=row.flags or {},
    )


def _attributes(row: Row[Any]) -> dict[str, Any]:
    """The attributes a turn reads, those the customer has (each read alone by the query)."""
    found = ((name, row._mapping[name]) for name in TURN_ATTRIBUTES)
    return {name: value for name, value in found if value is not None}


def _context_of(row: Row[Any]) -> Context:
    customer = CustomerFacts(
        id=row.id,
        name=row.name,
        language=row.language,
        timezone=row.timezone,
        tier=row.tier,
        attributes=_attributes(row),
    )
    conversation = None
    if row.conversation_id is not None:
        conversation = _conversation_of(
            row, id_=row.conversation_id, language=row.conversation_language
        )
    return Context(customer, conversation, row.service == ConsentStatus.REVOKED.value)


async def load_contexts(
    session: AsyncSession, batch: Sequence[Pending]
) -> dict[tuple[str, str], Context]:
    """Every known sender of the batch, by (kind, normalised value), in one query."""
    senders = {(pending.kind.value, pending.sender) for pending in batch}
    kinds, values = zip(*senders, strict=True)  # in pairs: PostgreSQL unnests them together
    parameters = {"kinds": list(kinds), "values": list(values)}
    rows = await session.execute(_CONTEXT_BY_IDENTITY[_dialect(session)], parameters)
    return {
        (row.kind, row.value): _context_of(row) for row in rows if (row.kind, row.value) in senders
    }


async def load_context(session: AsyncSession, customer_id: int, channel: str) -> Context | None:
    statement = _CONTEXT_BY_CUSTOMER[_dialect(session)]
    row = (
        await session.execute(statement, {"customer_id": customer_id, "channel": channel})
    ).first()
    return None if row is None else _context_of(row)


async def lock_conversations(session: AsyncSession, ids: Sequence[int]) -> dict[int, Held]:
    """The conversations as they are now (locked on PostgreSQL), to apply an answer that was
    decided outside the transaction to what is stored, not to what was read before it."""
    rows = await session.execute(_CONVERSATIONS[_dialect(session)], {"ids": list(set(ids))})
    return {
        row.id: Held(row.customer_id, _conversation_of(row, id_=row.id, language=row.language))
        for row in rows
    }


def _opening_row(customer_id: int, opening: ConversationFacts) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "state": opening.state,
        "channel": opening.channel,
        "address": opening.address,
        "language": opening.language,
        "flags": opening.flags,
    }


async def open_conversation(
    session: AsyncSession, customer_id: int, opening: ConversationFacts
) -> int:
    opened = await session.scalar(_OPEN_CONVERSATION, _opening_row(customer_id, opening))
    assert opened is not None
    return int(opened)


async def open_conversations(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> dict[int, int]:
    """SQLite: a conversation for each opening (`_opening_row`), in one INSERT: their ids by
    customer. One opening per customer; a customer who has an open conversation by now is left
    out."""
    if not rows:
        return {}
    statement = _OPEN_CONVERSATIONS[_dialect(session)]
    opened = await session.execute(statement, rows if len(rows) > 1 else rows[0])
    return {row.customer_id: row.id for row in opened}


def _cited(message: InboundMessage) -> list[str]:
    """The Message-IDs a proven sender's e-mail answers, nearest first: In-Reply-To, then
    References from the newest back (RFC 5322 3.6.4: the thread so far, oldest first), at most
    `_MOST_CITED` of them. An unproven From cites nothing: our Message-IDs carry our message
    numbers, and whoever forged the sender could pick one."""
    if message.channel is not ChannelName.EMAIL or not message.verified:
        return []
    cited = [message.metadata.get("in_reply_to", "")]
    cited += reversed(message.metadata.get("references", "").split())
    ours = (m for m in dict.fromkeys(cited) if m and len(m) <= PROVIDER_ID_LENGTH)
    return list(ours)[:_MOST_CITED]


async def link_replies(session: AsyncSession, works: Sequence[Work]) -> None:
    """An e-mail that answers one of ours is linked to it (`answers`, stored as the message's
    `in_reply_to`): the nearest of its thread's Message-IDs that is an e-mail we sent to the
    same customer. Anyone can write any Message-ID in those headers: one of another customer's
    e-mails is not linked. One query, and only for a batch with e-mails that cite any."""
    cited = [_cited(work.message) for work in works]
    wanted = sorted({message_id for ids in cited for message_id in ids})
    if not wanted:
        return
    rows = await session.execute(_OUR_EMAILS, {"message_ids": wanted})
    ours = {row.provider_id: (row.id, row.customer_id) for row in rows}
    for work, ids in zip(works, cited, strict=True):
        for message_id in ids:
            found = ours.get(message_id)
            if found is not None and found[1] == work.customer.id:
                work.answers = found[0]
                break


def _inbound_row(work: Work) -> dict[str, Any]:
    return {
        # None: the conversation is opened in the same statement (`open_and_store`)
        "conversation_id": work.conversation.id or None,
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
        "in_reply_to": work.answers,
        "created_at": work.now,
    }


async def store_inbound(session: AsyncSession, works: Sequence[Work]) -> list[Work]:
    """Store the customers' messages, whole; a duplicate gets no id, and no reply. A work whose
    conversation is still to open (id 0, holding the opening) has it opened first: on
    PostgreSQL in the same statement (`dialog.inbound.open_and_store`). Returns the works whose
    customer's conversation another process opened meanwhile, neither opened nor stored: the
    caller joins that conversation, then stores them."""
    if not works:
        return []
    to_open = [work for work in works if not work.conversation.id]
    openings = [_opening_row(work.customer.id, work.conversation) for work in to_open]
    if unnested(session):
        rows = [_inbound_row(work) for work in works]
        opened, stored = await open_and_store(session, _MESSAGE_COLUMNS, openings, rows)
        missed = _join_opened(to_open, opened)
    else:
        missed = _join_opened(to_open, await open_conversations(session, openings))
        rows = [_inbound_row(work) for work in works if work.conversation.id]
        stored = []
        if rows:
            result = await _insert_messages(session, _STORE_INBOUND, rows)
            stored = [(row.id, row.channel, row.provider_id) for row in result]
    ids = {(channel, provider_id): id_ for id_, channel, provider_id in stored}
    for work in works:
        # pop: the same message twice in one batch is stored once, for the first of them
        work.inbound_id = ids.pop((work.message.channel.value, work.message.provider_id), None)
    return missed


def _join_opened(to_open: Sequence[Work], opened: Mapping[int, int]) -> list[Work]:
    """Each work its conversation as opened (ids by customer); returns those not opened."""
    missed: list[Work] = []
    for work in to_open:
        if work.customer.id in opened:
            work.conversation = replace(work.conversation, id=opened[work.customer.id])
        else:
            missed.append(work)
    return missed


async def check_duplicates(
    session: AsyncSession, works: Sequence[Work], *, asked_before: datetime
) -> None:
    """The duplicates of the batch against what is stored under their provider ids. One whose
    first delivery is still awaiting the bot, and no longer being asked (its ask failed, or
    began before `asked_before`: the process stopped, or gave up on the bot), is not dropped:
    it takes the wait over (`_take_wait`), takes the stored message's id and is asked again (by
    whichever bot is configured now). One still being asked, by another process, is a plain
    duplicate: asked twice, it was answered twice. One that is not the stored message
    (`fingerprint`: another sender, text or attachments) is the id used again for another
    message, not a delivery of the same one: it is refused (`reused`), and never answers for
    the stored one. One query, and only when there are duplicates."""
    duplicates = [work for work in works if work.inbound_id is None]
    if not duplicates:
        return
    keys = {(work.message.channel.value, work.message.provider_id) for work in duplicates}
    channels, provider_ids = (sorted(set(column)) for column in zip(*keys, strict=True))
    rows = await session.execute(_STORED, {"channels": channels, "provider_ids": provider_ids})
    stored = {(row.channel, row.provider_id): row for row in rows}
    asked: set[tuple[str, str]] = set()
    for work in duplicates:
        key = (work.message.channel.value, work.message.provider_id)
        row = stored.get(key)
        if row is None:
            continue
        if fingerprint(work.message) != (row.address, row.text, tuple(row.attachments or ())):
            work.reused = True
        elif row.awaiting is not None and key not in asked:
            asked.add(key)  # the same message twice in one batch is asked once, for the first
            if work.message.reasked or await _take_wait(session, row.id, asked_before, work.now):
                work.inbound_id = row.id
                work.resumed = True


async def _take_wait(
    session: AsyncSession, message_id: int, asked_before: datetime, now: datetime
) -> bool:
    """Take over a message's wait for the bot unless someone is asking it now, as the re-ask
    sweeper does (`dialog.inbound.reask`): one process wins (PostgreSQL's row lock: the other's
    UPDATE finds `asked_at` moved)."""
    taken = await session.execute(
        update(awaiting_bot_table)
        .where(
            awaiting_bot_table.c.message_id == message_id,
            awaiting_bot_table.c.asked_at <= asked_before,
        )
        .values(asked_at=now)
        .returning(awaiting_bot_table.c.message_id)
    )
    return taken.first() is not None


async def give_up_asking(session: AsyncSession, works: Sequence[Work], at: datetime) -> None:
    """These messages' asks failed (the bot erred or did not answer in time): their wait may be
    taken over at once, by a redelivery or the re-ask sweeper (`at`: a moment early enough)."""
    ids = [work.inbound_id for work in works if work.inbound_id is not None]
    if ids:
        await session.execute(
            update(awaiting_bot_table)
            .where(awaiting_bot_table.c.message_id.in_(ids))
            .values(asked_at=at)
        )


async def drop_empty_openings(session: AsyncSession, works: Sequence[Work]) -> None:
    """A conversation opened for a message that was stored already (a late redelivery, whose
    first delivery's conversation was resolved since) holds nothing: it is removed, or it would
    stay open and empty, and take the customer's next message. Only when there is one."""
    empty = [w.conversation.id for w in works if w.opened and w.inbound_id is None]
    if not empty:
        return
    conversations, messages = conversations_table, messages_table
    await session.execute(
        delete(conversations).where(
            conversations.c.id.in_(empty),
            ~select(messages.c.id).where(messages.c.conversation_id == conversations.c.id).exists(),
        )
    )


async def await_bot(session: AsyncSession, works: Sequence[Work]) -> None:
    if works:
        rows = [{"message_id": work.inbound_id, "asked_at": work.now} for work in works]
        await session.execute(insert(awaiting_bot_table), rows)


async def answered(session: AsyncSession, works: Sequence[Work]) -> None:
    if not works:
        return
    ids = [work.inbound_id for work in works]
    await session.execute(
        delete(awaiting_bot_table).where(awaiting_bot_table.c.message_id.in_(ids))
    )


async def write(session: AsyncSession, works: Sequence[Work]) -> None:
    """Everything the batch's turns decided. The replies, their outbox rows, the timeline, what
    the bot made of each message (intent, confidence, outcome) and the conversations' changes:
    on PostgreSQL one statement (`dialog.inbound.one_write`), on SQLite one per table. The
    works' timelines and changes are then spent."""
    replies = [
        (work, part)
        for work in works
        for text in work.replies
        for part in _sendable(text, work.conversation.channel)
    ]
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
    # The outbox rows and timeline entries of the replies name them by provider id (`REPLY`):
    # their ids are the INSERT's to give.
    queued: list[dict[str, Any]] = []
    written_at = utcnow()
    for (work, part), row in zip(replies, rows, strict=True):
        if through_outbox(row["channel"]):
            # Not a live socket: a worker sends it once this transaction commits. The STOP
            # confirmation is sent whatever consent says; any other answer (HELP's, START's
            # included) is a service message, which a STOP arriving before its send stops.
            confirms_stop = work.plan == _CONFIRMS_STOP
            purpose = SendPurpose.COMPLIANCE if confirms_stop else SendPurpose.SERVICE
            options = _reply_options(work.message)
            queued_row = outbox_row(
                None, row["channel"], work.now, purpose=purpose, options=options
            )
            # Queued now, by the clock consent's events are recorded by (the claim compares
            # them), not when the message came (a STOP recorded meanwhile came before it).
            queued_row["created_at"] = written_at
            queued.append({**queued_row, REPLY: row["provider_id"]})
        work.note(InteractionKind.MESSAGE_OUT, part, "bot", conversation_id=work.conversation.id)
        work.timeline[-1][REPLY] = row["provider_id"]
    entries = [entry for work in works for entry in work.timeline]
    readings = [
        {
            "message_id": w.inbound_id,
            "intent": w.intent,
            "confidence": w.confidence,
            "outcome": w.plan,
        }
        for w in works
        if w.intent is not None or w.plan is not None
    ]
    # By conversation, later turns' changes over earlier ones', as UPDATEs one after the other
    # would leave it: after a merge, two answers of one batch may land in the survivor's.
    merged: dict[int, dict[str, Any]] = {}
    for work in works:
        if work.conversation_changes:
            merged.setdefault(work.conversation.id, {}).update(work.conversation_changes)
    changes = [(id_, {**change, "updated_at": written_at}) for id_, change in merged.items()]
    ids: dict[str, int] = {}
    if unnested(session) and (rows or entries or readings or changes):
        ids = await write_together(
            session, _MESSAGE_COLUMNS, rows, queued, entries, readings, changes
        )
    else:
        ids = await _write_apart(session, rows, queued, entries)
        if readings:  # by key, row by row (see `crm_core.unnest`)
            await session.execute(_SET_INTENT, readings)
        await _update_conversations(session, works)
    for (work, part), row in zip(replies, rows, strict=True):
        work.sent.append((part, ids[row["provider_id"]]))
    for work in works:
        work.written()  # spent: what a later write of the same turn adds starts from nothing


async def _write_apart(
    session: AsyncSession,
    rows: list[dict[str, Any]],
    queued: list[dict[str, Any]],
    entries: list[dict[str, Any]],
) -> dict[str, int]:
    """What `one_write` does in one statement, one INSERT per table: the replies first, then
    their ids in the rows that name them."""
    ids: dict[str, int] = {}
    if rows:
        stored = await session.execute(_STORE_REPLIES, rows if len(rows) > 1 else rows[0])
        ids = {row.provider_id: row.id for row in stored}
    _name_replies(ids, queued, entries)
    await enqueue(session, queued)  # one INSERT for the batch's outbox rows
    await add_interactions(session, entries)
    return ids


def _name_replies(
    ids: Mapping[str, int], queued: list[dict[str, Any]], entries: list[dict[str, Any]]
) -> None:
    """The outbox rows and timeline entries naming a reply by `REPLY` get its id instead."""
    for queued_row in queued:
        queued_row["message_id"] = ids[queued_row.pop(REPLY)]
    for entry in entries:
        reply = entry.pop(REPLY, None)
        if reply is not None:
            entry["data"]["message_id"] = ids[reply]


async def _insert_messages(
    session: AsyncSession, statements: Mapping[str, Executable], rows: list[dict[str, Any]]
) -> Result[Any]:
    """Messages' rows in one INSERT: as arrays on PostgreSQL, as a list of rows on SQLite."""
    dialect = _dialect(session)
    if dialect == "postgresql":
        return await session.execute(
            statements[dialect], as_arrays(messages_table, rows, _MESSAGE_COLUMNS)
        )
    return await session.execute(statements[dialect], rows if len(rows) > 1 else rows[0])


def _sendable(text: str, channel: str) -> list[str]:
    """A reply as its medium can send it: whole, or in parts that each fit (Twilio refuses an
    SMS body over 1,600 characters for good, and an FAQ answer may be longer)."""
    limit = medium(channel).max_send
    return text_parts(text, limit) if limit is not None and len(text) > limit else [text]


def _reply_options(message: InboundMessage) -> dict[str, Any]:
    """An e-mail's answer goes in its thread: "Re:" its subject, In-Reply-To its Message-ID and
    References the thread so far (RFC 5322 3.6.4); other media need nothing."""
    if message.channel is not ChannelName.EMAIL:
        return {}
    options: dict[str, Any] = {}
    if message.subject:
        subject = message.subject
        options["subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    replied = message.metadata.get("message_id")
    if replied:
        options["in_reply_to"] = replied
        # Its References, or with none its In-Reply-To (a single parent), then its own id.
        earlier = message.metadata.get("references", "").split()
        if not earlier and (parent := message.metadata.get("in_reply_to")):
            earlier = [parent]
        options["references"] = [*earlier, replied]
    return options


async def _update_conversations(session: AsyncSession, works: Sequence[Work]) -> None:
    """SQLite: one UPDATE per set of changed columns (usually none: most turns change nothing)."""
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


async def write_timeline(session: AsyncSession, work: Work) -> None:
    await add_interactions(session, work.timeline)
    work.timeline.clear()
