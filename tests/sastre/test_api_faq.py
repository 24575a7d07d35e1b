"""The staff FAQ API: list, read, create or replace, delete, try a question; validation; roles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete

from dialog.faq import build_entry
from dialog.faq_store import FaqCatalogue, FaqRow, save_entry
from sastre.app import create_app
from sastre.auth import Role, allowed
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.web import faq
from sastre.web.faq import FAQ_CATALOGUE
from tests.sastre.conftest import Client, ClientFactory
from tests.support.held_write import write_held

Auth = Callable[..., dict[str, str]]

HOURS = build_entry(
    "opening-hours",
    {
        "es": ["¿Cuál es el horario de las tiendas?", "¿Abrís los domingos?"],
        "en": ["What are your opening hours?", "Are you open on Sundays?"],
    },
    {"es": "De lunes a sábado, de 10:00 a 21:00.", "en": "Monday to Saturday, 10am to 9pm."},
    ["stores"],
)
RETURNS = build_entry(
    "returns",
    {
        "es": ["¿Cómo devuelvo un artículo?", "plazo de devolución"],
        "en": ["How do I return an item?", "return policy"],
    },
    {"es": "Tienes 30 días para devolverlo.", "en": "You have 30 days to return it."},
    ["returns"],
)
GIFT_CARDS: dict[str, Any] = {
    "questions": {"en": ["Do you sell gift cards?", "gift voucher"]},
    "answers": {"en": "Yes, from 25 to 1,000 euros.", "es": "Sí, de 25 a 1.000 euros."},
    "tags": ["gifts"],
}


@pytest.fixture
async def faq_client(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> Client:
    """The service with the FAQ API, on a KB of exactly HOURS and RETURNS."""
    app = create_app(settings)
    # Until create_app registers them itself (then these two lines do nothing).
    if FAQ_CATALOGUE not in app:
        app[FAQ_CATALOGUE] = FaqCatalogue()
    if not any(r.resource and r.resource.canonical == "/api/faq" for r in app.router.routes()):
        app.add_routes(faq.routes)
    client = await aiohttp_client(app)
    async with sessionmaker.begin() as session:  # whatever start-up may have seeded
        await session.execute(delete(FaqRow))
        await save_entry(session, HOURS)
        await save_entry(session, RETURNS)
    app[FAQ_CATALOGUE].invalidate()
    return client


async def _json(response: Any, status: int) -> Any:
    assert response.status == status, await response.text()
    return await response.json()


# --- reading ------------------------------------------------------------------------------------


async def test_the_kb_is_listed_for_every_role_that_reads_customers(
    faq_client: Client, auth: Auth
) -> None:
    for role in Role:
        body = await _json(await faq_client.get("/api/faq", headers=auth(role)), 200)
        assert body["count"] == 2
        assert [e["id"] for e in body["entries"]] == ["opening-hours", "returns"]


async def test_the_list_can_be_narrowed_to_a_tag(faq_client: Client, auth: Auth) -> None:
    body = await _json(await faq_client.get("/api/faq?tag=Stores", headers=auth()), 200)
    assert [e["id"] for e in body["entries"]] == ["opening-hours"]


async def test_one_entry_is_shown_whole(faq_client: Client, auth: Auth) -> None:
    body = await _json(await faq_client.get("/api/faq/returns", headers=auth()), 200)
    assert body == {
        "id": "returns",
        "questions": {
            "es": ["¿Cómo devuelvo un artículo?", "plazo de devolución"],
            "en": ["How do I return an item?", "return policy"],
        },
        "answers": {
            "es": "Tienes 30 días para devolverlo.",
            "en": "You have 30 days to return it.",
        },
        "tags": ["returns"],
    }


async def test_an_unknown_entry_is_a_404(faq_client: Client, auth: Auth) -> None:
    body = await _json(await faq_client.get("/api/faq/parking", headers=auth()), 404)
    assert body == {"error": "no such FAQ entry", "detail": {"id": "parking"}}


async def test_the_api_needs_a_token(faq_client: Client) -> None:
    await _json(await faq_client.get("/api/faq"), 401)


# --- writing ------------------------------------------------------------------------------------


async def test_put_creates_then_replaces(faq_client: Client, auth: Auth) -> None:
    created = await _json(
        await faq_client.put("/api/faq/gift-cards", json=GIFT_CARDS, headers=auth()), 201
    )
    assert created["id"] == "gift-cards"
    replaced = {**GIFT_CARDS, "answers": {"en": "Yes, from 50 euros."}}
    await _json(await faq_client.put("/api/faq/gift-cards", json=replaced, headers=auth()), 200)
    body = await _json(await faq_client.get("/api/faq/gift-cards", headers=auth()), 200)
    assert body["answers"] == {"en": "Yes, from 50 euros."}


async def test_delete_removes_the_entry(faq_client: Client, auth: Auth) -> None:
    response = await faq_client.delete("/api/faq/returns", headers=auth())
    assert response.status == 204
    await _json(await faq_client.get("/api/faq/returns", headers=auth()), 404)
    await _json(await faq_client.delete("/api/faq/returns", headers=auth()), 404)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/api/faq/gifts",
            {"questions": {"es": ["¿Tarjetas?"]}, "answers": {"en": "Yes."}},
            "questions",
        ),
        (
            "/api/faq/gifts",
            {"questions": {"fr": ["Cartes ?"]}, "answers": {"fr": "Oui."}},
            "questions.fr",
        ),
        (
            "/api/faq/gifts",
            {"questions": {"en": ["  "]}, "answers": {"en": "Yes."}},
            "questions.en[0]",
        ),
        ("/api/faq/gifts", {"questions": {"en": ["Cards?"]}, "answers": {"en": ""}}, "answers.en"),
        ("/api/faq/gifts", {"questions": {"en": ["Cards?"]}}, "answers"),
        ("/api/faq/gifts", {**GIFT_CARDS, "answer": "Yes."}, "answer"),
        ("/api/faq/gifts", {**GIFT_CARDS, "tags": "gifts"}, "tags"),
        ("/api/faq/gifts", {**GIFT_CARDS, "id": "vouchers"}, "id"),
        ("/api/faq/Gift_Cards", GIFT_CARDS, "id"),
    ],
)
async def test_an_invalid_entry_is_a_400_naming_the_field(
    faq_client: Client, auth: Auth, path: str, body: dict[str, Any], field: str
) -> None:
    error = await _json(await faq_client.put(path, json=body, headers=auth()), 400)
    assert field in [problem["field"] for problem in error["detail"]], error
    await _json(await faq_client.get(path, headers=auth()), 404)  # nothing was written


async def test_a_body_that_is_not_json_is_a_400(faq_client: Client, auth: Auth) -> None:
    error = await _json(await faq_client.put("/api/faq/gifts", data=b"{nope", headers=auth()), 400)
    assert error["error"] == "the body is not valid JSON"


@pytest.mark.parametrize("role", list(Role))
async def test_only_roles_with_the_write_permission_change_the_kb(
    faq_client: Client, auth: Auth, role: Role
) -> None:
    put = await faq_client.put("/api/faq/gift-cards", json=GIFT_CARDS, headers=auth(role))
    remove = await faq_client.delete("/api/faq/returns", headers=auth(role))
    if allowed(role, faq.WRITE):
        assert (put.status, remove.status) == (201, 204)
    else:
        assert (put.status, remove.status) == (403, 403)
        assert (await put.json())["detail"] == {"needs": faq.WRITE.value}
        await _json(await faq_client.get("/api/faq/returns", headers=auth()), 200)


# --- trying questions ---------------------------------------------------------------------------


async def test_match_shows_the_best_entries_with_their_scores(
    faq_client: Client, auth: Auth
) -> None:
    body = await _json(
        await faq_client.post(
            "/api/faq/match",
            json={"text": "what are your opening hours?", "language": "en"},
            headers=auth(Role.MARKETER),
        ),
        200,
    )
    assert body["language"] == "en"
    best, *others = body["matches"]
    assert best["id"] == "opening-hours"
    assert best["confident"] is True
    assert best["answer"] == "Monday to Saturday, 10am to 9pm."
    assert best["matched_question"] == "What are your opening hours?"
    assert 0 < best["score"] <= 1
    assert all(other["score"] <= best["score"] for other in others)
    assert len(body["matches"]) <= 3


async def test_match_answers_in_the_requested_language(faq_client: Client, auth: Auth) -> None:
    body = await _json(
        await faq_client.post(
            "/api/faq/match",
            json={"text": "how do I return an item", "language": "es"},
            headers=auth(),
        ),
        200,
    )
    assert body["matches"][0]["answer"] == "Tienes 30 días para devolverlo."


@pytest.mark.parametrize(
    ("text", "language", "answer"),
    [
        ("¿cómo devuelvo un artículo?", "es", "Tienes 30 días para devolverlo."),
        ("how do I return an item", "en", "You have 30 days to return it."),
    ],
)
async def test_match_without_a_language_reads_the_text_s_language_as_the_bot_does(
    faq_client: Client, auth: Auth, text: str, language: str, answer: str
) -> None:
    # Once matched against the default language's (English) entries whatever the text's.
    body = await _json(
        await faq_client.post("/api/faq/match", json={"text": text}, headers=auth()), 200
    )
    assert body["language"] == language
    assert body["matches"][0]["answer"] == answer


async def test_match_of_a_text_in_no_clear_language_uses_the_service_language(
    faq_client: Client, auth: Auth, settings: Settings
) -> None:
    body = await _json(
        await faq_client.post("/api/faq/match", json={"text": "ok"}, headers=auth()), 200
    )
    assert body["language"] == settings.default_language


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/faq/match", {"text": "opening hours", "language": "en"}),
        ("GET", "/api/faq", None),
        ("GET", "/api/faq/returns", None),
    ],
)
async def test_reading_and_matching_do_not_wait_for_a_writer(
    faq_client: Client,
    auth: Auth,
    sessionmaker: SessionMaker,
    method: str,
    path: str,
    body: dict[str, str] | None,
) -> None:
    # The match refreshed the index through a writer's session: on SQLite it queued for the
    # write lock behind an import. The writer still holding its transaction after the answer
    # proves nothing waited for it (no clock involved).
    faq_client.app[FAQ_CATALOGUE].invalidate()
    async with write_held(sessionmaker) as writer:
        response = await faq_client.request(method, path, json=body, headers=auth())
        assert response.status == 200, await response.text()
        assert not writer.done()


async def test_an_unanswerable_question_is_not_confident(faq_client: Client, auth: Auth) -> None:
    body = await _json(
        await faq_client.post(
            "/api/faq/match", json={"text": "tell me a joke", "language": "en"}, headers=auth()
        ),
        200,
    )
    assert not any(match["confident"] for match in body["matches"])


async def test_an_edit_is_matched_at_once(faq_client: Client, auth: Auth) -> None:
    question = {"text": "do you sell gift vouchers", "language": "en"}
    before = await _json(
        await faq_client.post("/api/faq/match", json=question, headers=auth()), 200
    )
    await _json(await faq_client.put("/api/faq/gift-cards", json=GIFT_CARDS, headers=auth()), 201)
    after = await _json(await faq_client.post("/api/faq/match", json=question, headers=auth()), 200)
    assert "gift-cards" not in [m["id"] for m in before["matches"]]
    assert after["matches"][0]["id"] == "gift-cards"
    assert after["version"] == before["version"] + 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": ""}, "text"),
        ({"language": "en"}, "text"),
        ({"text": "hours", "language": "fr"}, "language"),
        ({"text": "hours", "k": 0}, "k"),
        ({"text": "x" * 4001}, "text"),
    ],
)
async def test_an_invalid_match_request_is_a_400_naming_the_field(
    faq_client: Client, auth: Auth, body: dict[str, Any], field: str
) -> None:
    error = await _json(await faq_client.post("/api/faq/match", json=body, headers=auth()), 400)
    assert [problem["field"] for problem in error["detail"]] == [field]
