"""The web chat end to end: the demo page and its widget in Debian's headless Chromium (driven by
Playwright) against the whole app, real bot included, served on a loopback port.

Only on SQLite: the socket's SQL runs on both databases in test_chat.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, ConsoleMessage, Page, Route, expect

from sastre.app import create_app
from sastre.config import Settings
from sastre.web import chat
from tests.sastre.conftest import Client
from tests.sastre.test_console import WAIT_MS, browser, chromium, playwright
from tests.support.silent_bot import SilentBot
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
    app = chat_app(settings)
    app.router.add_get("/shop-en", english_shop)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


# A page of the shop in English, on the same server and under the same policy as the demo page
# (Trusted Types included), embedding the widget as any site would.
ENGLISH_SHOP = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Shop</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <script src="/static/widget.js" defer></script>
</head>
<body><main><h1>The shop</h1></main></body>
</html>
"""


async def english_shop(request: web.Request) -> web.Response:
    # Served by the app, not made up in the browser: a page the browser cannot place on the
    # network may not open a socket to a loopback address (Chromium's local network checks).
    return web.Response(text=ENGLISH_SHOP, content_type="text/html", headers=chat.HEADERS)


@asynccontextmanager
async def visit(
    browser: Browser,
    served: Client,
    path: str,
    locale: str = "es-ES",
    *,
    texts: Callable[[Route], Awaitable[None]] | None = None,
    tolerated: str | None = None,
) -> AsyncIterator[Page]:
    """A visitor whose browser speaks `locale` on `path`; any script error or
    Content-Security-Policy violation while they were there fails the test (except a console
    line holding `tolerated`). `texts`, if given, handles the widget's requests for its texts."""
    context = await browser.new_context(base_url=str(served.make_url("/")), locale=locale)
    context.set_default_timeout(WAIT_MS)
    if texts is not None:
        await context.route("**/chat/texts*", texts)
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        if tolerated is not None and tolerated in message.text:
            return
        if message.type in ("error", "warning"):
            problems.append(f"console {message.type}: {message.text}")

    page.on("console", on_console)
    await page.goto(path)
    yield page
    await context.close()
    assert not problems, problems


@pytest.fixture
async def page(browser: Browser, served: Client) -> AsyncIterator[Page]:
    """A Spanish-speaking visitor on the demo shop."""
    async with visit(browser, served, "/chat") as page:
        yield page


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


@pytest.fixture
async def served_silent(settings: Settings) -> AsyncIterator[tuple[Client, SilentBot]]:
    """The app with a bot outside the database that does not answer until told to."""
    bot = SilentBot()
    app = create_app(settings.model_copy(update={"bot_timeout": 0.2}), brain=bot)
    if not any(r.resource and r.resource.canonical == "/chat" for r in app.router.routes()):
        app.add_routes(chat.routes)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, bot


async def test_a_message_the_bot_did_not_answer_is_sent_again_and_answered(
    browser: Browser, served_silent: tuple[Client, SilentBot]
) -> None:
    served, bot = served_silent
    async with visit(browser, served, "/chat") as page:
        await open_widget(page)
        log = page.get_by_role("log", name="Mensajes del chat")
        await ask(page, "¿hay alguien?")
        await expect(log.locator(".from-customer.is-failed")).to_have_count(1)
        error = page.locator(".sastre-chat-error")
        await expect(error).to_have_text(translate("es", "webchat.not_delivered"))
        bot.back = True  # the widget sends it again by itself, under the same id
        # A bound, not a figure: the first re-send is 2 s after the error.
        await expect(log.locator(".from-bot .sastre-chat-text")).to_have_text(
            ["back: ¿hay alguien?"], timeout=3 * WAIT_MS
        )
        await expect(log.locator(".from-customer .sastre-chat-text")).to_have_text(
            ["¿hay alguien?"]
        )
        await expect(
            log.locator(".from-customer.is-failed, .from-customer.is-pending")
        ).to_have_count(0)
        await expect(error).to_have_text("")


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
    # Numbers as Spanish writes them (no separator in four digits, RAE and CLDR).
    await expect(page.locator(".sastre-chat-counter")).to_have_text("4001 / 4000")
    await box.press("Enter")
    await expect(page.get_by_role("alert")).to_have_text(
        "El mensaje tiene 4001 caracteres y el máximo es 4000: acórtalo o divídelo."
    )
    await expect(box).to_have_value("x" * 4001)  # kept for the visitor to shorten, never cut
    await expect(log.locator(".from-customer")).to_have_count(1)

    # Escape closes the panel and gives the focus back to the launcher.
    await box.press("Escape")
    launcher = page.get_by_role("button", name="Chatea con nosotros")
    await expect(launcher).to_be_focused()
    await expect(launcher).to_have_attribute("aria-expanded", "false")


async def test_the_widget_speaks_the_pages_language_from_the_catalogue(
    browser: Browser, served: Client
) -> None:
    """The demo shop is in Spanish, the other page in English: each shows the widget in its
    page's language, whatever the browser's, with the catalogue's words."""
    pages = (("/chat", "en-GB", "es", "4000"), ("/shop-en", "es-ES", "en", "4,000"))
    for path, browser_locale, language, limit in pages:
        async with visit(browser, served, path, browser_locale) as page:

            def word(key: str, language: str = language) -> str:
                return translate(language, f"widget.{key}", count="{count}", limit="{limit}")

            launcher = page.get_by_role("button", name=word("launcher"))
            await launcher.click()
            await expect(page.get_by_role("dialog", name=word("title"))).to_be_visible()
            box = page.get_by_label(word("label"))
            await expect(box).to_be_focused()
            await expect(box).to_have_attribute("placeholder", word("placeholder"))
            await expect(page.get_by_role("button", name=word("send"))).to_be_visible()
            await expect(page.get_by_role("button", name=word("close"))).to_be_visible()
            await expect(page.get_by_role("log", name=word("log"))).to_be_attached()
            await expect(page.locator(".sastre-chat-status")).to_have_text(word("status.connected"))
            await expect(page.locator(".sastre-chat-counter")).to_have_text(f"0 / {limit}")
            await box.press("Enter")
            await expect(page.get_by_role("alert")).to_have_text(word("empty"))


async def test_the_widget_shows_itself_once_it_has_its_texts_and_retries_for_them(
    browser: Browser, served: Client
) -> None:
    """No words of its own: until the server has answered, there is no launcher; a failed
    request for the texts is tried again."""
    held = asyncio.Event()
    asked: list[str] = []

    async def first_one_fails(route: Route) -> None:
        asked.append(route.request.url)
        if len(asked) == 1:
            await held.wait()
            await route.abort()
        else:
            await route.continue_()

    async with visit(
        browser, served, "/chat", texts=first_one_fails, tolerated="net::ERR_FAILED"
    ) as page:
        launcher = page.locator(".sastre-chat-launcher")
        await expect(page.get_by_role("heading", name="Sastre · Tienda")).to_be_visible()
        assert await launcher.count() == 0  # the first request is still unanswered
        held.set()
        await expect(launcher).to_have_text(translate("es", "widget.launcher"))
        assert len(asked) == 2
        assert all(url.endswith("/chat/texts?lang=es") for url in asked)
