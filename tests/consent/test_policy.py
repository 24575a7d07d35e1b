"""The contact policy: one test per rule and reason on hand-made states, the channel choice, the
JSON form, contact hours by location, and hypothesis properties over random states and times."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent.policy import (
    ChannelVerdict,
    ContactHours,
    ContactState,
    ContactWindow,
    Decision,
    Outcome,
    PolicyRules,
    Reason,
    contact_hours_for,
    decide,
    next_opening,
)
from consent.types import GENERAL, Channel, ConsentStatus, Purpose
from crm_core.models import Tier

EMAIL, SMS, TELEGRAM, WEBCHAT, VOICE = (
    Channel.EMAIL,
    Channel.SMS,
    Channel.TELEGRAM,
    Channel.WEBCHAT,
    Channel.VOICE,
)
MARKETING, SERVICE = Purpose.MARKETING, Purpose.SERVICE
GRANTED, PENDING, REVOKED = ConsentStatus.GRANTED, ConsentStatus.PENDING, ConsentStatus.REVOKED
MIDNIGHT = time(0)
ALL_DAY = ContactHours(MIDNIGHT, MIDNIGHT)  # no quiet hours, to look at windows alone
EVERY_DAY = frozenset(range(7))
# Wednesday 6 May 2026, 12:00 in Madrid (CEST, UTC+2).
NOON = datetime(2026, 5, 6, 10, 0, tzinfo=UTC)
# Per-channel caps only, for tests about one channel's caps.
PER_CHANNEL = PolicyRules(max_per_day=10, max_per_week=10)


def make_state(**changes: Any) -> ContactState:
    """A standard customer in Madrid who prefers e-mail and granted marketing on e-mail and SMS."""
    base = ContactState(
        customer_id=7,
        tier=Tier.STANDARD,
        timezone="Europe/Madrid",
        contact_hours=ContactHours(),
        window=None,
        preferred_channels=(EMAIL,),
        reachable=frozenset({EMAIL, SMS}),
        undeliverable=frozenset(),
        consents={(EMAIL, MARKETING, GENERAL): GRANTED, (SMS, MARKETING, GENERAL): GRANTED},
        last_complaint_at=None,
        recent_marketing=(),
    )
    return replace(base, **changes)


def local(tz: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz))


# --- one test per rule --------------------------------------------------------------------------


def test_granted_marketing_is_allowed_on_the_preferred_channel() -> None:
    decision = decide(make_state(), MARKETING, None, NOON)
    assert (decision.outcome, decision.channel, decision.reason) == (
        Outcome.ALLOW,
        EMAIL,
        Reason.OK,
    )
    assert decision.defer_until is None
    assert decision.explanation == "allowed: marketing on email at 12:00 in Europe/Madrid"


@pytest.mark.parametrize("purpose", [MARKETING, SERVICE])
def test_a_channel_without_an_address_is_unreachable(purpose: Purpose) -> None:
    decision = decide(make_state(), purpose, TELEGRAM, NOON)
    assert (decision.outcome, decision.channel, decision.reason) == (
        Outcome.DENY,
        TELEGRAM,
        Reason.UNREACHABLE,
    )
    assert decision.verdicts == (
        ChannelVerdict(
            TELEGRAM,
            Outcome.DENY,
            Reason.UNREACHABLE,
            None,
            "denied: we hold no telegram address for the customer",
        ),
    )


@pytest.mark.parametrize("purpose", [MARKETING, SERVICE])
def test_a_bounced_address_is_undeliverable(purpose: Purpose) -> None:
    decision = decide(make_state(undeliverable=frozenset({EMAIL})), purpose, EMAIL, NOON)
    assert (decision.outcome, decision.reason) == (Outcome.DENY, Reason.UNDELIVERABLE)


def test_service_needs_no_consent() -> None:
    decision = decide(make_state(consents={}), SERVICE, SMS, NOON)
    assert (decision.outcome, decision.reason) == (Outcome.ALLOW, Reason.OK)
    assert decision.explanation == "allowed: service on sms at 12:00 in Europe/Madrid"


@pytest.mark.parametrize("purpose", [MARKETING, SERVICE])
def test_sms_stop_blocks_every_sms_service_included(purpose: Purpose) -> None:
    consents = {(SMS, MARKETING, GENERAL): GRANTED, (SMS, SERVICE, GENERAL): REVOKED}
    decision = decide(make_state(consents=consents), purpose, SMS, NOON)
    assert (decision.outcome, decision.reason) == (Outcome.DENY, Reason.REVOKED)
    assert "service included" in decision.explanation


def test_bz_customers_get_no_marketing_but_are_still_served() -> None:
    state = make_state(tier=Tier.BZ)
    marketing = decide(state, MARKETING, None, NOON)
    assert (marketing.outcome, marketing.reason) == (Outcome.DENY, Reason.NO_REACHABLE_CHANNEL)
    assert {v.reason for v in marketing.verdicts} == {Reason.TIER_SUPPRESSED, Reason.UNREACHABLE}
    assert decide(state, MARKETING, EMAIL, NOON).reason is Reason.TIER_SUPPRESSED
    assert decide(state, SERVICE, EMAIL, NOON).outcome is Outcome.ALLOW


@pytest.mark.parametrize(
    ("complained", "outcome"),
    [
        (NOON - timedelta(days=29, hours=23), Outcome.DENY),
        (NOON + timedelta(hours=1), Outcome.DENY),  # dated after `at`: still a complaint
        (NOON - timedelta(days=30), Outcome.ALLOW),  # the cooldown is over exactly then
        (NOON - timedelta(days=90), Outcome.ALLOW),
    ],
)
def test_a_complaint_suppresses_marketing_for_the_cooldown(
    complained: datetime, outcome: Outcome
) -> None:
    state = make_state(last_complaint_at=complained)
    decision = decide(state, MARKETING, EMAIL, NOON)
    assert decision.outcome is outcome
    if outcome is Outcome.DENY:
        assert decision.reason is Reason.COMPLAINT_COOLDOWN
        assert "30-day cooldown" in decision.explanation
    assert decide(state, SERVICE, EMAIL, NOON).outcome is Outcome.ALLOW


def test_the_complaint_cooldown_is_a_rule() -> None:
    state = make_state(last_complaint_at=NOON - timedelta(days=10))
    rules = PolicyRules(complaint_cooldown=timedelta(days=7))
    assert decide(state, MARKETING, EMAIL, NOON, rules=rules).outcome is Outcome.ALLOW


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (None, Reason.NO_CONSENT),
        (PENDING, Reason.PENDING_CONFIRMATION),
        (REVOKED, Reason.REVOKED),
        (GRANTED, Reason.OK),
    ],
)
def test_marketing_needs_granted_consent(status: ConsentStatus | None, reason: Reason) -> None:
    consents = {} if status is None else {(EMAIL, MARKETING, GENERAL): status}
    decision = decide(make_state(consents=consents), MARKETING, EMAIL, NOON)
    assert decision.reason is reason
    assert decision.outcome is (Outcome.ALLOW if status is GRANTED else Outcome.DENY)


def test_consent_on_another_channel_does_not_count() -> None:
    consents = {(SMS, MARKETING, GENERAL): GRANTED, (EMAIL, SERVICE, GENERAL): GRANTED}
    decision = decide(make_state(consents=consents), MARKETING, EMAIL, NOON)
    assert decision.reason is Reason.NO_CONSENT
    assert decision.explanation == "denied: no consent to email marketing"


@pytest.mark.parametrize(
    ("general", "topical", "reason"),
    [
        (GRANTED, REVOKED, Reason.REVOKED),  # the topic's own row is more specific
        (REVOKED, GRANTED, Reason.OK),
        (GRANTED, PENDING, Reason.PENDING_CONFIRMATION),
        (None, GRANTED, Reason.OK),
        (GRANTED, None, Reason.OK),  # no row for the topic: the general one covers it
        (REVOKED, None, Reason.REVOKED),
        (None, None, Reason.NO_CONSENT),
    ],
)
def test_the_most_specific_consent_row_wins(
    general: ConsentStatus | None, topical: ConsentStatus | None, reason: Reason
) -> None:
    consents: dict[tuple[Channel, Purpose, str], ConsentStatus] = {}
    if general is not None:
        consents[(EMAIL, MARKETING, GENERAL)] = general
    if topical is not None:
        consents[(EMAIL, MARKETING, "shoes")] = topical
    consents[(EMAIL, MARKETING, "books")] = REVOKED  # another topic never matters
    decision = decide(make_state(consents=consents), MARKETING, EMAIL, NOON, topic="shoes")
    assert decision.reason is reason


def test_marketing_at_large_uses_the_general_row_only() -> None:
    consents = {(EMAIL, MARKETING, "shoes"): GRANTED}
    decision = decide(make_state(consents=consents), MARKETING, EMAIL, NOON)
    assert decision.reason is Reason.NO_CONSENT


# --- quiet hours and contact windows ------------------------------------------------------------


def test_late_evening_is_deferred_to_eight_the_next_morning() -> None:
    state = make_state(timezone="America/New_York")
    at = local("America/New_York", 2026, 11, 22, 22, 40)
    decision = decide(state, MARKETING, EMAIL, at)
    assert (decision.outcome, decision.reason) == (Outcome.DEFER, Reason.QUIET_HOURS)
    assert decision.defer_until == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
    assert decision.defer_until.tzinfo is UTC
    assert decision.explanation == (
        "deferred: 22:40 in America/New_York is inside quiet hours (21:00-08:00); "
        "next opening 08:00 on 2026-11-23"
    )


@pytest.mark.parametrize(
    ("hour", "minute", "allowed"),
    [(7, 59, False), (8, 0, True), (20, 59, True), (21, 0, False)],
)
def test_contact_hours_are_half_open(hour: int, minute: int, allowed: bool) -> None:
    at = local("Europe/Madrid", 2026, 5, 6, hour, minute)
    decision = decide(make_state(), SERVICE, EMAIL, at)
    assert (decision.outcome is Outcome.ALLOW) is allowed


def test_early_morning_is_deferred_to_eight_the_same_day() -> None:
    at = local("Europe/Madrid", 2026, 5, 6, 6, 15)
    decision = decide(make_state(), SERVICE, SMS, at)
    assert decision.defer_until == local("Europe/Madrid", 2026, 5, 6, 8, 0)


def test_florida_quiet_hours_start_at_eight_in_the_evening() -> None:
    state = make_state(timezone="America/New_York", contact_hours=contact_hours_for("US", "FL"))
    at = local("America/New_York", 2026, 5, 6, 20, 30)
    decision = decide(state, SERVICE, SMS, at)
    assert decision.reason is Reason.QUIET_HOURS
    assert "(20:00-08:00)" in decision.explanation


def test_outside_the_customers_window_is_deferred_to_its_start() -> None:
    window = ContactWindow(frozenset({0, 1, 2, 3, 4}), time(18), time(20))
    decision = decide(make_state(window=window), MARKETING, EMAIL, NOON)
    assert (decision.outcome, decision.reason) == (Outcome.DEFER, Reason.QUIET_HOURS)
    assert decision.defer_until == local("Europe/Madrid", 2026, 5, 6, 18, 0)
    assert decision.explanation == (
        "deferred: 12:00 on Wed in Europe/Madrid is outside the customer's contact window "
        "(Mon, Tue, Wed, Thu, Fri 18:00-20:00); next opening 18:00 on 2026-05-06"
    )


def test_a_weekend_window_waits_for_saturday() -> None:
    window = ContactWindow(frozenset({5, 6}), time(10), time(13))
    decision = decide(make_state(window=window), SERVICE, EMAIL, NOON)
    assert decision.defer_until == local("Europe/Madrid", 2026, 5, 9, 10, 0)


@pytest.mark.parametrize(
    ("when", "opening"),
    [
        ((2026, 5, 8, 22, 30), None),  # Friday evening: inside
        ((2026, 5, 9, 1, 59), None),  # Saturday small hours: still Friday's window
        ((2026, 5, 9, 2, 0), (2026, 5, 15, 22, 0)),  # the window has ended: next Friday
        ((2026, 5, 7, 23, 0), (2026, 5, 8, 22, 0)),  # Thursday night is not Friday's window
        ((2026, 5, 9, 23, 0), (2026, 5, 15, 22, 0)),  # nor is Saturday night
    ],
)
def test_a_window_crossing_midnight_belongs_to_the_day_it_starts(
    when: tuple[int, ...], opening: tuple[int, ...] | None
) -> None:
    window = ContactWindow(frozenset({4}), time(22), time(2))
    at = local("Europe/Madrid", *when)
    decision = decide(make_state(window=window, contact_hours=ALL_DAY), SERVICE, EMAIL, at)
    if opening is None:
        assert decision.outcome is Outcome.ALLOW
    else:
        assert decision.outcome is Outcome.DEFER
        assert decision.defer_until == local("Europe/Madrid", *opening)


def test_a_window_that_never_meets_the_contact_hours_is_denied() -> None:
    window = ContactWindow(frozenset({4}), time(22), time(2))
    state = make_state(window=window)
    decision = decide(state, MARKETING, EMAIL, NOON)
    assert (decision.outcome, decision.reason, decision.defer_until) == (
        Outcome.DENY,
        Reason.QUIET_HOURS,
        None,
    )
    assert decision.explanation == (
        "denied: the customer's contact window (Fri 22:00-02:00) never meets the allowed hours "
        "(08:00-21:00), so there is no time to contact them"
    )
    assert next_opening(NOON, "Europe/Madrid", ContactHours(), window) is None


def test_a_window_without_days_is_denied() -> None:
    window = ContactWindow(frozenset(), time(9), time(17))
    decision = decide(make_state(window=window), SERVICE, EMAIL, NOON)
    assert (decision.outcome, decision.reason) == (Outcome.DENY, Reason.QUIET_HOURS)
    assert "names no days" in decision.explanation


def test_a_window_with_equal_ends_lasts_24_hours() -> None:
    window = ContactWindow(frozenset({2}), time(12), time(12))  # Wednesday noon to Thursday noon
    state = make_state(window=window, contact_hours=ALL_DAY)
    assert decide(state, SERVICE, EMAIL, local("Europe/Madrid", 2026, 5, 7, 11, 59)).outcome is (
        Outcome.ALLOW
    )
    thursday_noon = decide(state, SERVICE, EMAIL, local("Europe/Madrid", 2026, 5, 7, 12, 0))
    assert thursday_noon.defer_until == local("Europe/Madrid", 2026, 5, 13, 12, 0)


@pytest.mark.parametrize(
    ("at", "opening"),
    [
        # The night before the spring-forward change: 08:00 EDT is 12:00 UTC.
        (datetime(2026, 3, 8, 5, 0, tzinfo=UTC), datetime(2026, 3, 8, 12, 0, tzinfo=UTC)),
        # Inside the repeated hour of the fall-back change: 08:00 EST is 13:00 UTC.
        (datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 1, 13, 0, tzinfo=UTC)),
        (datetime(2026, 11, 1, 6, 30, tzinfo=UTC), datetime(2026, 11, 1, 13, 0, tzinfo=UTC)),
        # The evening before: 21:00 EDT on Saturday.
        (datetime(2026, 11, 1, 1, 0, tzinfo=UTC), datetime(2026, 11, 1, 13, 0, tzinfo=UTC)),
    ],
)
def test_the_opening_is_eight_local_across_daylight_saving_changes(
    at: datetime, opening: datetime
) -> None:
    state = make_state(timezone="America/New_York")
    decision = decide(state, SERVICE, SMS, at)
    assert decision.defer_until == opening
    assert opening.astimezone(ZoneInfo("America/New_York")).time() == time(8)
    assert next_opening(at, "America/New_York", ContactHours(), None) == opening


def test_a_window_starting_in_a_skipped_half_hour_opens_at_the_jump() -> None:
    # Lord Howe Island springs forward half an hour: 02:00 becomes 02:30 (+10:30 to +11:00).
    window = ContactWindow(EVERY_DAY, time(2, 10), time(3))
    at = datetime(2026, 10, 3, 14, 30, tzinfo=UTC)  # 01:00 local
    opening = next_opening(at, "Australia/Lord_Howe", ALL_DAY, window)
    assert opening == datetime(2026, 10, 3, 15, 30, tzinfo=UTC)
    assert opening.astimezone(ZoneInfo("Australia/Lord_Howe")).time() == time(2, 30)


def test_a_repeated_hour_is_inside_the_window_both_times() -> None:
    # New York falls back: 01:00-02:00 happens twice; a window ending 01:30 opens again at 01:00.
    window = ContactWindow(EVERY_DAY, time(0), time(1, 30))
    at = datetime(2026, 11, 1, 5, 45, tzinfo=UTC)  # 01:45 EDT, the first pass
    assert next_opening(at, "America/New_York", ALL_DAY, window) == datetime(
        2026, 11, 1, 6, 0, tzinfo=UTC
    )


def test_a_window_starting_inside_the_repeated_hour_opens_on_its_second_pass_too() -> None:
    window = ContactWindow(EVERY_DAY, time(1, 15), time(1, 30))
    at = datetime(2026, 11, 1, 5, 40, tzinfo=UTC)  # 01:40 EDT, after the first 01:15-01:30
    assert next_opening(at, "America/New_York", ALL_DAY, window) == datetime(
        2026,
        11,
        1,
        6,
        15,
        tzinfo=UTC,  # 01:15 EST
    )


def test_next_opening_is_at_itself_when_open() -> None:
    assert next_opening(NOON, "Europe/Madrid", ContactHours(), None) == NOON


# --- frequency caps -----------------------------------------------------------------------------


def test_one_email_a_day() -> None:
    sent = NOON - timedelta(hours=3)
    state = make_state(recent_marketing=((EMAIL, sent),))
    decision = decide(state, MARKETING, EMAIL, NOON, rules=PER_CHANNEL)
    assert (decision.outcome, decision.reason) == (Outcome.DEFER, Reason.FREQUENCY_CAP)
    assert decision.defer_until == sent + timedelta(days=1)
    assert decision.explanation == (
        "deferred: the frequency cap of 1 a day on email is reached; "
        "next opening 09:00 on 2026-05-07 in Europe/Madrid"
    )
    chosen = decide(state, MARKETING, None, NOON, rules=PER_CHANNEL)
    assert (chosen.outcome, chosen.channel) == (Outcome.ALLOW, SMS)
    assert chosen.explanation == (
        "allowed: marketing on sms at 12:00 in Europe/Madrid; skipped email (frequency cap)"
    )


def test_a_contact_counts_for_exactly_24_hours() -> None:
    state = make_state(recent_marketing=((EMAIL, NOON - timedelta(days=1)),))
    assert decide(state, MARKETING, EMAIL, NOON, rules=PER_CHANNEL).outcome is Outcome.ALLOW


def test_a_contact_dated_after_at_counts_too() -> None:
    state = make_state(recent_marketing=((EMAIL, NOON + timedelta(minutes=5)),))
    decision = decide(state, MARKETING, EMAIL, NOON, rules=PER_CHANNEL)
    assert decision.defer_until == NOON + timedelta(days=1, minutes=5)


def test_two_emails_a_week() -> None:
    older, newer = NOON - timedelta(days=4), NOON - timedelta(days=2)
    state = make_state(recent_marketing=((EMAIL, newer), (EMAIL, older)))
    decision = decide(state, MARKETING, EMAIL, NOON, rules=PER_CHANNEL)
    assert (decision.reason, decision.defer_until) == (
        Reason.FREQUENCY_CAP,
        older + timedelta(days=7),
    )
    assert "2 a week on email" in decision.explanation


@pytest.mark.parametrize(
    ("recent", "cleared"),
    [
        (((SMS, NOON - timedelta(hours=1)),), NOON + timedelta(hours=23)),  # 1 a day overall
        (
            ((SMS, NOON - timedelta(days=3)), (TELEGRAM, NOON - timedelta(days=5))),
            NOON + timedelta(days=2),  # 2 a week overall: the older leaves after 7 days
        ),
    ],
)
def test_overall_caps_count_every_channel(
    recent: tuple[tuple[Channel, datetime], ...], cleared: datetime
) -> None:
    decision = decide(make_state(recent_marketing=recent), MARKETING, EMAIL, NOON)
    assert (decision.reason, decision.defer_until) == (Reason.FREQUENCY_CAP, cleared)
    assert "on all channels" in decision.explanation


def test_a_cap_that_clears_in_quiet_hours_waits_for_the_morning() -> None:
    sent = local("Europe/Madrid", 2026, 5, 5, 21, 30)  # counted until 21:30 on the 6th: quiet
    state = make_state(recent_marketing=((EMAIL, sent),))
    decision = decide(state, MARKETING, EMAIL, NOON)
    assert (decision.reason, decision.defer_until) == (
        Reason.FREQUENCY_CAP,
        local("Europe/Madrid", 2026, 5, 7, 8, 0),
    )


def test_quiet_hours_and_a_cap_defer_once_to_when_both_allow() -> None:
    at = local("Europe/Madrid", 2026, 5, 6, 22, 0)
    sent = local("Europe/Madrid", 2026, 5, 6, 10, 30)
    decision = decide(make_state(recent_marketing=((EMAIL, sent),)), MARKETING, EMAIL, at)
    assert (decision.reason, decision.defer_until) == (Reason.QUIET_HOURS, sent + timedelta(days=1))
    assert decision.explanation == (
        "deferred: 22:00 in Europe/Madrid is inside quiet hours (21:00-08:00) and the frequency "
        "cap of 1 a day on email is reached; next opening 10:30 on 2026-05-07"
    )


def test_a_cap_of_zero_denies() -> None:
    decision = decide(make_state(), MARKETING, EMAIL, NOON, rules=PolicyRules(max_per_week=0))
    assert (decision.outcome, decision.reason) == (Outcome.DENY, Reason.FREQUENCY_CAP)


def test_service_messages_are_not_capped() -> None:
    recent = tuple((EMAIL, NOON - timedelta(hours=h)) for h in range(1, 6))
    decision = decide(make_state(recent_marketing=recent), SERVICE, EMAIL, NOON)
    assert decision.outcome is Outcome.ALLOW


# --- choosing the channel -----------------------------------------------------------------------


def test_the_most_preferred_allowed_channel_is_chosen() -> None:
    decision = decide(make_state(preferred_channels=(SMS, EMAIL)), MARKETING, None, NOON)
    assert decision.channel is SMS
    assert [v.channel for v in decision.verdicts] == [SMS, EMAIL, TELEGRAM, WEBCHAT, VOICE]


def test_without_preferences_the_channel_order_decides() -> None:
    state = make_state(
        preferred_channels=(),
        reachable=frozenset({SMS, TELEGRAM}),
        consents={(SMS, MARKETING, GENERAL): GRANTED, (TELEGRAM, MARKETING, GENERAL): GRANTED},
    )
    decision = decide(state, MARKETING, None, NOON)
    assert decision.channel is SMS
    assert decision.explanation == (
        "allowed: marketing on sms at 12:00 in Europe/Madrid; skipped email (unreachable)"
    )
    rules = PolicyRules(channel_order=(TELEGRAM, SMS))
    assert decide(state, MARKETING, None, NOON, rules=rules).channel is TELEGRAM


def test_preferences_come_first_then_the_rest_of_the_order_without_repeats() -> None:
    state = make_state(preferred_channels=(VOICE, SMS))
    decision = decide(state, SERVICE, None, NOON)
    assert [v.channel for v in decision.verdicts] == [VOICE, SMS, EMAIL, TELEGRAM, WEBCHAT]
    assert decision.channel is SMS  # no voice address


def test_an_explicit_channel_is_judged_alone() -> None:
    decision = decide(make_state(), MARKETING, SMS, NOON)
    assert (decision.channel, len(decision.verdicts)) == (SMS, 1)


def test_when_nothing_is_allowed_the_earliest_deferral_wins() -> None:
    state = make_state(
        recent_marketing=((EMAIL, NOON - timedelta(hours=4)), (SMS, NOON - timedelta(hours=20)))
    )
    decision = decide(state, MARKETING, None, NOON, rules=PER_CHANNEL)
    assert (decision.outcome, decision.channel, decision.defer_until) == (
        Outcome.DEFER,
        SMS,
        NOON + timedelta(hours=4),
    )
    assert decision.explanation.endswith("by sms; skipped email (frequency cap)")


def test_equal_deferrals_go_to_the_more_preferred_channel() -> None:
    night = local("Europe/Madrid", 2026, 5, 6, 23, 0)
    for preferred in [(EMAIL, SMS), (SMS, EMAIL)]:
        decision = decide(make_state(preferred_channels=preferred), MARKETING, None, night)
        assert (decision.outcome, decision.channel) == (Outcome.DEFER, preferred[0])


def test_when_every_channel_is_denied_the_verdicts_say_why() -> None:
    state = make_state(consents={(EMAIL, MARKETING, GENERAL): PENDING})
    decision = decide(state, MARKETING, None, NOON)
    assert (decision.outcome, decision.channel, decision.reason, decision.defer_until) == (
        Outcome.DENY,
        None,
        Reason.NO_REACHABLE_CHANNEL,
        None,
    )
    assert [(v.channel, v.reason) for v in decision.verdicts] == [
        (EMAIL, Reason.PENDING_CONFIRMATION),
        (SMS, Reason.NO_CONSENT),
        (TELEGRAM, Reason.UNREACHABLE),
        (WEBCHAT, Reason.UNREACHABLE),
        (VOICE, Reason.UNREACHABLE),
    ]
    assert decision.explanation == (
        "denied: no channel may be used (email: pending confirmation; sms: no consent; "
        "telegram: unreachable; webchat: unreachable; voice: unreachable)"
    )


def test_a_single_channel_considered_keeps_its_own_reason() -> None:
    state = make_state(consents={})
    decision = decide(state, MARKETING, None, NOON, rules=PolicyRules(channel_order=()))
    assert (decision.outcome, decision.channel, decision.reason) == (
        Outcome.DENY,
        EMAIL,
        Reason.NO_CONSENT,
    )


def test_no_channel_to_consider_is_denied() -> None:
    state = make_state(preferred_channels=())
    decision = decide(state, SERVICE, None, NOON, rules=PolicyRules(channel_order=()))
    assert (decision.outcome, decision.channel, decision.reason, decision.verdicts) == (
        Outcome.DENY,
        None,
        Reason.NO_REACHABLE_CHANNEL,
        (),
    )


# --- the JSON form, time and validation ---------------------------------------------------------


def test_to_json_is_plain_json() -> None:
    at = local("America/New_York", 2026, 11, 22, 22, 40)
    state = make_state(timezone="America/New_York", consents={(EMAIL, MARKETING, GENERAL): GRANTED})
    decision = decide(state, MARKETING, None, at)
    data = decision.to_json()
    assert json.loads(json.dumps(data)) == data
    assert {k: data[k] for k in ("outcome", "channel", "reason", "defer_until")} == {
        "outcome": "defer",
        "channel": "email",
        "reason": "quiet_hours",
        "defer_until": "2026-11-23T13:00:00+00:00",
    }
    assert data["explanation"] == decision.explanation
    verdicts = data["verdicts"]
    assert isinstance(verdicts, list)
    assert verdicts[1] == {
        "channel": "sms",
        "outcome": "deny",
        "reason": "no_consent",
        "defer_until": None,
        "explanation": "denied: no consent to sms marketing",
    }
    assert all(type(value) is str for value in (data["outcome"], data["reason"], data["channel"]))


def test_times_must_be_aware() -> None:
    naive = datetime(2026, 5, 6, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(make_state(), MARKETING, EMAIL, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_opening(naive, "Europe/Madrid", ContactHours(), None)
    with pytest.raises(ValueError, match="last_complaint_at"):
        decide(make_state(last_complaint_at=naive), MARKETING, EMAIL, NOON)
    with pytest.raises(ValueError, match="recent"):
        decide(make_state(recent_marketing=((SMS, naive),)), MARKETING, EMAIL, NOON)


def test_at_in_any_zone_gives_the_same_decision_in_utc() -> None:
    at = local("Asia/Kolkata", 2026, 5, 7, 1, 0)  # 21:30 in Madrid, the evening before
    decision = decide(make_state(), MARKETING, EMAIL, at)
    assert decision == decide(make_state(), MARKETING, EMAIL, at.astimezone(UTC))
    assert decision.defer_until == datetime(2026, 5, 7, 6, 0, tzinfo=UTC)


def test_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="cross midnight"):
        ContactHours(time(21), time(8))
    with pytest.raises(ValueError, match="Sunday"):
        ContactWindow(frozenset({7}), time(9), time(17))
    with pytest.raises(ValueError, match="time zone"):
        ContactWindow(frozenset({1}), time(9, tzinfo=UTC), time(17))
    with pytest.raises(ValueError, match="negative"):
        PolicyRules(max_per_day=-1)
    window = ContactWindow({1, 2}, time(9), time(17))  # type: ignore[arg-type]
    assert window.days == frozenset({1, 2})
    assert hash(window)


# --- contact hours by location ------------------------------------------------------------------

EIGHT_TO_NINE = ContactHours(time(8), time(21))
EIGHT_TO_EIGHT = ContactHours(time(8), time(20))


@pytest.mark.parametrize(
    ("country", "region", "overrides", "expected"),
    [
        (None, None, None, EIGHT_TO_NINE),
        ("ES", None, None, EIGHT_TO_NINE),
        ("US", "NY", None, EIGHT_TO_NINE),
        ("US", "FL", None, EIGHT_TO_EIGHT),
        ("us", "ok", None, EIGHT_TO_EIGHT),
        ("US", "WA", None, EIGHT_TO_EIGHT),
        (None, "US-FL", None, EIGHT_TO_EIGHT),
        ("US", "US-WA", None, EIGHT_TO_EIGHT),
        ("ES", "FL", None, EIGHT_TO_NINE),  # not Florida
        ("ES", None, {"ES": ContactHours(time(9), time(20))}, ContactHours(time(9), time(20))),
        ("ES", "CT", {"es-ct": ContactHours(time(7), time(22))}, ContactHours(time(7), time(22))),
        ("US", "FL", {"US-FL": EIGHT_TO_NINE}, EIGHT_TO_NINE),  # the exact region wins
        # A country-wide override applies with the state's own rule: the stricter of both.
        ("US", "FL", {"US": ContactHours(time(9), time(21))}, ContactHours(time(9), time(20))),
        ("US", "FL", {"US": ContactHours(time(8), time(22))}, EIGHT_TO_EIGHT),
        ("US", "NY", {"US": ContactHours(time(9), time(19))}, ContactHours(time(9), time(19))),
        ("FR", None, {"US": ContactHours(time(9), time(19))}, EIGHT_TO_NINE),
    ],
)
def test_contact_hours_for_a_location(
    country: str | None,
    region: str | None,
    overrides: dict[str, ContactHours] | None,
    expected: ContactHours,
) -> None:
    assert contact_hours_for(country, region, overrides) == expected


def test_contact_hours_for_rejects_overrides_that_leave_no_time() -> None:
    with pytest.raises(ValueError, match="do not overlap"):
        contact_hours_for("US", "FL", {"US": ContactHours(time(6), time(7))})


# --- properties ---------------------------------------------------------------------------------

ZONES = [
    "America/New_York",
    "Europe/Madrid",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
]
YEAR = datetime(2026, 1, 1, tzinfo=UTC)
# Daylight-saving changes in 2026 of the zones above, in UTC.
DST_CHANGES = [
    datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # New York
    datetime(2026, 11, 1, 6, 0, tzinfo=UTC),
    datetime(2026, 3, 8, 10, 0, tzinfo=UTC),  # Los Angeles
    datetime(2026, 11, 1, 9, 0, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # Madrid
    datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
    datetime(2026, 4, 4, 15, 0, tzinfo=UTC),  # Lord Howe, half an hour
    datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
]
TOPICS = [GENERAL, "shoes", "books"]
RULES = [
    PolicyRules(),
    PolicyRules(
        max_per_day_per_channel=2, max_per_week_per_channel=3, max_per_day=2, max_per_week=4
    ),
    PolicyRules(max_per_day=5, max_per_week=5, complaint_cooldown=timedelta(days=3)),
    PolicyRules(max_per_week_per_channel=0, channel_order=(SMS, EMAIL)),
]

channels = st.sampled_from(Channel)
zones = st.sampled_from(ZONES)
quarter_hours = st.integers(0, 95).map(lambda q: time(q // 4, q % 4 * 15))
instants = st.one_of(
    st.integers(0, 365 * 24 * 3600).map(lambda s: YEAR + timedelta(seconds=s)),
    st.builds(
        lambda change, minutes: change + timedelta(minutes=minutes),
        st.sampled_from(DST_CHANGES),
        st.integers(-36 * 60, 36 * 60),
    ),
)
contact_hours = st.one_of(
    st.sampled_from([ContactHours(), EIGHT_TO_EIGHT, ALL_DAY, ContactHours(time(8), MIDNIGHT)]),
    st.tuples(quarter_hours, quarter_hours)
    .filter(lambda ends: ends[0] < ends[1])
    .map(lambda ends: ContactHours(*ends)),
)
windows = st.none() | st.builds(
    ContactWindow, st.frozensets(st.integers(0, 6)), quarter_hours, quarter_hours
)
# Simplest first: hypothesis leans towards the first choice, so marketing is often granted.
general_statuses = st.sampled_from([GRANTED, GRANTED, PENDING, REVOKED, None])
stray_rows = st.dictionaries(
    st.tuples(channels, st.sampled_from(Purpose), st.sampled_from(TOPICS)),
    st.sampled_from([GRANTED, PENDING, REVOKED]),
    max_size=4,
)


@dataclass(frozen=True)
class Scenario:
    state: ContactState
    purpose: Purpose
    channel: Channel | None
    at: datetime
    topic: str | None
    rules: PolicyRules

    def decide(self, at: datetime | None = None, **changes: Any) -> Decision:
        state = replace(self.state, **changes)
        when = self.at if at is None else at
        return decide(state, self.purpose, self.channel, when, topic=self.topic, rules=self.rules)


# Strategies are built once: building them inside the composite costs more than deciding.
complaint_days = st.one_of(st.none(), st.none(), st.none(), st.integers(-2, 60))  # 1 in 4
# Contacts from a day after `at` (clock skew) to three weeks before it, to the minute.
contacts = st.lists(st.tuples(channels, st.integers(-24 * 60, 21 * 24 * 60)), max_size=4)
tiers = st.sampled_from([Tier.CMV, Tier.CMP, Tier.STANDARD, Tier.STANDARD, Tier.BZ])
preferences = st.lists(channels, unique=True, max_size=3).map(tuple)
reachables = st.frozensets(channels, min_size=2)
undeliverables = st.just(frozenset[Channel]()) | st.frozensets(channels, max_size=2)
purposes = st.sampled_from([MARKETING, MARKETING, SERVICE])
topics = st.sampled_from([None, *TOPICS])
asked_channels = st.none() | channels
rule_sets = st.sampled_from(RULES)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    at = draw(instants)
    complained = draw(complaint_days)
    consents = draw(stray_rows)
    for channel in Channel:
        status = draw(general_statuses)
        if status is not None:
            consents[(channel, MARKETING, GENERAL)] = status
    state = ContactState(
        customer_id=7,
        tier=draw(tiers),
        timezone=draw(zones),
        contact_hours=draw(contact_hours),
        window=draw(windows),
        preferred_channels=draw(preferences),
        reachable=draw(reachables),
        undeliverable=draw(undeliverables),
        consents=consents,
        last_complaint_at=None if complained is None else at - timedelta(days=complained),
        recent_marketing=tuple(
            (channel, at - timedelta(minutes=minutes)) for channel, minutes in draw(contacts)
        ),
    )
    return Scenario(
        state=state,
        purpose=draw(purposes),
        channel=draw(asked_channels),
        at=at,
        topic=draw(topics),
        rules=draw(rule_sets),
    )


properties = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def allowed(decision: Decision) -> list[ChannelVerdict]:
    return [v for v in decision.verdicts if v.outcome is Outcome.ALLOW]


def applicable_marketing_consent(
    state: ContactState, channel: Channel, topic: str | None
) -> ConsentStatus | None:
    if topic and (channel, MARKETING, topic) in state.consents:
        return state.consents[(channel, MARKETING, topic)]
    return state.consents.get((channel, MARKETING, GENERAL))


def in_window(wall: datetime, window: ContactWindow | None) -> bool:
    """The window as intervals of naive local datetimes, starting on the listed days."""
    if window is None:
        return True
    for start_day in (wall.date(), wall.date() - timedelta(days=1)):
        if start_day.weekday() not in window.days:
            continue
        end_day: date = start_day if window.start < window.end else start_day + timedelta(days=1)
        if (
            datetime.combine(start_day, window.start)
            <= wall
            < datetime.combine(end_day, window.end)
        ):
            return True
    return False


def locally_open(state: ContactState, at: datetime) -> bool:
    wall = at.astimezone(ZoneInfo(state.timezone)).replace(tzinfo=None)
    minute = wall.hour * 60 + wall.minute
    hours = state.contact_hours
    start = hours.start.hour * 60 + hours.start.minute
    end = hours.end.hour * 60 + hours.end.minute or 24 * 60
    return start <= minute < end and in_window(wall, state.window)


def marketing_count(
    state: ContactState, at: datetime, period: timedelta, channel: Channel | None
) -> int:
    return sum(
        1
        for used, when in state.recent_marketing
        if when > at - period and (channel is None or used == channel)
    )


@properties
@given(scenarios())
def test_marketing_is_never_allowed_without_granted_consent(s: Scenario) -> None:
    for verdict in allowed(s.decide()):
        assert s.state.consents.get((verdict.channel, SERVICE, GENERAL)) is not REVOKED
        if s.purpose is MARKETING:
            consent = applicable_marketing_consent(s.state, verdict.channel, s.topic)
            assert consent is GRANTED


@properties
@given(scenarios())
def test_after_the_latest_revoke_the_channel_is_never_allowed(s: Scenario) -> None:
    decision = s.decide()
    if decision.outcome is not Outcome.ALLOW or decision.channel is None:
        return
    channel = decision.channel
    stop = {**s.state.consents, (channel, SERVICE, GENERAL): REVOKED}
    revoked = [stop]
    if s.purpose is MARKETING:
        topic = s.topic if s.topic and (channel, MARKETING, s.topic) in s.state.consents else ""
        revoked.append({**s.state.consents, (channel, MARKETING, topic): REVOKED})
    for consents in revoked:
        again = s.decide(consents=consents)
        assert (channel, Outcome.ALLOW) not in [(v.channel, v.outcome) for v in again.verdicts]
        assert replace(s, channel=channel).decide(consents=consents).reason is Reason.REVOKED


@properties
@given(scenarios())
def test_never_allowed_in_quiet_hours_or_outside_the_window(s: Scenario) -> None:
    if allowed(s.decide()):
        assert locally_open(s.state, s.at)


@properties
@given(scenarios())
def test_marketing_is_never_allowed_past_a_cap(s: Scenario) -> None:
    if s.purpose is not MARKETING:
        return
    rules, day, week = s.rules, timedelta(days=1), timedelta(days=7)
    for verdict in allowed(s.decide()):
        ch = verdict.channel
        assert marketing_count(s.state, s.at, day, ch) < rules.max_per_day_per_channel
        assert marketing_count(s.state, s.at, week, ch) < rules.max_per_week_per_channel
        assert marketing_count(s.state, s.at, day, None) < rules.max_per_day
        assert marketing_count(s.state, s.at, week, None) < rules.max_per_week


@properties
@given(scenarios())
def test_bz_customers_never_get_marketing(s: Scenario) -> None:
    decision = s.decide(tier=Tier.BZ)
    if s.purpose is MARKETING:
        assert all(v.outcome is Outcome.DENY for v in decision.verdicts)
        assert decision.outcome is Outcome.DENY


@properties
@given(scenarios())
def test_never_allowed_on_an_unreachable_or_undeliverable_channel(s: Scenario) -> None:
    decision = s.decide()
    for verdict in decision.verdicts:
        if verdict.channel not in s.state.reachable - s.state.undeliverable:
            assert verdict.outcome is Outcome.DENY
    if decision.outcome is Outcome.ALLOW:
        assert decision.channel in s.state.reachable - s.state.undeliverable


@properties
@given(scenarios())
def test_a_deferral_is_to_the_first_moment_the_channel_is_allowed(s: Scenario) -> None:
    decision = s.decide()
    for verdict in decision.verdicts:
        if verdict.outcome is not Outcome.DEFER:
            assert verdict.defer_until is None
            continue
        until = verdict.defer_until
        assert until is not None
        assert until > s.at
        assert until.tzinfo is UTC
        assert locally_open(s.state, until)
        single = replace(s, channel=verdict.channel)
        later = single.decide(at=until)
        assert (later.outcome, later.reason) == (Outcome.ALLOW, Reason.OK)
        just_before = until - timedelta(microseconds=1)
        if just_before >= s.at:
            assert single.decide(at=just_before).outcome is not Outcome.ALLOW
    if decision.outcome is Outcome.DEFER:
        earliest = min(v.defer_until for v in decision.verdicts if v.defer_until is not None)
        assert decision.defer_until == earliest


@properties
@given(scenarios(), st.randoms(use_true_random=False))
def test_decide_is_deterministic(s: Scenario, random: Any) -> None:
    first = s.decide()
    assert s.decide() == first
    shuffled_consents = list(s.state.consents.items())
    random.shuffle(shuffled_consents)
    shuffled_recent = list(s.state.recent_marketing)
    random.shuffle(shuffled_recent)
    again = s.decide(consents=dict(shuffled_consents), recent_marketing=tuple(shuffled_recent))
    assert again == first
    assert again.to_json() == first.to_json()


@properties
@given(scenarios())
def test_the_choice_is_the_first_allowed_in_order(s: Scenario) -> None:
    decision = replace(s, channel=None).decide()
    order = list(dict.fromkeys((*s.state.preferred_channels, *s.rules.channel_order)))
    assert [v.channel for v in decision.verdicts] == order
    if allowed(decision):
        assert decision.channel == allowed(decision)[0].channel
    for verdict in decision.verdicts:  # each verdict is what judging that channel alone gives
        alone = replace(s, channel=verdict.channel).decide()
        assert alone.verdicts == (verdict,)


@settings(max_examples=300, deadline=None)
@given(instants, zones, contact_hours, windows)
def test_next_opening_is_the_first_open_instant(
    at: datetime, tz: str, hours: ContactHours, window: ContactWindow | None
) -> None:
    state = make_state(timezone=tz, contact_hours=hours, window=window)
    opening = next_opening(at, tz, hours, window)
    if opening is not None:
        assert opening >= at
        assert opening.tzinfo is UTC
        assert locally_open(state, opening)
    if opening != at:
        assert not locally_open(state, at)
    # Every start time here is on a quarter hour and every zone's offset a multiple of 15
    # minutes, so an earlier opening would show at one of the quarter hours in between.
    quarter = timedelta(minutes=15)
    moment = at + (datetime.min.replace(tzinfo=UTC) - at) % quarter
    end = at + timedelta(days=15) if opening is None else opening
    while moment < end:
        assert not locally_open(state, moment)
        moment += quarter
