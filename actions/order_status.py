"""`action_order_status`: where is my order?"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import override

from actions.deps import TrackerFacts, deps, spoken_date, unit_of_work
from crm_core.customers import get_customer
from crm_core.models import Interaction, InteractionKind

__all__ = ["ActionOrderStatus", "find_order", "normalise_order_number", "order_reply"]

_STATUS = {
    "es": {
        "received": "recibido",
        "pending": "pendiente",
        "processing": "en preparación",
        "shipped": "enviado",
        "in_transit": "en camino",
        "delivered": "entregado",
        "cancelled": "cancelado",
        "returned": "devuelto",
        "refunded": "reembolsado",
    },
    "en": {
        "received": "received",
        "pending": "pending",
        "processing": "being prepared",
        "shipped": "shipped",
        "in_transit": "on its way",
        "delivered": "delivered",
        "cancelled": "cancelled",
        "returned": "returned",
        "refunded": "refunded",
    },
}
_TEXTS = {
    "es": {
        "ask": "¿Cuál es tu número de pedido? Lo encontrarás en el correo de confirmación "
        "(por ejemplo, SO-123456).",
        "missing": "No encuentro ningún pedido {number} a tu nombre. Revisa el número o, si "
        "prefieres, te paso con una persona del equipo.",
        "found": "Tu pedido {number} ({item}), realizado el {date}: {status}.",
    },
    "en": {
        "ask": "What is your order number? You'll find it in the confirmation e-mail "
        "(for example, SO-123456).",
        "missing": "I can't find an order {number} under your name. Please check the number, "
        "or I can pass you to a member of our team.",
        "found": "Your order {number} ({item}), placed on {date}: {status}.",
    },
}


def normalise_order_number(raw: str) -> str:
    """'#so-123456 ' → 'SO-123456': customers type numbers every which way."""
    return raw.strip().lstrip("#").strip().upper()


async def find_order(session: AsyncSession, customer_id: int, number: str) -> Interaction | None:
    """The customer's most recent purchase with this order number, if any.

    A customer has few purchases, so they are matched here rather than with JSON operators
    that differ between SQLite and PostgreSQL."""
    wanted = normalise_order_number(number)
    rows = await session.scalars(
        select(Interaction)
        .where(
            Interaction.customer_id == customer_id,
            Interaction.kind == InteractionKind.PURCHASE.value,
        )
        .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
    )
    for purchase in rows:
        order_id = (purchase.data or {}).get("order_id")
        if order_id is not None and normalise_order_number(str(order_id)) == wanted:
            return purchase
    return None


def order_reply(
    purchase: Interaction | None, number: str | None, language: str, timezone: Any
) -> str:
    texts = _TEXTS[language]
    if number is None:
        return texts["ask"]
    if purchase is None:
        return texts["missing"].format(number=number)
    data = purchase.data or {}
    status = str(data.get("status") or "received")
    return texts["found"].format(
        number=data.get("order_id", number),
        item=data.get("item") or "—",
        date=spoken_date(purchase.occurred_at.astimezone(timezone), language),
        status=_STATUS[language].get(status.lower(), status),
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
            customer = await get_customer(session, facts.customer_id)
            purchase = await find_order(session, customer.id, number) if number else None
        language = facts.language(customer.language)
        timezone = facts.timezone(customer.timezone, deps().default_timezone)
        dispatcher.utter_message(text=order_reply(purchase, number, language, timezone))
        return [SlotSet("order_number", number)] if number else []
