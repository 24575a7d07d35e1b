"""Conversations and their messages: the transcript every channel feeds."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    literal_column,
    text,
)
from sqlalchemy.orm import Mapped, QueryableAttribute, mapped_column

from crm_core.models import Base
from crm_core.sqltypes import IdType, utcnow

__all__ = [
    "INBOUND_ONLY",
    "AwaitingBot",
    "Conversation",
    "ConversationState",
    "Direction",
    "LabelledExample",
    "Message",
    "awaiting_bot_table",
    "conversations_table",
    "is_open",
    "labelled_examples_table",
    "messages_table",
]


class ConversationState(StrEnum):
    BOT = "bot"  # self-service answers
    QUEUED = "queued"  # handed off, waiting for an agent (the routing issue orders the queue)
    ASSIGNED = "assigned"  # a human holds it: the bot is silent
    RESOLVED = "resolved"  # closed; the customer's next message opens a new one


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


OPEN_STATES = f"state != '{ConversationState.RESOLVED.value}'"
INBOUND_ONLY = "direction = 'in'"


def is_open(state: ColumnElement[str] | QueryableAttribute[str]) -> ColumnElement[bool]:
    """A conversation not yet resolved, spelt as the partial index's predicate: with the literal
    'resolved' in the statement. Bound as a parameter, PostgreSQL's cached (generic) plan cannot
    prove the index applies, and finds a customer's open conversation by reading them all."""
    return state != literal_column(f"'{ConversationState.RESOLVED.value}'")


class Conversation(Base):
    """One open conversation per customer, whichever channel they write on."""

    __tablename__ = "conversations"
    __table_args__ = (
        CheckConstraint(
            f"state IN ({', '.join(repr(s.value) for s in ConversationState)})", name="state"
        ),
        # The database enforces "one open conversation per customer", so two first messages
        # arriving together cannot open two.
        Index(
            "uq_conversations_open_per_customer",
            "customer_id",
            unique=True,
            sqlite_where=text(OPEN_STATES),
            postgresql_where=text(OPEN_STATES),
        ),
        Index("ix_conversations_queue", "state", "waiting_since"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(IdType, ForeignKey("customers.id"))
    state: Mapped[str] = mapped_column(String(16), default=ConversationState.BOT)
    channel: Mapped[str] = mapped_column(
        String(16)
    )  # where the customer wrote last: replies go there
    address: Mapped[str] = mapped_column(String(320))  # their address on that channel
    language: Mapped[str] = mapped_column(String(8), default="en")
    failed_turns: Mapped[int] = mapped_column(default=0)
    handoff_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    priority_tier: Mapped[str | None] = mapped_column(String(10), default=None)
    waiting_since: Mapped[datetime | None] = mapped_column(default=None)
    assigned_to: Mapped[str | None] = mapped_column(String(200), default=None)
    flags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the hand-off snapshot
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)


class Message(Base):
    """A message in or out. An inbound message is stored once per (channel, provider id)."""

    __tablename__ = "messages"
    __table_args__ = (
        Index(
            "uq_messages_inbound_provider_id",
            "channel",
            "provider_id",
            unique=True,
            sqlite_where=text(INBOUND_ONLY),
            postgresql_where=text(INBOUND_ONLY),
        ),
        Index("ix_messages_conversation", "conversation_id", "id"),
        CheckConstraint("direction IN ('in', 'out')", name="direction"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(IdType, ForeignKey("conversations.id"))
    customer_id: Mapped[int] = mapped_column(IdType, ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(3))
    provider_id: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(320))
    text: Mapped[str] = mapped_column(Text)
    attachments: Mapped[list[str]] = mapped_column(default=list)
    author: Mapped[str] = mapped_column(String(200))  # customer, bot, agent:<name>, system
    intent: Mapped[str | None] = mapped_column(String(32), default=None)
    confidence: Mapped[float | None] = mapped_column(Float, default=None)
    in_reply_to: Mapped[int | None] = mapped_column(IdType, ForeignKey("messages.id"), default=None)
    # An inbound message: what the bot did with it (`BotTurn.plan`: faq:<id>, choices:..., rephrase,
    # handoff:<reason>...); None when it was never put to the bot. Read to find the KB's gaps.
    outcome: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LabelledExample(Base):
    """A customer's words with what they turned out to mean, for the KB owners: when the bot
    offered options ("Did you mean…?") the customer's choice labels the question they asked."""

    __tablename__ = "labelled_examples"
    __table_args__ = (Index("ix_labelled_examples_label", "label", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    text: Mapped[str] = mapped_column(Text)  # the question as the customer asked it
    language: Mapped[str] = mapped_column(String(8))
    label: Mapped[str] = mapped_column(String(200))  # the option chosen: faq:<id>, action:<name>
    source: Mapped[str] = mapped_column(String(16))  # choice: the customer picked it
    # Deleted with its message (a purged lead's words go with them); a conversation merged
    # into another leaves the example pointing at the message, which moved.
    conversation_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("conversations.id", ondelete="SET NULL"), default=None
    )
    message_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("messages.id", ondelete="CASCADE"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AwaitingBot(Base):
    """An inbound message put to a bot that answers from outside the database (a Rasa server).

    Stored with the message, deleted with the answer: the bot is asked between the two
    transactions, so no transaction waits on the network. A message still here was never
    answered (the bot gave none, or the process stopped meanwhile): its redelivery is asked
    again, not dropped as a duplicate, and an SMS is asked again without one
    (`dialog.inbound.reask`: Twilio posts once). `asked_at` moves each time it is asked again."""

    __tablename__ = "awaiting_bot"

    message_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    asked_at: Mapped[datetime] = mapped_column()


conversations_table = cast(Table, Conversation.__table__)
messages_table = cast(Table, Message.__table__)
awaiting_bot_table = cast(Table, AwaitingBot.__table__)
labelled_examples_table = cast(Table, LabelledExample.__table__)
