"""The staff console, end to end: the real page in Debian's headless Chromium, driven by
Playwright, against the app served on a loopback port.

Only on SQLite: the console adds no SQL of its own, and the API under it runs on both databases in
test_api_customers.py; a browser per database would double the slowest tests for nothing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, ConsoleMessage, Page, Playwright, async_playwright, expect

from crm_core.tiers import TierRules, recompute_tiers
from sastre.app import create_app
from sastre.auth import Role, list_tokens, revoke_token
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.web import console
from tests.sastre.conftest import Client

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 5_000

NAME = "Ana <b>x</b> Gómez"  # markup the page must show, not obey
ANA = {
    "external_id": "C-1",
    "name": NAME,
    "email": "Ana@Example.com",
    "phone": "+34 612 345 678",
    "telegram": "123456",
    "country": "ES",
    "timezone": "Europe/Madrid",
    "language": "es",
    "revenue": 1200.5,
    "cost_to_serve": 300,
    "potential_value": 5000,
    "attributes": {"segment": "gold", "churn_risk": "high"},
}


def console_app(settings: Settings) -> web.Application:
    app = create_app(settings)
    # Until create_app registers the console itself; then this does nothing.
    if not any(r.resource and r.resource.canonical == "/console" for r in app.router.routes()):
        app.add_routes(console.routes)
    return app


@pytest.fixture(scope="module")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def chromium() -> Path:
    # A failure, not a skip: a suite that quietly stops testing the console is worse than none.
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the console tests drive Debian's Chromium. "
            "Install it with scripts/system-deps.sh (apt-get install chromium).",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(playwright: Playwright, chromium: Path) -> AsyncIterator[Browser]:
    browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    yield browser
    await browser.close()


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[Client]:
    """The app on a real loopback port (the browser needs one); also an API client to it."""
    async with TestClient(TestServer(console_app(settings), host="127.0.0.1")) as client:
        yield client


@pytest.fixture
async def page(browser: Browser, served: Client) -> AsyncIterator[Page]:
    """A fresh browser context (its own sessionStorage) on the console; fails the test on any
    script error or Content-Security-Policy violation seen while it ran."""
    context = await browser.new_context(base_url=str(served.make_url("/")))
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        # A refused token or a missing customer is logged by Chromium as a failed resource load:
        # those are the API answering, not the page breaking.
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(f"console error: {message.text}")

    page.on("console", on_console)
    await page.goto("/")
    yield page
    await context.close()
    assert not problems, problems


async def create_customer(client: Client, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(
        "/api/customers", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 201, await response.text()
    view: dict[str, Any] = await response.json()
    return view


async def sign_in(page: Page, token: str) -> None:
    await page.get_by_label("Staff API token").fill(token)
    await page.get_by_label("Staff API token").press("Enter")


async def search(page: Page, query: str) -> None:
    box = page.get_by_label("Customer id, e-mail, phone or kind:value")
    await box.fill(query)
    await box.press("Enter")


async def test_an_agent_finds_a_customer_and_adds_a_note(
    page: Page, served: Client, tokens: dict[Role, str], sessionmaker: SessionMaker
) -> None:
    ana = await create_customer(served, tokens[Role.ADMIN], ANA)
    async with sessionmaker.begin() as session:
        await recompute_tiers(session, TierRules())

    await sign_in(page, tokens[Role.AGENT])
    await expect(page.locator("#session-name")).to_have_text("test-agent")
    await expect(page.get_by_label("Customer id, e-mail, phone or kind:value")).to_be_focused()

    await search(page, "nobody@example.com")
    await expect(page.locator("#search-message")).to_have_text(
        "no customer with email nobody@example.com"
    )
    await search(page, "hello")
    await expect(page.locator("#search-message")).to_contain_text("Not understood")

    await search(page, "telegram:123456")
    name = page.locator("#customer-name")
    await expect(name).to_have_text(NAME)
    assert await page.locator("#customer b").count() == 0
    await expect(page.locator("#search-message")).to_be_hidden()

    badge = page.locator("#tier-badge")
    await expect(badge).to_have_text("CMV")
    await expect(badge).to_have_class("badge tier-cmv")
    await expect(page.locator("#tier-reason")).to_contain_text(
        "CMV: profit 901, top 100% of profit"
    )
    await expect(page.locator("#at-risk")).to_be_visible()
    await expect(page.locator("#attributes tr.at-risk-row th")).to_have_text("churn_risk")
    await expect(page.locator("#value")).to_contain_text("900.50")

    rows = page.locator("#identities tbody tr")
    await expect(rows).to_have_count(4)
    identities = {
        tuple((await row.locator("td").all_inner_texts())[:2]) for row in await rows.all()
    }
    assert identities == {
        ("email", "ana@example.com"),
        ("external", "C-1"),
        ("phone", "+34612345678"),
        ("telegram", "123456"),
    }

    note = "Wants a call after 18:00 <img src=x onerror=alert(1)>"
    await page.get_by_label("Add a note").fill(note)
    await page.get_by_role("button", name="Add note").click()
    await expect(page.locator("#note-message")).to_have_text("Note added.")
    first = page.locator("#timeline li").first
    await expect(first.locator(".summary")).to_have_text(note)
    await expect(first.locator(".kind")).to_have_text("Note")
    await expect(first.locator(".actor")).to_have_text("by agent:test-agent")
    assert await page.locator("#timeline img").count() == 0
    await expect(page.get_by_label("Add a note")).to_have_value("")

    await search(page, str(ana["id"]))  # by id, and the stored note is still there
    await expect(page.locator("#timeline .summary").first).to_have_text(note)


async def test_a_wrong_token_shows_the_login_error(page: Page) -> None:
    await sign_in(page, "sst_not-a-real-token")
    error = page.locator("#login-error")
    await expect(error).to_have_text("That token was not accepted (invalid or revoked token).")
    await expect(page.locator("#workspace")).to_be_hidden()
    await expect(page.get_by_label("Staff API token")).to_be_focused()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_a_revoked_token_goes_back_to_the_login_form(
    page: Page, served: Client, tokens: dict[Role, str], sessionmaker: SessionMaker
) -> None:
    await create_customer(served, tokens[Role.ADMIN], ANA)
    await sign_in(page, tokens[Role.AGENT])
    await expect(page.locator("#workspace")).to_be_visible()
    async with sessionmaker.begin() as session:
        agent = next(t for t in await list_tokens(session) if t.role == Role.AGENT)
        assert await revoke_token(session, agent.id)

    await search(page, "ana@example.com")
    await expect(page.locator("#login-error")).to_contain_text("no longer accepted")
    await expect(page.locator("#workspace")).to_be_hidden()
    await expect(page.locator("#customer-name")).to_have_text("")  # nothing left on the page


async def test_a_marketer_reads_but_may_not_add_notes(
    page: Page, served: Client, tokens: dict[Role, str]
) -> None:
    ana = await create_customer(served, tokens[Role.ADMIN], ANA)
    await sign_in(page, tokens[Role.MARKETER])
    await expect(page.locator("#session-role")).to_have_text("marketer")
    await page.reload()  # the token lives in this tab's sessionStorage
    await search(page, "email:ANA@example.com")
    await expect(page.locator("#customer-name")).to_have_text(NAME)
    await search(page, "external_id:C-1")
    await expect(page.locator("#customer-meta")).to_have_text(f"Customer {ana['id']} · customer")
    await expect(page.locator("#note-form")).to_be_hidden()
    await expect(page.locator("#note-forbidden")).to_be_visible()

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("Staff API token")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_the_page_and_its_files_carry_a_strict_policy(served: Client) -> None:
    for path in ("/", "/console", "/static/console.html"):
        response = await served.get(path)
        assert response.status == 200, path
        assert response.content_type == "text/html"
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert "require-trusted-types-for 'script'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    script = await served.get("/static/console.js")
    assert script.content_type in ("text/javascript", "application/javascript")
    assert not re.search(
        r"\.(inner|outer)HTML\b|insertAdjacentHTML|document\.write", await script.text()
    )
    for missing in ("/static/nope.js", "/static/..%2Fweb%2Fconsole.py", "/static/.hidden"):
        assert (await served.get(missing)).status == 404, missing


async def test_who_am_i_names_the_role_and_its_permissions(
    served: Client, tokens: dict[Role, str]
) -> None:
    assert (await served.get("/api/me")).status == 401
    response = await served.get(
        "/api/me", headers={"Authorization": f"Bearer {tokens[Role.AGENT]}"}
    )
    assert await response.json() == {
        "name": "test-agent",
        "role": "agent",
        "permissions": [
            "customers:read",
            "customers:write",
            "timeline:write",
            "consent:write",
            "consent:evidence",
        ],
    }
