"""`action_order_status`: where is my order?"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import Select, and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import override

from actions.deps import TrackerFacts, deps, spoken_date, unit_of_work
from actions.proof import generic_answer, note_unproven, sender_proven
from crm_core.customers import CustomerNotFound
from crm_core.models import customers_table, interactions_table, is_purchase
from wording import N_, translate

__all__ = [
    "ActionOrderStatus",
    "CustomerOrders",
    "Purchase",
    "customer_orders",
    "find_order",
    "normalise_order_number",
    "order_reply",
    "orders_known",
    "read_orders",
]

_STATUS = {
    "received": N_("order.status.received"),
    "pending": N_("order.status.pending"),
    "processing": N_("order.status.processing"),
    "shipped": N_("order.status.shipped"),
    "in_transit": N_("order.status.in_transit"),
    "delivered": N_("order.status.delivered"),
    "cancelled": N_("order.status.cancelled"),
    "returned": N_("order.status.returned"),
    "refunded": N_("order.status.refunded"),
}


def normalise_order_number(raw: str) -> str:
    """'#so-123456 ' → 'SO-123456': customers type numbers every which way."""
    return raw.strip().lstrip("#").strip().upper()


@dataclass(frozen=True, slots=True)
class Purchase:
    order_id: str
    item: str | None
    status: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class CustomerOrders:
    customer_id: int  # the live customer, merges followed
    language: str | None
    timezone: str | None
    purchases: tuple[Purchase, ...]  # newest first


def _orders_query(*, many: bool) -> Select[Any]:
    customers, interactions = customers_table, interactions_table
    purchases = and_(
        interactions.c.customer_id == customers.c.id,
        is_purchase(interactions.c.kind),  # ix_interactions_purchases
    )
    query = select(
        customers.c.id,
        customers.c.merged_into_id,
        customers.c.language,
        customers.c.timezone,
        interactions.c.data,
        interactions.c.occurred_at,
    ).select_from(customers.outerjoin(interactions, purchases))
    newest_first = (interactions.c.occurred_at.desc(), interactions.c.id.desc())
    if many:
        return query.where(customers.c.id.in_(bindparam("ids", expanding=True))).order_by(
            customers.c.id, *newest_first
        )
    return query.where(customers.c.id == bindparam("customer_id")).order_by(*newest_first)


_ORDERS = _orders_query(many=False)
_MANY_ORDERS = _orders_query(many=True)


class _Known(NamedTuple):
    session: AsyncSession
    orders: Mapping[int, CustomerOrders]


# Orders read ahead for the turns of a batch (`orders_known`), valid in that session only.
_known: ContextVar[_Known | None] = ContextVar("sastre_orders_known", default=None)


def _orders_of(rows: Sequence[Any]) -> CustomerOrders:
    """One live customer's rows (newest first) as their orders."""
    purchases = tuple(
        Purchase(
            order_id=str(data["order_id"]),
            item=data.get("item"),
            status=str(data.get("status") or "received"),
            occurred_at=row.occurred_at,
        )
        for row in rows
        if (data := row.data) is not None and data.get("order_id") is not None
    )
    first = rows[0]
    return CustomerOrders(first.id, first.language, first.timezone, purchases)


async def read_orders(
    session: AsyncSession, customer_ids: Sequence[int]
) -> dict[int, CustomerOrders]:
    """Several customers' orders in one query (a batch's order-status questions, read ahead:
    one round trip instead of one each). A merged record is left out: `customer_orders`
    follows it to the survivor."""
    rows = (await session.execute(_MANY_ORDERS, {"ids": sorted(set(customer_ids))})).all()
    by_customer: dict[int, list[Any]] = {}
    for row in rows:
        if row.merged_into_id is None:
            by_customer.setdefault(row.id, []).append(row)
    return {customer_id: _orders_of(found) for customer_id, found in by_customer.items()}


@contextmanager
def orders_known(session: AsyncSession, orders: Mapping[int, CustomerOrders]) -> Iterator[None]:
    """Within this block, `customer_orders` in `session` answers from `orders` when it can.
    For reads ahead within one transaction that writes no purchases meanwhile."""
    token = _known.set(_Known(session, orders))
    try:
        yield
    finally:
        _known.reset(token)


async def customer_orders(session: AsyncSession, customer_id: int) -> CustomerOrders:
    """The customer (following merges) and their purchases, in one query.

    A customer has few purchases, so order numbers are matched in Python (`find_order`) rather
    than with JSON operators that differ between SQLite and PostgreSQL."""
    known = _known.get()
    if known is not None and known.session is session and customer_id in known.orders:
        return known.orders[customer_id]
    for _ in range(16):  # a merge chain is short; the bound only guards against a cycle
        rows = (await session.execute(_ORDERS, {"customer_id": customer_id})).all()
        if not rows:
            raise CustomerNotFound(f"no customer {customer_id}")
        if rows[0].merged_into_id is not None:
            customer_id = rows[0].merged_into_id
            continue
        return _orders_of(rows)
    raise CustomerNotFound(f"customer {customer_id} has a broken merge chain")


def find_order(orders: CustomerOrders, number: str) -> Purchase | None:
    """The customer's most recent purchase with this order number, if any."""
    wanted = normalise_order_number(number)
    return next((p for p in orders.purchases if normalise_order_number(p.order_id) == wanted), None)


def order_reply(purchase: Purchase | None, number: str | None, language: str, timezone: Any) -> str:
    if number is None:
        return translate(language, "order.ask")
    if purchase is None:
        return translate(language, "order.missing", number=number)
    status = _STATUS.get(purchase.status.lower())
    return translate(
        language,
        "order.found",
        number=purchase.order_id,
        item=purchase.item or "—",
        date=spoken_date(purchase.occurred_at.astimezone(timezone), language),
        status=translate(language, status) if status else purchase.status,
    )


class ActionOrderStatus(Action):  # type: ignore[misc]
    @override
    def name(self) -> str:
        return "action_order_status"

    @override
    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        facts = TrackerFacts.of(tracker)
        raw = facts.entity_or_slot("order_number")
        number = normalise_order_number(raw) if raw else None
        async with unit_of_work() as session:
            orders = await customer_orders(session, facts.customer_id)
            if not sender_proven(facts):  # a forged From gets no one's orders (actions.proof)
                await note_unproven(session, orders.customer_id, self.name(), facts)
                dispatcher.utter_message(text=generic_answer(facts.language(orders.language)))
                return []
        purchase = find_order(orders, number) if number else None
        language = facts.language(orders.language)
        timezone = facts.timezone(orders.timezone, deps().default_timezone)
        dispatcher.utter_message(text=order_reply(purchase, number, language, timezone))
        return [SlotSet("order_number", number)] if number else []
