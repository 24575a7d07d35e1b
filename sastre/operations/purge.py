"""Purge web chat leads that are nobody: a cookie, a few old messages, nothing else.

A web chat visitor's first message makes a lead. Most never come back, and one client could make
thousands (the chat limits new leads per address, but not to zero). A lead is purged when all of
this holds, so that nothing anybody could want is lost:

- it is a lead (never matched to a system of record), not merged, and older than the idle time;
- every identity it has is an unverified web chat visitor id: no e-mail, phone, external id;
- nothing happened for the idle time: no message in or out, no timeline entry, and its
  timeline holds only messages (a staff note, a call-back or a purchase keeps it);
- no consent statement, preference, contact made or bounce about it (the consent ledger is
  evidence and append-only), no record merged into it, no conversation waiting for a person.

What is deleted, table by table, is `TREATMENT`, which names every table in `OWNED_TABLES`: a
table added there later must be given a treatment here (a test fails until it is).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final, Literal

from sqlalchemy import ColumnElement, Table, and_, delete, exists, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.models import Customer, CustomerStatus, Identity, IdentityKind, Interaction
from crm_core.models import InteractionKind as Kind
from crm_core.sqltypes import utcnow
from dialog.models import Conversation, ConversationState, Message
from sastre.db import SessionMaker
from sastre.operations.owned import OWNED_TABLES
from sastre.operations.unit import unit_of_work

__all__ = ["BATCH", "TREATMENT", "do_purge_idle_leads"]

Treatment = Literal["deleted", "keeps the lead", "kept", "follows its message"]

# How a purge treats each table that holds rows about a customer (see OWNED_TABLES).
TREATMENT: Final[Mapping[str, Treatment]] = {
    "customers": "deleted",
    "customer_tiers": "deleted",
    "identities": "deleted",
    "interactions": "deleted",  # only message entries, by the rule above
    "audit_log": "kept",  # history, the purge's own entry included; no key to the customer
    "consent_events": "keeps the lead",
    "consent_state": "keeps the lead",
    "contact_preferences": "keeps the lead",
    "contacts_made": "keeps the lead",
    "undeliverable_addresses": "keeps the lead",
    "conversations": "deleted",
    "messages": "deleted",
    "awaiting_bot": "follows its message",  # deleted with it (ON DELETE CASCADE)
    "labelled_examples": "follows its message",  # the lead's own words: deleted with them
    "outbox": "follows its message",  # deleted with it (ON DELETE CASCADE)
    "delivery_attempts": "follows its message",  # deleted with it (ON DELETE CASCADE)
}
# Leads purged per transaction: SQLite's write lock is held for one batch at a time.
BATCH: Final = 500
# A message's delivery entries are part of the message.
_MESSAGES_ONLY: Final = (Kind.MESSAGE_IN.value, Kind.MESSAGE_OUT.value, Kind.DELIVERY.value)
_WITH_A_PERSON: Final = (ConversationState.QUEUED.value, ConversationState.ASSIGNED.value)


def _tables(treatment: Treatment) -> list[Table]:
    return [owned.table for owned in OWNED_TABLES if TREATMENT.get(owned.name) == treatment]


def _idle_leads(cutoff: datetime) -> ColumnElement[bool]:
    """The condition on `Customer` for a lead that may be purged."""
    merged = Customer.__table__.alias("merged")
    anything_else = or_(Identity.kind != IdentityKind.WEBCHAT.value, Identity.verified)
    return and_(
        Customer.status == CustomerStatus.LEAD.value,
        Customer.merged_into_id.is_(None),
        Customer.created_at < cutoff,
        exists().where(Identity.customer_id == Customer.id),
        not_(exists().where(Identity.customer_id == Customer.id, anything_else)),
        not_(exists().where(merged.c.merged_into_id == Customer.id)),
        not_(exists().where(Message.customer_id == Customer.id, Message.created_at >= cutoff)),
        not_(
            exists().where(
                Interaction.customer_id == Customer.id,
                or_(Interaction.kind.not_in(_MESSAGES_ONLY), Interaction.occurred_at >= cutoff),
            )
        ),
        not_(
            exists().where(
                Conversation.customer_id == Customer.id, Conversation.state.in_(_WITH_A_PERSON)
            )
        ),
        *(
            not_(exists().where(table.c.customer_id == Customer.id))
            for table in _tables("keeps the lead")
        ),
    )


async def _delete(session: AsyncSession, ids: list[int]) -> None:
    # Children first; customers last. Owned tables come parents-first, so walk them backwards.
    for table in reversed(_tables("deleted")):
        if table.name != "customers":
            await session.execute(delete(table).where(table.c.customer_id.in_(ids)))
    await session.execute(delete(Customer).where(Customer.id.in_(ids)))


async def do_purge_idle_leads(
    sessionmaker: SessionMaker,
    idle_for: timedelta,
    *,
    actor: str,
    now: datetime | None = None,
    batch: int = BATCH,
) -> list[int]:
    """Delete every web chat lead idle for `idle_for` (see the module's rule); their ids.

    One transaction per `batch` leads, each with its audit entry; each batch checks the rule
    again inside its transaction (and on PostgreSQL locks the rows), so a lead that writes
    meanwhile is kept."""
    cutoff = (now or utcnow()) - idle_for
    purged: list[int] = []
    while True:
        async with unit_of_work(sessionmaker, actor) as unit:
            ids = list(
                await unit.session.scalars(
                    select(Customer.id)
                    .where(_idle_leads(cutoff))
                    .order_by(Customer.id)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            )
            if not ids:
                return purged
            await _delete(unit.session, ids)
            unit.audit("lead.purge", None, {"customers": ids, "idle_for_days": idle_for.days})
            unit.publish("leads.purged", None, customers=ids)
        purged.extend(ids)
