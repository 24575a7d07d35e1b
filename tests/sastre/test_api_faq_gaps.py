"""GET /api/faq/gaps: the KB's gaps through the whole service (inbound path, staff sending),
grouped; filters and pages; roles; bad parameters."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as fuzzing
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import ChannelName, InboundMessage
from dialog.faq import build_entry
from dialog.faq_store import FaqRow, save_entry
from dialog.turns import BotTurn, InboundResult, Turn
from sastre.app import create_app
from sastre.appkeys import INBOUND
from sastre.auth import Role
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.web.faq import FAQ_CATALOGUE
from tests.sastre.conftest import Client, ClientFactory
from tests.sastre.test_api_messages import SENDERS

Auth = Callable[..., dict[str, str]]
_ids = itertools.count(1)
PLANS = {
    "do you do hemming on trousers": "rephrase",
    "can you hem my trousers?": "handoff:not_understood",
    "hacen trajes a medida?": "choices:faq:made-to-measure|faq:wedding-suits",
    "are you open on sunday evenings": "rephrase",
    "this is a disgrace": "handoff:complaint",
    "let me talk to a person": "handoff:customer_asked",
    "what are your opening hours?": "faq:opening-hours",
}
QUERY = ["since", "language", "channel", "limit", "cursor"]
HOURS = build_entry(
    "opening-hours",
    {"en": ["What are your opening hours?", "Are you open on Sundays?"]},
    {"en": "Monday to Saturday, 10am to 9pm."},
)


class ScriptedBrain:
    """Plans each text as PLANS says."""

    async def respond(self, session: AsyncSession, turn: Turn) -> BotTurn:
        plan = PLANS[turn.text]
        handoff = plan.removeprefix("handoff:") if plan.startswith("handoff:") else None
        return BotTurn(["…"], understood=plan != "rephrase", handoff=handoff, plan=plan)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update=SENDERS)  # staff may text customers back


@pytest.fixture
async def gaps_client(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> Client:
    """The service with a scripted bot, on a KB of exactly HOURS."""
    client = await aiohttp_client(create_app(settings, brain=ScriptedBrain()))
    async with sessionmaker.begin() as session:  # whatever start-up may have seeded
        await session.execute(delete(FaqRow))
        await save_entry(session, HOURS)
    client.app[FAQ_CATALOGUE].invalidate()
    return client


async def say(client: Client, text: str, sender: str) -> InboundResult:
    inbound = client.app[INBOUND]
    return await inbound.handle(InboundMessage(ChannelName.SMS, sender, text, f"SM{next(_ids)}"))


async def answer(client: Client, auth: Auth, to: InboundResult, text: str) -> None:
    body = {"customer_id": to.customer_id, "text": text, "purpose": "service", "channel": "sms"}
    response = await client.post("/api/messages", json=body, headers=auth(Role.AGENT))
    assert response.status == 202, await response.text()


async def gaps(client: Client, auth: Auth, role: Role = Role.ADMIN, **query: Any) -> Any:
    response = await client.get("/api/faq/gaps", params=query, headers=auth(role))
    assert response.status == 200, await response.text()
    return await response.json()


@pytest.fixture
async def asked(gaps_client: Client, auth: Auth) -> Client:
    """Every text of PLANS asked once, by its own customer; an agent answered the hemming one."""
    for n, text in enumerate(PLANS):
        said = await say(gaps_client, text, sender=f"+1415555{2600 + n}")
        if text == "can you hem my trousers?":
            await answer(gaps_client, auth, said, "Yes: hemming is free and takes 3 days.")
    return gaps_client


async def test_gaps_are_grouped_most_frequent_first_with_the_agents_answer(
    asked: Client, auth: Auth
) -> None:
    body = await gaps(asked, auth)
    assert body["complete"]
    assert body["messages"] == 4  # complaints, requests for a person and answers are no gaps
    top, *rest = body["groups"]
    assert top["count"] == 2
    assert sorted(top["examples"]) == ["can you hem my trousers?", "do you do hemming on trousers"]
    assert top["outcomes"] == {"handoff:not_understood": 1, "rephrase": 1}
    assert top["languages"] == {"en": 2}
    assert [(a["text"], a["author"]) for a in top["answers"]] == [
        ("Yes: hemming is free and takes 3 days.", "agent:test-agent")
    ]
    assert sorted(g["text"] for g in rest) == [
        "are you open on sunday evenings",
        "hacen trajes a medida?",
    ]
    shown = " ".join(text for g in body["groups"] for text in g["examples"])
    assert "disgrace" not in shown
    assert "person" not in shown


async def test_a_near_entry_is_suggested(asked: Client, auth: Auth) -> None:
    groups = (await gaps(asked, auth))["groups"]
    sunday = next(g for g in groups if g["text"] == "are you open on sunday evenings")
    assert sunday["suggested_entry"]["id"] == "opening-hours"
    assert sunday["suggested_entry"]["matched_question"] == "Are you open on Sundays?"
    suits = next(g for g in groups if g["text"] == "hacen trajes a medida?")
    assert suits["suggested_entry"] is None


async def test_filters(asked: Client, auth: Auth) -> None:
    spanish = await gaps(asked, auth, language="es")
    assert [g["text"] for g in spanish["groups"]] == ["hacen trajes a medida?"]
    assert spanish["language"] == "es"
    assert (await gaps(asked, auth, channel="email"))["groups"] == []
    assert (await gaps(asked, auth, since="2999-01-01"))["groups"] == []
    assert len((await gaps(asked, auth, since="2000-01-01T00:00:00+02:00"))["groups"]) == 3
    assert len((await gaps(asked, auth, since="0001-01-01"))["groups"]) == 3


async def test_pages_follow_the_cursor(asked: Client, auth: Auth) -> None:
    everything = [g["text"] for g in (await gaps(asked, auth))["groups"]]
    seen: list[str] = []
    query: dict[str, Any] = {"limit": 1}
    while True:
        page = await gaps(asked, auth, **query)
        seen.extend(g["text"] for g in page["groups"])
        if page["next_cursor"] is None:
            break
        query["cursor"] = page["next_cursor"]
    assert seen == everything


@pytest.mark.parametrize("role", [Role.AGENT, Role.MARKETER])
async def test_only_those_who_edit_the_kb_see_its_gaps(
    gaps_client: Client, auth: Auth, role: Role
) -> None:
    response = await gaps_client.get("/api/faq/gaps", headers=auth(role))
    assert response.status == 403
    assert (await response.json())["detail"] == {"needs": "faq:write"}


async def test_supervisors_see_the_gaps_and_strangers_do_not(
    gaps_client: Client, auth: Auth
) -> None:
    assert (await gaps(gaps_client, auth, Role.SUPERVISOR))["groups"] == []
    assert (await gaps_client.get("/api/faq/gaps")).status == 401


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("since", "last week"),
        ("since", "2026-13-01"),
        ("since", "0001-01-01T00:00+14:00"),
        ("language", "fr"),
        ("channel", "voice"),
        ("channel", "pigeon"),
        ("limit", "0"),
        ("limit", "201"),
        ("limit", "-1"),
        ("limit", "ten"),
        ("cursor", "nonsense"),
        ("cursor", "3.nonsense"),
        ("cursor", "x.MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHwx"),
        ("cursor", "99999999999.MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHwx"),
    ],
)
async def test_bad_parameters_are_a_400_naming_them(
    gaps_client: Client, auth: Auth, field: str, value: str
) -> None:
    response = await gaps_client.get("/api/faq/gaps", params={field: value}, headers=auth())
    assert response.status == 400, await response.text()
    body = await response.json()
    assert body["error"] == "invalid query"
    assert body["detail"][0]["field"] == field


QUERY_VALUES = st.text(st.characters(exclude_categories=["Cs"]), max_size=30) | st.sampled_from(
    [
        "0001-01-01",
        "9999-12-31T23:59:59-12:00",
        "2026-02-30",
        "1",
        "200",
        "١٢",  # digits, but not ASCII ones
        "5.",
        "5.MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHwx",
        "5.MDAwMS0wMS0wMVQwMDowMCsxNDowMHwx",  # a time past year 1 once in UTC
        "es",
        "webchat",
    ]
)


@fuzzing(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.generate],
)
@given(query=st.dictionaries(st.sampled_from(QUERY), QUERY_VALUES, max_size=5))
async def test_any_query_gets_a_clear_answer(
    gaps_client: Client, auth: Auth, query: dict[str, str]
) -> None:
    response = await gaps_client.get("/api/faq/gaps", params=query, headers=auth())
    assert response.status in (200, 400), await response.text()
    body = await response.json()
    assert "groups" in body if response.status == 200 else body["error"] == "invalid query"
