"""Value tiers: the rule as a pure function (`classify`) on hand-made customers, and the same rule
as set-based SQL (`recompute_tiers`), which must agree with it on both databases."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_core import Customer, CustomerStatus, Tier
from crm_core.models import CustomerTier
from crm_core.tiers import (
    NOT_COMPUTED,
    TierDecision,
    TierRules,
    ValueFigures,
    classify,
    recompute_tiers,
    tier_counts,
    tier_reason,
)
from sastre.db import SessionMaker

RULES = TierRules()


def figures(customer_id: int, profit: int, potential: int = 0, cost: int = 0) -> ValueFigures:
    """A customer by its figures in whole units (the rules work in cents)."""
    return ValueFigures(customer_id, profit * 100, potential * 100, cost * 100)


def tiers(decisions: dict[int, TierDecision]) -> dict[int, Tier]:
    return {customer_id: decision.tier for customer_id, decision in decisions.items()}


# --- the pure rule ------------------------------------------------------------------------------


def test_no_customers_no_decisions() -> None:
    assert classify([], RULES) == {}


def test_cmv_are_the_top_customers_making_80_percent_of_positive_profit() -> None:
    # Total positive profit 1000: 600 alone is below 800, 600 + 250 reaches it, so the customer
    # making the 250 is the last CMV.
    customers = [
        figures(1, 600),
        figures(2, 250),
        figures(3, 100),
        figures(4, 50),
        figures(5, -40, potential=0, cost=40),
    ]
    assert tiers(classify(customers, RULES)) == {
        1: Tier.CMV,
        2: Tier.CMV,
        3: Tier.STANDARD,
        4: Tier.STANDARD,
        5: Tier.BZ,
    }


def test_negative_profit_does_not_count_towards_the_cmv_share() -> None:
    # Were the loss subtracted, total profit would be 500 and 400 alone would be 80% of it.
    customers = [figures(1, 400), figures(2, 400), figures(3, -300, cost=300)]
    assert tiers(classify(customers, RULES))[2] == Tier.CMV


def test_customers_with_equal_profit_share_their_tier() -> None:
    # 80% of 1000 is 800. Only 700 is made by customers above those making 100, so all three are
    # CMV, although in id order the last of them would find 800 before them.
    customers = [figures(11, 500), figures(12, 200), *(figures(i, 100) for i in (7, 3, 5))]
    assert tiers(classify(customers, RULES)) == {i: Tier.CMV for i in (11, 12, 7, 3, 5)}


def test_a_tie_beyond_the_cmv_line_leaves_all_of_its_customers_out() -> None:
    # 80% of 1300 is 1040: 500 + 300 + 300 = 1100 are above the customers making 100.
    customers = [figures(1, 100), figures(2, 500), figures(3, 300), figures(4, 100)]
    customers += [figures(5, 300)]
    assert tiers(classify(customers, RULES)) == {
        1: Tier.STANDARD,
        2: Tier.CMV,
        3: Tier.CMV,
        4: Tier.STANDARD,
        5: Tier.CMV,
    }


def test_nobody_is_cmv_without_positive_profit() -> None:
    customers = [figures(1, 0), figures(2, 0), figures(3, -5, cost=5)]
    assert Tier.CMV not in tiers(classify(customers, RULES)).values()


def test_bz_is_negative_profit_with_potential_not_above_cost() -> None:
    customers = [figures(1, 1000), figures(2, -30, potential=50, cost=50)]
    decision = classify(customers, RULES)[2]
    assert decision == TierDecision(
        Tier.BZ, "BZ: profit -30 below zero, potential 50 not above cost to serve 50"
    )


def test_student_with_potential_above_cost_is_not_bz_and_can_be_cmp() -> None:
    # The bank's student: loses money today, worth much more than it costs tomorrow.
    customers = [
        figures(1, 1000),
        figures(2, 800),
        figures(3, 10),
        figures(4, 10),
        figures(5, -30, potential=5000, cost=50),
    ]
    assert classify(customers, RULES)[5] == TierDecision(
        Tier.CMP, "CMP: potential 5000 at least 2x profit -30, top 20% of potential"
    )


def test_negative_profit_with_potential_just_above_cost_is_not_bz() -> None:
    customers = [figures(1, 1000, potential=100), *(figures(i, 5) for i in range(2, 6))]
    customers.append(figures(6, -30, potential=51, cost=50))
    assert classify(customers, RULES)[6].tier == Tier.STANDARD


def test_cmp_needs_potential_at_least_twice_the_profit() -> None:
    customers = [
        figures(1, 10000),
        figures(2, 100, potential=200),
        figures(3, 100, potential=199),
        *(figures(i, 1) for i in range(4, 11)),
    ]
    decisions = classify(customers, RULES)
    assert decisions[2].tier == Tier.CMP
    assert decisions[3].tier == Tier.STANDARD


def test_cmp_needs_the_top_20_percent_of_potential() -> None:
    # Ten customers: only potential ranks 1 and 2 are in the top 20%.
    customers = [
        figures(1, 10000),
        *(figures(i, 1, potential=1000 - i) for i in range(2, 11)),
    ]
    assert tiers(classify(customers, RULES)) == {
        1: Tier.CMV,
        2: Tier.CMP,
        3: Tier.CMP,
        **{i: Tier.STANDARD for i in range(4, 11)},
    }


def test_customers_tied_on_potential_share_a_rank_and_the_next_one_skips() -> None:
    customers = [
        figures(1, 10000),
        figures(2, 1, potential=500),
        figures(3, 1, potential=500),
        figures(4, 1, potential=400),
        *(figures(i, 1) for i in range(5, 11)),
    ]
    # Ten customers, top 20% is rank 2 at most: the tied pair both rank 1, the next ranks 3.
    decisions = tiers(classify(customers, RULES))
    assert [decisions[i] for i in (2, 3, 4)] == [Tier.CMP, Tier.CMP, Tier.STANDARD]


def test_cmp_needs_some_potential() -> None:
    customers = [figures(1, 10000), figures(2, 0), figures(3, 0), figures(4, 0), figures(5, 0)]
    assert Tier.CMP not in tiers(classify(customers, RULES)).values()


def test_cmv_reason_names_profit_and_rank() -> None:
    decision = classify([figures(1, 1234), figures(2, 1)], RULES)[1]
    assert decision.reason == (
        "CMV: profit 1234, top 50% of profit (the customers making 80% of all positive profit)"
    )


def test_standard_reason_names_profit_and_potential_with_their_ranks() -> None:
    customers = [figures(1, 900), figures(2, 50, potential=20), figures(3, 50, potential=20)]
    assert classify(customers, RULES)[3].reason == (
        "STANDARD: profit 50 (top 67% of profit), potential 20 (top 34% of potential)"
    )


def test_reason_rounds_half_cents_away_from_zero() -> None:
    customers = [
        ValueFigures(1, 100_000, 0, 0),
        ValueFigures(2, -250, 150, 250),
    ]
    assert classify(customers, RULES)[2].reason == (
        "BZ: profit -3 below zero, potential 2 not above cost to serve 3"
    )


def test_rules_are_configurable_and_named_in_the_reason() -> None:
    rules = TierRules(cmv_profit_share=0.5, cmp_potential_multiple=3, cmp_top_share=0.5)
    customers = [figures(1, 600), figures(2, 400), figures(3, 10, potential=30), figures(4, 0)]
    decisions = classify(customers, rules)
    assert tiers(decisions) == {1: Tier.CMV, 2: Tier.STANDARD, 3: Tier.CMP, 4: Tier.STANDARD}
    assert "making 50% of all positive profit" in decisions[1].reason
    assert "at least 3x profit" in decisions[3].reason


def test_every_reason_is_one_line_starting_with_its_tier() -> None:
    customers = [
        figures(1, 600),
        figures(2, -40, cost=40),
        figures(3, -30, potential=5000, cost=50),
        figures(4, 5),
        figures(5, 5),
    ]
    decisions = classify(customers, RULES)
    assert {d.tier for d in decisions.values()} == set(Tier)
    for decision in decisions.values():
        assert "\n" not in decision.reason
        assert decision.reason.startswith(f"{decision.tier}: ")


# --- the SQL rule -------------------------------------------------------------------------------


async def add_customer(
    session: AsyncSession,
    revenue: int,
    cost: int = 0,
    potential: int = 0,
    *,
    merged_into: int | None = None,
) -> Customer:
    customer = Customer(
        status=CustomerStatus.MERGED if merged_into else CustomerStatus.CUSTOMER,
        merged_into_id=merged_into,
        revenue_cents=revenue,
        cost_to_serve_cents=cost,
        potential_value_cents=potential,
    )
    session.add(customer)
    await session.flush()
    return customer


async def stored_decisions(session: AsyncSession) -> dict[int, TierDecision]:
    reason = func.coalesce(CustomerTier.reason, NOT_COMPUTED)
    rows = await session.execute(
        select(Customer.id, Customer.tier, reason)
        .outerjoin(CustomerTier, CustomerTier.customer_id == Customer.id)
        .where(Customer.status != CustomerStatus.MERGED)
    )
    return {id_: TierDecision(Tier(tier), reason) for id_, tier, reason in rows}


def live_figures(customers: Sequence[Customer]) -> list[ValueFigures]:
    return [
        ValueFigures(
            c.id,
            c.revenue_cents - c.cost_to_serve_cents,
            c.potential_value_cents,
            c.cost_to_serve_cents,
        )
        for c in customers
        if c.status != CustomerStatus.MERGED
    ]


# Money with ties, half units (to exercise rounding) and the occasional big figure.
money = st.one_of(
    st.sampled_from([0, 50, 100, 150, 250, 1000]),
    st.integers(0, 5000),
    st.integers(0, 10**12),
)
customer_rows = st.tuples(money, money, money, st.booleans())


Rows = list[tuple[int, int, int, bool]]


async def assert_recompute_agrees_with_classify(sessionmaker: SessionMaker, rows: Rows) -> None:
    """Store `rows` (revenue, cost, potential, merged) as the only customers, recompute, compare."""
    async with sessionmaker.begin() as session:
        await session.execute(delete(Customer))
        first = await add_customer(session, *rows[0][:3])
        customers = [first]
        for revenue, cost, potential, merged in rows[1:]:
            merged_into = first.id if merged else None
            customers.append(
                await add_customer(session, revenue, cost, potential, merged_into=merged_into)
            )
        await recompute_tiers(session, RULES)
    async with sessionmaker() as session:
        assert await stored_decisions(session) == classify(live_figures(customers), RULES)


db_examples = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    # Shrinking re-runs the database many times; the failing example is printed as it is.
    phases=[Phase.explicit, Phase.generate],
)


@db_examples
@given(rows=st.lists(customer_rows, min_size=1, max_size=30))
@example(rows=[(0, 0, 250, False)])
# Five customers tied on profit: the 80% share is reached inside the tie, and all five share it.
@example(rows=[(100, 0, 0, False)] * 5)
@example(rows=[(1000, 0, 0, False), *[(250, 0, 50, False)] * 4, (250, 0, 0, True)])
async def test_recompute_tiers_agrees_with_classify(sessionmaker: SessionMaker, rows: Rows) -> None:
    await assert_recompute_agrees_with_classify(sessionmaker, rows)


async def test_recompute_tiers_rounds_half_units_away_from_zero(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        customer = await add_customer(session, 0, cost=250, potential=150)
        await recompute_tiers(session, RULES)
    async with sessionmaker() as session:
        reason, _ = await tier_reason(session, customer.id)
    assert reason == "BZ: profit -3 below zero, potential 2 not above cost to serve 3"


async def test_recompute_tiers_counts_changed_rows_and_is_idempotent(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        for profit in (600_00, 250_00, 100_00, 50_00):
            await add_customer(session, profit)
    async with sessionmaker.begin() as session:
        assert await recompute_tiers(session, RULES) == 4
    async with sessionmaker.begin() as session:
        assert await recompute_tiers(session, RULES) == 0


async def test_recompute_tiers_changes_only_customers_whose_tier_or_reason_moved(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        top = await add_customer(session, 600_00)
        for profit in (250_00, 100_00, 50_00):
            await add_customer(session, profit)
        await recompute_tiers(session, RULES)
    async with sessionmaker.begin() as session:
        changed = await session.get_one(Customer, top.id)
        changed.revenue_cents = 700_00
    async with sessionmaker.begin() as session:
        # Only the top customer's reason names its profit; nobody's rank or tier moved.
        assert await recompute_tiers(session, RULES) == 1


async def test_recompute_tiers_stamps_the_time(sessionmaker: SessionMaker) -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    async with sessionmaker.begin() as session:
        customer = await add_customer(session, 100)
        await recompute_tiers(session, RULES, now=now)
    async with sessionmaker() as session:
        assert (await tier_reason(session, customer.id))[1] == now


async def test_merged_customers_take_no_part_in_tiers(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        survivor = await add_customer(session, 100_00)
        second = await add_customer(session, 10_00)
        tombstone = await add_customer(session, 10_000_00, merged_into=survivor.id)
        await recompute_tiers(session, RULES)
    async with sessionmaker() as session:
        decisions = await stored_decisions(session)
        stored = await session.get_one(Customer, tombstone.id)
        reason, _ = await tier_reason(session, tombstone.id)
    # Were the tombstone counted, its profit alone would make it the only CMV.
    assert tiers(decisions) == {survivor.id: Tier.CMV, second.id: Tier.STANDARD}
    assert (stored.tier, reason) == (Tier.STANDARD, "not computed yet")


async def test_tier_counts_cover_every_tier_and_skip_merged(sessionmaker: SessionMaker) -> None:
    async with sessionmaker.begin() as session:
        survivor = await add_customer(session, 600_00)
        await add_customer(session, 250_00)
        await add_customer(session, 0, cost=40_00)
        await add_customer(session, 5_00)
        await add_customer(session, 999_00, merged_into=survivor.id)
        await recompute_tiers(session, RULES)
    async with sessionmaker() as session:
        assert await tier_counts(session) == {
            Tier.CMV: 2,
            Tier.CMP: 0,
            Tier.STANDARD: 1,
            Tier.BZ: 1,
        }


async def test_tier_counts_of_an_empty_database_are_zero(sessionmaker: SessionMaker) -> None:
    async with sessionmaker() as session:
        assert await tier_counts(session) == dict.fromkeys(Tier, 0)


@pytest.mark.parametrize("rules", [TierRules(), TierRules(0.5, 3.0, 0.5)])
async def test_recompute_tiers_agrees_with_classify_on_a_hand_made_set(
    sessionmaker: SessionMaker, rules: TierRules
) -> None:
    async with sessionmaker.begin() as session:
        customers = [
            await add_customer(session, revenue, cost, potential)
            for revenue, cost, potential in [
                (600_00, 0, 0),
                (250_00, 0, 0),
                (100_00, 0, 20_000_00),
                (0, 40_00, 40_00),
                (0, 30_00, 5000_00),
                (5_40, 0, 2_60),
                (5_40, 0, 2_60),
            ]
        ]
        await recompute_tiers(session, rules)
    async with sessionmaker() as session:
        assert await stored_decisions(session) == classify(live_figures(customers), rules)
