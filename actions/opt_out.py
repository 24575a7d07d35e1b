"""`action_opt_out`: "stop sending me offers", said in words rather than with the STOP keyword."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import override

from actions.deps import TrackerFacts, unit_of_work
from consent.ledger import record_consent
from consent.types import Action as ConsentAction
from consent.types import Channel, Purpose, Source
from crm_core.customers import get_customer

__all__ = ["ActionOptOut", "opt_out"]

_CHANNEL_NAMES = {
    "es": {"sms": "SMS", "email": "correo", "telegram": "Telegram", "webchat": "el chat web"},
    "en": {"sms": "SMS", "email": "e-mail", "telegram": "Telegram", "webchat": "the web chat"},
}
_TEXTS = {
    "es": {
        "done": "Hecho: no te enviaremos más mensajes comerciales por {channel}. Seguiremos "
        "respondiendo a lo que nos preguntes.",
        "no_channel": "No sé por qué canal quieres dejar de recibir mensajes. Si quieres, te "
        "paso con una persona del equipo.",
    },
    "en": {
        "done": "Done: we won't send you any more marketing messages by {channel}. We'll still "
        "answer anything you ask us.",
        "no_channel": "I'm not sure which channel you want to stop. I can pass you to a member "
        "of our team if you like.",
    },
}


async def opt_out(session: AsyncSession, customer_id: int, channel: Channel, text: str) -> None:
    """Revoke marketing on the channel the customer wrote on, with their words as evidence.

    Source.KEYWORD: the customer asked in a message on that channel, which is what the keyword
    source records; the evidence keeps the exact text and that the bot (not a keyword) read it.
    Service messages stay: they asked to stop offers, not to stop answers (STOP does that)."""
    await record_consent(
        session,
        customer_id,
        channel,
        Purpose.MARKETING,
        ConsentAction.REVOKE,
        Source.KEYWORD,
        actor="customer",
        evidence={"text": text, "understood_by": "action_opt_out"},
    )


class ActionOptOut(Action):  # type: ignore[misc]
    @override
    def name(self) -> str:
        return "action_opt_out"

    @override
    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        facts = TrackerFacts.of(tracker)
        value = facts.slot("channel")
        channel = Channel(value) if value in set(Channel) else None
        async with unit_of_work() as session:
            customer = await get_customer(session, facts.customer_id)
            language = facts.language(customer.language)
            if channel is not None:
                await opt_out(session, customer.id, channel, facts.text)
        if channel is None:
            dispatcher.utter_message(text=_TEXTS[language]["no_channel"])
        else:
            name = _CHANNEL_NAMES[language].get(channel.value, channel.value)
            dispatcher.utter_message(text=_TEXTS[language]["done"].format(channel=name))
        return []
