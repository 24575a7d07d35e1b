"""The web chat's quick replies in headless Chromium: the bot's options are buttons under its
question, a click sends the option as the visitor's message, and the buttons go once answered.

The bot reads with a fixed understanding and KB (tests/dialog/test_selfservice_choices.py), so
the options are the same whatever the shipped data says. Only on SQLite, as the other browser
tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncSession

from actions.runner import EmbeddedActions
from dialog.faq import FaqMatcher
from dialog.selfservice import SelfServiceBrain
from sastre.app import create_app
from sastre.config import Settings
from tests.dialog.test_selfservice_choices import StubFaq, StubUnderstander
from tests.sastre.conftest import Client
from tests.sastre.test_chat_browser import ask, open_widget, visit
from tests.sastre.test_console import browser, chromium, playwright

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
__all__ = ["browser", "chromium", "playwright"]  # the module-scoped fixtures, shared


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[Client]:
    async def faq(_session: AsyncSession) -> FaqMatcher:
        return StubFaq()

    brain = SelfServiceBrain(StubUnderstander(), faq, EmbeddedActions())
    app = create_app(settings, brain=brain)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


@pytest.fixture
async def page(browser: Browser, served: Client) -> AsyncIterator[Page]:
    async with visit(browser, served, "/chat") as page:
        yield page


async def test_the_options_are_buttons_and_a_click_answers(page: Page) -> None:
    await open_widget(page)
    log = page.get_by_role("log", name="Mensajes del chat")
    await ask(page, "no me queda bien la camisa")
    await expect(log.locator(".from-bot .sastre-chat-text")).to_have_text(["¿Te refieres a…?"])
    options = page.get_by_role("group", name="Opciones").get_by_role("button")
    await expect(options).to_have_text(["¿Cómo devuelvo un artículo?", "¿Puedo cambiar la talla?"])

    await page.get_by_role("button", name="¿Puedo cambiar la talla?").click()
    await expect(log.locator(".from-customer .sastre-chat-text")).to_have_text(
        ["no me queda bien la camisa", "¿Puedo cambiar la talla?"]
    )
    await expect(log.locator(".from-bot .sastre-chat-text")).to_have_text(
        ["¿Te refieres a…?", "Cambios: en cualquier tienda."]
    )
    await expect(options).to_have_count(0)  # answered: the offer is gone


async def test_typing_instead_of_clicking_takes_the_buttons_away(page: Page) -> None:
    await open_widget(page)
    await ask(page, "no me queda bien la camisa")
    options = page.get_by_role("group", name="Opciones").get_by_role("button")
    await expect(options).to_have_count(2)
    await ask(page, "what time do you open")
    await expect(options).to_have_count(0)


async def test_a_reload_keeps_the_options_on_offer(page: Page) -> None:
    await open_widget(page)
    await ask(page, "no me queda bien la camisa")
    options = page.get_by_role("group", name="Opciones").get_by_role("button")
    await expect(options).to_have_count(2)
    await page.reload()
    await open_widget(page)
    await expect(options).to_have_text(["¿Cómo devuelvo un artículo?", "¿Puedo cambiar la talla?"])
    await page.get_by_role("button", name="¿Cómo devuelvo un artículo?").click()
    bot = page.get_by_role("log", name="Mensajes del chat").locator(".from-bot .sastre-chat-text")
    await expect(bot.last).to_have_text("Devoluciones: 30 días, gratis.")
