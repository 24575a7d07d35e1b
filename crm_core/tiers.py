"""Value tiers: who is worth most (CMV), who could grow (CMP), who costs more than they bring (BZ).

The rules (explained in docs/value-tiers.md), with their configurable defaults:

* **CMV** — the highest-profit customers who together make `cmv_profit_share` (80%) of all positive
  profit. A customer is CMV when the customers with a higher profit have not yet reached that
  share: customers with equal profit are equally valuable, and share their tier.
* **BZ** — profit below zero *and* potential value not above the cost to serve. A customer with low
  profit but high potential (the student the bank invests in) is never BZ.
* **CMP** — neither CMV nor BZ, potential value at least `cmp_potential_multiple` (2×) their profit,
  and in the top `cmp_top_share` (20%) of potential value (ties share a rank).
* **STANDARD** — everyone else.

`classify` is the rule as a pure function (the reference the tests hold the SQL to);
`recompute_tiers` is the same rule as set-based SQL, so a million customers are classified inside
the database. Merged tombstones take no part.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    Select,
    String,
    Subquery,
    Table,
    Text,
    case,
    cast,
    exists,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from crm_core import bulk
from crm_core.models import (
    CustomerStatus,
    CustomerTier,
    Tier,
    customer_tiers_table,
    customers_table,
)
from crm_core.sqltypes import utcnow

__all__ = [
    "NOT_COMPUTED",
    "TierDecision",
    "TierRules",
    "ValueFigures",
    "classify",
    "recompute_tiers",
    "tier_counts",
    "tier_reason",
]

NOT_COMPUTED = "not computed yet"  # the reason of a customer whose tier was never computed


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


def _positive_profit_above(customers: Sequence[ValueFigures]) -> dict[int, int]:
    """For each profit figure, the positive profit of all customers with a higher one."""
    above: dict[int, int] = {}
    total = 0
    for profit, count in sorted(Counter(c.profit_cents for c in customers).items(), reverse=True):
        above[profit] = total
        total += max(profit, 0) * count
    return above


def classify(customers: Sequence[ValueFigures], rules: TierRules) -> dict[int, TierDecision]:
    """The tier of every customer, with its one-line reason. Pure: the reference for the SQL."""
    population = len(customers)
    if not population:
        return {}
    words = _reason_prefixes(rules)
    total_positive = sum(max(c.profit_cents, 0) for c in customers)
    profit_rank = _ranks([(c.customer_id, c.profit_cents) for c in customers])
    potential_rank = _ranks([(c.customer_id, c.potential_value_cents) for c in customers])
    above = _positive_profit_above(customers)
    decisions: dict[int, TierDecision] = {}
    for c in customers:
        profit, potential = _units(c.profit_cents), _units(c.potential_value_cents)
        profit_top = _top_percent(profit_rank[c.customer_id], population)
        potential_top = _top_percent(potential_rank[c.customer_id], population)
        if c.profit_cents > 0 and above[c.profit_cents] < rules.cmv_profit_share * total_positive:
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


def _sql_units(cents: ColumnElement[int]) -> ColumnElement[int]:
    # Integer arithmetic, half away from zero as `_units` rounds (both databases divide integers
    # towards zero): far cheaper than NUMERIC or floating point over a million rows.
    return case((cents >= 0, (cents + 50) // 100), else_=-((50 - cents) // 100))


def _sql_reason(
    dialect: str, words: tuple[str, ...], numbers: Sequence[ColumnElement[int]]
) -> ColumnElement[str]:
    """The words with the numbers between them, by one formatting call per row (PostgreSQL's
    format, SQLite's printf) rather than a chain of casts and concatenations."""
    template = "%s".join(word.replace("%", "%%") for word in words)
    formatting = func.format if dialect == "postgresql" else func.printf
    return formatting(literal(template, String), *numbers, type_=String)


# --- the ranks every decision needs -------------------------------------------------------------
#
# PostgreSQL sorts a million rows in memory quickly: it ranks inline, both windows stacked in the
# one statement that decides. SQLite carries every column of the row through each window sort
# (four times slower than a narrow pass): it first computes each ranking alone into a narrow
# temporary table keyed by id, reading its own index in order (`ix_customers_*_rank`) so that
# nothing is sorted, then decides from a join in id order.

_work_metadata = MetaData()


def _work_table(name: str, *columns: Column[Any]) -> Table:
    """A temporary table of one row per customer, keyed by id (on SQLite: the rowid itself)."""
    key = Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    return Table(name, _work_metadata, key, *columns, prefixes=["TEMPORARY"])


_potential_ranks = _work_table("tier_potential_ranks", Column("rank", BigInteger, nullable=False))
_profit_ranks = _work_table(
    "tier_profit_ranks",
    Column("rank", BigInteger, nullable=False),
    Column("above", Float, nullable=False),
)
# Each recompute's decisions, written once and read by the two writes that follow; in id order,
# so those writes go through customers and the reasons' primary key in order, not at random.
_decisions = _work_table(
    "tier_decisions",
    Column("tier", String, nullable=False),
    Column("reason", Text, nullable=False),
    Column("stored_tier", String, nullable=False),
)


def _positive_profit() -> ColumnElement[float]:
    # Summed as double precision: PostgreSQL sums BIGINT as NUMERIC, which is several times
    # slower, and doubles add integers exactly up to 2**53 cents (ninety trillion units).
    c = customers_table.c
    return case((c.profit_cents > 0, cast(c.profit_cents, Float)), else_=literal(0.0, Float))


def _live() -> ColumnElement[bool]:
    return customers_table.c.status != CustomerStatus.MERGED.value


def _potential_rank() -> ColumnElement[int]:
    return func.rank().over(order_by=customers_table.c.potential_value_cents.desc())


def _profit_rank_and_above() -> tuple[ColumnElement[int], ColumnElement[float]]:
    """The profit rank, and the positive profit of everyone with a higher profit.

    One window, so one pass: by default its frame runs to the last customer with the same
    profit, so its sum counts those peers too, and they are taken off again.
    """
    by_profit = customers_table.c.profit_cents.desc()
    rank = func.rank().over(order_by=by_profit)
    peers = func.count().over(order_by=by_profit) - rank + 1
    at_or_above = func.sum(_positive_profit()).over(order_by=by_profit)
    return rank, at_or_above - _positive_profit() * peers


def _ranked(
    potential_rank: ColumnElement[int], profit_rank: ColumnElement[int], above: ColumnElement[float]
) -> Select[Any]:
    """What `_classified` reads of each customer: their figures, stored tier and ranks."""
    c = customers_table.c
    return select(
        c.id,
        c.tier.label("stored_tier"),
        c.profit_cents,
        c.potential_value_cents,
        c.cost_to_serve_cents,
        potential_rank.label("potential_rank"),
        profit_rank.label("profit_rank"),
        above.label("above"),
    )


def _ranked_inline() -> Subquery:
    return _ranked(_potential_rank(), *_profit_rank_and_above()).where(_live()).subquery("ranked")


async def _ranked_ahead(conn: AsyncConnection) -> Subquery:
    """The ranks computed first into the narrow tables, then joined to customers by id."""
    c, pr, vr = customers_table.c, _profit_ranks.c, _potential_ranks.c
    profit_rank, above = _profit_rank_and_above()
    await conn.execute(
        _potential_ranks.insert().from_select(
            ["id", "rank"], select(c.id, _potential_rank()).where(_live())
        )
    )
    await conn.execute(
        _profit_ranks.insert().from_select(
            ["id", "rank", "above"], select(c.id, profit_rank, above).where(_live())
        )
    )
    # Driven by the rank tables (live customers only, in id order), so customers is read in
    # order by its primary key.
    return (
        _ranked(vr.rank, pr.rank, pr.above)
        .select_from(
            _potential_ranks.join(_profit_ranks, pr.id == vr.id).join(
                customers_table, c.id == vr.id
            )
        )
        .subquery("ranked")
    )


def _classified(
    rules: TierRules, dialect: str, population: int, share: ColumnElement[float], ranked: Subquery
) -> Select[tuple[int, str, str, str]]:
    """(id, tier, reason, stored tier) of every ranked customer, in id order.

    The tier is decided once; the reason then follows the tier.
    """
    r = ranked.c
    is_cmv = (r.profit_cents > 0) & (r.above < share)
    is_bz = (r.profit_cents < 0) & (r.potential_value_cents <= r.cost_to_serve_cents)
    is_cmp = (
        (r.potential_value_cents > 0)
        & (
            cast(r.potential_value_cents, Float)
            >= literal(rules.cmp_potential_multiple, Float) * r.profit_cents
        )
        & (
            cast(r.potential_rank, Float)
            <= literal(rules.cmp_top_share, Float) * literal(population, Float)
        )
    )
    decided = select(
        r.id,
        r.stored_tier,
        r.profit_cents,
        r.potential_value_cents,
        r.cost_to_serve_cents,
        r.profit_rank,
        r.potential_rank,
        case(
            (is_cmv, Tier.CMV.value),
            (is_bz, Tier.BZ.value),
            (is_cmp, Tier.CMP.value),
            else_=Tier.STANDARD.value,
        ).label("tier"),
    ).subquery("decided")
    d = decided.c

    def top(rank: ColumnElement[int]) -> ColumnElement[int]:
        return (cast(rank, BigInteger) * 100 + (population - 1)) // population

    profit, potential = _sql_units(d.profit_cents), _sql_units(d.potential_value_cents)
    words = _reason_prefixes(rules)
    cost = _sql_units(d.cost_to_serve_cents)
    reason = case(
        (
            d.tier == Tier.CMV.value,
            _sql_reason(dialect, words[Tier.CMV], (profit, top(d.profit_rank))),
        ),
        (d.tier == Tier.BZ.value, _sql_reason(dialect, words[Tier.BZ], (profit, potential, cost))),
        (
            d.tier == Tier.CMP.value,
            _sql_reason(dialect, words[Tier.CMP], (potential, profit, top(d.potential_rank))),
        ),
        else_=_sql_reason(
            dialect,
            words[Tier.STANDARD],
            (profit, top(d.profit_rank), potential, top(d.potential_rank)),
        ),
    )
    return select(d.id, d.tier, reason.label("reason"), d.stored_tier).order_by(d.id)


async def recompute_tiers(
    session: AsyncSession, rules: TierRules, now: datetime | None = None
) -> int:
    """Reclassify every live customer; returns how many changed tier or reason.

    The decisions are computed set-based into a temporary table (on SQLite after the ranks, into
    two more; see above). Then the customers whose tier moved get it (a customer row is wide: it
    is rewritten only when needed), and every reason that changed is written to the narrow
    `customer_tiers`, stamped `now`.
    """
    conn = await session.connection()
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        # Window sorts over the whole table: give them memory instead of temp files. No JIT:
        # compiling these expressions costs more than it saves.
        await conn.execute(text("SET LOCAL work_mem = '256MB'"))
        await conn.execute(text("SET LOCAL jit = off"))
    # The population and its positive profit, once, up front (a window over all rows for them
    # would buffer every row).
    population, total_positive = (
        await conn.execute(
            select(
                func.count(), func.coalesce(func.sum(_positive_profit()), literal(0.0, Float))
            ).where(_live())
        )
    ).one()
    if not population:
        return 0
    # The CMV share of all positive profit, computed in SQL as `classify` computes it in Python.
    share = literal(rules.cmv_profit_share, Float) * literal(float(total_positive), Float)
    work = [_decisions] if postgres else [_potential_ranks, _profit_ranks, _decisions]
    await conn.run_sync(lambda sync_conn: _work_metadata.create_all(sync_conn, tables=work))
    ranked = _ranked_inline() if postgres else await _ranked_ahead(conn)
    decided = await conn.execute(
        _decisions.insert().from_select(
            ["id", "tier", "reason", "stored_tier"],
            _classified(rules, conn.dialect.name, int(population), share, ranked),
        )
    )
    c, d, t = customers_table.c, _decisions.c, customer_tiers_table.c
    moved = select(d.id, d.tier).where(d.tier != d.stored_tier).subquery("moved")
    await conn.execute(
        update(customers_table)
        .where(c.id == moved.c.id)
        # A reclassification is not an edit of the customer: keep updated_at.
        .values(tier=moved.c.tier, updated_at=c.updated_at)
    )
    stamp = literal(now or utcnow(), t.updated_at.type)
    # Most customers without a reason yet (the first recompute, or after a large import): the
    # reasons' key and foreign key are built once afterwards (`crm_core.bulk`).
    large = postgres and await bulk.is_smaller_than(
        conn, customer_tiers_table, int(decided.rowcount) // 2
    )
    if large:
        await bulk.set_aside(conn, customer_tiers_table, keys=True)
    updated = await conn.execute(
        update(customer_tiers_table)
        .where(t.customer_id == d.id, t.reason != d.reason)
        .values(reason=d.reason, updated_at=stamp)
    )
    columns = ["customer_id", "reason", "updated_at"]
    if large:
        # NOT IN: the few stored ids are hashed once. (An anti-join planned for the table as it
        # was, empty, would rescan it for every row while this very insert grows it.)
        first = select(d.id, d.reason, stamp).where(d.id.not_in(select(t.customer_id)))
        inserted = await conn.execute(customer_tiers_table.insert().from_select(columns, first))
        await bulk.restore(conn, customer_tiers_table, keys=True)
    else:
        first = select(d.id, d.reason, stamp).where(~exists().where(t.customer_id == d.id))
        insert = (postgresql.insert if postgres else sqlite.insert)(customer_tiers_table)
        # In key order: the primary key then grows at its end instead of at random. DO
        # NOTHING: a concurrent recompute wrote the same decision meanwhile.
        inserted = await conn.execute(
            insert.from_select(columns, first.order_by(d.id)).on_conflict_do_nothing()
        )
    await conn.run_sync(lambda sync_conn: _work_metadata.drop_all(sync_conn, tables=work))
    return int(updated.rowcount) + int(inserted.rowcount)


async def tier_reason(session: AsyncSession, customer_id: int) -> tuple[str, datetime | None]:
    """A customer's tier reason and when it was set; NOT_COMPUTED before the first recompute."""
    found = (
        await session.execute(
            select(CustomerTier.reason, CustomerTier.updated_at).where(
                CustomerTier.customer_id == customer_id
            )
        )
    ).one_or_none()
    return (found.reason, found.updated_at) if found else (NOT_COMPUTED, None)


async def tier_counts(session: AsyncSession) -> dict[Tier, int]:
    c = customers_table.c
    rows = await session.execute(
        select(c.tier, func.count()).where(c.status != CustomerStatus.MERGED.value).group_by(c.tier)
    )
    counts = {tier: 0 for tier in Tier}
    for name, count in rows:
        counts[Tier(name)] = int(count)
    return counts
