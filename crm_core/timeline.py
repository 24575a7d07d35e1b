"""The customer's timeline: every message in or out, call-back, note, purchase and complaint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.models import Interaction, InteractionKind, interactions_table
from crm_core.unnest import as_arrays, insert_unnested, unnested

__all__ = [
    "ENTRY_COLUMNS",
    "TIMELINE_LIMIT",
    "add_interaction",
    "add_interactions",
    "interaction_view",
    "timeline",
]

TIMELINE_LIMIT = 50
# What an entry given to `add_interactions` holds (other keys are not written).
ENTRY_COLUMNS = ("customer_id", "kind", "channel", "summary", "actor", "data", "occurred_at")
_INSERT = insert(interactions_table)
_INSERT_UNNESTED = insert_unnested(interactions_table, ENTRY_COLUMNS)


async def add_interaction(
    session: AsyncSession,
    customer_id: int,
    kind: InteractionKind,
    summary: str,
    *,
    channel: str | None = None,
    actor: str | None = None,
    data: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    flush: bool = True,
) -> Interaction:
    """Add an entry; `flush=False` leaves the write to the transaction's next flush or commit
    (the inbound path adds several per message and needs none of their ids at once)."""
    interaction = Interaction(
        customer_id=customer_id,
        kind=kind.value,
        channel=channel,
        summary=summary,
        actor=actor,
        data=data or {},
    )
    if occurred_at is not None:
        interaction.occurred_at = occurred_at
    session.add(interaction)
    if flush:
        await session.flush()
    return interaction


async def add_interactions(session: AsyncSession, entries: Sequence[Mapping[str, Any]]) -> None:
    """Many entries in one statement (the inbound path's and the outbox worker's batches); as
    arrays on PostgreSQL (`crm_core.unnest`)."""
    if len(entries) > 1 and unnested(session):
        await session.execute(
            _INSERT_UNNESTED, as_arrays(interactions_table, entries, ENTRY_COLUMNS)
        )
    elif entries:
        await session.execute(_INSERT, list(entries) if len(entries) > 1 else entries[0])


async def timeline(
    session: AsyncSession, customer_id: int, *, limit: int = TIMELINE_LIMIT
) -> list[Interaction]:
    """Newest first, in one indexed query (customer_id, occurred_at, id)."""
    rows = await session.scalars(
        select(Interaction)
        .where(Interaction.customer_id == customer_id)
        .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
        .limit(limit)
    )
    return list(rows)


def interaction_view(interaction: Interaction) -> dict[str, Any]:
    return {
        "id": interaction.id,
        "kind": interaction.kind,
        "channel": interaction.channel,
        "summary": interaction.summary,
        "actor": interaction.actor,
        "data": interaction.data,
        "occurred_at": interaction.occurred_at.isoformat(),
    }
