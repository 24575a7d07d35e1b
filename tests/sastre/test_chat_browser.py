"""The web chat end to end: the demo page and its widget in Debian's headless Chromium (driven by
Playwright) against the whole app, real bot included, served on a loopback port.

Only on SQLite: the socket's SQL runs on both databases in test_chat.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, ConsoleMessage, Page, expect

from sastre.app import create_app
from sastre.config import Settings
from sastre.web import chat
from tests.sastre.conftest import Client
from tests.sastre.test_console import WAIT_MS, browser, chromium, playwright
from wording import translate

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
__all__ = ["browser", "chromium", "playwright"]  # the module-scoped fixtures, shared

HOURS_QUESTION = "¿Cuál es el horario de la tienda?"
HUMAN = "quiero hablar con una persona"


def chat_app(settings: Settings) -> web.Application:
    app = create_app(settings)  # the real bot, built at start-up
    # Until create_app registers the chat itself; then this does nothing.
    if not any(r.resource and r.resource.canonical == "/chat" for r in app.router.routes()):
        app.add_routes(chat.routes)
    return app


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(chat_app(settings), host="127.0.0.1")) as client:
        yield client


@pytest.fixture
async def page(browser: Browser, served: Client) -> AsyncIterator[Page]:
    """A Spanish-speaking visitor on the demo shop; any script error or Content-Security-Policy
    violation while the test ran fails it."""
    context = await browser.new_context(base_url=str(served.make_url("/")), locale="es-ES")
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"console {message.type}: {message.text}")

    page.on("console", on_console)
    await page.goto("/chat")
    yield page
    await context.close()
    assert not problems, problems


async def open_widget(page: Page) -> None:
    launcher = page.get_by_role("button", name="Chatea con nosotros")
    await launcher.click()
    await expect(launcher).to_have_attribute("aria-expanded", "true")
    await expect(page.get_by_role("dialog", name="Atención al cliente")).to_be_visible()
    await expect(page.get_by_label("Tu mensaje")).to_be_focused()
    await expect(page.locator(".sastre-chat-status")).to_have_text("Conectado")


async def ask(page: Page, text: str) -> None:
    box = page.get_by_label("Tu mensaje")
    await box.fill(text)
    await box.press("Enter")
    await expect(box).to_have_value("")


async def test_a_visitor_asks_the_faq_then_for_a_human(page: Page) -> None:
    await open_widget(page)
    log = page.get_by_role("log", name="Mensajes del chat")

    await ask(page, HOURS_QUESTION)
    mine = log.locator(".from-customer .sastre-chat-text")
    await expect(mine).to_have_text([HOURS_QUESTION])
    await expect(log.locator(".from-customer.is-pending")).to_have_count(0)  # acknowledged
    answer = log.locator(".from-bot .sastre-chat-text").first
    await expect(answer).to_contain_text("Nuestras tiendas abren de lunes a sábado")

    await ask(page, HUMAN)
    notice = page.locator(".sastre-chat-handoff")
    await expect(notice).to_be_visible()
    await expect(notice).to_have_text(translate("es", "webchat.handoff"))

    # A reload resumes the conversation, hand-off included.
    await page.reload()
    await open_widget(page)
    await expect(mine).to_have_text([HOURS_QUESTION, HUMAN])
    await expect(log.locator(".from-bot .sastre-chat-text").first).to_contain_text(
        "Nuestras tiendas abren"
    )
    await expect(notice).to_have_text(translate("es", "webchat.handoff"))


async def test_text_is_shown_as_text_and_over_long_messages_are_refused(page: Page) -> None:
    await open_widget(page)
    log = page.get_by_role("log", name="Mensajes del chat")
    markup = "<img src=x onerror=alert(1)> <b>hola</b>"
    await ask(page, markup)
    await expect(log.locator(".from-customer .sastre-chat-text")).to_have_text([markup])
    await expect(log.locator(".from-bot")).not_to_have_count(0)
    assert await log.locator("img, b").count() == 0

    box = page.get_by_label("Tu mensaje")
    await box.fill("x" * 4001)
    await expect(page.locator(".sastre-chat-counter")).to_have_text("4001 / 4.000")
    await box.press("Enter")
    await expect(page.get_by_role("alert")).to_contain_text("el máximo es 4.000")
    await expect(box).to_have_value("x" * 4001)  # kept for the visitor to shorten, never cut
    await expect(log.locator(".from-customer")).to_have_count(1)

    # Escape closes the panel and gives the focus back to the launcher.
    await box.press("Escape")
    launcher = page.get_by_role("button", name="Chatea con nosotros")
    await expect(launcher).to_be_focused()
    await expect(launcher).to_have_attribute("aria-expanded", "false")
