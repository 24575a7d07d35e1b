"""A conversation opened by a keyword, from someone whose language is unknown, is held in the
language the keyword was answered in: the replies that follow are in it too, and a Spanish
keyword makes the lead Spanish (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select

from channels.base import ChannelName, InboundMessage
from consent.replies import Brand
from crm_core.models import Customer
from dialog.inbound import InboundProcessor
from dialog.models import Conversation
from sastre.db import SessionMaker
from tests.dialog.test_inbound import FakeBrain

_ids = itertools.count()


@pytest.fixture
def processor(sessionmaker: SessionMaker) -> InboundProcessor:
    return InboundProcessor(
        sessionmaker,
        FakeBrain(),
        default_region="US",
        default_language="en",
        default_timezone="UTC",
        brand=Brand("Sastre", "support@example.com"),
    )


async def reply(processor: InboundProcessor, text: str, sender: str) -> str:
    message = InboundMessage(ChannelName.SMS, sender, text, f"SM-lang-{next(_ids)}")
    [answer] = (await processor.handle(message)).replies
    return answer.text


async def languages(sessionmaker: SessionMaker) -> tuple[str | None, str]:
    async with sessionmaker() as session:
        customer = await session.scalar(select(Customer.language))
        conversation = await session.scalar(select(Conversation.language))
    assert conversation is not None
    return customer, conversation


async def test_a_first_spanish_help_keeps_the_conversation_spanish(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    sender = "+34611000444"
    assert (await reply(processor, "AYUDA", sender)).startswith("Sastre: ayuda")
    assert (await reply(processor, "AYUDA", sender)).startswith("Sastre: ayuda")
    unsubscribed = await reply(processor, "BAJA", sender)
    assert unsubscribed.startswith("Se ha dado de baja de Sastre.")
    assert "ALTA" in unsubscribed
    assert "START" not in unsubscribed
    assert await languages(sessionmaker) == ("es", "es")


async def test_a_first_spanish_opt_out_answers_alta_in_spanish(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    sender = "+34611000555"
    assert (await reply(processor, "BAJA", sender)).startswith("Se ha dado de baja")
    resubscribed = await reply(processor, "ALTA", sender)
    assert "resubscribed" not in resubscribed
    assert (await reply(processor, "AYUDA", sender)).startswith("Sastre: ayuda")


async def test_a_first_stop_is_answered_in_english_without_naming_the_lead_s_language(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    # STOP is the carriers' word in every language: no evidence of the customer's.
    assert (await reply(processor, "STOP", "+34611000666")).startswith("You are unsubscribed")
    assert await languages(sessionmaker) == (None, "en")
