"""Value tiers: who is worth most (CMV), who could grow (CMP), who costs more than they bring (BZ).

The rules, from PRODUCT.md (seed 001), with their configurable defaults:

* **CMV** — the highest-profit customers who together make `cmv_profit_share` (80%) of all positive
  profit. A customer is CMV when the customers ranked above them (by profit, then id) have not yet
  reached that share.
* **BZ** — profit below zero *and* potential value not above the cost to serve. A customer with low
  profit but high potential (the student the bank invests in) is never BZ.
* **CMP** — neither CMV nor BZ, potential value at least `cmp_potential_multiple` (2×) their profit,
  and in the top `cmp_top_share` (20%) of potential value (ties share a rank).
* **STANDARD** — everyone else.

`classify` is the rule as a pure function (used by tests and for explaining); `recompute_tiers`
is the same rule as set-based SQL, so a million customers are classified inside the database.
Merged tombstones take no part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import (
    BigInteger,
    Float,
    Numeric,
    String,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from crm_core.models import CustomerStatus, Tier, customers_table
from crm_core.sqltypes import utcnow

__all__ = [
    "TierDecision",
    "TierRules",
    "ValueFigures",
    "classify",
    "recompute_tiers",
    "tier_counts",
]


@dataclass(frozen=True, slots=True)
class TierRules:
    cmv_profit_share: float = 0.8
    cmp_potential_multiple: float = 2.0
    cmp_top_share: float = 0.2

    @property
    def share_label(self) -> str:
        return f"{self.cmv_profit_share:.0%}"

    @property
    def multiple_label(self) -> str:
        return f"{self.cmp_potential_multiple:g}"


@dataclass(frozen=True, slots=True)
class ValueFigures:
    customer_id: int
    profit_cents: int
    potential_value_cents: int
    cost_to_serve_cents: int


@dataclass(frozen=True, slots=True)
class TierDecision:
    tier: Tier
    reason: str


def _units(cents: int) -> int:
    # Half away from zero, as SQL's ROUND does, so SQL and Python reasons read the same.
    return int((Decimal(cents) / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _top_percent(rank: int, population: int) -> int:
    return -(-rank * 100 // population)


def _reason_prefixes(rules: TierRules) -> dict[Tier, tuple[str, ...]]:
    """The fixed words of each reason; numbers go between them (shared by Python and SQL)."""
    return {
        Tier.CMV: (
            "CMV: profit ",
            ", top ",
            f"% of profit (the customers making {rules.share_label} of all positive profit)",
        ),
        Tier.BZ: ("BZ: profit ", " below zero, potential ", " not above cost to serve ", ""),
        Tier.CMP: (
            "CMP: potential ",
            f" at least {rules.multiple_label}x profit ",
            ", top ",
            "% of potential",
        ),
        Tier.STANDARD: (
            "STANDARD: profit ",
            " (top ",
            "% of profit), potential ",
            " (top ",
            "% of potential)",
        ),
    }


def _interleave(words: tuple[str, ...], numbers: Sequence[int]) -> str:
    parts = [words[0]]
    for number, word in zip(numbers, words[1:], strict=True):
        parts.extend((str(number), word))
    return "".join(parts)


def _ranks(values: Sequence[tuple[int, int]]) -> dict[int, int]:
    """SQL RANK() over value descending: ties share the rank of the first of them."""
    ranks: dict[int, int] = {}
    ordered = sorted(values, key=lambda pair: -pair[1])
    previous: int | None = None
    rank = 0
    for position, (customer_id, value) in enumerate(ordered, start=1):
        if value != previous:
            rank, previous = position, value
        ranks[customer_id] = rank
    return ranks


def classify(customers: Sequence[ValueFigures], rules: TierRules) -> dict[int, TierDecision]:
    """The tier of every customer, with its one-line reason. Pure: the reference for the SQL."""
    population = len(customers)
    if not population:
        return {}
    words = _reason_prefixes(rules)
    total_positive = sum(max(c.profit_cents, 0) for c in customers)
    profit_rank = _ranks([(c.customer_id, c.profit_cents) for c in customers])
    potential_rank = _ranks([(c.customer_id, c.potential_value_cents) for c in customers])
    decisions: dict[int, TierDecision] = {}
    cumulative = 0
    for c in sorted(customers, key=lambda c: (-c.profit_cents, c.customer_id)):
        before = cumulative
        cumulative += max(c.profit_cents, 0)
        profit, potential = _units(c.profit_cents), _units(c.potential_value_cents)
        profit_top = _top_percent(profit_rank[c.customer_id], population)
        potential_top = _top_percent(potential_rank[c.customer_id], population)
        if c.profit_cents > 0 and before < rules.cmv_profit_share * total_positive:
            decision = TierDecision(Tier.CMV, _interleave(words[Tier.CMV], (profit, profit_top)))
        elif c.profit_cents < 0 and c.potential_value_cents <= c.cost_to_serve_cents:
            numbers = (profit, potential, _units(c.cost_to_serve_cents))
            decision = TierDecision(Tier.BZ, _interleave(words[Tier.BZ], numbers))
        elif (
            c.potential_value_cents > 0
            and c.potential_value_cents >= rules.cmp_potential_multiple * c.profit_cents
            and potential_rank[c.customer_id] <= rules.cmp_top_share * population
        ):
            decision = TierDecision(
                Tier.CMP, _interleave(words[Tier.CMP], (potential, profit, potential_top))
            )
        else:
            numbers_all = (profit, profit_top, potential, potential_top)
            decision = TierDecision(Tier.STANDARD, _interleave(words[Tier.STANDARD], numbers_all))
        decisions[c.customer_id] = decision
    return decisions


# --- the same rule, set-based -------------------------------------------------------------------


def _sql_units(cents: ColumnElement[int]) -> ColumnElement[str]:
    # NUMERIC / an inline 100.0: PostgreSQL then rounds numeric half away from zero, as SQLite
    # and `_units` do (a float parameter would make it round double precision half to even).
    exact = cast(cents, Numeric) / literal_column("100.0", Numeric)
    return cast(cast(func.round(exact), BigInteger), String)


def _sql_reason(
    words: tuple[str, ...], numbers: Sequence[ColumnElement[str]]
) -> ColumnElement[str]:
    expression: ColumnElement[str] = literal(words[0], String)
    for number, word in zip(numbers, words[1:], strict=True):
        expression = expression + number + literal(word, String)
    return expression


def _classified(
    rules: TierRules,
) -> tuple[ColumnElement[int], ColumnElement[str], ColumnElement[str]]:
    """(customer id, tier, reason) columns of a subquery classifying every live customer."""
    c = customers_table.c
    # Summed as double precision: PostgreSQL sums BIGINT as NUMERIC, which is several times
    # slower, and doubles add integers exactly up to 2**53 cents (ninety trillion units).
    positive = case((c.profit_cents > 0, cast(c.profit_cents, Float)), else_=literal(0.0, Float))
    ranked = (
        select(
            c.id,
            c.profit_cents,
            c.potential_value_cents,
            c.cost_to_serve_cents,
            func.sum(positive).over().label("total_positive"),
            func.sum(positive)
            .over(order_by=(c.profit_cents.desc(), c.id), rows=(None, 0))
            .label("cumulative"),
            func.rank().over(order_by=c.profit_cents.desc()).label("profit_rank"),
            func.rank().over(order_by=c.potential_value_cents.desc()).label("potential_rank"),
            func.count().over().label("population"),
        )
        .where(c.status != CustomerStatus.MERGED.value)
        .subquery("ranked")
    )
    r = ranked.c
    population = cast(r.population, BigInteger)

    def top(rank: ColumnElement[int]) -> ColumnElement[str]:
        return cast((cast(rank, BigInteger) * 100 + population - 1) // population, String)

    profit, potential = _sql_units(r.profit_cents), _sql_units(r.potential_value_cents)
    words = _reason_prefixes(rules)
    is_cmv = (r.profit_cents > 0) & (
        r.cumulative - cast(r.profit_cents, Float)
        < literal(rules.cmv_profit_share, Float) * r.total_positive
    )
    is_bz = (r.profit_cents < 0) & (r.potential_value_cents <= r.cost_to_serve_cents)
    is_cmp = (
        (r.potential_value_cents > 0)
        & (
            cast(r.potential_value_cents, Float)
            >= literal(rules.cmp_potential_multiple, Float) * r.profit_cents
        )
        & (cast(r.potential_rank, Float) <= literal(rules.cmp_top_share, Float) * population)
    )
    tier = case(
        (is_cmv, Tier.CMV.value),
        (is_bz, Tier.BZ.value),
        (is_cmp, Tier.CMP.value),
        else_=Tier.STANDARD.value,
    )
    reason = case(
        (is_cmv, _sql_reason(words[Tier.CMV], (profit, top(r.profit_rank)))),
        (
            is_bz,
            _sql_reason(words[Tier.BZ], (profit, potential, _sql_units(r.cost_to_serve_cents))),
        ),
        (is_cmp, _sql_reason(words[Tier.CMP], (potential, profit, top(r.potential_rank)))),
        else_=_sql_reason(
            words[Tier.STANDARD], (profit, top(r.profit_rank), potential, top(r.potential_rank))
        ),
    )
    return r.id, tier, reason


async def recompute_tiers(
    session: AsyncSession, rules: TierRules, now: datetime | None = None
) -> int:
    """Reclassify every live customer in one statement; returns how many changed tier or reason."""
    if session.get_bind().dialect.name == "postgresql":
        # Three window sorts over the whole table: give them memory instead of temp files.
        await session.execute(text("SET LOCAL work_mem = '256MB'"))
    customer_id, tier, reason = _classified(rules)
    computed = select(customer_id.label("id"), tier.label("tier"), reason.label("reason")).subquery(
        "computed"
    )
    c = customers_table.c
    statement = (
        update(customers_table)
        .where(c.id == computed.c.id)
        .where(
            c.tier.is_distinct_from(computed.c.tier)
            | c.tier_reason.is_distinct_from(computed.c.reason)
        )
        .values(
            tier=computed.c.tier,
            tier_reason=computed.c.reason,
            tier_updated_at=now or utcnow(),
            updated_at=c.updated_at,  # a reclassification is not an edit of the customer
        )
    )
    result = await session.execute(statement, execution_options={"synchronize_session": False})
    return int(result.rowcount)  # type: ignore[attr-defined]


async def tier_counts(session: AsyncSession) -> dict[Tier, int]:
    c = customers_table.c
    rows = await session.execute(
        select(c.tier, func.count()).where(c.status != CustomerStatus.MERGED.value).group_by(c.tier)
    )
    counts = {tier: 0 for tier in Tier}
    for name, count in rows:
        counts[Tier(name)] = int(count)
    return counts
