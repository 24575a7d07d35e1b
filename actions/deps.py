"""The one place actions get their dependencies from.

rasa-sdk creates an action with no arguments, so an action cannot be handed a database or a
secret. Instead the composition root (the app, or `sastre actions`) calls `configure` once at
start-up, and actions call `deps()` and `unit_of_work()`; nothing else in `actions/` is global.

`unit_of_work` is how an action touches the database. When the embedded dialog runs an action
in-process it sets `current_session` to the inbound message's session, so the action's writes
commit or roll back with that message; when the action server runs it, there is no such session
and `unit_of_work` opens (and commits) its own transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wording import N_, pick_language, translate

__all__ = [
    "ActionDeps",
    "ActionsNotConfigured",
    "TrackerFacts",
    "configure",
    "current_session",
    "deps",
    "spoken_appointment",
    "spoken_date",
    "unit_of_work",
]


@dataclass(frozen=True)
class ActionDeps:
    sessionmaker: async_sessionmaker[AsyncSession]
    default_region: str
    default_timezone: str
    public_url: str
    secret: bytes = field(repr=False)
    brand: str


class ActionsNotConfigured(RuntimeError):
    pass


_deps: ActionDeps | None = None

current_session: ContextVar[AsyncSession | None] = ContextVar(
    "sastre_actions_session", default=None
)


def configure(value: ActionDeps | None) -> None:
    """Set what the actions use; None forgets it (tests)."""
    global _deps
    _deps = value


def deps() -> ActionDeps:
    if _deps is None:
        raise ActionsNotConfigured(
            "actions.deps.configure(ActionDeps(...)) must be called before running an action"
        )
    return _deps


@asynccontextmanager
async def unit_of_work() -> AsyncIterator[AsyncSession]:
    """The caller's session if the embedded dialog set one, else a transaction of our own."""
    session = current_session.get()
    if session is not None:
        yield session
        return
    async with deps().sessionmaker.begin() as own:
        yield own


@dataclass(frozen=True, slots=True)
class TrackerFacts:
    """What the actions read from a rasa-sdk tracker, in plain types.

    The tracker's `sender_id` is the Sastre customer id. Entities win over slots: the latest
    message says what the customer means now.
    """

    customer_id: int
    text: str
    intent: str | None
    entities: tuple[Mapping[str, Any], ...]
    slots: Mapping[str, Any]
    # What Sastre itself attached to the message when it asked a Rasa server (`dialog.rasa`):
    # not the customer's to set.
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, tracker: Any) -> TrackerFacts:
        latest: Mapping[str, Any] = tracker.latest_message or {}
        metadata = latest.get("metadata")
        intent = latest.get("intent") or {}
        return cls(
            customer_id=int(tracker.sender_id),
            text=str(latest.get("text") or ""),
            intent=intent.get("name") if isinstance(intent, Mapping) else None,
            entities=tuple(e for e in latest.get("entities") or () if isinstance(e, Mapping)),
            slots=dict(tracker.slots or {}),
            metadata=dict(metadata)
            if isinstance(metadata := latest.get("metadata"), Mapping)
            else {},
        )

    def entity(self, name: str) -> str | None:
        for entity in self.entities:
            if entity.get("entity") == name and entity.get("value") not in (None, ""):
                return str(entity["value"])
        return None

    def slot(self, name: str) -> str | None:
        value = self.slots.get(name)
        return None if value in (None, "") else str(value)

    def entity_or_slot(self, name: str) -> str | None:
        return self.entity(name) or self.slot(name)

    def language(self, fallback: str | None = None) -> str:
        """The conversation's language, else `fallback` (the customer's), if there is a
        catalogue for it; else the catalogue's fallback (wording.pick_language)."""
        return pick_language(self.slot("language"), fallback)

    def timezone(self, fallback: str | None, default: str) -> ZoneInfo:
        for candidate in (self.slot("timezone"), fallback, default):
            if candidate:
                try:
                    return ZoneInfo(candidate)
                except (ZoneInfoNotFoundError, ValueError):
                    continue
        return ZoneInfo("UTC")


# Dates in the customer's language, without depending on the process's locale: the names from
# Babel's CLDR data, the phrase around them from the catalogue.
def _names(moment: datetime, language: str) -> tuple[str, str]:
    return (
        format_date(moment, "EEEE", locale=language),
        format_date(moment, "LLLL", locale=language),  # the month's standalone name
    )


def spoken_date(moment: datetime, language: str) -> str:
    """'24 de marzo de 2025' / '24 March 2025'."""
    _, month = _names(moment, language)
    return translate(language, "date.long", day=moment.day, month=month, year=moment.year)


def spoken_appointment(moment: datetime, language: str, *, with_month: bool) -> str:
    """'el martes 24 a las 10:00' / 'on Tuesday 24 at 10:00' (the month when it is not soon)."""
    weekday, month = _names(moment, language)
    key = N_("date.appointment_with_month") if with_month else N_("date.appointment")
    clock = f"{moment.hour:02d}:{moment.minute:02d}"
    return translate(language, key, weekday=weekday, day=moment.day, month=month, time=clock)
