"""What a keyword does to the ledger, and the compliance reply it gets.

STOP (or a plain-words revocation) revokes every message on that channel at once, service
included, and gets one confirmation without marketing; nothing else follows until START, not
even another confirmation: a STOP from someone opted out of everything on the channel already is
kept in the audit log (`consent.keyword_repeated`) and not answered (CTIA: one confirmation per
opt-out; a phone that resends STOP would otherwise be texted each time). START
undoes a keyword STOP. YES confirms a pending double opt-in, and only then is it a keyword. HELP
gets brand, support contact, frequency, rates and how to opt out. None of them reach the bot.
The rules, in words: docs/permission-marketing.md.

A sender not proven to own the address (an e-mail whose From nothing vouches for) may withdraw,
never give: their START or YES changes nothing, is kept in the audit log, and is answered with
how to subscribe again (`consent.keywords.permitted`). E-mail replies are worded for e-mail (no
"Msg & data rates", nothing SMS-only): each reply has an e-mail variant in the catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from consent.keywords import KeywordKind, KeywordMatch, permitted
from consent.ledger import DOUBLE_OPT_IN, current_consents, record_consent, replay
from consent.models import ConsentEvent, ConsentState
from consent.types import Action, Channel, ConsentStatus, Purpose, Source
from crm_core.models import AuditEntry
from wording import N_, translate

__all__ = [
    "Brand",
    "KeywordOutcome",
    "apply_keyword",
    "opted_out_of_all",
    "reply_language",
    "service_revoked",
]


@dataclass(frozen=True, slots=True)
class Brand:
    name: str
    support: str  # how to reach a person, e.g. "support@example.com or +1 555 0100"
    # The message frequency the programme states (HELP must say it); 0: it varies.
    messages_per_month: int = 4


@dataclass(frozen=True, slots=True)
class KeywordOutcome:
    handled: bool  # False: not a keyword here (e.g. YES with nothing pending): the bot takes it
    reply: str | None
    events: int = 0


_REPLIES = {
    "stop": N_("keyword.stop"),
    "start": N_("keyword.start"),
    "confirmed": N_("keyword.confirmed"),
    "help": N_("keyword.help"),
    "unproven": N_("keyword.unproven"),
}
# The same replies for e-mail: a mail is answered in a mail's words, not an SMS's.
_EMAIL_REPLIES = {
    "stop": N_("keyword.stop.email"),
    "start": N_("keyword.start.email"),
    "confirmed": N_("keyword.confirmed.email"),
    "help": N_("keyword.help.email"),
    "unproven": N_("keyword.unproven.email"),
}


def reply_language(match: KeywordMatch, *, known: str | None, default: str) -> str:
    """The customer's language when known (theirs, or the conversation's), else the keyword's
    own ("BAJA" from an unknown number is answered in Spanish), else the default.

    The keyword alone is weak evidence: STOP is the carriers' word in every language, so a
    Spanish customer's STOP gets a Spanish reply."""
    return known or match.language or default


def _frequency(language: str, default: str, brand: Brand) -> str:
    """The stated frequency, a sentence of its own in the reply's language (the catalogue's)."""
    if brand.messages_per_month:
        count = brand.messages_per_month
        return translate(language, N_("keyword.frequency"), default=default, count=count)
    return translate(language, N_("keyword.frequency.varies"), default=default)


def _text(key: str, language: str, default: str, brand: Brand, channel: Channel) -> str:
    replies = _EMAIL_REPLIES if channel is Channel.EMAIL else _REPLIES
    return translate(
        language,
        replies[key],
        default=default,
        brand=brand.name,
        support=brand.support,
        frequency=_frequency(language, default, brand),
    )


async def service_revoked(session: AsyncSession, customer_id: int, channel: Channel) -> bool:
    """STOP is in force on this channel: nothing may be sent there, not even an answer."""
    status = await session.scalar(
        select(ConsentState.status).where(
            ConsentState.customer_id == customer_id,
            ConsentState.channel == channel.value,
            ConsentState.purpose == Purpose.SERVICE.value,
            ConsentState.topic == "",
        )
    )
    return status == ConsentStatus.REVOKED.value


async def opted_out_of_all(session: AsyncSession, customer_id: int, channel: Channel) -> bool:
    """Nothing is left to revoke on this channel: service is revoked and marketing is not
    granted nor pending (an opt-out revokes those two; a topic follows marketing)."""
    states = dict(
        (row.purpose, row.status)
        for row in await session.execute(
            select(ConsentState.purpose, ConsentState.status).where(
                ConsentState.customer_id == customer_id,
                ConsentState.channel == channel.value,
                ConsentState.topic == "",
                ConsentState.purpose.in_((Purpose.SERVICE.value, Purpose.MARKETING.value)),
            )
        )
    )
    live = (ConsentStatus.GRANTED.value, ConsentStatus.PENDING.value)
    return (
        states.get(Purpose.SERVICE.value) == ConsentStatus.REVOKED.value
        and states.get(Purpose.MARKETING.value) not in live
    )


async def _marketing_before_keyword_stop(
    session: AsyncSession, customer_id: int, channel: Channel
) -> bool:
    """Was marketing granted on this channel just before the latest event, a keyword STOP?"""
    history = list(
        await session.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.customer_id == customer_id, ConsentEvent.channel == channel.value)
            .order_by(ConsentEvent.id)
        )
    )
    marketing = [e for e in history if e.purpose == Purpose.MARKETING.value and e.topic == ""]
    if not marketing or (marketing[-1].action, marketing[-1].source) != ("revoke", "keyword"):
        return False
    before = replay(e for e in history if e.id < marketing[-1].id)
    status = before.get((channel.value, Purpose.MARKETING.value, ""))
    return status is not None and status[0] is ConsentStatus.GRANTED


async def apply_keyword(
    session: AsyncSession,
    customer_id: int,
    channel: Channel,
    match: KeywordMatch,
    *,
    language: str | None,
    default_language: str,
    brand: Brand,
    evidence: Mapping[str, Any],
    sender_proven: bool = True,
) -> KeywordOutcome:
    """Record what the keyword means in the ledger (same transaction) and say what to reply.

    `language` is the customer's as far as known (None: nothing is known of them yet); see
    `reply_language`. `sender_proven`: the sender is proven to own the address (false for an
    e-mail nothing vouches for); see the module's note."""
    proof = {**evidence, "keyword": match.keyword}
    lang = reply_language(match, known=language, default=default_language)
    permission = permitted(match, sender_proven=sender_proven)

    def reply(key: str) -> str:
        return _text(key, lang, default_language, brand, channel)

    def audit(action: str, **more: str) -> None:
        """The customer's keyword, kept in the audit log where the ledger records nothing."""
        data = {**proof, "channel": channel.value, **more}
        session.add(AuditEntry(actor="customer", action=action, customer_id=customer_id, data=data))

    def refused() -> KeywordOutcome:
        audit("consent.keyword_refused", why=permission.reason)
        return KeywordOutcome(True, reply("unproven"))

    async def record(purpose: Purpose, action: Action, topic: str = "") -> None:
        await record_consent(
            session,
            customer_id,
            channel,
            purpose,
            action,
            Source.KEYWORD,
            actor="customer",
            evidence=proof,
            topic=topic,
        )

    match match.kind:
        case KeywordKind.OPT_OUT:
            if await opted_out_of_all(session, customer_id, channel):
                # One confirmation per opt-out (CTIA): a repeated STOP (or a phone that resends
                # it) changes nothing and is not answered; the audit log keeps that it came.
                audit("consent.keyword_repeated")
                return KeywordOutcome(True, None)
            await record(Purpose.SERVICE, Action.REVOKE)
            await record(Purpose.MARKETING, Action.REVOKE)
            return KeywordOutcome(True, reply("stop"), 2)
        case KeywordKind.HELP:
            if await service_revoked(session, customer_id, channel):
                # After STOP, one confirmation and nothing else until START (CTIA; Twilio
                # refuses the send with 21610 anyway): the HELP is kept, not answered.
                audit("consent.help_while_stopped")
                return KeywordOutcome(True, None)
            return KeywordOutcome(True, reply("help"))
        case KeywordKind.OPT_IN if match.confirms_pending:
            pending = [
                s
                for s, _ in await current_consents(session, customer_id)
                if s.channel == channel.value and s.status == ConsentStatus.PENDING.value
            ]
            if not pending:
                return KeywordOutcome(False, None)  # a plain "yes": the conversation's business
            if not permission.allowed:
                return refused()
            for state in pending:
                await record(Purpose(state.purpose), Action.CONFIRM, state.topic)
            return KeywordOutcome(True, reply("confirmed"), len(pending))
        case KeywordKind.OPT_IN:
            if not permission.allowed:
                return refused()
            await record(Purpose.SERVICE, Action.GRANT)
            events = 1
            if await _marketing_before_keyword_stop(session, customer_id, channel):
                # START undoes STOP: marketing consent comes back as it was, and it was given
                # from this very address, so the double opt-in is proven by the message itself.
                await record(Purpose.MARKETING, Action.GRANT)
                events += 1
                if (channel, Purpose.MARKETING) in DOUBLE_OPT_IN:
                    await record(Purpose.MARKETING, Action.CONFIRM)
                    events += 1
            return KeywordOutcome(True, reply("start"), events)
    return KeywordOutcome(False, None)
