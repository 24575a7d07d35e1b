"""The demo's consent histories: who agreed to marketing, where, and what became of it.

Without them every marketing decision in the demo is a denial for want of consent, and permission
marketing cannot be shown. Each demo customer lives one `ConsentStory`, and it is written the way
real customers' consent is:

* **Through the real ledger.** Every event goes through `consent.ledger.record_consent`, dated in
  the customer's past, in the order it happened; preferences (channels in order, a contact window,
  topics) go through `consent.preferences.update_preferences`, which turns chosen topics into
  consent events itself. So the state rows always equal a replay of the ledger, as they must.
* **With evidence.** A grant carries the wording the customer agreed to and where (a form, an IP
  address from the documentation ranges of RFC 5737); a confirmation says how it came (the link in
  the confirmation e-mail, a YES reply); a revocation names the keyword or the unsubscribe link.
* **Deterministic.** `plan_consent` is a pure function of the story, what the customer can be
  reached on, a `random.Random` and `now`.

Nothing here decides a tier or a complaint: a customer in `COMPLAINED` gets a recent complaint on
their timeline from the demo itself, and the contact policy derives the cooldown from it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from consent.ledger import record_consent
from consent.preferences import update_preferences
from consent.types import Action, Channel, Purpose, Source

__all__ = [
    "ConsentPlan",
    "ConsentStep",
    "ConsentStory",
    "Reach",
    "plan_consent",
    "write_consent",
]

CUSTOMER = "customer"  # the actor of what customers do themselves


class ConsentStory(StrEnum):
    """What became of a customer's consent to marketing."""

    NEVER_ASKED = "never_asked"  # no statement at all: marketing is denied for no consent
    CONFIRMED = "confirmed"  # double opt-in confirmed on e-mail, on SMS too for some
    PENDING = "pending"  # signed up, never confirmed: denied, pending confirmation
    STOPPED = "stopped"  # confirmed on SMS, then texted STOP: every SMS stops, e-mail stays
    UNSUBSCRIBED = "unsubscribed"  # confirmed on e-mail, then used an unsubscribe link
    COMPLAINED = "complained"  # confirmed, then complained lately: marketing waits (cooldown)
    TOPICS = "topics"  # chose topics in the preference centre, never marketing at large


@dataclass(frozen=True, slots=True)
class Reach:
    """What the demo knows of a customer that their consent depends on."""

    language: str
    phone: bool
    telegram: bool


@dataclass(frozen=True, slots=True)
class ConsentStep:
    """One event for `record_consent`."""

    channel: Channel
    purpose: Purpose
    action: Action
    source: Source
    occurred_at: datetime
    evidence: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ConsentPlan:
    """A customer's ledger events, oldest first, and the preference changes they made last."""

    steps: tuple[ConsentStep, ...]
    preferences: dict[str, Any]


_WORDING = {
    (Channel.EMAIL, "en"): "Yes, e-mail me offers and news. I can unsubscribe at any time.",
    (Channel.EMAIL, "es"): "Sí, quiero recibir ofertas y novedades por correo. Puedo darme de baja "
    "cuando quiera.",
    (Channel.SMS, "en"): "Yes, text me offers (up to 2 a week). Reply STOP to stop.",
    (Channel.SMS, "es"): "Sí, envíenme ofertas por SMS (hasta 2 por semana). Responde BAJA para "
    "dejar de recibirlas.",
    (Channel.TELEGRAM, "en"): "Yes, send me offers here.",
    (Channel.TELEGRAM, "es"): "Sí, envíenme ofertas por aquí.",
}
_FORMS = ("checkout", "newsletter sign-up", "account sign-up", "in-store tablet")
_YES = {"en": "YES", "es": "SÍ"}
_STOP = {"en": "STOP", "es": "BAJA"}
_CAMPAIGNS = ("spring-collection", "summer-sale", "autumn-tailoring", "black-friday")
_WINDOWS: tuple[dict[str, Any] | None, ...] = (
    None,
    None,
    None,
    {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "18:00", "end": "21:00"},
    {"days": ["sat", "sun"], "start": "10:00", "end": "14:00"},
    {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "09:00", "end": "13:00"},
)


def _ip(rng: random.Random) -> str:
    # Addresses reserved for documentation (RFC 5737): realistic, and nobody's.
    return f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randint(1, 254)}"


def _channels(rng: random.Random, reach: Reach, story: ConsentStory) -> list[str]:
    """The customer's channels, most preferred first."""
    if story is ConsentStory.STOPPED:
        return ["sms", "email"]  # the STOP is on their favourite: the policy falls back to e-mail
    options = [["email"]]
    if reach.phone:
        options += [["sms", "email"], ["email", "sms"]]
    if reach.telegram:
        options.append(["telegram", "email"])
    return rng.choice(options)


class _Steps:
    """Collects a story's events as it unfolds."""

    def __init__(self, rng: random.Random, reach: Reach, now: datetime) -> None:
        self.rng, self.reach, self.now = rng, reach, now
        self.steps: list[ConsentStep] = []

    def add(
        self, channel: Channel, action: Action, source: Source, at: datetime, **evidence: Any
    ) -> None:
        self.steps.append(
            ConsentStep(channel, Purpose.MARKETING, action, source, at, dict(evidence))
        )

    def grant(self, channel: Channel, at: datetime) -> None:
        source = Source.KEYWORD if channel is Channel.TELEGRAM else Source.WEB_FORM
        where = {"form": self.rng.choice(_FORMS), "ip": _ip(self.rng)}
        if channel is Channel.TELEGRAM:
            where = {"message": "/start"}
        self.add(
            channel,
            Action.GRANT,
            source,
            at,
            wording=_WORDING[channel, self.reach.language],
            **where,
        )

    def confirm(self, channel: Channel, at: datetime) -> datetime:
        """The second step of double opt-in, minutes to a day after the grant."""
        later = min(at + timedelta(minutes=self.rng.randint(2, 1_440)), self.now)
        if channel is Channel.SMS:
            self.add(
                channel, Action.CONFIRM, Source.KEYWORD, later, message=_YES[self.reach.language]
            )
        else:
            self.add(channel, Action.CONFIRM, Source.WEB_FORM, later, confirmed_by="link")
        return later

    def days_ago(self, low: float, high: float) -> datetime:
        return self.now - timedelta(days=self.rng.uniform(low, high))


def plan_consent(
    story: ConsentStory,
    reach: Reach,
    rng: random.Random,
    now: datetime,
    topics: Sequence[str],
) -> ConsentPlan:
    """A customer's consent history for `story`, dated before `now`. Pure.

    STOP is texted: a customer with no phone who would have sent it uses an unsubscribe link.
    """
    if story is ConsentStory.STOPPED and not reach.phone:
        story = ConsentStory.UNSUBSCRIBED
    steps = _Steps(rng, reach, now)
    preferences: dict[str, Any] = {}
    if story is ConsentStory.NEVER_ASKED:
        return ConsentPlan((), preferences)
    preferences["channels"] = _channels(rng, reach, story)
    window = rng.choice(_WINDOWS)
    if window is not None:
        preferences["window"] = window
    if story is ConsentStory.TOPICS:
        # From the preference-centre link in an order e-mail: topics only, on their channels.
        chosen = rng.sample(list(topics), rng.randint(1, max(1, len(topics) - 1))) if topics else []
        preferences["topics"] = chosen
        return ConsentPlan((), preferences)

    signed_up = steps.days_ago(25, 170)
    if story is ConsentStory.PENDING:
        # Recently, so the confirmation e-mail is plausibly still unread.
        signed_up = steps.days_ago(1, 40)
        steps.grant(Channel.EMAIL, signed_up)
        if reach.phone and rng.random() < 0.3:
            steps.grant(Channel.SMS, signed_up)
        return ConsentPlan(tuple(steps.steps), preferences)

    steps.grant(Channel.EMAIL, signed_up)
    confirmed = steps.confirm(Channel.EMAIL, signed_up)
    texts = reach.phone and (story is ConsentStory.STOPPED or rng.random() < 0.5)
    if texts:
        steps.grant(Channel.SMS, signed_up)
        confirmed = max(confirmed, steps.confirm(Channel.SMS, signed_up))
    if reach.telegram and rng.random() < 0.5:
        steps.grant(Channel.TELEGRAM, confirmed + timedelta(days=rng.uniform(1, 10)))
    # Whatever ends the story comes well after the sign-up, and before now.
    span = max((now - confirmed).total_seconds() / 86_400 - 1, 0.5)
    ended = now - timedelta(days=rng.uniform(0.5, span))
    if story is ConsentStory.STOPPED:
        # What a STOP records (consent.replies.apply_keyword): the channel, service included.
        word = _STOP[reach.language]
        steps.steps.append(
            ConsentStep(
                Channel.SMS, Purpose.SERVICE, Action.REVOKE, Source.KEYWORD, ended,
                {"message": word, "keyword": word},
            )
        )  # fmt: skip
        steps.add(Channel.SMS, Action.REVOKE, Source.KEYWORD, ended, message=word, keyword=word)
    elif story is ConsentStory.UNSUBSCRIBED:
        steps.add(
            Channel.EMAIL,
            Action.REVOKE,
            Source.UNSUBSCRIBE_LINK,
            ended,
            campaign=rng.choice(_CAMPAIGNS),
            ip=_ip(rng),
        )
    steps.steps.sort(key=lambda step: step.occurred_at)
    return ConsentPlan(tuple(steps.steps), preferences)


async def write_consent(session: AsyncSession, customer_id: int, plan: ConsentPlan) -> None:
    """Record the plan: its events in order, then the preferences (in the caller's transaction)."""
    for step in plan.steps:
        await record_consent(
            session,
            customer_id,
            step.channel,
            step.purpose,
            step.action,
            step.source,
            actor=CUSTOMER,
            evidence=step.evidence,
            occurred_at=step.occurred_at,
        )
    if plan.preferences:
        await update_preferences(
            session,
            customer_id,
            plan.preferences,
            actor=CUSTOMER,
            source=Source.PREFERENCE_CENTRE,
            evidence={"via": "the preference-centre link in an order e-mail"},
            # The link came by e-mail, which proves the address: e-mail topics are confirmed.
            proven_channel=Channel.EMAIL,
        )
