"""Customer preferences: channels in order, contact window, language, time zone, topics.

Changing preferences is one named function: the row, an audit entry with the evidence, and, for
topics, the marketing consent events, all in the caller's transaction.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import time
from typing import Any

from phonenumbers import timezone as phone_timezones
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from consent.ledger import DOUBLE_OPT_IN, record_consent
from consent.models import Preferences
from consent.types import Action, Channel, Purpose, Source
from crm_core.customers import get_customer
from crm_core.models import AuditEntry, Customer, Identity, IdentityKind
from crm_core.phones import dialable

__all__ = [
    "ContactPreferences",
    "InvalidPreferences",
    "load_preferences",
    "parse_clock",
    "resolve_timezone",
    "update_preferences",
    "withdraw_everything",
]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class InvalidPreferences(ValueError):
    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ContactPreferences:
    channels: tuple[Channel, ...] = ()
    window_days: frozenset[int] | None = None
    window_start: time | None = None
    window_end: time | None = None
    language: str | None = None
    timezone: str | None = None
    topics: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "channels": [c.value for c in self.channels],
            "window": None
            if self.window_start is None or self.window_end is None
            else {
                "days": [DAYS[d] for d in sorted(self.window_days or range(7))],
                "start": self.window_start.strftime("%H:%M"),
                "end": self.window_end.strftime("%H:%M"),
            },
            "language": self.language,
            "timezone": self.timezone,
            "topics": list(self.topics),
        }


def parse_clock(value: str, field_name: str) -> time:
    try:
        hours, minutes = value.strip().split(":")
        return time(int(hours), int(minutes))
    except (ValueError, OverflowError):  # an hour of twenty digits overflows, it is no ValueError
        raise InvalidPreferences(field_name, f"{value!r} is not a time like 09:30") from None


def _parse_days(values: Any) -> frozenset[int]:
    if not isinstance(values, list):
        raise InvalidPreferences("window.days", "must be a list of days (mon … sun)")
    days = set()
    for value in values:
        name = str(value).strip().lower()[:3]
        if name not in DAYS:
            raise InvalidPreferences("window.days", f"{value!r} is not a day (mon … sun)")
        days.add(DAYS.index(name))
    if not days:
        raise InvalidPreferences("window.days", "name at least one day")
    return frozenset(days)


def _parse_channels(values: Sequence[Any]) -> tuple[Channel, ...]:
    channels: list[Channel] = []
    for value in values:
        try:
            channel = Channel(str(value))
        except ValueError:
            allowed = ", ".join(Channel)
            raise InvalidPreferences("channels", f"{value!r} is not one of {allowed}") from None
        if channel not in channels:
            channels.append(channel)
    return tuple(channels)


def _from_row(row: Preferences | None) -> ContactPreferences:
    if row is None:
        return ContactPreferences()
    return ContactPreferences(
        channels=tuple(Channel(c) for c in row.channels),
        window_days=frozenset(row.window_days) if row.window_days is not None else None,
        window_start=parse_clock(row.window_start, "window.start") if row.window_start else None,
        window_end=parse_clock(row.window_end, "window.end") if row.window_end else None,
        language=row.language,
        timezone=row.timezone,
        topics=tuple(row.topics),
    )


async def load_preferences(session: AsyncSession, customer_id: int) -> ContactPreferences:
    return _from_row(await session.get(Preferences, customer_id))


def apply_changes(current: ContactPreferences, changes: Mapping[str, Any]) -> ContactPreferences:
    """The preferences after `changes` (a JSON-like mapping), or InvalidPreferences. Pure."""
    updated = current
    for key, value in changes.items():
        match key:
            case "channels":
                if not isinstance(value, list):
                    raise InvalidPreferences("channels", "must be a list, most preferred first")
                updated = replace(updated, channels=_parse_channels(value))
            case "window":
                updated = _apply_window(updated, value)
            case "language":
                if value is not None and (not isinstance(value, str) or len(value) != 2):
                    raise InvalidPreferences("language", "must be a two-letter code like es")
                updated = replace(updated, language=value.lower() if value else None)
            case "timezone":
                if value is not None and (
                    not isinstance(value, str) or value not in zoneinfo.available_timezones()
                ):
                    raise InvalidPreferences("timezone", f"{value!r} is not an IANA time zone")
                updated = replace(updated, timezone=value)
            case "topics":
                if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                    raise InvalidPreferences("topics", "must be a list of topic names")
                topics = tuple(dict.fromkeys(t.strip().lower() for t in value if t.strip()))
                updated = replace(updated, topics=topics)
            case _:
                raise InvalidPreferences(key, "is not a preference")
    return updated


def _apply_window(current: ContactPreferences, value: Any) -> ContactPreferences:
    if value is None:
        return replace(current, window_days=None, window_start=None, window_end=None)
    if not isinstance(value, dict):
        raise InvalidPreferences("window", 'must be {"days": [...], "start": "HH:MM", "end": …}')
    start = parse_clock(str(value.get("start", "")), "window.start")
    end = parse_clock(str(value.get("end", "")), "window.end")
    if start == end:
        raise InvalidPreferences("window", "start and end are the same time")
    days = _parse_days(value.get("days", list(DAYS)))
    return replace(current, window_days=days, window_start=start, window_end=end)


async def update_preferences(
    session: AsyncSession,
    customer_id: int,
    changes: Mapping[str, Any],
    *,
    actor: str,
    source: Source,
    evidence: Mapping[str, Any],
    proven_channel: Channel | None = None,
) -> ContactPreferences:
    """Change preferences; topic changes become marketing consent events on the preferred
    channels (a topic switched off is revoked, a topic switched on is granted).

    `proven_channel`: the customer acted through a link delivered on that channel, which proves
    they control the address, so a grant there is confirmed at once (the double opt-in's second
    step is the click itself).
    """
    customer = await get_customer(session, customer_id)
    row = await session.get(Preferences, customer.id)
    before = _from_row(row)
    after = apply_changes(before, changes)
    if row is None:
        row = Preferences(customer_id=customer.id)
        session.add(row)
    row.channels = [c.value for c in after.channels]
    row.window_days = sorted(after.window_days) if after.window_days is not None else None
    row.window_start = after.window_start.strftime("%H:%M") if after.window_start else None
    row.window_end = after.window_end.strftime("%H:%M") if after.window_end else None
    row.language = after.language
    row.timezone = after.timezone
    row.topics = list(after.topics)
    session.add(
        AuditEntry(
            actor=actor,
            action="preferences.update",
            customer_id=customer.id,
            data={
                "source": source.value,
                "before": before.to_json(),
                "after": after.to_json(),
                "evidence": dict(evidence),
            },
        )
    )
    await _record_topic_changes(
        session, customer.id, before, after, actor, source, evidence, proven_channel
    )
    await session.flush()
    return after


async def _record_topic_changes(
    session: AsyncSession,
    customer_id: int,
    before: ContactPreferences,
    after: ContactPreferences,
    actor: str,
    source: Source,
    evidence: Mapping[str, Any],
    proven_channel: Channel | None,
) -> None:
    channels = after.channels or before.channels
    for topic in sorted(set(before.topics) - set(after.topics)):
        for channel in channels:
            await record_consent(
                session,
                customer_id,
                channel,
                Purpose.MARKETING,
                Action.REVOKE,
                source,
                actor=actor,
                evidence=evidence,
                topic=topic,
            )
    for topic in sorted(set(after.topics) - set(before.topics)):
        for channel in channels:
            await record_consent(
                session,
                customer_id,
                channel,
                Purpose.MARKETING,
                Action.GRANT,
                source,
                actor=actor,
                evidence=evidence,
                topic=topic,
            )
            if channel == proven_channel and (channel, Purpose.MARKETING) in DOUBLE_OPT_IN:
                await record_consent(
                    session,
                    customer_id,
                    channel,
                    Purpose.MARKETING,
                    Action.CONFIRM,
                    source,
                    actor=actor,
                    evidence={**evidence, "confirmed_by": "link"},
                    topic=topic,
                )


async def withdraw_everything(
    session: AsyncSession,
    customer_id: int,
    *,
    actor: str,
    source: Source,
    evidence: Mapping[str, Any],
) -> int:
    """One click: revoke marketing on every channel and clear the topics. Service messages
    (answers to the customer's own questions) stay possible. Returns how many events were
    recorded."""
    customer = await get_customer(session, customer_id)
    recorded = 0
    for channel in Channel:
        await record_consent(
            session,
            customer.id,
            channel,
            Purpose.MARKETING,
            Action.REVOKE,
            source,
            actor=actor,
            evidence=evidence,
        )
        recorded += 1
    row = await session.get(Preferences, customer.id)
    if row is not None and row.topics:
        row.topics = []
    session.add(
        AuditEntry(
            actor=actor,
            action="preferences.withdraw_all",
            customer_id=customer.id,
            data={"source": source.value, "evidence": dict(evidence)},
        )
    )
    await session.flush()
    return recorded


async def resolve_timezone(
    session: AsyncSession, customer: Customer, preferences: ContactPreferences, default: str
) -> str:
    """The customer's own choice, then their record, then the one implied by their phone number
    (`phonenumbers.timezone`, when the number has exactly one), then the default."""
    if preferences.timezone:
        return preferences.timezone
    if customer.timezone:
        return customer.timezone
    phones = await session.scalars(
        select(Identity.value).where(
            Identity.customer_id == customer.id, Identity.kind == IdentityKind.PHONE.value
        )
    )
    for phone in phones:
        number = dialable(phone)
        if number is None:  # a short code or a sender id, kept as written: in no time zone
            continue
        zones = phone_timezones.time_zones_for_number(number)
        if len(zones) == 1 and zones[0] in zoneinfo.available_timezones():
            return str(zones[0])
    return default
