"""The contact policy: may the company contact this customer, on which channel, and when?

`decide` is the only gate for company-initiated contact. It is a pure function of the data the
caller loads (`ContactState`), the purpose, the requested channel (or none, to let the policy
choose), the moment `at` and the `PolicyRules`; it does no I/O and reads no clock. It returns a
`Decision`: the outcome, the channel, the reason, when to try again, one human sentence, and the
verdict on every channel it considered (so whoever asked can say why each other channel was not
used).

The rules, judged per channel in this order; the first one that fails gives the verdict:

1. **unreachable** (DENY) — we hold no address for the channel (`reachable`).
2. **undeliverable** (DENY) — every address we hold on the channel hard-bounced or is a number
   the provider cannot reach (`consent.snapshot.undeliverable_channels`).
3. **revoked** (DENY) — the customer revoked the channel itself: `consents[(ch, SERVICE,
   GENERAL)]` is REVOKED (an SMS STOP). Service messages need no opt-in, but this stops every
   message on the channel, service and marketing alike. Service consent is per channel only;
   topics belong to marketing.
4. **tier_suppressed** (DENY, marketing) — BZ customers never receive marketing (served, not
   encouraged: docs/value-tiers.md). They still receive service messages.
5. **complaint_cooldown** (DENY, marketing) — while `at` is less than `complaint_cooldown` after
   `last_complaint_at`. A complaint dated after `at` also suppresses. It is a DENY, not a DEFER:
   a complaint is not a scheduling matter, the campaign drops the customer.
6. **marketing consent** (DENY, marketing) — the most specific row wins: the row for the topic
   if there is one, else the GENERAL row (topic ``""``, every topic). No row: **no_consent**;
   PENDING (double opt-in not confirmed): **pending_confirmation**; REVOKED: **revoked**.
   The caller's ledger must make a general revoke supersede older topic grants (this function
   trusts the rows it is given).
7. **quiet_hours** (DEFER, both purposes) — contact is allowed only at instants whose *local wall
   time* in the customer's time zone is inside the `ContactHours` of their location *and* inside
   the customer's own contact window (if any); the rest of the day is quiet hours. `defer_until`
   is the first allowed instant.
8. **frequency_cap** (DEFER, marketing) — at most `max_per_day_per_channel` and
   `max_per_week_per_channel` marketing contacts on the channel, and `max_per_day` and
   `max_per_week` on all channels together, in the rolling 24 hours and 7 days before `at`.

Everything else is **ALLOW**.

Choices, documented because they are choices:

* **Spans are half-open**, ``[start, end)``: with contact hours 08:00-21:00, 08:00 is allowed
  and 21:00 is not; a window 09:00-17:00 ends before 17:00.
* **Contact hours** never cross midnight: ``start < end``, except that an ``end`` of 00:00 means
  the midnight that ends the day (08:00-00:00 allows the evening; 00:00-00:00 allows the whole
  day, "no quiet hours").
* **Contact windows** may cross midnight: ``end <= start`` means the window runs from ``start``
  on one of ``days`` to ``end`` on the next day (22:00-02:00 with days={Friday} allows Friday
  22:00 to Saturday 02:00); ``start == end`` means 24 hours from ``start``. ``days`` names the day
  on which the window starts.
* **Daylight saving time** — every check is on local wall time (zoneinfo). A wall time skipped by a
  spring-forward jump does not exist: a window starting inside the gap opens at the jump (a 02:10
  window on Lord Howe's 02:00→02:30 night opens at 02:30). A wall time repeated by a fall-back
  jump is allowed both times it occurs. An opening at 08:00 is 08:00 local on both sides of a
  change.
* **No opening at all** — when the customer's window never meets the contact hours (22:00-02:00
  against 08:00-21:00) or names no days, there is nothing to defer to: the verdict is **DENY
  quiet_hours** (not no_reachable_channel, which is about the set of channels), and the
  explanation says the window never opens.
* **Counting for frequency caps** — a marketing contact counts from the moment it was made until
  exactly 24 hours (7 days) later. A contact dated after `at` (clock skew, or queued in the same
  batch) counts as well. So counts only ever fall as time passes, and the moment a cap clears is
  exact: when the `limit`-th most recent contact leaves the period. A cap of 0 can never clear:
  **DENY frequency_cap**.
* **One deferral, one time** — when contact must wait, `defer_until` is the first instant at
  which *both* the contact hours/window and every frequency cap allow it (cap expiry, then the next
  opening, checked again), so a caller that defers a message can store it once, with a time at
  which it will really go. The reason names why not *now*: quiet_hours when `at` itself is
  outside the allowed hours or window, else frequency_cap.
* **Channel choice** — with a `channel`, only that channel is judged. Without one, the customer's
  `preferred_channels` come first, then `rules.channel_order` (no repeats), and every one of them
  is judged so the verdicts say why each other channel was not used. The first ALLOW wins (the
  most preferred allowed channel); otherwise the DEFER with the earliest `defer_until` (ties: the
  more preferred); otherwise DENY **no_reachable_channel** with channel None, or, when exactly one
  channel was considered, that channel and its own reason.
* **Time** — `at` and every datetime in the state must be timezone-aware (ValueError otherwise);
  `defer_until` is returned in UTC.
* **Contact hours by location** (`contact_hours_for`) — 08:00-21:00 by default (US TCPA),
  08:00-20:00 in Florida, Oklahoma and Washington. Overrides keyed "CC" or "CC-RR" win over the
  defaults: an override for the exact region is used as it is; a country-wide one replaces the
  country default but still meets a built-in state rule (both apply, so the stricter span of the
  two).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from consent.hours import MIDNIGHT as _MIDNIGHT
from consent.hours import ContactHours
from consent.hours import hm as _hm
from consent.hours import require_naive as _require_naive
from consent.types import GENERAL, Channel, ConsentStatus, Purpose
from crm_core.models import Tier

__all__ = [
    "DEFAULT_CONTACT_HOURS",
    "DEFAULT_RULES",
    "ChannelVerdict",
    "ContactHours",
    "ContactState",
    "ContactWindow",
    "Decision",
    "Outcome",
    "PolicyRules",
    "Reason",
    "contact_hours_for",
    "decide",
    "next_opening",
]

_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# How far ahead `next_opening` looks. A weekly window opens within 8 days; the margin covers a
# window whose only wall times one week are swallowed by a daylight-saving jump.
_SEARCH_DAYS = 16
# Time-zone offsets are sampled this often to find daylight-saving jumps (months apart in practice).
_SAMPLE = timedelta(hours=6)


# --- small helpers ------------------------------------------------------------------------------


def _require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value!r}")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _clock(local: datetime) -> str:
    return _hm(local.time())


def _words(reason: Reason) -> str:
    return reason.value.replace("_", " ")


def _day_names(days: frozenset[int]) -> str:
    if len(days) == 7:
        return "daily"
    return ", ".join(_WEEKDAYS[day] for day in sorted(days))


def _describe_window(window: ContactWindow) -> str:
    return f"{_day_names(window.days)} {_hm(window.start)}-{_hm(window.end)}"


def _describe_quiet(hours: ContactHours) -> str:
    # The quiet span itself, the time when contact is NOT allowed: 21:00-08:00.
    return f"{_hm(hours.end)}-{_hm(hours.start)}"


def _duration(value: timedelta) -> str:
    if value % _DAY == timedelta(0):
        return f"{value // _DAY}-day"
    return str(value)


# --- the inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactWindow:
    """The customer's own window, in their local time."""

    days: frozenset[int]  # 0 = Monday ... 6 = Sunday; the day on which the window STARTS
    start: time
    end: time  # end <= start means the window crosses midnight (e.g. 22:00-02:00)

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", frozenset(self.days))
        if not self.days <= frozenset(range(7)):
            raise ValueError(f"window days must be 0 (Monday) to 6 (Sunday), got {self.days}")
        _require_naive(self.start, "window start")
        _require_naive(self.end, "window end")


DEFAULT_CONTACT_HOURS = ContactHours(time(8), time(21))  # TCPA, 47 CFR 64.1200(c)(1)
_STATE_CONTACT_HOURS: Mapping[str, ContactHours] = {
    "US-FL": ContactHours(time(8), time(20)),
    "US-OK": ContactHours(time(8), time(20)),
    "US-WA": ContactHours(time(8), time(20)),
}


@dataclass(frozen=True, slots=True)
class ContactState:
    """Everything `decide` needs about one customer, loaded by the caller."""

    customer_id: int
    tier: Tier
    timezone: str  # IANA, already resolved by the caller
    contact_hours: ContactHours  # already resolved for the customer's location
    window: ContactWindow | None  # None = any time within the contact hours
    preferred_channels: tuple[Channel, ...]  # most preferred first; may be empty
    reachable: frozenset[Channel]  # channels we hold an address for
    undeliverable: frozenset[Channel]  # every address on it bounced / cannot be reached
    # (channel, purpose, topic); topic GENERAL == "" covers all topics
    consents: Mapping[tuple[Channel, Purpose, str], ConsentStatus]
    last_complaint_at: datetime | None  # aware UTC
    recent_marketing: tuple[tuple[Channel, datetime], ...]  # contacts already made, any age


@dataclass(frozen=True, slots=True)
class PolicyRules:
    complaint_cooldown: timedelta = timedelta(days=30)
    max_per_day_per_channel: int = 1
    max_per_week_per_channel: int = 2
    max_per_day: int = 1  # overall, all channels
    max_per_week: int = 2  # overall
    # The fallback after the customer's own preferences.
    channel_order: tuple[Channel, ...] = (
        Channel.EMAIL,
        Channel.SMS,
        Channel.TELEGRAM,
        Channel.WEBCHAT,
        Channel.VOICE,
    )

    def __post_init__(self) -> None:
        caps = (
            self.max_per_day_per_channel,
            self.max_per_week_per_channel,
            self.max_per_day,
            self.max_per_week,
        )
        if min(caps) < 0:
            raise ValueError(f"frequency caps cannot be negative: {caps}")
        if self.complaint_cooldown < timedelta(0):
            raise ValueError(f"complaint cooldown cannot be negative: {self.complaint_cooldown}")


DEFAULT_RULES = PolicyRules()


# --- the outputs --------------------------------------------------------------------------------


class Outcome(StrEnum):
    ALLOW = "allow"
    DEFER = "defer"
    DENY = "deny"


class Reason(StrEnum):
    OK = "ok"
    NO_CONSENT = "no_consent"
    REVOKED = "revoked"
    PENDING_CONFIRMATION = "pending_confirmation"
    QUIET_HOURS = "quiet_hours"
    FREQUENCY_CAP = "frequency_cap"
    TIER_SUPPRESSED = "tier_suppressed"
    COMPLAINT_COOLDOWN = "complaint_cooldown"
    UNDELIVERABLE = "undeliverable"
    NO_REACHABLE_CHANNEL = "no_reachable_channel"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class ChannelVerdict:
    channel: Channel
    outcome: Outcome
    reason: Reason
    defer_until: datetime | None  # aware UTC, only for DEFER
    explanation: str

    def to_json(self) -> dict[str, object]:
        return {
            "channel": self.channel.value,
            "outcome": self.outcome.value,
            "reason": self.reason.value,
            "defer_until": _iso(self.defer_until),
            "explanation": self.explanation,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    channel: Channel | None
    reason: Reason
    defer_until: datetime | None  # aware UTC, only for DEFER
    explanation: str  # one human sentence
    verdicts: tuple[ChannelVerdict, ...]  # every channel considered, in order

    def to_json(self) -> dict[str, object]:
        return {
            "outcome": self.outcome.value,
            "channel": None if self.channel is None else self.channel.value,
            "reason": self.reason.value,
            "defer_until": _iso(self.defer_until),
            "explanation": self.explanation,
            "verdicts": [verdict.to_json() for verdict in self.verdicts],
        }


# --- wall-clock time ----------------------------------------------------------------------------


def _in_contact_hours(local: datetime, hours: ContactHours) -> bool:
    """Whether a local wall time is inside the span where contact is allowed."""
    moment = local.time()
    return hours.start <= moment and (hours.end == _MIDNIGHT or moment < hours.end)


def _in_window(local: datetime, window: ContactWindow | None) -> bool:
    """Whether a local wall time is inside the customer's own window (no window: always)."""
    if window is None:
        return True
    moment, day = local.time(), local.weekday()
    if window.start < window.end:
        return day in window.days and window.start <= moment < window.end
    # Crossing midnight: the evening part on a listed day, the small hours of the day after.
    evening = day in window.days and moment >= window.start
    small_hours = (day - 1) % 7 in window.days and moment < window.end
    return evening or small_hours


def _is_open(
    instant: datetime, zone: ZoneInfo, hours: ContactHours, window: ContactWindow | None
) -> bool:
    local = instant.astimezone(zone)
    return _in_contact_hours(local, hours) and _in_window(local, window)


def _utcoffset(zone: ZoneInfo, instant: datetime) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _jump_instant(zone: ZoneInfo, before: int, after: int) -> datetime:
    """The instant a zone's offset changes between two POSIX seconds (tzdb jumps are on seconds)."""
    offset = _utcoffset(zone, datetime.fromtimestamp(before, UTC))
    while after - before > 1:
        middle = (before + after) // 2
        if _utcoffset(zone, datetime.fromtimestamp(middle, UTC)) == offset:
            before = middle
        else:
            after = middle
    return datetime.fromtimestamp(after, UTC)


def _jumps(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Every daylight-saving (or other) offset change of `zone` between two instants."""
    found = []
    left = int(start.timestamp())
    step = int(_SAMPLE.total_seconds())
    left_offset = _utcoffset(zone, datetime.fromtimestamp(left, UTC))
    while left < end.timestamp():
        right = left + step
        right_offset = _utcoffset(zone, datetime.fromtimestamp(right, UTC))
        if right_offset != left_offset:
            found.append(_jump_instant(zone, left, right))
        left, left_offset = right, right_offset
    return found


def _wall_starts(
    day: date, zone: ZoneInfo, hours: ContactHours, window: ContactWindow | None
) -> Iterator[datetime]:
    """The instants at which an allowed span may begin on a local day, by its wall clock."""
    starts = {hours.start} if window is None else {hours.start, window.start}
    for start in sorted(starts):
        wall = datetime.combine(day, start)
        for fold in (0, 1):  # both readings of a repeated wall time; a skipped one lands nearby
            yield wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)


def next_opening(
    at: datetime, tz: str, hours: ContactHours, window: ContactWindow | None
) -> datetime | None:
    """The first instant at or after `at` when contact is allowed, in UTC (None if never).

    An allowed span begins either where the local wall clock reaches a start time (the contact
    hours' or the window's), or at a daylight-saving jump that lands the clock inside a span; so
    those are the only candidates to test.
    """
    _require_aware(at, "at")
    zone = ZoneInfo(tz)
    start = at.astimezone(UTC)
    if _is_open(start, zone, hours, window):
        return start
    if window is not None and not window.days:
        return None
    first_day = start.astimezone(zone).date()
    best: datetime | None = None
    for number in range(_SEARCH_DAYS):
        day = first_day + number * _DAY
        if best is not None and best.astimezone(zone).date() < day - _DAY:
            break  # later days only hold later instants
        for candidate in _wall_starts(day, zone, hours, window):
            if candidate > start and _is_open(candidate, zone, hours, window):
                best = candidate if best is None else min(best, candidate)
    # Only a jump before the best wall-clock start can open earlier.
    for jump in _jumps(zone, start, best or start + _SEARCH_DAYS * _DAY):
        if jump > start and _is_open(jump, zone, hours, window):
            best = jump if best is None else min(best, jump)
    return best


# --- contact hours by location ------------------------------------------------------------------


def _offset_of(value: time) -> timedelta:
    return timedelta(
        hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond
    )


def _end_offset(hours: ContactHours) -> timedelta:
    return _DAY if hours.end == _MIDNIGHT else _offset_of(hours.end)


def _intersect(first: ContactHours, second: ContactHours, what: str) -> ContactHours:
    start = max(first.start, second.start)
    end = first.end if _end_offset(first) <= _end_offset(second) else second.end
    if end != _MIDNIGHT and end <= start:
        raise ValueError(f"contact hours for {what} do not overlap: {first} and {second}")
    return ContactHours(start, end)


def contact_hours_for(
    country: str | None,
    region: str | None,
    overrides: Mapping[str, ContactHours] | None = None,
) -> ContactHours:
    """The span in which company-initiated contact is allowed at a location.

    Default 08:00-21:00 (US TCPA); Florida, Oklahoma and Washington 08:00-20:00. `region` is the
    subdivision code ("FL") or the full ISO 3166-2 code ("US-FL"). `overrides` maps "CC" or
    "CC-RR" (any case) to contact hours and wins over the defaults: an override for the exact
    region is used as it is; a country-wide override replaces the country default but is
    intersected with a built-in state rule, because both apply (the strictest window that
    applies: docs/permission-marketing.md). Raises ValueError when those two do not overlap. A
    full code ("US-FL") names its own country, whatever `country` says.
    """
    chosen = {key.strip().upper(): hours for key, hours in (overrides or {}).items()}
    country_code = (country or "").strip().upper()
    region_code = (region or "").strip().upper()
    if "-" in region_code:
        # A full ISO 3166-2 code names its own country, the more specific fact.
        country_code, _, region_code = region_code.partition("-")
    region_key = f"{country_code}-{region_code}" if country_code and region_code else ""
    if region_key in chosen:
        return chosen[region_key]
    country_hours = chosen.get(country_code, DEFAULT_CONTACT_HOURS)
    statutory = _STATE_CONTACT_HOURS.get(region_key)
    if statutory is None:
        return country_hours
    return _intersect(country_hours, statutory, f"{country_code} and {region_key}")


# --- the checks, one per rule -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    """One call of `decide`: its inputs, normalised, and a memo of computed openings."""

    state: ContactState
    purpose: Purpose
    topic: str
    at: datetime  # UTC
    zone: ZoneInfo
    rules: PolicyRules
    openings: dict[datetime, datetime | None] = field(default_factory=dict)

    @property
    def marketing(self) -> bool:
        return self.purpose is Purpose.MARKETING

    @property
    def local(self) -> datetime:
        return self.at.astimezone(self.zone)

    def opening(self, start: datetime) -> datetime | None:
        if start not in self.openings:
            state = self.state
            self.openings[start] = next_opening(
                start, state.timezone, state.contact_hours, state.window
            )
        return self.openings[start]

    def when(self, instant: datetime) -> str:
        """An instant as the customer reads it: "08:00 on 2026-11-23"."""
        local = instant.astimezone(self.zone)
        return f"{_clock(local)} on {local.date().isoformat()}"


def _deny(channel: Channel, reason: Reason, explanation: str) -> ChannelVerdict:
    return ChannelVerdict(channel, Outcome.DENY, reason, None, f"denied: {explanation}")


def _defer(channel: Channel, reason: Reason, until: datetime, explanation: str) -> ChannelVerdict:
    return ChannelVerdict(channel, Outcome.DEFER, reason, until, f"deferred: {explanation}")


def _check_reachable(ctx: _Context, channel: Channel) -> ChannelVerdict | None:
    if channel in ctx.state.reachable:
        return None
    return _deny(channel, Reason.UNREACHABLE, f"we hold no {channel} address for the customer")


def _check_deliverable(ctx: _Context, channel: Channel) -> ChannelVerdict | None:
    if channel not in ctx.state.undeliverable:
        return None
    return _deny(
        channel,
        Reason.UNDELIVERABLE,
        f"every {channel} address of the customer is undeliverable (hard bounce or invalid number)",
    )


def _check_channel_revoked(ctx: _Context, channel: Channel) -> ChannelVerdict | None:
    if ctx.state.consents.get((channel, Purpose.SERVICE, GENERAL)) is not ConsentStatus.REVOKED:
        return None
    return _deny(
        channel,
        Reason.REVOKED,
        f"the customer revoked every {channel} message (service included), e.g. by STOP",
    )


def _check_tier(ctx: _Context, channel: Channel) -> ChannelVerdict | None:
    if not ctx.marketing or ctx.state.tier is not Tier.BZ:
        return None
    return _deny(channel, Reason.TIER_SUPPRESSED, "BZ customers are never sent marketing")


def _check_complaint(ctx: _Context, channel: Channel) -> ChannelVerdict | None:
    complained = ctx.state.last_complaint_at
    if not ctx.marketing or complained is None:
        return None
    until = complained + ctx.rules.complaint_cooldown
    if ctx.at >= until:
        return None
    return _deny(
        channel,
        Reason.COMPLAINT_COOLDOWN,
        f"the complaint of {complained.astimezone(UTC):%Y-%m-%d %H:%M} UTC suppresses marketing "
        f"until {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC "
        f"({_duration(ctx.rules.complaint_cooldown)} cooldown)",
    )


def _applicable_consent(
    state: ContactState, channel: Channel, topic: str
) -> tuple[str, ConsentStatus | None]:
    """The marketing consent row that applies: the topic's own row, else the general one."""
    if topic != GENERAL and (channel, Purpose.MARKETING, topic) in state.consents:
        return topic, state.consents[(channel, Purpose.MARKETING, topic)]
    return GENERAL, state.consents.get((channel, Purpose.MARKETING, GENERAL))


def _check_marketing_consent(ctx: _Context, channel: Channel) -> ChannelVerdict | None:
    if not ctx.marketing:
        return None
    row_topic, status = _applicable_consent(ctx.state, channel, ctx.topic)
    about = f"marketing on {channel} (topic {row_topic!r})" if row_topic else f"{channel} marketing"
    if status is ConsentStatus.GRANTED:
        return None
    if status is ConsentStatus.PENDING:
        return _deny(
            channel,
            Reason.PENDING_CONFIRMATION,
            f"consent to {about} is waiting for its double opt-in confirmation",
        )
    if status is ConsentStatus.REVOKED:
        return _deny(channel, Reason.REVOKED, f"the customer revoked {about}")
    wanted = f" on topic {ctx.topic!r}" if ctx.topic else ""
    return _deny(channel, Reason.NO_CONSENT, f"no consent to {channel} marketing{wanted}")


@dataclass(frozen=True, slots=True)
class _Cap:
    label: str  # "2 a week on email"
    limit: int
    period: timedelta
    made: tuple[datetime, ...]  # the contacts that count towards it, most recent first

    def clears_at(self) -> datetime | None:
        """From when the cap allows one more contact (None: it already does, for good).

        Contacts count until `period` after they were made, so the cap holds again once the
        `limit`-th most recent has left the period. Callers handle a limit of 0 first.
        """
        if len(self.made) < self.limit:
            return None
        return self.made[self.limit - 1] + self.period


def _caps(ctx: _Context, channel: Channel) -> tuple[_Cap, ...]:
    rules = ctx.rules
    everywhere = tuple(sorted((when for _, when in ctx.state.recent_marketing), reverse=True))
    here = tuple(
        sorted((when for used, when in ctx.state.recent_marketing if used == channel), reverse=True)
    )
    return (
        _Cap(
            f"{rules.max_per_day_per_channel} a day on {channel}",
            rules.max_per_day_per_channel,
            _DAY,
            here,
        ),
        _Cap(
            f"{rules.max_per_week_per_channel} a week on {channel}",
            rules.max_per_week_per_channel,
            _WEEK,
            here,
        ),
        _Cap(f"{rules.max_per_day} a day on all channels", rules.max_per_day, _DAY, everywhere),
        _Cap(f"{rules.max_per_week} a week on all channels", rules.max_per_week, _WEEK, everywhere),
    )


def _check_timing(ctx: _Context, channel: Channel) -> ChannelVerdict:
    """Contact hours and the customer's window (both purposes), then frequency caps (marketing).

    The result is ALLOW, or a DEFER to the first instant at which all of them allow contact.
    """
    state = ctx.state
    ready, binding = ctx.at, None
    if ctx.marketing:
        caps = _caps(ctx, channel)
        for cap in caps:
            if cap.limit == 0:
                return _deny(
                    channel,
                    Reason.FREQUENCY_CAP,
                    f"the frequency cap allows no marketing ({cap.label})",
                )
            clears = cap.clears_at()
            if clears is not None and clears > ready:
                ready, binding = clears, cap
    inside = _is_open(ctx.at, ctx.zone, state.contact_hours, state.window)
    if inside and binding is None:
        what = (
            f"{ctx.purpose} (topic {ctx.topic!r})" if ctx.marketing and ctx.topic else ctx.purpose
        )
        return ChannelVerdict(
            channel,
            Outcome.ALLOW,
            Reason.OK,
            None,
            f"allowed: {what} on {channel} at {_clock(ctx.local)} in {state.timezone}",
        )
    opening = ctx.opening(ready)
    if opening is None:
        # Contact hours alone open every day, so only the customer's window can leave no time.
        window = state.window
        never = (
            "names no days"
            if window is None or not window.days
            else f"never meets the allowed hours ({_hm(state.contact_hours.start)}-"
            f"{_hm(state.contact_hours.end)})"
        )
        shown = "" if window is None else f" ({_describe_window(window)})"
        return _deny(
            channel,
            Reason.QUIET_HOURS,
            f"the customer's contact window{shown} {never}, so there is no time to contact them",
        )
    cap_too = f" and the frequency cap of {binding.label} is reached" if binding else ""
    if not inside:
        local = ctx.local
        if state.window is None or not _in_contact_hours(local, state.contact_hours):
            quiet = _describe_quiet(state.contact_hours)
            now = f"{_clock(local)} in {state.timezone} is inside quiet hours ({quiet})"
        else:
            now = (
                f"{_clock(local)} on {_WEEKDAYS[local.weekday()]} in {state.timezone} is outside "
                f"the customer's contact window ({_describe_window(state.window)})"
            )
        return _defer(
            channel,
            Reason.QUIET_HOURS,
            opening,
            f"{now}{cap_too}; next opening {ctx.when(opening)}",
        )
    label = binding.label if binding else ""
    return _defer(
        channel,
        Reason.FREQUENCY_CAP,
        opening,
        f"the frequency cap of {label} is reached; next opening {ctx.when(opening)} "
        f"in {state.timezone}",
    )


_Check = Callable[[_Context, Channel], ChannelVerdict | None]

# The rules in the order of the module docstring; the first verdict wins.
_CHECKS: tuple[_Check, ...] = (
    _check_reachable,
    _check_deliverable,
    _check_channel_revoked,
    _check_tier,
    _check_complaint,
    _check_marketing_consent,
)


def _judge(ctx: _Context, channel: Channel) -> ChannelVerdict:
    for check in _CHECKS:
        verdict = check(ctx, channel)
        if verdict is not None:
            return verdict
    return _check_timing(ctx, channel)


# --- choosing a channel -------------------------------------------------------------------------


def _channel_order(state: ContactState, rules: PolicyRules) -> tuple[Channel, ...]:
    return tuple(dict.fromkeys((*state.preferred_channels, *rules.channel_order)))


def _skipped(verdicts: tuple[ChannelVerdict, ...]) -> str:
    if not verdicts:
        return ""
    return "; skipped " + ", ".join(f"{v.channel} ({_words(v.reason)})" for v in verdicts)


def _choose(verdicts: tuple[ChannelVerdict, ...]) -> Decision:
    for index, verdict in enumerate(verdicts):
        if verdict.outcome is Outcome.ALLOW:
            return Decision(
                Outcome.ALLOW,
                verdict.channel,
                Reason.OK,
                None,
                verdict.explanation + _skipped(verdicts[:index]),
                verdicts,
            )
    deferred = [
        (verdict.defer_until, index, verdict)
        for index, verdict in enumerate(verdicts)
        if verdict.outcome is Outcome.DEFER and verdict.defer_until is not None
    ]
    if deferred:
        _, index, verdict = min(deferred, key=lambda item: (item[0], item[1]))
        return Decision(
            Outcome.DEFER,
            verdict.channel,
            verdict.reason,
            verdict.defer_until,
            f"{verdict.explanation}, by {verdict.channel}{_skipped(verdicts[:index])}",
            verdicts,
        )
    if len(verdicts) == 1:
        only = verdicts[0]
        return Decision(Outcome.DENY, only.channel, only.reason, None, only.explanation, verdicts)
    why = "; ".join(f"{v.channel}: {_words(v.reason)}" for v in verdicts) or "none to consider"
    return Decision(
        Outcome.DENY,
        None,
        Reason.NO_REACHABLE_CHANNEL,
        None,
        f"denied: no channel may be used ({why})",
        verdicts,
    )


def _require_aware_state(state: ContactState) -> None:
    if state.last_complaint_at is not None:
        _require_aware(state.last_complaint_at, "last_complaint_at")
    for channel, when in state.recent_marketing:
        _require_aware(when, f"the recent {channel} marketing contact")


def decide(
    state: ContactState,
    purpose: Purpose,
    channel: Channel | None,
    at: datetime,
    *,
    topic: str | None = None,
    rules: PolicyRules = DEFAULT_RULES,
) -> Decision:
    """May we contact this customer for `purpose` at `at`, and on which channel?

    With `channel`, judge only that channel; with None, choose among the customer's preferred
    channels and then `rules.channel_order`. `topic` (None: marketing at large) picks the
    marketing consent row. The rules and their order are in the module docstring. Raises
    ValueError when `at` or a datetime in `state` is naive.
    """
    _require_aware(at, "at")
    _require_aware_state(state)
    ctx = _Context(
        state=state,
        purpose=purpose,
        topic=GENERAL if topic is None else topic,
        at=at.astimezone(UTC),
        zone=ZoneInfo(state.timezone),
        rules=rules,
    )
    if channel is not None:
        verdict = _judge(ctx, channel)
        return Decision(
            verdict.outcome,
            channel,
            verdict.reason,
            verdict.defer_until,
            verdict.explanation,
            (verdict,),
        )
    return _choose(tuple(_judge(ctx, candidate) for candidate in _channel_order(state, rules)))
