"""The outbox: a row per outbound message still to send or already tracked, and every attempt.

A row is written in the same transaction as its message (the change that caused it), and a
worker sends it later: nothing calls a provider inside a request or a transaction. `due_at` is
one clock for both uses of a pending row: when a queued or retrying message may be sent, and
while a worker holds it, when its lease runs out (then another worker takes it over).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Table, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.models import Base
from crm_core.sqltypes import IdType, utcnow
from dialog.outbox.states import PENDING, DeliveryState

__all__ = [
    "CODE_LENGTH",
    "PENDING_ONLY",
    "PROVIDER_ID_LENGTH",
    "DeliveryAttempt",
    "OutboxEntry",
    "ParkedReport",
    "Purpose",
    "delivery_attempts_table",
    "outbox_table",
    "parked_reports_table",
]

PENDING_ONLY = f"state IN ({', '.join(repr(s.value) for s in sorted(PENDING))})"


class Purpose:
    """Why a message is sent: what the worker checks consent for just before sending."""

    SERVICE = "service"
    MARKETING = "marketing"
    # A keyword's own answer (the STOP confirmation, HELP): sent whatever consent says.
    COMPLIANCE = "compliance"
    ALL = (SERVICE, MARKETING, COMPLIANCE)


# The longest provider id and error code the outbox and its attempts hold: a provider's
# longer one is cut to fit by the worker (`sastre.worker.loop`), not refused by the database.
PROVIDER_ID_LENGTH = 200
CODE_LENGTH = 32


class OutboxEntry(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(
            f"state IN ({', '.join(repr(s.value) for s in DeliveryState)})", name="state"
        ),
        CheckConstraint(f"purpose IN ({', '.join(map(repr, Purpose.ALL))})", name="purpose"),
        # The workers' claim reads only pending rows, oldest due first.
        Index(
            "ix_outbox_due",
            "due_at",
            sqlite_where=text(PENDING_ONLY),
            postgresql_where=text(PENDING_ONLY),
        ),
        Index("ix_outbox_state", "state", "updated_at"),
        Index("ix_outbox_provider", "channel", "provider_id"),
    )

    message_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16), default=Purpose.SERVICE)
    state: Mapped[str] = mapped_column(String(12), default=DeliveryState.QUEUED)
    due_at: Mapped[datetime] = mapped_column()
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    provider_id: Mapped[str | None] = mapped_column(String(PROVIDER_ID_LENGTH), default=None)
    error_code: Mapped[str | None] = mapped_column(String(CODE_LENGTH), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)  # subject, html, threading
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


WITH_PROVIDER_ID = (
    "provider_id IS NOT NULL"  # the calls a provider took (ix_delivery_attempts_provider)
)


class DeliveryAttempt(Base):
    """One call to a provider, or one the worker died during (`interrupted`)."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (
        Index("ix_delivery_attempts_message", "message_id", "id"),
        # A provider's late report names the attempt it is about, which need not be the
        # message's latest (staff retried it since): found by that attempt's own id.
        Index(
            "ix_delivery_attempts_provider",
            "provider_id",
            sqlite_where=text(WITH_PROVIDER_ID),
            postgresql_where=text(WITH_PROVIDER_ID),
        ),
        # An id is never given again, on SQLite too: `dialog.outbox.tally` counts past the
        # highest it has settled, and an erasure deletes attempts.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(IdType, ForeignKey("messages.id", ondelete="CASCADE"))
    worker: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # sent, retry, failed, revoked, interrupted
    code: Mapped[str | None] = mapped_column(String(CODE_LENGTH), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    provider_id: Mapped[str | None] = mapped_column(String(PROVIDER_ID_LENGTH), default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ParkedReport(Base):
    """A provider's report on a message whose provider id we have not saved yet: the worker
    commits `sent` with the id only after the call returns, and a status callback can come
    first. Kept until the worker saves that id (then applied, in order) or for a day."""

    __tablename__ = "delivery_reports"
    __table_args__ = (
        Index("ix_delivery_reports_provider", "channel", "provider_id", "id"),
        Index("ix_delivery_reports_received", "received_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    provider_id: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(12))
    code: Mapped[str | None] = mapped_column(String(32), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    at: Mapped[datetime] = mapped_column()  # when the provider said it
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


outbox_table = cast(Table, OutboxEntry.__table__)
delivery_attempts_table = cast(Table, DeliveryAttempt.__table__)
parked_reports_table = cast(Table, ParkedReport.__table__)
