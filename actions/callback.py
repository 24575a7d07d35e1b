"""`action_request_callback`: "call me tomorrow at 10"."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import override

from actions.deps import TrackerFacts, deps, spoken_appointment, unit_of_work
from crm_core.customers import get_customer
from crm_core.models import Interaction, InteractionKind
from crm_core.sqltypes import utcnow
from crm_core.timeline import add_interaction

__all__ = [
    "ActionRequestCallback",
    "CallbackInPast",
    "callback_confirmation",
    "parse_requested_time",
    "request_callback",
]

_SOON = timedelta(days=6)  # within a week the weekday and day are enough; later, add the month
_TEXTS = {
    "es": {
        "ask": "¿Cuándo quieres que te llamemos? Dime el día y la hora (por ejemplo, "
        "«mañana a las 10»).",
        "past": "Esa hora ya ha pasado. ¿Cuándo quieres que te llamemos?",
        "done": "Te llamaremos {when}.",
    },
    "en": {
        "ask": "When would you like us to call you? Tell me the day and time (for example, "
        "'tomorrow at 10am').",
        "past": "That time has already passed. When would you like us to call you?",
        "done": "We'll call you {when}.",
    },
}


class CallbackInPast(ValueError):
    pass


def parse_requested_time(value: str, timezone: ZoneInfo) -> datetime | None:
    """An ISO time from the NLU or the slot; a time without an offset is the customer's local."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone)


async def request_callback(
    session: AsyncSession,
    customer_id: int,
    when: datetime,
    *,
    channel: str | None,
    timezone: ZoneInfo,
    now: datetime | None = None,
) -> Interaction:
    """Put the requested call-back on the customer's timeline, where the agents' queue finds it."""
    if when <= (now or utcnow()):
        raise CallbackInPast(f"{when.isoformat()} is in the past")
    local = when.astimezone(timezone)
    return await add_interaction(
        session,
        customer_id,
        InteractionKind.CALLBACK,
        f"Call-back requested for {local:%Y-%m-%d %H:%M} ({timezone.key})",
        channel=channel,
        actor="customer",
        data={"requested_for": when.isoformat(), "channel": channel, "status": "requested"},
    )


def callback_confirmation(
    when: datetime, timezone: ZoneInfo, language: str, *, now: datetime | None = None
) -> str:
    local = when.astimezone(timezone)
    soon = local - (now or utcnow()) <= _SOON
    return _TEXTS[language]["done"].format(
        when=spoken_appointment(local, language, with_month=not soon)
    )


class ActionRequestCallback(Action):  # type: ignore[misc]
    @override
    def name(self) -> str:
        return "action_request_callback"

    @override
    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        facts = TrackerFacts.of(tracker)
        raw = facts.entity("datetime") or facts.slot("callback_time")
        async with unit_of_work() as session:
            customer = await get_customer(session, facts.customer_id)
            language = facts.language(customer.language)
            timezone = facts.timezone(customer.timezone, deps().default_timezone)
            when = parse_requested_time(raw, timezone) if raw else None
            if when is None:
                dispatcher.utter_message(text=_TEXTS[language]["ask"])
                return []
            try:
                await request_callback(
                    session, customer.id, when, channel=facts.slot("channel"), timezone=timezone
                )
            except CallbackInPast:
                dispatcher.utter_message(text=_TEXTS[language]["past"])
                return [SlotSet("callback_time", None)]
        dispatcher.utter_message(text=callback_confirmation(when, timezone, language))
        return [SlotSet("callback_time", when.isoformat())]
