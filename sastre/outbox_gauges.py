"""The outbox's backlog as /metrics shows it, read from the database at each scrape (its workers
are other processes).

What is due and what waits for later are apart: a message deferred to the morning (quiet hours)
or waiting out a retry's backoff is not backlog, and counting it as such made the oldest-age
alert fire every night. The age of the backlog is measured from when its oldest message became
due, not from when it was queued: a reply deferred overnight that is sent at 9:00 was never late.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dialog.outbox import PENDING, DeliveryState
from dialog.outbox.models import outbox_table

__all__ = ["OutboxBacklog", "OutboxGauges", "outbox_backlog"]

_o = outbox_table.c


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    due: int  # pending rows due now (queued, or being sent)
    oldest_due_at: datetime | None  # when the longest-waiting of them became due
    deferred: int  # pending rows due later

    def oldest_age(self, now: datetime) -> float:
        """Seconds the oldest due row has waited since it became due (0 with none)."""
        if self.oldest_due_at is None:
            return 0.0
        return max(0.0, (now - self.oldest_due_at).total_seconds())


async def outbox_backlog(session: AsyncSession, now: datetime) -> OutboxBacklog:
    """One indexed read of the pending rows (the outbox's partial index on pending state).

    A row being sent is due, whatever its `due_at` says: a claim moves that to the end of the
    worker's lease (when another may take the row over), which is no later time it waits for."""
    sending = _o.state == DeliveryState.SENDING.value
    waiting = _o.due_at <= now
    due = sending | waiting
    row = (
        await session.execute(
            select(
                func.count().filter(due),
                func.min(_o.due_at).filter(waiting),
                func.count().filter(~due),
            ).where(_o.state.in_([s.value for s in PENDING]))
        )
    ).one()
    return OutboxBacklog(int(row[0]), row[1], int(row[2]))


class OutboxGauges:
    """The backlog's gauges, registered in the application's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.depth = Gauge(
            "sastre_outbox_depth",
            "Outbound messages due now and not sent yet (those deferred to later apart)",
            registry=registry,
        )
        self.oldest_age = Gauge(
            "sastre_outbox_oldest_age_seconds",
            "How long the oldest message due has waited since it became due",
            registry=registry,
        )
        self.deferred = Gauge(
            "sastre_outbox_deferred",
            "Outbound messages waiting for a later time (quiet hours, a retry's backoff)",
            registry=registry,
        )

    def set(self, backlog: OutboxBacklog, now: datetime) -> None:
        self.depth.set(backlog.due)
        self.oldest_age.set(backlog.oldest_age(now))
        self.deferred.set(backlog.deferred)
