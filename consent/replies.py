"""What a keyword does to the ledger, and the compliance reply it gets.

STOP (or a plain-words revocation) revokes every message on that channel at once, service
included, and gets one confirmation without marketing; nothing else follows until START. START
undoes a keyword STOP. YES confirms a pending double opt-in, and only then is it a keyword. HELP
gets brand, support contact, frequency, rates and how to opt out. None of them reach the bot.
The rules, in words: docs/permission-marketing.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from consent.keywords import KeywordKind, KeywordMatch
from consent.ledger import DOUBLE_OPT_IN, current_consents, record_consent, replay
from consent.models import ConsentEvent, ConsentState
from consent.types import Action, Channel, ConsentStatus, Purpose, Source

__all__ = ["Brand", "KeywordOutcome", "apply_keyword", "service_revoked"]


@dataclass(frozen=True, slots=True)
class Brand:
    name: str
    support: str  # how to reach a person, e.g. "support@example.com or +1 555 0100"
    frequency: str = "up to 4 msgs/month"


@dataclass(frozen=True, slots=True)
class KeywordOutcome:
    handled: bool  # False: not a keyword here (e.g. YES with nothing pending): the bot takes it
    reply: str | None
    events: int = 0


_TEXTS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "stop": "You are unsubscribed from {brand}. No more messages. Reply START to resubscribe.",
        "start": "You are resubscribed to {brand} messages. Reply HELP for help, STOP to opt out.",
        "confirmed": "Thanks! Your subscription to {brand} messages is confirmed. "
        "Reply STOP to opt out.",
        "help": "{brand}: help at {support}. {frequency}. Msg & data rates may apply. "
        "Reply STOP to opt out.",
    },
    "es": {
        "stop": "Se ha dado de baja de {brand}. No recibirá más mensajes. "
        "Responda ALTA para volver a suscribirse.",
        "start": "Se ha vuelto a suscribir a los mensajes de {brand}. Responda AYUDA para "
        "ayuda, BAJA para darse de baja.",
        "confirmed": "¡Gracias! Su suscripción a los mensajes de {brand} está confirmada. "
        "Responda BAJA para darse de baja.",
        "help": "{brand}: ayuda en {support}. {frequency}. Pueden aplicarse tarifas de "
        "mensajes y datos. Responda BAJA para darse de baja.",
    },
}


def _text(key: str, language: str, brand: Brand) -> str:
    texts = _TEXTS.get(language, _TEXTS["en"])
    return texts[key].format(brand=brand.name, support=brand.support, frequency=brand.frequency)


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
    language: str,
    brand: Brand,
    evidence: Mapping[str, Any],
) -> KeywordOutcome:
    """Record what the keyword means in the ledger (same transaction) and say what to reply."""
    proof = {**evidence, "keyword": match.keyword}
    lang = match.language or language

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
            await record(Purpose.SERVICE, Action.REVOKE)
            await record(Purpose.MARKETING, Action.REVOKE)
            return KeywordOutcome(True, _text("stop", lang, brand), 2)
        case KeywordKind.HELP:
            return KeywordOutcome(True, _text("help", lang, brand))
        case KeywordKind.OPT_IN if match.confirms_pending:
            pending = [
                s
                for s, _ in await current_consents(session, customer_id)
                if s.channel == channel.value and s.status == ConsentStatus.PENDING.value
            ]
            if not pending:
                return KeywordOutcome(False, None)  # a plain "yes": the conversation's business
            for state in pending:
                await record(Purpose(state.purpose), Action.CONFIRM, state.topic)
            return KeywordOutcome(True, _text("confirmed", lang, brand), len(pending))
        case KeywordKind.OPT_IN:
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
            return KeywordOutcome(True, _text("start", lang, brand), events)
    return KeywordOutcome(False, None)
