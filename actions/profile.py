"""`action_customer_profile`: who we are talking to, as slots for personalised replies."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import override

from actions.deps import TrackerFacts, deps, unit_of_work
from actions.proof import note_unproven, sender_proven
from crm_core.customers import get_customer
from wording import pick_language

__all__ = ["ActionCustomerProfile", "profile_slots"]


async def profile_slots(
    session: AsyncSession, customer_id: int, *, language: str, default_timezone: str
) -> dict[str, Any]:
    customer = await get_customer(session, customer_id)
    return {
        "customer_name": customer.name,
        "tier": customer.tier,
        "language": pick_language(customer.language, language),
        "timezone": customer.timezone or default_timezone,
    }


class ActionCustomerProfile(Action):  # type: ignore[misc]
    @override
    def name(self) -> str:
        return "action_customer_profile"

    @override
    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        facts = TrackerFacts.of(tracker)
        async with unit_of_work() as session:
            if not sender_proven(facts):
                # Not their name nor their tier for a sender who may not be them (actions.proof);
                # the language and time zone of the conversation are theirs to keep.
                await note_unproven(session, facts.customer_id, self.name(), facts)
                return [
                    SlotSet("language", facts.language()),
                    SlotSet("timezone", facts.slot("timezone") or deps().default_timezone),
                ]
            slots = await profile_slots(
                session,
                facts.customer_id,
                language=facts.language(),
                default_timezone=deps().default_timezone,
            )
        return [SlotSet(name, value) for name, value in slots.items()]
