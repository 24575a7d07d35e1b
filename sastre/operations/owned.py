"""Every table that holds rows about a customer, and how a merge and an export treat each one.

The one place that knows them all. A merge runs every table's step, in this order, in one
transaction (`do_merge_customers`); an access request reads every table's section
(`do_export_customer`). A new table about customers is one more line in `OWNED_TABLES`, and a
test walks the schema and fails while a table with a `customer_id` (or a key to a customer's row)
is missing here, so none can be forgotten by either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import Table, and_, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from consent.ledger import merge_consents
from consent.merge import merge_preferences
from consent.models import (
    ConsentEvent,
    ConsentState,
    ContactMade,
    Preferences,
    Undeliverable,
)
from crm_core.customers import MergePlan, customer_view, fold_customer
from crm_core.models import AuditEntry, Customer, CustomerTier, Identity, Interaction
from dialog.merge import merge_conversations
from dialog.models import AwaitingBot, Conversation, LabelledExample, Message
from dialog.outbox.models import DeliveryAttempt, OutboxEntry

__all__ = ["OWNED_TABLES", "Exporting", "Merging", "OwnedTable"]


@dataclass(frozen=True, slots=True)
class Merging:
    """A merge under way: both customer rows locked, checked, nothing changed yet."""

    plan: MergePlan
    actor: str
    now: datetime

    @property
    def survivor_id(self) -> int:
        return self.plan.survivor.id

    @property
    def other_id(self) -> int:
        return self.plan.other.id


@dataclass(frozen=True, slots=True)
class Exporting:
    """An access request: the live customer and every record ever merged into it."""

    customer_id: int
    ids: tuple[int, ...]  # customer_id first


MergeStep = Callable[[AsyncSession, Merging], Awaitable[Any]]  # returns what the audit keeps
ExportStep = Callable[[AsyncSession, Exporting], Awaitable[Any]]  # returns the JSON section


@dataclass(frozen=True, slots=True)
class OwnedTable:
    table: Table
    merge: MergeStep
    export: ExportStep
    why: str  # how a merge treats the rows, and why
    section: str = ""  # the export document's key; the table's name if empty

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def key(self) -> str:
        return self.section or self.table.name


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


def _json(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _rows(result: Any) -> list[dict[str, Any]]:
    return [{key: _json(value) for key, value in row._mapping.items()} for row in result]


# --- merge steps --------------------------------------------------------------------------------


def moved(model: type[Any]) -> MergeStep:
    """The other record's rows become the survivor's."""
    table = _table(model)

    async def step(session: AsyncSession, merging: Merging) -> int:
        result = await session.execute(
            update(table)
            .where(table.c.customer_id == merging.other_id)
            .values(customer_id=merging.survivor_id)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    return step


def moved_unless_held(model: type[Any], *key: str) -> MergeStep:
    """As `moved`, but a row the survivor already holds under the same `key` is not doubled:
    the other's copy is dropped (the audit entry keeps it)."""
    table = _table(model)

    async def step(session: AsyncSession, merging: Merging) -> dict[str, Any]:
        mine = table.alias("mine")
        held = and_(
            table.c.customer_id == merging.other_id,
            exists().where(
                mine.c.customer_id == merging.survivor_id,
                *(mine.c[name] == table.c[name] for name in key),
            ),
        )
        dropped = _rows(await session.execute(select(table).where(held)))
        if dropped:
            await session.execute(delete(table).where(held))
        moving = await moved(model)(session, merging)
        return {"moved": moving, "already_held": dropped}

    return step


async def _kept(_session: AsyncSession, _merging: Merging) -> None:
    return None


async def _fold_customer(session: AsyncSession, merging: Merging) -> Any:
    return await fold_customer(session, merging.plan)


async def _merge_consents(session: AsyncSession, merging: Merging) -> Any:
    recorded = await merge_consents(session, merging.survivor_id, merging.other_id, merging.actor)
    return {"events_recorded": [event.id for event in recorded]}


async def _merge_preferences(session: AsyncSession, merging: Merging) -> Any:
    return await merge_preferences(session, merging.survivor_id, merging.other_id)


async def _merge_conversations(session: AsyncSession, merging: Merging) -> Any:
    return await merge_conversations(
        session,
        merging.survivor_id,
        merging.other_id,
        survivor_tier=merging.plan.survivor.tier,
        now=merging.now,
    )


# --- export sections ----------------------------------------------------------------------------


def rows_of(model: type[Any], *order: str) -> ExportStep:
    """Every row of the customer's records, every column."""
    table = _table(model)
    by = [table.c[name] for name in order] or list(table.primary_key.columns)

    async def section(session: AsyncSession, exporting: Exporting) -> list[dict[str, Any]]:
        query = select(table).where(table.c.customer_id.in_(exporting.ids)).order_by(*by)
        return _rows(await session.execute(query))

    return section


async def _profile(session: AsyncSession, exporting: Exporting) -> dict[str, Any]:
    """The 360 view (value figures, tier and its reason, attributes), and the rows of every
    record merged into it as they are stored."""
    view = await customer_view(session, exporting.customer_id, interactions=0)
    del view["interactions"], view["identities"]  # their own sections hold all of them
    customers = _table(Customer)
    records = await session.execute(
        select(customers).where(customers.c.id.in_(exporting.ids)).order_by(customers.c.id)
    )
    return {**view, "records": _rows(records)}


def of_messages(model: type[Any], *order: str) -> ExportStep:
    """Rows kept per message (keyed by `message_id`): those of the customer's messages."""
    table, messages = _table(model), _table(Message)
    by = [table.c[name] for name in order]

    async def section(session: AsyncSession, exporting: Exporting) -> list[dict[str, Any]]:
        query = (
            select(table)
            .join(messages, messages.c.id == table.c.message_id)
            .where(messages.c.customer_id.in_(exporting.ids))
            .order_by(*by)
        )
        return _rows(await session.execute(query))

    return section


_awaiting_bot = of_messages(AwaitingBot, "message_id")


# --- the registry -------------------------------------------------------------------------------

OWNED_TABLES: Final[Sequence[OwnedTable]] = (
    OwnedTable(
        _table(Customer),
        _fold_customer,
        _profile,
        "the survivor takes the other's fields and value; the other stays as a tombstone",
        section="customer",
    ),
    OwnedTable(
        _table(CustomerTier),
        _kept,
        rows_of(CustomerTier),
        "derived: the next recompute ranks the survivor with the added value",
    ),
    OwnedTable(_table(Identity), moved(Identity), rows_of(Identity, "kind", "value"), "moved"),
    OwnedTable(
        _table(Interaction),
        moved(Interaction),
        rows_of(Interaction, "occurred_at", "id"),
        "moved: one timeline",
    ),
    OwnedTable(
        _table(AuditEntry),
        _kept,
        rows_of(AuditEntry, "id"),
        "history stays where it was written; an export reads the tombstone's too",
    ),
    OwnedTable(
        _table(ConsentEvent),
        _kept,
        rows_of(ConsentEvent, "id"),
        "append-only: the other's ledger stays; the survivor's merge events cite it",
    ),
    OwnedTable(
        _table(ConsentState),
        _merge_consents,
        rows_of(ConsentState),
        "the most restrictive state wins, as new events on the survivor; the other's derived rows"
        " go (its events stay, and an export reads them)",
    ),
    OwnedTable(
        _table(Preferences),
        _merge_preferences,
        rows_of(Preferences),
        "the survivor's choices win; the other's fill the gaps",
    ),
    OwnedTable(
        _table(ContactMade),
        moved(ContactMade),
        rows_of(ContactMade, "at", "id"),
        "moved: frequency caps count every contact with the person",
    ),
    OwnedTable(
        _table(Undeliverable),
        moved_unless_held(Undeliverable, "channel", "address"),
        rows_of(Undeliverable),
        "moved: an address that bounced bounces for the survivor too",
    ),
    OwnedTable(
        _table(Conversation),
        _merge_conversations,
        rows_of(Conversation, "id"),
        "moved; two open ones become one, keeping the hand-off and the place in the queue",
    ),
    OwnedTable(_table(Message), moved(Message), rows_of(Message, "id"), "moved: one transcript"),
    OwnedTable(
        _table(AwaitingBot),
        _kept,
        _awaiting_bot,
        "follows its message",
    ),
    OwnedTable(
        _table(LabelledExample),
        _kept,
        of_messages(LabelledExample, "id"),
        "follows its message: the customer's words and the option they picked",
    ),
    OwnedTable(
        _table(OutboxEntry),
        _kept,
        of_messages(OutboxEntry, "message_id"),
        "follows its message: the delivery state of what we sent",
    ),
    OwnedTable(
        _table(DeliveryAttempt),
        _kept,
        of_messages(DeliveryAttempt, "id"),
        "follows its message: every call to a provider",
    ),
)
