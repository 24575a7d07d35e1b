"""`action_handoff`: tell the customer a person is coming, and say so to whoever runs the bot."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from typing_extensions import override

from actions.deps import TrackerFacts
from wording import translate

__all__ = ["DEFAULT_REASON", "ActionHandoff", "handoff_notice"]

DEFAULT_REASON = "customer_asked"


def handoff_notice(language: str) -> str:
    return translate(language, "handoff.notice")


class ActionHandoff(Action):  # type: ignore[misc]
    """Needs no database: the embedded dialog queues the conversation itself, and a real Rasa
    deployment learns of the hand-off from the custom payload on its REST channel."""

    @override
    def name(self) -> str:
        return "action_handoff"

    @override
    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        facts = TrackerFacts.of(tracker)
        reason = facts.slot("handoff_reason") or DEFAULT_REASON
        dispatcher.utter_message(text=handoff_notice(facts.language()))
        dispatcher.utter_message(json_message={"handoff": reason})
        return [SlotSet("handoff_reason", reason)]
