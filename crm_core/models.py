"""The CRM core tables: customers, their identities, their timeline, and the audit trail.

Money is kept in integer cents (exact, identical on SQLite and PostgreSQL); the API speaks units.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    literal_column,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from crm_core.sqltypes import IdType, JsonType, UTCDateTime, utcnow

__all__ = [
    "PURCHASES_ONLY",
    "SQLITE_ONLY",
    "AuditEntry",
    "Base",
    "Customer",
    "CustomerStatus",
    "CustomerTier",
    "Identity",
    "IdentityKind",
    "Interaction",
    "InteractionKind",
    "Tier",
    "customer_rank_indexes",
    "customer_tiers_table",
    "customers_table",
    "identities_table",
    "interactions_table",
    "is_purchase",
]

# Stable constraint names, so Alembic migrations can refer to them on both databases.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JsonType,
        list[str]: JsonType,
        list[int]: JsonType,
    }


class Tier(StrEnum):
    """Value tiers (docs/value-tiers.md), most valuable first."""

    CMV = "CMV"
    CMP = "CMP"
    STANDARD = "STANDARD"
    BZ = "BZ"


class CustomerStatus(StrEnum):
    LEAD = "lead"  # created by an inbound contact we could not match
    CUSTOMER = "customer"  # known to a system of record: has an external id (import, API)
    MERGED = "merged"  # a tombstone: everything moved to `merged_into_id`


class IdentityKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    TELEGRAM = "telegram"
    WEBCHAT = "webchat"
    EXTERNAL = "external"


class InteractionKind(StrEnum):
    MESSAGE_IN = "message_in"
    MESSAGE_OUT = "message_out"
    CALLBACK = "callback"
    NOTE = "note"
    PURCHASE = "purchase"
    COMPLAINT = "complaint"
    DELIVERY = "delivery"  # an outbound message's delivery state changed (sent, failed, read)


PURCHASES_ONLY = f"kind = '{InteractionKind.PURCHASE.value}'"  # ix_interactions_purchases


def is_purchase(kind: ColumnElement[str]) -> ColumnElement[bool]:
    """An order, spelt as the partial index's predicate: with the literal 'purchase' in the
    statement, so PostgreSQL's cached (generic) plan can prove the index applies."""
    return kind == literal_column(f"'{InteractionKind.PURCHASE.value}'")


def _enum_check(column: str, enum: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(str(member)) for member in enum)})"


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint(_enum_check("tier", Tier), name="tier"),
        CheckConstraint(_enum_check("status", CustomerStatus), name="status"),
        CheckConstraint(
            "(status = 'merged') = (merged_into_id IS NOT NULL)", name="merged_has_target"
        ),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16), default=CustomerStatus.LEAD)
    merged_into_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("customers.id"), default=None
    )
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    language: Mapped[str | None] = mapped_column(String(8), default=None)
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    country: Mapped[str | None] = mapped_column(String(2), default=None)
    revenue_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_to_serve_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    # Derived by the database so it can never disagree with its inputs.
    profit_cents: Mapped[int] = mapped_column(
        BigInteger, Computed("revenue_cents - cost_to_serve_cents", persisted=True)
    )
    potential_value_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    # The tier's reason lives in `customer_tiers`: recomputing rewrites that narrow row, and
    # this wide one only when the tier itself moves.
    tier: Mapped[str] = mapped_column(String(10), default=Tier.STANDARD)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CustomerTier(Base):
    """Why a customer is in their tier, and since when that reason stands (`crm_core.tiers`).
    A customer whose tier was never computed has no row."""

    __tablename__ = "customer_tiers"

    customer_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    reason: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column()


class Identity(Base):
    """One way to reach or recognise a customer. (kind, value) belongs to exactly one customer,
    so it is the key itself: no surrogate id, one index fewer to maintain on bulk imports."""

    __tablename__ = "identities"
    __table_args__ = (CheckConstraint(_enum_check("kind", IdentityKind), name="kind"),)

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(320), primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Interaction(Base):
    """One entry on the customer's timeline: a message in or out, a call-back, a note, ..."""

    __tablename__ = "interactions"
    __table_args__ = (
        CheckConstraint(_enum_check("kind", InteractionKind), name="kind"),
        Index("ix_interactions_timeline", "customer_id", "occurred_at", "id"),
        # A customer's orders, newest first, without reading the rest of their timeline (two
        # entries for every message they exchange): order status stays one probe however long
        # the history. Partial, so the messages' entries cost it nothing. `kind` is a column
        # too though always 'purchase': without it SQLite's planner, seeing two indexes that
        # match equally well, takes the timeline's for the batch query's ORDER BY.
        Index(
            "ix_interactions_purchases",
            "customer_id",
            "kind",
            "occurred_at",
            "id",
            sqlite_where=text(PURCHASES_ONLY),
            postgresql_where=text(PURCHASES_ONLY),
        ),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(IdType, ForeignKey("customers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(16), default=None)
    summary: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str | None] = mapped_column(String(200), default=None)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who changed what and when, for changes that must be explainable later (merges, ...)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int | None] = mapped_column(IdType, default=None, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


# Typed handles on the tables, for Core statements (set-based updates, bulk inserts).
customers_table = cast(Table, Customer.__table__)
customer_tiers_table = cast(Table, CustomerTier.__table__)
identities_table = cast(Table, Identity.__table__)
interactions_table = cast(Table, Interaction.__table__)

# SQLite ranks live customers for a tier recompute by reading these in order, instead of sorting
# a million rows (`crm_core.tiers`); they hold the status too, so skipping merged tombstones needs
# no visit to the table. Not partial indexes: without statistics, SQLite's planner would take one
# for any filter on status and read the whole table through it at random. PostgreSQL sorts in
# memory quickly and has none: every write would pay for them, and on a freshly loaded table
# its planner prefers them, then visits the heap a million times (measured twice as slow).
# A large import builds them once at the end (`crm_core.importer`).
SQLITE_ONLY = "sqlite_only"  # in an index's `info`: built on SQLite alone (see the migrations)


def _sqlite_only(index: Index) -> Index:
    index.info[SQLITE_ONLY] = True
    return index.ddl_if(dialect="sqlite")


customer_rank_indexes = (
    _sqlite_only(
        Index(
            "ix_customers_profit_rank",
            customers_table.c.profit_cents.desc(),
            customers_table.c.id,
            customers_table.c.status,
        )
    ),
    _sqlite_only(
        Index(
            "ix_customers_potential_rank",
            customers_table.c.potential_value_cents.desc(),
            customers_table.c.status,
        )
    ),
)
