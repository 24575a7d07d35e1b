"""One unit of work for an act: a transaction, its audit entries, and events held until commit.

An act's audit entry is written in the act's own transaction, so the log never tells of a change
that did not happen, nor misses one that did. Its events go out only after the commit: a listener
that reacts (a console refreshing its queue, later the event bus) must never see a change that is
then rolled back. Listeners are a plain list today; a failing one is logged and does not undo
the act, which is already committed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_core.models import AuditEntry
from sastre.db import SessionMaker

__all__ = ["Event", "Listener", "Unit", "listening", "unit_of_work"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, told to listeners after it was committed."""

    name: str  # "customer.merged", ...
    customer_id: int | None
    data: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[Event], Awaitable[None]]
_listeners: list[Listener] = []


@dataclass(slots=True)
class Unit:
    """The open transaction of one act, and who is acting."""

    session: AsyncSession
    actor: str
    events: list[Event] = field(default_factory=list)

    def audit(self, action: str, customer_id: int | None, data: dict[str, Any]) -> None:
        self.session.add(
            AuditEntry(actor=self.actor, action=action, customer_id=customer_id, data=data)
        )

    def publish(self, name: str, customer_id: int | None, **data: Any) -> None:
        """Tell listeners once the unit commits; nothing is told if it rolls back."""
        self.events.append(Event(name, customer_id, data))


@asynccontextmanager
async def unit_of_work(sessionmaker: SessionMaker, actor: str) -> AsyncIterator[Unit]:
    """A writing transaction for one act; its events are delivered after it commits."""
    async with sessionmaker.begin() as session:
        unit = Unit(session, actor)
        yield unit
    for event in unit.events:
        for listener in list(_listeners):
            try:
                await listener(event)
            except Exception:
                log.exception("a listener failed on %s", event.name)


@asynccontextmanager
async def listening(listener: Listener) -> AsyncIterator[None]:
    """Hear every committed act's events while the block runs."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
