"""Answering the opt-out question: a yes withdraws, a no keeps everything as it was and says so,
through the embedded bot as a customer meets it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import select

from actions.awaiting import Awaiting
from actions.opt_out import OptOutStep, is_decline, opt_out_step
from consent.ledger import consent_history
from dialog.inbound import InboundProcessor
from dialog.models import Conversation
from dialog.selfservice import answers
from sastre.config import Settings
from sastre.db import SessionMaker
from tests.support.embedded import embedded_processor, web

DECLINES = ["no", "No.", "no gracias", "No, gracias", "no thanks", "nope", "para nada", "NO!"]


@pytest.mark.parametrize("text", DECLINES)
def test_a_plain_no_declines(text: str) -> None:
    assert is_decline(text)


@pytest.mark.parametrize(
    "text", ["no me llega el pedido", "no quiero más ofertas", "yes", "sí", "", "not now"]
)
def test_anything_more_than_a_no_is_not_a_decline(text: str) -> None:
    assert not is_decline(text)


def test_a_no_to_the_question_declines_and_a_no_without_one_asks() -> None:
    assert opt_out_step("no", Awaiting.OPT_OUT_CONFIRMATION) is OptOutStep.DECLINE
    assert opt_out_step("no", None) is OptOutStep.ASK
    assert opt_out_step("sí", Awaiting.OPT_OUT_CONFIRMATION) is OptOutStep.REVOKE


@pytest.mark.parametrize("text", ["no", "para nada", "SÍ"])
def test_the_embedded_dialog_gives_a_yes_or_a_no_back_to_the_action(text: str) -> None:
    assert answers(Awaiting.OPT_OUT_CONFIRMATION, text)


@pytest.fixture
async def processor(
    sessionmaker: SessionMaker, settings: Settings
) -> AsyncIterator[InboundProcessor]:
    async with AsyncExitStack() as stack:
        yield await embedded_processor(sessionmaker, settings, stack)


@pytest.mark.parametrize(
    ("asked", "answer", "told"),
    [
        ("ya no me interesa nada de lo vuestro", "no", "De acuerdo, seguirás recibiendo"),
        ("ya no me interesa nada de lo vuestro", "para nada", "De acuerdo, seguirás recibiendo"),
        ("ya no me interesa nada de lo vuestro", "No, gracias", "De acuerdo, seguirás recibiendo"),
        ("I don't want offers by email anymore", "no thanks", "OK, nothing changes"),
        ("I don't want offers by email anymore", "nope", "OK, nothing changes"),
    ],
)
async def test_no_to_the_opt_out_question_changes_nothing_and_says_so(
    processor: InboundProcessor, sessionmaker: SessionMaker, asked: str, answer: str, told: str
) -> None:
    """The bug: "no" read as an opt-out asked the same question again, for ever."""
    question = await processor.handle(web(asked, 1))
    assert question.replies[0].text.startswith(
        ("¿Quieres dejar de recibir", "Do you want to stop receiving")
    )
    declined = await processor.handle(web(answer, 2))
    assert [reply.text for reply in declined.replies] == [declined.replies[0].text]
    assert declined.replies[0].text.startswith(told)
    async with sessionmaker() as session:
        assert await consent_history(session, declined.customer_id or 0) == []
        conversation = await session.scalar(select(Conversation))
    assert conversation is not None
    assert "slots" not in conversation.flags  # the question is closed: a later yes means nothing
    later = await processor.handle(web("SÍ" if told.startswith("De") else "yes", 3))
    async with sessionmaker() as session:
        assert await consent_history(session, later.customer_id or 0) == []
