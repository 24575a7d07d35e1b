"""`action_update_preferences`: the customer's own signed link to the preference centre."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from typing_extensions import override

from actions.channel import consent_channel
from actions.deps import ActionDeps, TrackerFacts, deps, unit_of_work
from actions.proof import generic_answer, note_unproven, sender_proven
from consent.tokens import LinkSigner, PreferenceLink
from consent.types import Channel
from crm_core.customers import get_customer
from wording import translate

__all__ = ["ActionUpdatePreferences", "conversation_channel", "preference_link"]


def conversation_channel(facts: TrackerFacts) -> Channel | None:
    """The channel the customer is writing on: the link proves that address, so never guess."""
    return consent_channel(facts.slot("channel"))


def preference_link(settings: ActionDeps, customer_id: int, channel: Channel) -> str:
    token = LinkSigner(settings.secret).preferences_token(PreferenceLink(customer_id, channel))
    return f"{settings.public_url.rstrip('/')}/preferences/{token}"


class ActionUpdatePreferences(Action):  # type: ignore[misc]
    @override
    def name(self) -> str:
        return "action_update_preferences"

    @override
    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        facts = TrackerFacts.of(tracker)
        async with unit_of_work() as session:
            customer = await get_customer(session, facts.customer_id)
        language = facts.language(customer.language)
        channel = conversation_channel(facts)
        if not sender_proven(facts):  # the link opens their account: never to a forged From
            async with unit_of_work() as session:
                await note_unproven(session, customer.id, self.name(), facts)
            dispatcher.utter_message(text=generic_answer(language))
        elif channel is None:
            dispatcher.utter_message(text=translate(language, "preferences.no_channel"))
        else:
            url = preference_link(deps(), customer.id, channel)
            dispatcher.utter_message(text=translate(language, "preferences.link", url=url))
        return []
