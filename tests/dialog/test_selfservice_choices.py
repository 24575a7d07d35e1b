"""Offering options when torn, end to end through the inbound path: the question, the pick (by
number or by words), the labelled example, and the question lapsing.

The brain here reads with a fixed understanding and a fixed FAQ finding per text, so what is
tested is the mechanics, whatever the shipped data says (`test_selfservice.py` runs the real
model and KB)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from actions.runner import EmbeddedActions
from channels.base import ChannelName, InboundMessage
from consent.ledger import consent_history
from consent.replies import Brand
from dialog.faq import FaqEntry, FaqMatch, FaqMatcher
from dialog.inbound import InboundProcessor
from dialog.models import Conversation, Direction, LabelledExample, Message
from dialog.nlu import Entity, Understanding
from dialog.selfservice import SelfServiceBrain
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.dialogs import build_brain
from tests.support.embedded import web

ENTRIES = {
    "returns": FaqEntry(
        "returns",
        {"en": ("How do I return an item?",), "es": ("¿Cómo devuelvo un artículo?",)},
        {"en": "Returns: 30 days, free.", "es": "Devoluciones: 30 días, gratis."},
    ),
    "exchanges": FaqEntry(
        "exchanges",
        {"en": ("Can I exchange a size?",), "es": ("¿Puedo cambiar la talla?",)},
        {"en": "Exchanges: any shop.", "es": "Cambios: en cualquier tienda."},
    ),
    "unsubscribe": FaqEntry(
        "unsubscribe",
        {"en": ("How do I unsubscribe?",)},
        {"en": "Unsubscribing: reply STOP, or use the link in any e-mail."},
    ),
    "order-tracking": FaqEntry(
        "order-tracking",
        {"en": ("How do I track my order?",)},
        {"en": "Tracking: the link in your e-mail."},
    ),
}
THRESHOLD = 0.42
# text -> (language, intent ranking, FAQ finding): what the stub model and stub KB read.
READ: dict[str, tuple[str, tuple[tuple[str, float], ...], tuple[tuple[str, float], ...]]] = {
    # torn between two entries just below the line
    "no me queda bien la camisa": ("es", (("faq", 0.9),), (("returns", 0.33), ("exchanges", 0.3))),
    "this shirt does not fit": ("en", (("faq", 0.9),), (("returns", 0.33), ("exchanges", 0.3))),
    # a guessed withdrawal, with an FAQ entry near the line
    "quiero devolver esto, ya no lo quiero": (
        "es",
        (("opt_out", 0.55), ("faq", 0.3)),
        (("returns", 0.3),),
    ),
    # a guessed withdrawal with nothing near it in the KB
    "ya no me interesa nada de lo vuestro": ("es", (("opt_out", 0.6), ("faq", 0.2)), ()),
    "what time do you open": ("en", (("faq", 0.9),), ()),
    "about your newsletter": ("en", (("faq", 0.9),), (("unsubscribe", 0.33), ("returns", 0.3))),
}


class StubUnderstander:
    def understand(
        self,
        text: str,
        *,
        timezone: str = "UTC",
        now: datetime | None = None,
        language_hint: str | None = None,
    ) -> Understanding:
        language, ranking, _ = READ.get(text, (language_hint or "en", (("faq", 0.2),), ()))
        entities: tuple[Entity, ...] = ()
        return Understanding(text, ranking[0][0], ranking[0][1], language, entities, ranking)


class StubFaq:
    threshold = THRESHOLD

    @property
    def entries(self) -> tuple[FaqEntry, ...]:
        return tuple(ENTRIES.values())

    def __len__(self) -> int:
        return len(ENTRIES)

    def top(self, text: str, language: str, k: int = 3) -> list[FaqMatch]:
        found = READ.get(text, ("en", (), ()))[2]
        return [
            FaqMatch(
                ENTRIES[id_],
                score,
                score >= THRESHOLD,
                ENTRIES[id_].answer_in(language),
                ENTRIES[id_].questions.get(language, ("",))[0],
            )
            for id_, score in found[:k]
        ]

    def match(self, text: str, language: str) -> FaqMatch | None:
        best = self.top(text, language, 1)
        return best[0] if best else None


@pytest.fixture
async def processor(
    sessionmaker: SessionMaker, settings: Settings
) -> AsyncIterator[InboundProcessor]:
    async with AsyncExitStack() as stack:
        await build_brain(settings, sessionmaker, stack)  # configures the actions

        async def faq(_session: AsyncSession) -> FaqMatcher:
            return StubFaq()

        brain = SelfServiceBrain(StubUnderstander(), faq, EmbeddedActions())
        yield InboundProcessor(
            sessionmaker,
            brain,
            default_region="ES",
            default_language="es",
            default_timezone="Europe/Madrid",
            brand=Brand("Sastre", "support@example.com"),
        )


def sms(text: str, n: int) -> InboundMessage:
    return InboundMessage(ChannelName.SMS, "+34612345678", text, f"SM{n}", verified=True)


async def examples(sessionmaker: SessionMaker) -> list[tuple[str, str, str, str, int | None]]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(LabelledExample).order_by(LabelledExample.id))
        return [(r.text, r.language, r.label, r.source, r.message_id) for r in rows]


async def slots(sessionmaker: SessionMaker) -> Mapping[str, object]:
    async with sessionmaker() as session:
        conversation = await session.scalar(select(Conversation))
    assert conversation is not None
    found: Mapping[str, object] = conversation.flags.get("slots") or {}
    return found


async def test_by_sms_the_options_are_numbered_and_a_number_picks_one(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    asked = await processor.handle(sms("no me queda bien la camisa", 1))
    assert asked.plan == "choices:faq:returns|faq:exchanges"
    (reply,) = asked.replies
    assert reply.text.splitlines() == [
        "¿Te refieres a…?",
        "1. ¿Cómo devuelvo un artículo?",
        "2. ¿Puedo cambiar la talla?",
        "Responde con el número, o dime con otras palabras qué necesitas.",
    ]
    assert reply.choices == ("¿Cómo devuelvo un artículo?", "¿Puedo cambiar la talla?")
    picked = await processor.handle(sms("2", 2))
    assert [r.text for r in picked.replies] == ["Cambios: en cualquier tienda."]
    assert picked.plan == "faq:exchanges"
    assert await examples(sessionmaker) == [
        ("no me queda bien la camisa", "es", "faq:exchanges", "choice", asked.message_id)
    ]
    assert await slots(sessionmaker) == {}  # nothing is awaited any more


async def test_in_the_web_chat_the_options_are_buttons_and_words_pick_one(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    asked = await processor.handle(web("this shirt does not fit", 1))
    (reply,) = asked.replies
    assert reply.text == "Did you mean…?"  # the labels are the buttons
    assert reply.choices == ("How do I return an item?", "Can I exchange a size?")
    picked = await processor.handle(web("return an item", 2))
    assert [r.text for r in picked.replies] == ["Returns: 30 days, free."]
    assert [e[2] for e in await examples(sessionmaker)] == ["faq:returns"]


async def test_anything_else_lets_the_question_lapse_and_is_read_as_a_new_message(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    await processor.handle(web("this shirt does not fit", 1))
    later = await processor.handle(web("what time do you open", 2))
    assert later.plan == "rephrase"  # read as itself (the stub KB has no hours)
    again = await processor.handle(web("1", 3))  # too late: no option is open any more
    assert again.plan != "faq:returns"
    assert await examples(sessionmaker) == []
    assert await slots(sessionmaker) == {}


async def test_no_to_the_options_asks_to_rephrase_and_changes_nothing(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    await processor.handle(sms("no me queda bien la camisa", 1))
    declined = await processor.handle(sms("No, gracias", 2))
    assert declined.plan == "rephrase"
    assert declined.replies[0].text.startswith("Perdona, no te he entendido bien")
    async with sessionmaker() as session:
        assert await consent_history(session, declined.customer_id or 0) == []
    assert await examples(sessionmaker) == []
    assert await slots(sessionmaker) == {}


async def test_a_withdrawal_chosen_among_the_options_still_asks_first(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    asked = await processor.handle(sms("quiero devolver esto, ya no lo quiero", 1))
    assert asked.plan == "choices:faq:returns|action:action_opt_out"
    picked = await processor.handle(sms("2", 2))
    assert picked.plan == "confirm:action_opt_out"
    assert picked.replies[0].text.startswith("¿Quieres dejar de recibir mensajes comerciales")
    async with sessionmaker() as session:
        assert await consent_history(session, asked.customer_id or 0) == []
    assert [e[2] for e in await examples(sessionmaker)] == ["action:action_opt_out"]


async def test_a_guessed_withdrawal_confirmed_with_si_is_recorded(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    asked = await processor.handle(web("ya no me interesa nada de lo vuestro", 1))
    assert asked.plan == "confirm:action_opt_out"
    assert asked.replies[0].text.startswith("¿Quieres dejar de recibir mensajes comerciales")
    confirmed = await processor.handle(web("SÍ", 2))
    assert confirmed.replies[0].text.startswith("Hecho: no te enviaremos más mensajes")
    assert confirmed.plan == "action:action_opt_out"
    async with sessionmaker() as session:
        (event,) = await consent_history(session, confirmed.customer_id or 0)
    assert (event.channel, event.purpose, event.action) == ("webchat", "marketing", "revoke")
    assert event.evidence["text"] == "ya no me interesa nada de lo vuestro"


async def test_the_offer_is_stored_as_the_questions_outcome(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    await processor.handle(sms("no me queda bien la camisa", 1))
    await processor.handle(sms("1", 2))
    async with sessionmaker() as session:
        stored: Sequence[str | None] = list(
            await session.scalars(
                select(Message.outcome)
                .where(Message.direction == Direction.IN.value)
                .order_by(Message.id)
            )
        )
    assert stored == ["choices:faq:returns|faq:exchanges", "faq:returns"]


async def test_an_option_whose_words_read_as_unsubscribing_is_a_pick_not_a_revocation(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    """A web chat button sends its label: "How do I unsubscribe?" asks how, it withdraws nothing."""
    asked = await processor.handle(web("about your newsletter", 1))
    assert asked.replies[0].choices == ("How do I unsubscribe?", "How do I return an item?")
    picked = await processor.handle(web("How do I unsubscribe?", 2))
    assert picked.plan == "faq:unsubscribe"
    async with sessionmaker() as session:
        assert await consent_history(session, asked.customer_id or 0) == []


async def test_stop_while_options_are_offered_still_withdraws_at_once(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    asked = await processor.handle(web("about your newsletter", 1))
    stopped = await processor.handle(web("STOP", 2))
    assert stopped.plan == "keyword:opt_out"
    async with sessionmaker() as session:
        assert [e.action for e in await consent_history(session, asked.customer_id or 0)] != []
