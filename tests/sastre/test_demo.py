"""The demo data set: every tier, both languages, every channel, a timeline, consent histories
that make every kind of marketing decision, and idempotent.

One load is checked for everything it promises (a load of 300 customers is the slow part, and
every test gets a fresh database), and a second test loads twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import phonenumbers
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from consent.ledger import consent_history, current_consents, replay
from consent.models import ConsentEvent, Preferences
from consent.policy import DEFAULT_RULES, Outcome, Reason, decide
from consent.snapshot import load_contact_state
from consent.types import Purpose
from crm_core.models import Customer, Identity, IdentityKind, Interaction, InteractionKind, Tier
from crm_core.tiers import TierRules, ValueFigures, classify
from sastre.db import SessionMaker
from sastre.demo import DEMO_PREFIX, TIMELINE_DAYS, DemoSummary, _plan, _Profile, load_demo_data

CUSTOMERS = 300


async def _tiers(session: AsyncSession) -> dict[str, int]:
    # Counted here rather than with crm_core.tiers.tier_counts, which calls the deprecated
    # Result.tuples() and so fails under SQLAlchemy 2.1 with warnings as errors.
    rows = await session.execute(select(Customer.tier, func.count()).group_by(Customer.tier))
    return {tier: int(count) for tier, count in rows}


async def _counts(sessionmaker: SessionMaker) -> dict[str, int]:
    async with sessionmaker() as session:
        return {
            model.__name__: int(await session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Customer, Identity, Interaction, ConsentEvent, Preferences)
        }


async def _check_tiers(session: AsyncSession) -> None:
    counts = await _tiers(session)
    assert sum(counts.values()) == CUSTOMERS
    assert set(counts) == set(Tier), counts
    # A few most valuable, several growable, some below zero, most standard.
    assert counts[Tier.CMV] <= CUSTOMERS * 0.1, counts
    assert counts[Tier.CMV] < counts[Tier.CMP], counts
    assert counts[Tier.BZ] <= CUSTOMERS * 0.15, counts
    assert counts[Tier.STANDARD] > CUSTOMERS / 2, counts
    # The seed's caution: the student who loses money today but has potential is CMP, not BZ.
    students = (
        await session.execute(
            select(Customer.tier, Customer.profit_cents).where(
                Customer.attributes["segment"].as_string() == "student"
            )
        )
    ).all()
    assert students
    assert all(tier == Tier.CMP and profit < 0 for tier, profit in students), students
    # Service recovery needs valuable customers who might leave.
    assert await session.scalar(
        select(func.count()).where(
            Customer.tier == Tier.CMV, Customer.attributes["churn_risk"].as_string() == "high"
        )
    )
    # Realistic amounts: nobody below zero revenue, nobody beyond a couple of hundred thousand.
    lowest, highest = (
        await session.execute(
            select(func.min(Customer.revenue_cents), func.max(Customer.revenue_cents))
        )
    ).one()
    assert lowest >= 0
    assert highest < 200_000_00


async def _check_languages(session: AsyncSession) -> None:
    rows = await session.execute(select(Customer.language, Customer.country, Customer.timezone))
    countries: dict[str | None, set[str | None]] = {}
    for language, country, timezone in rows:
        countries.setdefault(language, set()).add(country)
        expected = "America/" if country in {"MX", "AR", "CO", "US"} else ("Europe/", "Atlantic/")
        assert timezone is not None
        assert timezone.startswith(expected), (country, timezone)
    assert countries == {"es": {"ES", "MX", "AR", "CO"}, "en": {"US", "GB"}}


async def _check_identities(session: AsyncSession) -> None:
    kinds = {
        kind: int(count)
        for kind, count in await session.execute(
            select(Identity.kind, func.count()).group_by(Identity.kind)
        )
    }
    assert kinds[IdentityKind.EMAIL] == CUSTOMERS
    assert CUSTOMERS / 2 < kinds[IdentityKind.PHONE] < CUSTOMERS
    assert 0 < kinds[IdentityKind.TELEGRAM] < CUSTOMERS / 2
    assert 0 < kinds[IdentityKind.WEBCHAT] < CUSTOMERS / 4
    external_ids = set(
        await session.scalars(select(Identity.value).where(Identity.kind == IdentityKind.EXTERNAL))
    )
    assert external_ids == {f"{DEMO_PREFIX}{n:04d}" for n in range(1, CUSTOMERS + 1)}


async def _check_phones(session: AsyncSession) -> None:
    phones = await session.execute(
        select(Identity.value, Customer.country)
        .join(Customer, Customer.id == Identity.customer_id)
        .where(Identity.kind == IdentityKind.PHONE)
    )
    for value, country in phones:
        number = phonenumbers.parse(value)
        assert phonenumbers.is_valid_number(number), value
        assert phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == value
        assert phonenumbers.region_code_for_number(number) == country, (value, country)


async def _check_timeline(session: AsyncSession, now: datetime, added: int) -> None:
    interactions = list(await session.scalars(select(Interaction)))
    assert len(interactions) == added
    assert len({i.customer_id for i in interactions}) == CUSTOMERS
    # Every kind a customer or a person makes; delivery entries come only from real sends.
    assert {i.kind for i in interactions} == set(InteractionKind) - {InteractionKind.DELIVERY}
    for interaction in interactions:
        assert interaction.occurred_at.utcoffset() == timedelta(0)
        assert now - timedelta(days=TIMELINE_DAYS) <= interaction.occurred_at <= now
        assert interaction.summary
        if interaction.kind == InteractionKind.PURCHASE:
            assert interaction.data["amount"] > 0
            assert interaction.data["item"]
    inbound = {i.channel for i in interactions if i.kind == InteractionKind.MESSAGE_IN}
    assert inbound == {"sms", "email", "telegram", "webchat"}


async def _check_consent_ledger(session: AsyncSession) -> None:
    """Written through the ledger: every customer's state is a replay of their events."""
    for customer_id in await session.scalars(select(Customer.id)):
        replayed = {
            key: status
            for key, (status, _) in replay(await consent_history(session, customer_id)).items()
        }
        stored = {
            (s.channel, s.purpose, s.topic): s.status
            for s, _ in await current_consents(session, customer_id)
        }
        assert replayed == stored, customer_id


async def _check_preferences(session: AsyncSession) -> None:
    rows = list(await session.scalars(select(Preferences)))
    assert CUSTOMERS / 2 < len(rows) < CUSTOMERS
    assert any(len(row.channels) > 1 and row.channels[0] == "sms" for row in rows)
    assert any(row.window_start is not None for row in rows)
    assert any(row.topics for row in rows)


async def _check_decisions(session: AsyncSession, now: datetime) -> None:
    """Marketing decisions, made as the contact-decision API makes them: some allowed, the rest
    denied or deferred, each kind for its own reason, and consent given in every tier."""
    outcomes: set[tuple[Outcome, Reason]] = set()
    consenting_tiers: set[str] = set()
    for customer_id, tier in await session.execute(select(Customer.id, Customer.tier)):
        state = await load_contact_state(session, customer_id, at=now, default_timezone="UTC")
        for topic in (None, "offers"):
            decision = decide(state, Purpose.MARKETING, None, now, topic=topic, rules=DEFAULT_RULES)
            outcomes.add((decision.outcome, decision.reason))
            outcomes.update((v.outcome, v.reason) for v in decision.verdicts)
        if any(
            purpose == Purpose.MARKETING and status == "granted"
            for (_, purpose, _), status in state.consents.items()
        ):
            consenting_tiers.add(tier)
    assert outcomes >= {
        (Outcome.ALLOW, Reason.OK),
        (Outcome.DEFER, Reason.QUIET_HOURS),
        (Outcome.DENY, Reason.NO_CONSENT),
        (Outcome.DENY, Reason.PENDING_CONFIRMATION),
        (Outcome.DENY, Reason.REVOKED),
        (Outcome.DENY, Reason.COMPLAINT_COOLDOWN),
        (Outcome.DENY, Reason.TIER_SUPPRESSED),
        (Outcome.DENY, Reason.UNREACHABLE),
    }, outcomes
    assert consenting_tiers == set(Tier)


async def test_the_demo_data_set(sessionmaker: SessionMaker) -> None:
    # A fixed moment, so the decisions at it (quiet hours in each customer's zone) never vary:
    # a Wednesday afternoon in Europe, morning in New York, before dawn in Los Angeles.
    now = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
    async with sessionmaker.begin() as session:
        summary = await load_demo_data(session, customers=CUSTOMERS, now=now)
    assert (summary.created, summary.updated) == (CUSTOMERS, 0)
    assert summary.consent_events > CUSTOMERS
    async with sessionmaker() as session:
        await _check_tiers(session)
        await _check_languages(session)
        await _check_identities(session)
        await _check_phones(session)
        await _check_timeline(session, now, summary.interactions)
        await _check_consent_ledger(session)
        await _check_preferences(session)
        await _check_decisions(session, now)


async def test_loading_twice_duplicates_nothing(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        await load_demo_data(session, customers=CUSTOMERS)
    counts = await _counts(sessionmaker)
    async with sessionmaker() as session:
        tiers = await _tiers(session)

    async with sessionmaker.begin() as session:
        again = await load_demo_data(session, customers=CUSTOMERS)

    assert again == DemoSummary(created=0, updated=CUSTOMERS, interactions=0)
    assert await _counts(sessionmaker) == counts
    async with sessionmaker() as session:
        assert await _tiers(session) == tiers


async def test_a_small_demo_still_has_every_tier(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        summary = await load_demo_data(session, customers=20, seed=3)
        tiers = await _tiers(session)
    assert summary.created == 20
    assert set(tiers) == set(Tier), tiers


@pytest.mark.parametrize("customers", [1, 5, 20, 300, 3000])
def test_exactly_the_top_spenders_are_most_valuable_at_any_size(customers: int) -> None:
    # The figures are shaped so the 80% CMV line falls inside the smallest top spender's profit;
    # checked with the pure rule, as a large demo would take too long to load here.
    people = _plan(customers, seed=7)
    decisions = classify(
        [
            ValueFigures(p.number, p.revenue_cents - p.cost_cents, p.potential_cents, p.cost_cents)
            for p in people
        ],
        TierRules(),
    )
    most_valuable = {n for n, decision in decisions.items() if decision.tier is Tier.CMV}
    assert most_valuable == {p.number for p in people if p.profile is _Profile.TOP_SPENDER}
    if customers >= 20:
        assert {decision.tier for decision in decisions.values()} == set(Tier)
