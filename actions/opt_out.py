"""`action_opt_out`: "stop sending me offers", said in words rather than with the STOP keyword.

Withdrawing consent is the customer's decision, never the intent model's guess: "quiero devolver
una camisa que no me queda bien" once read as an opt-out. So marketing is revoked at once only
when the words are a clear revocation (`consent.keywords`, the same reading as STOP's); a guess
asks first ("stop marketing messages by e-mail? Reply YES") and the revocation is recorded when
the next message confirms it (the `awaiting` slot, `actions.awaiting`). A plain no declines: the
customer is told that nothing changes and the question is closed (the intent model reads a bare
"no" as an opt-out, so without this the answer asked the same question again). Anything else
lets the question lapse, and consent stays as it was.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import override

from actions.awaiting import AWAITING_SLOT, Awaiting
from actions.channel import consent_channel
from actions.deps import TrackerFacts, unit_of_work
from consent.keywords import KeywordKind, classify
from consent.ledger import record_consent
from consent.types import Action as ConsentAction
from consent.types import Channel, Purpose, Source
from crm_core.customers import get_customer
from wording import N_, fold, translate

__all__ = [
    "REQUEST_SLOT",
    "ActionOptOut",
    "OptOutStep",
    "is_confirmation",
    "is_decline",
    "opt_out",
    "opt_out_step",
    "settles_the_question",
]

REQUEST_SLOT = "opt_out_request"  # the customer's words while their confirmation is awaited
_CHANNEL_NAMES = {
    Channel.SMS: N_("channel.sms"),
    Channel.EMAIL: N_("channel.email"),
    Channel.TELEGRAM: N_("channel.telegram"),
    Channel.WEBCHAT: N_("channel.webchat"),
    Channel.VOICE: N_("channel.voice"),
}


def is_confirmation(text: str) -> bool:
    """YES / SÍ as the whole message: the answer the question asks for, and nothing looser
    ("yes but what about my order?" is not a decision to withdraw consent)."""
    match = classify(text)
    return match.kind is KeywordKind.OPT_IN and match.confirms_pending


# A plain no, in Spanish or English, as the whole message (folded, punctuation aside). Only the
# whole message: "no quiero más ofertas" is a revocation in words, not an answer to the question.
_DECLINES = frozenset(
    {
        "no",
        "no gracias",
        "no muchas gracias",
        "para nada",
        "de ninguna manera",
        "claro que no",
        "mejor no",
        "no thanks",
        "no thank you",
        "nope",
        "nah",
        "no way",
        "not at all",
        "of course not",
    }
)
_WORD = re.compile(r"\w+")


def is_decline(text: str) -> bool:
    """A plain no ("no", "no, gracias", "nope", "para nada") as the whole message."""
    return " ".join(_WORD.findall(fold(text))) in _DECLINES


def settles_the_question(text: str) -> bool:
    """Does this message answer "stop marketing messages…? Reply YES", one way or the other?
    The embedded dialog gives such a message back to `action_opt_out`."""
    return is_confirmation(text) or is_decline(text)


class OptOutStep(StrEnum):
    REVOKE = "revoke"  # a clear revocation, or the confirmation of one asked
    DECLINE = "decline"  # no to the question asked: nothing changes
    ASK = "ask"  # the model's guess alone: ask before changing anything


def opt_out_step(text: str, awaiting: Awaiting | None) -> OptOutStep:
    """Pure: revoke now, keep everything as it is, or ask first."""
    if classify(text).kind is KeywordKind.OPT_OUT:
        return OptOutStep.REVOKE
    if awaiting is Awaiting.OPT_OUT_CONFIRMATION:
        if is_confirmation(text):
            return OptOutStep.REVOKE
        if is_decline(text):
            return OptOutStep.DECLINE
    return OptOutStep.ASK


async def opt_out(
    session: AsyncSession,
    customer_id: int,
    channel: Channel,
    text: str,
    *,
    confirmed_by: str | None = None,
) -> None:
    """Revoke marketing on the channel the customer wrote on, with their words as evidence.

    Source.KEYWORD: the customer asked in a message on that channel, which is what the keyword
    source records; the evidence keeps the exact text, that the bot (not a keyword) read it and,
    for a request the bot asked about, the answer that confirmed it. Service messages stay: they
    asked to stop offers, not to stop answers (STOP does that)."""
    evidence: dict[str, Any] = {"text": text, "understood_by": "action_opt_out"}
    if confirmed_by is not None:
        evidence["confirmed_by"] = confirmed_by
    await record_consent(
        session,
        customer_id,
        channel,
        Purpose.MARKETING,
        ConsentAction.REVOKE,
        Source.KEYWORD,
        actor="customer",
        evidence=evidence,
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
        channel = consent_channel(facts.slot("channel"))
        awaiting = Awaiting.of(facts.slot(AWAITING_SLOT))
        step = opt_out_step(facts.text, awaiting)
        done: list[dict[str, Any]] = [SlotSet(AWAITING_SLOT, None), SlotSet(REQUEST_SLOT, None)]
        async with unit_of_work() as session:
            customer = await get_customer(session, facts.customer_id)
            language = facts.language(customer.language)
            if channel is not None and step is OptOutStep.REVOKE:
                request = facts.slot(REQUEST_SLOT) if awaiting else None
                if request is None:
                    await opt_out(session, customer.id, channel, facts.text)
                else:
                    await opt_out(session, customer.id, channel, request, confirmed_by=facts.text)
        if channel is None:
            dispatcher.utter_message(text=translate(language, "optout.no_channel"))
            return done
        name = translate(language, _CHANNEL_NAMES[channel])
        if step is OptOutStep.DECLINE:
            dispatcher.utter_message(text=translate(language, "optout.declined", channel=name))
            return done
        if step is OptOutStep.ASK:
            dispatcher.utter_message(text=translate(language, "optout.confirm", channel=name))
            return [
                SlotSet(AWAITING_SLOT, Awaiting.OPT_OUT_CONFIRMATION.value),
                SlotSet(REQUEST_SLOT, facts.text),
            ]
        dispatcher.utter_message(text=translate(language, "optout.done", channel=name))
        return done
