"""The issue's examples, through the whole inbound path with the shipped model and KB: questions
about the shop's own FAQ topics get the right answer, or options that include it, never "What is
your order number?", "please rephrase" or a change to the customer's consent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import select

from channels.base import ChannelName, InboundMessage
from consent.models import ConsentEvent
from dialog.inbound import InboundProcessor
from sastre.config import Settings
from sastre.db import SessionMaker
from tests.support.embedded import embedded_processor

EXAMPLES = [
    # FAQ questions the intent model once routed to actions
    ("how can I cancel an order I just placed", "cancel-order"),
    ("can I pick up my online order in store", "click-and-collect"),
    ("I need to update the shipping address", "change-delivery-address"),
    ("is there a tracking link for my parcel", "order-tracking"),
    ("I can't log in to my account, reset password", "account-password"),
    # questions the retriever had right, below its line
    ("where's your shop in madrid exactly", "store-locations"),
    ("cuánto tarda un envío a Sevilla", "shipping-national"),
    ("do you do hemming on trousers", "alterations"),
    ("hacen trajes a medida?", "made-to-measure"),
    # questions once read as opt-outs
    ("quiero devolver una camisa que no me queda bien", "returns"),
    ("mi código de descuento no funciona", "promo-codes"),
    ("olvidé mi contraseña de la web", "account-password"),
]


@pytest.fixture
async def processor(
    sessionmaker: SessionMaker, settings: Settings
) -> AsyncIterator[InboundProcessor]:
    async with AsyncExitStack() as stack:
        yield await embedded_processor(sessionmaker, settings, stack)


async def test_the_issues_examples_get_their_answer_or_options_including_it(
    processor: InboundProcessor, sessionmaker: SessionMaker
) -> None:
    outcomes = {}
    for n, (text, _) in enumerate(EXAMPLES):
        message = InboundMessage(ChannelName.SMS, f"+1415555{n:04d}", text, f"SM{n}")
        outcomes[text] = (await processor.handle(message)).plan or ""
    missed = {
        text: outcomes[text]
        for text, entry in EXAMPLES
        if outcomes[text] != f"faq:{entry}"
        and f"faq:{entry}" not in outcomes[text].removeprefix("choices:").split("|")
    }
    assert missed == {}
    async with sessionmaker() as session:
        assert list(await session.scalars(select(ConsentEvent))) == []


async def test_an_off_topic_question_gets_no_faq_answer(processor: InboundProcessor) -> None:
    message = InboundMessage(
        ChannelName.SMS, "+14155550100", "what is the capital of Australia", "SM1"
    )
    result = await processor.handle(message)
    assert not (result.plan or "").startswith("faq:")
