"""The embedded bot: understand the message, answer it at once when we can, hand off when not.

`plan_turn` is the rule, a pure function of what was understood and who is asking:

0. A message that answers the question an action asked (a phone number for a call-back, YES to
   "stop marketing messages?") goes back to that action (`actions.awaiting`).
   Files with no words (a photo-only MMS) are acknowledged and handed to a person
   (`attachment`): there is nothing for the bot to understand, and it is no failed turn.
1. The customer asks for a person → hand off (`customer_asked`).
2. A complaint → hand off (`complaint`), recorded on the timeline (it starts the marketing
   cooldown). "I called to complain and now you sell me something?" must not happen.
3. A confident FAQ match answers FAQ-like questions.
4. Order status, call-back requests, preference changes and opt-outs run their rasa-sdk action.
5. Greetings, thanks and goodbyes get a short answer.
6. Anything else is not understood. A CMV customer goes to a person at once (their exclusive
   channel: no bot maze); others get one "could you rephrase?" and a person after the second
   turn the bot could not understand. A question confidently about the FAQ that the FAQ cannot
   answer confidently is not understood either.

A CMV customer is also handed off whenever the bot's confidence is below `cmv_confidence`.

What an action is waiting for lives in the conversation's flags (`"slots"`), as a Rasa server
keeps slots in its tracker; the state is kept only while a question is open.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from actions.awaiting import AWAITING_SLOT, Awaiting
from actions.opt_out import settles_the_question
from actions.order_status import orders_known, read_orders
from actions.runner import EmbeddedActions
from crm_core.models import Tier
from dialog.faq import FaqMatch, FaqMatcher, match_all
from dialog.nlu import Reading, Understander, Understanding, understand_all
from dialog.turns import BotTurn, Turn
from wording import N_, translate

__all__ = [
    "KEPT_SLOTS",
    "BrainConfig",
    "Plan",
    "PlanKind",
    "SelfServiceBrain",
    "answers",
    "needs_faq",
    "plan_turn",
]

ACTIONS = {
    "order_status": "action_order_status",
    "request_callback": "action_request_callback",
    "change_preferences": "action_update_preferences",
    "opt_out": "action_opt_out",
}
SMALL_TALK = ("greet", "thanks", "goodbye")

TEXTS = {
    "greet": N_("smalltalk.greet"),
    "thanks": N_("smalltalk.thanks"),
    "goodbye": N_("smalltalk.goodbye"),
    "rephrase": N_("bot.rephrase"),
    "handoff": N_("handoff.notice"),
    "complaint": N_("handoff.complaint"),
    "attachment": N_("handoff.attachment"),
}
# The slots an open question needs on the next turn: the question, and what it is about.
KEPT_SLOTS = (AWAITING_SLOT, "opt_out_request", "callback_time")
# Digits enough for a phone number, however it is written; the action reads it properly.
_PHONE_LIKE = re.compile(r"\+?\d(?:[\s().-]*\d){6,}")


class PlanKind(StrEnum):
    FAQ = "faq"
    ACTION = "action"
    SMALL_TALK = "small_talk"
    REPHRASE = "rephrase"
    HANDOFF = "handoff"


@dataclass(frozen=True, slots=True)
class BrainConfig:
    intent_threshold: float = 0.45
    cmv_confidence: float = 0.75
    max_failed_turns: int = 2


@dataclass(frozen=True, slots=True)
class Plan:
    kind: PlanKind
    reason: str  # why: shown to agents and kept on the message
    action: str | None = None
    handoff: str | None = None


def needs_faq(understood: Understanding, *, tier: Tier, config: BrainConfig) -> bool:
    """Could `plan_turn` answer from the FAQ? When not, the lookup is skipped: "thanks" or a
    confident order-status question costs no search of the knowledge base."""
    intent, confidence = understood.intent, understood.confidence
    confident = confidence >= config.intent_threshold
    if confident and intent in ("human", "complaint"):
        return False
    cmv_unsure = tier is Tier.CMV and confidence < config.cmv_confidence
    return intent == "faq" or not confident or cmv_unsure


def answers(awaiting: Awaiting | None, text: str) -> bool:
    """Does this message answer the question the bot asked?"""
    if awaiting is Awaiting.OPT_OUT_CONFIRMATION:
        return settles_the_question(text)  # a yes or a plain no
    if awaiting is Awaiting.CALLBACK_PHONE:
        return _PHONE_LIKE.search(text) is not None
    return False


def plan_turn(
    understood: Understanding,
    faq: FaqMatch | None,
    *,
    tier: Tier,
    failed_turns: int,
    config: BrainConfig,
    answered: Awaiting | None = None,
    attachments: int = 0,
) -> Plan:
    """What to do with one message. Pure; see the module docstring for the rule.

    `answered`: the question this message answers, if it answers one (`answers`).
    `attachments`: how many files came with it."""
    if answered is not None:
        return Plan(PlanKind.ACTION, f"answers {answered.value}", action=answered.action)
    if attachments and not understood.text.strip():
        return Plan(
            PlanKind.HANDOFF,
            f"{attachments} attachment(s) and no text: for a person to look at",
            handoff="attachment",
        )
    intent, confidence = understood.intent, understood.confidence
    confident = confidence >= config.intent_threshold
    if intent == "human" and confident:
        return Plan(PlanKind.HANDOFF, "the customer asked for a person", handoff="customer_asked")
    if intent == "complaint" and confident:
        return Plan(PlanKind.HANDOFF, "a complaint goes to a person", handoff="complaint")
    cmv_unsure = tier is Tier.CMV and confidence < config.cmv_confidence
    if faq is not None and faq.confident and (intent == "faq" or not confident or cmv_unsure):
        return Plan(PlanKind.FAQ, f"FAQ {faq.entry.id} matched ({faq.score:.2f})")
    if cmv_unsure:
        return Plan(
            PlanKind.HANDOFF,
            "CMV customers get a person when the bot is unsure",
            handoff="cmv_priority",
        )
    if confident and intent in ACTIONS:
        return Plan(PlanKind.ACTION, f"{intent} ({confidence:.2f})", action=ACTIONS[intent])
    if confident and intent in SMALL_TALK:
        return Plan(PlanKind.SMALL_TALK, f"{intent} ({confidence:.2f})")
    if tier is Tier.CMV:
        # Not understood (an FAQ question with no confident answer among them): a CMV customer
        # gets a person at once, never "could you rephrase?".
        return Plan(
            PlanKind.HANDOFF,
            f"CMV customers get a person when not understood ({intent} {confidence:.2f})",
            handoff="cmv_priority",
        )
    if failed_turns + 1 >= config.max_failed_turns:
        return Plan(
            PlanKind.HANDOFF, f"{failed_turns + 1} turns not understood", handoff="not_understood"
        )
    return Plan(PlanKind.REPHRASE, f"not understood ({intent} {confidence:.2f})")


# The current FAQ index, read in the turn's own session (on SQLite a second connection would
# wait for the write lock this very transaction holds).
FaqSource = Callable[[AsyncSession], Awaitable[FaqMatcher]]


class SelfServiceBrain:
    """The embedded understanding, the FAQ and the rasa-sdk actions, run in-process."""

    def __init__(
        self,
        understander: Understander,
        faq: FaqSource,
        actions: EmbeddedActions,
        config: BrainConfig | None = None,
    ) -> None:
        self._understander = understander
        self._faq = faq
        self._actions = actions
        self._config = config or BrainConfig()

    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn:
        return (await self.respond_all(session, [turn]))[0]

    async def respond_all(self, session: AsyncSession, turns: Sequence[Turn]) -> list[BotTurn]:
        """Each turn answered as `respond` answers it, in order. The messages are read, and
        those that need it looked up in the FAQ, all at once: for one message most of that
        work is fixed cost, which a batch pays once (see dialog.ngrams)."""
        readings = [Reading(t.text, t.timezone, t.received_at, t.language) for t in turns]
        understood = understand_all(self._understander, readings)
        questions: list[int] = []
        asked: list[Awaiting | None] = []
        for n, (turn, reading) in enumerate(zip(turns, understood, strict=True)):
            awaiting = Awaiting.of((turn.conversation.flags.get("slots") or {}).get(AWAITING_SLOT))
            answered = awaiting if answers(awaiting, turn.text) else None
            asked.append(answered)
            tier = Tier(turn.customer.tier)
            if answered is None and needs_faq(reading, tier=tier, config=self._config):
                questions.append(n)
        faqs: list[FaqMatch | None] = [None] * len(turns)
        if questions:
            matcher = await self._faq(session)
            found = match_all(
                matcher,
                [turns[n].text for n in questions],
                [understood[n].language for n in questions],
            )
            for n, match in zip(questions, found, strict=True):
                faqs[n] = match
        plans = [
            plan_turn(
                reading,
                faq,
                tier=Tier(turn.customer.tier),
                failed_turns=turn.conversation.failed_turns,
                config=self._config,
                answered=answered,
                attachments=turn.attachments,
            )
            for turn, reading, faq, answered in zip(turns, understood, faqs, asked, strict=True)
        ]
        # Every order-status question of the batch reads its customer's orders in one query
        # (the turns are different customers' and none writes a purchase).
        wanting = [t.customer.id for t, p in zip(turns, plans, strict=True) if _reads_orders(p)]
        known = await read_orders(session, wanting) if len(wanting) > 1 else {}
        with orders_known(session, known):
            return [
                await self._answer(session, turn, reading, faq, answered, plan)
                for turn, reading, faq, answered, plan in zip(
                    turns, understood, faqs, asked, plans, strict=True
                )
            ]

    async def _answer(
        self,
        session: AsyncSession,
        turn: Turn,
        understood: Understanding,
        faq: FaqMatch | None,
        answered: Awaiting | None,
        plan: Plan,
    ) -> BotTurn:
        language = understood.language
        slots: dict[str, Any] = dict(turn.conversation.flags.get("slots") or {})
        if (
            Awaiting.of(slots.get(AWAITING_SLOT)) is Awaiting.OPT_OUT_CONFIRMATION
            and answered is None
        ):
            slots.clear()  # anything but a yes: the question lapses, consent stays as it was
        base = BotTurn(
            intent=understood.intent, confidence=understood.confidence, language=language
        )
        match plan.kind:
            case PlanKind.FAQ:
                assert faq is not None
                base.replies, base.plan = [faq.answer], f"faq:{faq.entry.id}"
            case PlanKind.SMALL_TALK:
                # A sender who may not be the customer is not greeted by the customer's name.
                known = turn.customer.name if turn.sender_proven else None
                name = f" {known.split()[0]}" if known else ""
                base.replies = [translate(language, TEXTS[understood.intent], name=name)]
                base.plan = f"small_talk:{understood.intent}"
            case PlanKind.REPHRASE:
                base.replies, base.understood = [translate(language, TEXTS["rephrase"])], False
                base.plan = "rephrase"
            case PlanKind.HANDOFF:
                base.handoff = plan.handoff
                base.complaint = plan.handoff == "complaint"
                base.understood = plan.handoff != "not_understood"
                key = plan.handoff if plan.handoff in ("complaint", "attachment") else "handoff"
                base.replies = [translate(language, TEXTS[key])]
                base.plan = f"handoff:{plan.handoff}"
            case PlanKind.ACTION:
                assert plan.action is not None
                outcome = await self._actions.run(
                    plan.action,
                    customer_id=turn.customer.id,
                    text=turn.text,
                    intent=understood.intent,
                    confidence=understood.confidence,
                    entities=[
                        {"entity": e.kind, "value": e.value, "text": e.text}
                        for e in understood.entities
                    ],
                    slots={
                        **slots,
                        "language": language,
                        "timezone": turn.timezone,
                        "channel": turn.conversation.channel,
                        "sender_proven": turn.sender_proven,
                    },
                    session=session,
                )
                base.replies = list(outcome.texts)
                base.handoff = outcome.handoff
                slots.update(outcome.slots)
                base.plan = _action_outcome(plan.action, outcome.handoff, slots)
        base.flags = _with_slots(turn.conversation.flags, slots)
        return base


def _action_outcome(action: str, handoff: str | None, slots: Mapping[str, Any]) -> str:
    """What running an action came to: a hand-off, a state change put to the customer to
    confirm, or the action's answer."""
    if handoff:
        return f"handoff:{handoff}"
    if Awaiting.of(slots.get(AWAITING_SLOT)) is Awaiting.OPT_OUT_CONFIRMATION:
        return f"confirm:{action}"
    return f"action:{action}"


def _reads_orders(plan: Plan) -> bool:
    return plan.kind is PlanKind.ACTION and plan.action == ACTIONS["order_status"]


def _with_slots(flags: Mapping[str, Any], slots: Mapping[str, Any]) -> dict[str, Any] | None:
    """The conversation's flags keeping what an open question needs; None when unchanged."""
    kept = {name: slots[name] for name in KEPT_SLOTS if slots.get(name) is not None}
    if AWAITING_SLOT not in kept:
        kept = {}  # no question open: nothing to remember
    if kept == (flags.get("slots") or {}):
        return None
    updated = {name: value for name, value in flags.items() if name != "slots"}
    return {**updated, "slots": kept} if kept else updated
