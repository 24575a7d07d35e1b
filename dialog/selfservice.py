"""The embedded bot: understand the message, answer it at once when we can, offer a few
options when torn, hand off when not.

`plan_turn` is the rule, a pure function of what was understood, what the FAQ found and who is
asking. It weighs the two signals together: every message is matched against the FAQ (its best
entries, scored), whatever the intent model thinks, so a moderately confident intent does not
switch the FAQ off before it is searched.

0. A message that answers the question an action asked (a phone number for a call-back, YES to
   "stop marketing messages?") goes back to that action (`actions.awaiting`); one that picks an
   option the bot offered ("2", or the option's words) runs that option (`dialog.choices`).
   Files with no words (a photo-only MMS) are acknowledged and handed to a person
   (`attachment`): there is nothing for the bot to understand, and it is no failed turn.
1. The customer asks for a person → hand off (`customer_asked`).
2. A complaint → hand off (`complaint`), recorded on the timeline (it starts the marketing
   cooldown). "I called to complain and now you sell me something?" must not happen.
3. An action the model is sure of (`sure_intent`) and that has what it needs runs; an order's
   status needs its number, whatever the model's certainty. Otherwise a confident FAQ match
   answers: "is there a tracking link for my parcel" reads as order status, which without a
   number could only ask for it, while the FAQ answers the question. An action the model merely
   guesses, with FAQ entries near the line, is offered beside them ("Did you mean…?"); with
   nothing near it, it runs. Opt-outs and preference changes guessed by the model change nothing
   before the customer confirms (`actions.opt_out`), whichever way they are reached.
4. Greetings, thanks and goodbyes get a short answer (a confident FAQ match wins over a
   small-talk guess: "hola, ¿a qué hora abrís?").
5. Otherwise a confident FAQ match answers, and so does one just below the line that the intent
   model agrees is an FAQ question and that clearly leads the others. Entries near the line are
   offered (up to three, with a likely action), and so are the actions the model hesitates
   between: asking beats "could you rephrase?".
6. Anything else is not understood. A CMV customer goes to a person at once (their exclusive
   channel: no bot maze, no options to pick from); others get one "could you rephrase?" and a
   person after the second turn the bot could not understand. A question the intent model reads
   as an FAQ question that the FAQ does not come near is not understood either (off-topic
   questions, "what is the capital of Australia", get no FAQ answer).

A CMV customer is also handed off whenever the bot's confidence is below `cmv_confidence`.

What an action is waiting for lives in the conversation's flags (`"slots"`), as a Rasa server
keeps slots in its tracker; the state is kept only while a question is open. The options offered
are kept the same way (`choice`), and the customer's pick is logged as a labelled example for
the KB owners (`labelled_examples`), in the turn's transaction.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from actions.awaiting import AWAITING_SLOT, Awaiting
from actions.opt_out import REQUEST_SLOT, is_decline, settles_the_question
from actions.order_status import orders_known, read_orders
from actions.runner import EmbeddedActions
from crm_core.models import Tier
from dialog.choices import (
    BUTTON_CHANNELS,
    CHOICE_SLOT,
    MAX_OPTIONS,
    PendingChoice,
    label_of,
    option_action,
    option_entry,
    pick,
    render,
)
from dialog.faq import DEFAULT_THRESHOLD, FaqEntry, FaqMatch, FaqMatcher
from dialog.models import labelled_examples_table
from dialog.nlu import Reading, Understander, Understanding, understand_all
from dialog.turns import BotTurn, Turn
from wording import N_, translate

__all__ = [
    "KEPT_SLOTS",
    "BrainConfig",
    "FaqFound",
    "Plan",
    "PlanKind",
    "SelfServiceBrain",
    "answers",
    "plan_turn",
]

ACTIONS = {
    "order_status": "action_order_status",
    "request_callback": "action_request_callback",
    "change_preferences": "action_update_preferences",
    "opt_out": "action_opt_out",
}
INTENT_OF = {action: intent for intent, action in ACTIONS.items()}
SMALL_TALK = ("greet", "thanks", "goodbye")
# What an action needs to do more than ask for it: without an order number, order status can
# only ask "what is your order number?", which the FAQ's answer already says.
NEEDS = {"order_status": "order_number"}
# Offered beside FAQ entries only when the model reads it first: a withdrawal is never suggested
# to someone asking something else (and, chosen, it still asks before changing anything).
NOT_SUGGESTED = frozenset({"opt_out"})

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
KEPT_SLOTS = (AWAITING_SLOT, REQUEST_SLOT, "callback_time", CHOICE_SLOT)
# Digits enough for a phone number, however it is written; the action reads it properly.
_PHONE_LIKE = re.compile(r"\+?\d(?:[\s().-]*\d){6,}")
LABEL_SOURCE = "choice"  # labelled_examples.source: the customer picked it


class PlanKind(StrEnum):
    FAQ = "faq"
    ACTION = "action"
    SMALL_TALK = "small_talk"
    CHOICES = "choices"
    REPHRASE = "rephrase"
    HANDOFF = "handoff"


@dataclass(frozen=True, slots=True)
class BrainConfig:
    intent_threshold: float = 0.45
    cmv_confidence: float = 0.75
    max_failed_turns: int = 2
    # An action the model is this sure of (and that has what it needs) is not second-guessed.
    sure_intent: float = 0.8
    # FAQ bands, as fractions of the matcher's threshold (lexical and semantic scores differ):
    # an entry this near the line is worth offering...
    faq_near: float = 0.6
    # ...and one this near is answered when the model says "FAQ question" and it leads the
    # next entry by `faq_lead` (of the threshold).
    faq_agree: float = 0.85
    faq_lead: float = 0.2
    # Entries scoring this fraction of the best are offered beside it.
    faq_close: float = 0.8
    # An intent this likely is worth offering as an option.
    option_intent: float = 0.25


@dataclass(frozen=True, slots=True)
class FaqFound:
    """What the FAQ found for a message: its best entries, best first, and where the matcher
    draws the line for answering without a person."""

    matches: tuple[FaqMatch, ...] = ()
    threshold: float = DEFAULT_THRESHOLD

    @property
    def best(self) -> FaqMatch | None:
        return self.matches[0] if self.matches else None


@dataclass(frozen=True, slots=True)
class Plan:
    kind: PlanKind
    reason: str  # why: shown to agents and kept on the message
    action: str | None = None
    handoff: str | None = None
    entry: str | None = None  # FAQ: the entry that answers
    options: tuple[str, ...] = field(default=())  # CHOICES: faq:<id> / action:<name>, in order

    @property
    def outcome(self) -> str:
        """The plan as stored with the message (`messages.outcome`), before an action's result."""
        match self.kind:
            case PlanKind.FAQ:
                return f"faq:{self.entry}"
            case PlanKind.ACTION:
                return f"action:{self.action}"
            case PlanKind.CHOICES:
                return "choices:" + "|".join(self.options)
            case PlanKind.HANDOFF:
                return f"handoff:{self.handoff}"
            case PlanKind.REPHRASE:
                return "rephrase"
        return "small_talk"


def answers(awaiting: Awaiting | None, text: str) -> bool:
    """Does this message answer the question an action asked? (A choice is read by `pick`.)"""
    if awaiting is Awaiting.OPT_OUT_CONFIRMATION:
        return settles_the_question(text)  # a yes or a plain no
    if awaiting is Awaiting.CALLBACK_PHONE:
        return _PHONE_LIKE.search(text) is not None
    return False


def plan_turn(
    understood: Understanding,
    faq: FaqFound | None,
    *,
    tier: Tier,
    failed_turns: int,
    config: BrainConfig,
    answered: Awaiting | None = None,
    attachments: int = 0,
    chosen: str | None = None,
    declined: bool = False,
) -> Plan:
    """What to do with one message. Pure; see the module docstring for the rule.

    `faq`: the FAQ's best entries for it (None: not looked up, as for an answer).
    `answered`: the question this message answers, if it answers one (`answers`).
    `attachments`: how many files came with it.
    `chosen`: the option it picked among those offered (`dialog.choices.pick`).
    `declined`: a plain no to the options offered: none of them is what they meant."""
    if answered is not None:
        return Plan(PlanKind.ACTION, f"answers {answered.value}", action=answered.action)
    if chosen is not None:
        picked = _chosen(chosen)
        if picked is not None:
            return picked
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
    found = faq or FaqFound()
    if declined:
        plan = Plan(PlanKind.REPHRASE, "none of the options offered is what they meant")
    else:
        plan = _weigh(understood, found, config)
    if tier is Tier.CMV:
        return _for_cmv(plan, understood, found, config)
    if plan.kind is PlanKind.REPHRASE and failed_turns + 1 >= config.max_failed_turns:
        return Plan(
            PlanKind.HANDOFF, f"{failed_turns + 1} turns not understood", handoff="not_understood"
        )
    return plan


def _chosen(option: str) -> Plan | None:
    entry, action = option_entry(option), option_action(option)
    if entry is not None:
        return Plan(PlanKind.FAQ, f"chosen among the options offered: {option}", entry=entry)
    if action is not None and action in INTENT_OF:
        return Plan(PlanKind.ACTION, f"chosen among the options offered: {option}", action=action)
    return None


def _weigh(understood: Understanding, faq: FaqFound, config: BrainConfig) -> Plan:
    """Steps 3 to 6 of the rule for anyone (a CMV customer's is narrowed by `_for_cmv`)."""
    intent, confidence = understood.intent, understood.confidence
    confident = confidence >= config.intent_threshold
    said = f"{intent} {confidence:.2f}"
    best = faq.best
    near = [m for m in faq.matches if m.score >= config.faq_near * faq.threshold]
    offered = [m for m in near if m.score >= config.faq_close * near[0].score][:MAX_OPTIONS]
    if confident and intent in ACTIONS:
        action = ACTIONS[intent]
        need = NEEDS.get(intent)
        lacking = need is not None and not any(e.kind == need for e in understood.entities)
        if need is not None and not lacking:
            return Plan(PlanKind.ACTION, f"{said} with its {need}", action=action)
        if confidence >= config.sure_intent and not lacking:
            return Plan(PlanKind.ACTION, f"{said}: sure", action=action)
        if best is not None and best.confident:
            why = f"{intent} lacks its {need}" if lacking else f"{said} only a guess"
            return _faq_plan(best, f"{why}; FAQ {best.entry.id} matched ({best.score:.2f})")
        if offered:
            options = [f"faq:{m.entry.id}" for m in offered[: MAX_OPTIONS - 1]]
            return _offer([*options, f"action:{action}"], f"{said} or FAQ near the line")
        return Plan(PlanKind.ACTION, said, action=action)
    if confident and intent in SMALL_TALK:
        if best is not None and best.confident and confidence < config.sure_intent:
            return _faq_plan(best, f"FAQ {best.entry.id} ({best.score:.2f}) over {said}")
        return Plan(PlanKind.SMALL_TALK, said)
    if best is not None and best.confident:
        return _faq_plan(best, f"FAQ {best.entry.id} matched ({best.score:.2f}); {said}")
    if offered:
        assert best is not None
        runner_up = faq.matches[1].score if len(faq.matches) > 1 else 0.0
        agreed = intent == "faq" and confident
        if (
            agreed
            and best.score >= config.faq_agree * faq.threshold
            and best.score - runner_up >= config.faq_lead * faq.threshold
        ):
            return _faq_plan(
                best,
                f"FAQ {best.entry.id} just below the line ({best.score:.2f}, next "
                f"{runner_up:.2f}) and {said}",
            )
        options = [f"faq:{m.entry.id}" for m in offered]
        likely = _likely_actions(understood, config)
        if likely and len(options) == MAX_OPTIONS:
            options.pop()
        return _offer([*options, *likely[:1]], f"FAQ near the line ({best.score:.2f}); {said}")
    likely = _likely_actions(understood, config)
    if likely and not confident:
        return _offer(likely[:MAX_OPTIONS], f"torn between intents ({said})")
    return Plan(PlanKind.REPHRASE, f"not understood ({said})")


def _faq_plan(match: FaqMatch, reason: str) -> Plan:
    return Plan(PlanKind.FAQ, reason, entry=match.entry.id)


def _offer(options: Sequence[str], reason: str) -> Plan:
    return Plan(PlanKind.CHOICES, f"torn: {reason}", options=tuple(options))


def _likely_actions(understood: Understanding, config: BrainConfig) -> list[str]:
    """The actions the model gives a fair chance, most likely first, as options."""
    return [
        f"action:{ACTIONS[name]}"
        for name, probability in understood.ranking
        if name in ACTIONS and name not in NOT_SUGGESTED and probability >= config.option_intent
    ]


def _for_cmv(plan: Plan, understood: Understanding, faq: FaqFound, config: BrainConfig) -> Plan:
    """A CMV customer gets the bot's answer only when it is sure of it; else a person at once
    (no "could you rephrase?", no options to pick from)."""
    best = faq.best
    confident_faq = best is not None and best.confident and plan.entry == best.entry.id
    if plan.kind is PlanKind.FAQ and confident_faq:
        return plan
    sure = understood.confidence >= config.cmv_confidence
    if plan.kind in (PlanKind.ACTION, PlanKind.SMALL_TALK) and sure:
        return plan
    return Plan(
        PlanKind.HANDOFF,
        f"CMV customers get a person when the bot is unsure ({plan.reason})",
        handoff="cmv_priority",
    )


# The current FAQ index, read in the turn's own session (on SQLite a second connection would
# wait for the write lock this very transaction holds).
FaqSource = Callable[[AsyncSession], Awaitable[FaqMatcher]]


@dataclass(slots=True)
class _Reading:
    """One turn as the brain reads it, before it answers."""

    turn: Turn
    understood: Understanding
    answered: Awaiting | None  # the action's question it answers
    pending: PendingChoice | None  # the options offered last turn, if any
    chosen: str | None  # the option it picks among them
    declined: bool = False  # a plain no to them
    faq: FaqFound | None = None
    plan: Plan | None = None


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
        those that are not answers looked up in the FAQ, all at once: for one message most of
        that work is fixed cost, which a batch pays once (see dialog.ngrams)."""
        if not turns:
            return []
        texts = [Reading(t.text, t.timezone, t.received_at, t.language) for t in turns]
        readings = [
            _read(turn, understood)
            for turn, understood in zip(
                turns, understand_all(self._understander, texts), strict=True
            )
        ]
        matcher = await self._faq(session)
        questions = [
            r for r in readings if r.answered is None and r.chosen is None and not r.declined
        ]
        if questions:
            found = _top_all(
                matcher,
                [r.turn.text for r in questions],
                [r.understood.language for r in questions],
            )
            for reading, matches in zip(questions, found, strict=True):
                reading.faq = FaqFound(tuple(matches), matcher.threshold)
        for r in readings:
            r.plan = plan_turn(
                r.understood,
                r.faq,
                tier=Tier(r.turn.customer.tier),
                failed_turns=r.turn.conversation.failed_turns,
                config=self._config,
                answered=r.answered,
                attachments=r.turn.attachments,
                chosen=r.chosen,
                declined=r.declined,
            )
        entries = (
            {e.id: e for e in matcher.entries} if any(_needs_entries(r) for r in readings) else {}
        )
        # Every order-status question of the batch reads its customer's orders in one query
        # (the turns are different customers' and none writes a purchase).
        wanting = [r.turn.customer.id for r in readings if _reads_orders(r.plan)]
        known = await read_orders(session, wanting) if len(wanting) > 1 else {}
        labelled: list[dict[str, Any]] = []
        with orders_known(session, known):
            decided = [await self._decide(session, r, entries, labelled) for r in readings]
        if labelled:  # the customers' picks, for the KB owners, in this turn's transaction
            await session.execute(insert(labelled_examples_table), labelled)
        return decided

    async def _decide(
        self,
        session: AsyncSession,
        reading: _Reading,
        entries: Mapping[str, FaqEntry],
        labelled: list[dict[str, Any]],
    ) -> BotTurn:
        turn, understood, plan = reading.turn, reading.understood, reading.plan
        assert plan is not None
        language = understood.language
        slots: dict[str, Any] = dict(turn.conversation.flags.get("slots") or {})
        awaiting = Awaiting.of(slots.get(AWAITING_SLOT))
        if awaiting is Awaiting.OPT_OUT_CONFIRMATION and reading.answered is None:
            slots.clear()  # anything but a yes: the question lapses, consent stays as it was
        pending = reading.pending
        slots.pop(CHOICE_SLOT, None)  # picked or not, options offered are done with
        if reading.chosen is not None and pending is not None:
            # "2" reads as no language: the answer is in the language the options were in.
            language = pending.language
            labelled.append(
                {
                    "text": pending.text,
                    "language": pending.language,
                    "label": reading.chosen,
                    "source": LABEL_SOURCE,
                    "conversation_id": turn.conversation.id,
                    "message_id": pending.message_id,
                    "created_at": turn.received_at,
                }
            )
        base = BotTurn(
            intent=understood.intent,
            confidence=understood.confidence,
            language=language,
            plan=plan.outcome,
        )
        match plan.kind:
            case PlanKind.FAQ:
                base.replies = [_faq_answer(plan, reading.faq, entries, language)]
            case PlanKind.SMALL_TALK:
                # A sender who may not be the customer is not greeted by the customer's name.
                known = turn.customer.name if turn.sender_proven else None
                name = f" {known.split()[0]}" if known else ""
                base.replies = [translate(language, TEXTS[understood.intent], name=name)]
                base.plan = f"small_talk:{understood.intent}"
            case PlanKind.CHOICES:
                offer = _offer_of(plan, turn, understood, entries, language)
                if offer is None:  # nothing left to offer (an entry since removed)
                    base.replies = [translate(language, TEXTS["rephrase"])]
                    base.understood, base.plan = False, "rephrase"
                else:
                    base.replies = [render(offer.language, offer.labels, buttons=_buttons(turn))]
                    base.choices = offer.labels
                    base.plan = "choices:" + "|".join(offer.options)
                    slots[CHOICE_SLOT] = offer.to_slot()
            case PlanKind.REPHRASE:
                base.replies, base.understood = [translate(language, TEXTS["rephrase"])], False
            case PlanKind.HANDOFF:
                base.handoff = plan.handoff
                base.complaint = plan.handoff == "complaint"
                base.understood = plan.handoff != "not_understood"
                key = plan.handoff if plan.handoff in ("complaint", "attachment") else "handoff"
                base.replies = [translate(language, TEXTS[key])]
            case PlanKind.ACTION:
                assert plan.action is not None
                text, entities = (
                    turn.text,
                    [
                        {"entity": e.kind, "value": e.value, "text": e.text}
                        for e in understood.entities
                    ],
                )
                intent, confidence = understood.intent, understood.confidence
                if reading.chosen is not None and pending is not None:
                    # The option picked runs on the question it answers, as if understood so:
                    # a withdrawal chosen still asks before changing anything (actions.opt_out).
                    text, entities = pending.text, [dict(e) for e in pending.entities]
                    intent, confidence = INTENT_OF.get(plan.action, intent), 1.0
                outcome = await self._actions.run(
                    plan.action,
                    customer_id=turn.customer.id,
                    text=text,
                    intent=intent,
                    confidence=confidence,
                    entities=entities,
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


def _read(turn: Turn, understood: Understanding) -> _Reading:
    """What the message is to the question open in its conversation, if one is."""
    slots = turn.conversation.flags.get("slots") or {}
    pending = PendingChoice.of(slots.get(CHOICE_SLOT))
    picked = None if pending is None else pick(turn.text, pending.labels)
    if pending is not None and picked is not None:
        return _Reading(turn, understood, None, pending, pending.options[picked])
    awaiting = Awaiting.of(slots.get(AWAITING_SLOT))
    answered = awaiting if answers(awaiting, turn.text) else None
    # "No" to "Did you mean…?" is not a new message (the model would read a bare "no" as an
    # opt-out): none of the options fits, so nothing is left to offer but a rephrase.
    declined = pending is not None and answered is None and is_decline(turn.text)
    return _Reading(turn, understood, answered, pending, None, declined)


def _top_all(
    matcher: FaqMatcher, texts: Sequence[str], languages: Sequence[str]
) -> list[list[FaqMatch]]:
    """The best entries of each text, best first; in one product when the matcher can."""
    top_all = getattr(matcher, "top_all", None)
    if top_all is not None:
        found: list[list[FaqMatch]] = top_all(texts, languages, MAX_OPTIONS)
        return found
    return [matcher.top(t, lang, MAX_OPTIONS) for t, lang in zip(texts, languages, strict=True)]


def _needs_entries(reading: _Reading) -> bool:
    """Does answering this turn look entries up by id (an option's label, a chosen answer)?"""
    plan = reading.plan
    return plan is not None and (
        plan.kind is PlanKind.CHOICES or (plan.kind is PlanKind.FAQ and reading.chosen is not None)
    )


def _faq_answer(
    plan: Plan, faq: FaqFound | None, entries: Mapping[str, FaqEntry], language: str
) -> str:
    for match in faq.matches if faq else ():
        if match.entry.id == plan.entry:
            return match.answer
    entry = entries.get(plan.entry or "")
    if entry is None:  # chosen, then removed from the KB meanwhile
        return translate(language, TEXTS["rephrase"])
    return entry.answer_in(language)


def _offer_of(
    plan: Plan,
    turn: Turn,
    understood: Understanding,
    entries: Mapping[str, FaqEntry],
    language: str,
) -> PendingChoice | None:
    """The options as the customer will read them; None when none can be shown."""
    labelled = [(o, label_of(o, language, entries)) for o in plan.options]
    shown = [(o, label) for o, label in labelled if label is not None]
    if not shown:
        return None
    return PendingChoice(
        options=tuple(o for o, _ in shown),
        labels=tuple(label for _, label in shown),
        text=turn.text,
        language=language,
        message_id=turn.message_id,
        entities=tuple(
            {"entity": e.kind, "value": e.value, "text": e.text} for e in understood.entities
        ),
    )


def _buttons(turn: Turn) -> bool:
    return turn.conversation.channel in BUTTON_CHANNELS


def _action_outcome(action: str, handoff: str | None, slots: Mapping[str, Any]) -> str:
    """What running an action came to: a hand-off, a state change put to the customer to
    confirm, or the action's answer."""
    if handoff:
        return f"handoff:{handoff}"
    if Awaiting.of(slots.get(AWAITING_SLOT)) is Awaiting.OPT_OUT_CONFIRMATION:
        return f"confirm:{action}"
    return f"action:{action}"


def _reads_orders(plan: Plan | None) -> bool:
    return (
        plan is not None and plan.kind is PlanKind.ACTION and plan.action == ACTIONS["order_status"]
    )


def _with_slots(flags: Mapping[str, Any], slots: Mapping[str, Any]) -> dict[str, Any] | None:
    """The conversation's flags keeping what an open question needs; None when unchanged."""
    kept = {name: slots[name] for name in KEPT_SLOTS if slots.get(name) is not None}
    if AWAITING_SLOT not in kept:
        # No action's question open: nothing of it to remember (options offered may be).
        kept = {CHOICE_SLOT: kept[CHOICE_SLOT]} if CHOICE_SLOT in kept else {}
    if kept == (flags.get("slots") or {}):
        return None
    updated = {name: value for name, value in flags.items() if name != "slots"}
    return {**updated, "slots": kept} if kept else updated
