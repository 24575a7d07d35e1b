"""A real Rasa server through its REST channel, played by a local fake in Rasa's own format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from crm_core.models import Customer
from dialog.models import Conversation
from dialog.rasa import RasaRestBrain
from dialog.turns import Turn

Answer = list[dict[str, Any]]


class FakeRasa:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.answer: Answer = []
        self.status = 200

    async def webhook(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        return web.json_response(self.answer, status=self.status)


@pytest.fixture
async def rasa() -> AsyncIterator[tuple[FakeRasa, str]]:
    fake = FakeRasa()
    app = web.Application()
    app.router.add_post("/webhooks/rest/webhook", fake.webhook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("/"))
    await server.close()


def turn(text: str) -> Turn:
    customer = Customer(id=7, tier="CMV", language="es", name="Ana")
    conversation = Conversation(id=1, customer_id=7, channel="sms", address="+34612345678")
    return Turn(customer, conversation, text, "es", "Europe/Madrid", None)  # type: ignore[arg-type]


async def test_text_goes_to_the_rest_channel_and_replies_come_back(
    rasa: tuple[FakeRasa, str],
) -> None:
    fake, url = rasa
    fake.answer = [
        {"recipient_id": "7", "text": "¡Hola Ana!"},
        {"recipient_id": "7", "text": "¿Qué tal?"},
    ]
    async with aiohttp.ClientSession() as http:
        decided = await RasaRestBrain(url, http).ask(turn("hola"))
    assert decided.replies == ["¡Hola Ana!", "¿Qué tal?"]
    assert decided.handoff is None
    assert fake.received == [
        {
            "sender": "7",
            "message": "hola",
            "metadata": {
                "language": "es",
                "timezone": "Europe/Madrid",
                "channel": "sms",
                "tier": "CMV",
            },
        }
    ]


async def test_a_handoff_custom_payload_hands_off(rasa: tuple[FakeRasa, str]) -> None:
    fake, url = rasa
    fake.answer = [
        {"recipient_id": "7", "text": "Te paso con una persona."},
        {"recipient_id": "7", "custom": {"handoff": "customer_asked"}},
    ]
    async with aiohttp.ClientSession() as http:
        decided = await RasaRestBrain(url, http).ask(turn("un humano"))
    assert decided.handoff == "customer_asked"


async def test_when_rasa_fails_a_person_takes_over(rasa: tuple[FakeRasa, str]) -> None:
    fake, url = rasa
    fake.status = 500
    async with aiohttp.ClientSession() as http:
        decided = await RasaRestBrain(url, http).ask(turn("hola"))
    assert decided.handoff == "bot_unavailable"
    assert decided.replies == ["Te paso con una persona de nuestro equipo; en breve te atenderá."]


async def test_when_rasa_is_unreachable_a_person_takes_over() -> None:
    async with aiohttp.ClientSession() as http:
        brain = RasaRestBrain("http://127.0.0.1:9", http, timeout=1)
        decided = await brain.ask(turn("hola"))
    assert decided.handoff == "bot_unavailable"
