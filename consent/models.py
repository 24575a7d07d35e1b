"""Consent tables: the append-only ledger, the state derived from it, preferences, and the facts
the contact policy needs (contacts already made, addresses that cannot be delivered to)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    String,
    Table,
)
from sqlalchemy.orm import Mapped, mapped_column

from consent.types import GENERAL, Action, Channel, ConsentStatus, Purpose, Source
from crm_core.models import Base
from crm_core.sqltypes import IdType, utcnow

__all__ = [
    "ConsentEvent",
    "ConsentState",
    "ContactMade",
    "Preferences",
    "Undeliverable",
    "consent_events_table",
    "consent_state_table",
]


def _one_of(column: str, values: type[Any]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class ConsentEvent(Base):
    """One statement about consent, with its evidence. Never updated, never deleted: database
    triggers refuse both (see the migration), so the ledger can demonstrate consent (GDPR 7)."""

    __tablename__ = "consent_events"
    __table_args__ = (
        CheckConstraint(_one_of("channel", Channel), name="channel"),
        CheckConstraint(_one_of("purpose", Purpose), name="purpose"),
        CheckConstraint(_one_of("action", Action), name="action"),
        CheckConstraint(_one_of("source", Source), name="source"),
        Index("ix_consent_events_customer", "customer_id", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(IdType, ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))
    topic: Mapped[str] = mapped_column(String(64), default=GENERAL)
    action: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(32))
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsentState(Base):
    """The current status per (customer, channel, purpose, topic), always equal to replaying the
    ledger; a record merged away has none (its events stay, `consent.ledger.merge_consents`).
    Kept as a table so a million customers can be filtered with one indexed query."""

    __tablename__ = "consent_state"
    __table_args__ = (
        PrimaryKeyConstraint("customer_id", "channel", "purpose", "topic"),
        CheckConstraint(_one_of("status", ConsentStatus), name="status"),
        Index("ix_consent_state_audience", "channel", "purpose", "topic", "status"),
    )

    customer_id: Mapped[int] = mapped_column(IdType, ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))
    topic: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[int] = mapped_column(IdType, ForeignKey("consent_events.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Preferences(Base):
    """How, when and about what the customer likes to be contacted."""

    __tablename__ = "contact_preferences"

    customer_id: Mapped[int] = mapped_column(IdType, ForeignKey("customers.id"), primary_key=True)
    channels: Mapped[list[str]] = mapped_column(default=list)  # most preferred first
    window_days: Mapped[list[int] | None] = mapped_column(default=None)  # 0 = Monday
    window_start: Mapped[str | None] = mapped_column(String(5), default=None)  # "HH:MM" local
    window_end: Mapped[str | None] = mapped_column(String(5), default=None)
    language: Mapped[str | None] = mapped_column(String(8), default=None)
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    topics: Mapped[list[str]] = mapped_column(default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ContactMade(Base):
    """A company-initiated marketing contact, counted by the frequency caps from when it is due:
    written with the message it queues (`sastre.operations.messages.do_send_message`, and a
    retry of a failed one), and, later, by campaigns."""

    __tablename__ = "contacts_made"
    __table_args__ = (Index("ix_contacts_made_customer_at", "customer_id", "at"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(IdType, ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))
    topic: Mapped[str] = mapped_column(String(64), default=GENERAL)
    reference: Mapped[str | None] = mapped_column(String(200), default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Undeliverable(Base):
    """An address that must not be used again: a hard bounce (`sastre.operations.email`), a
    number Twilio reports unknown, unreachable or a landline (`sastre.operations.sms`)."""

    __tablename__ = "undeliverable_addresses"
    __table_args__ = (
        PrimaryKeyConstraint("customer_id", "channel", "address"),
        # A delivery report names the address, not the customer: it clears the mark by address.
        Index("ix_undeliverable_addresses_address", "channel", "address"),
    )

    customer_id: Mapped[int] = mapped_column(IdType, ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)


consent_events_table = cast(Table, ConsentEvent.__table__)
consent_state_table = cast(Table, ConsentState.__table__)
