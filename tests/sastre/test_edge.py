"""The HTTP edge: every answer says `Server: Sastre` without versions, API answers are never
cached, and a path holding a control character is a 400, not an empty reply."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from crm_core.customers import upsert_customer
from crm_core.records import parse_customer
from sastre.auth import Role
from sastre.db import SessionMaker
from tests.sastre.conftest import Client

Headers = Callable[[Role], dict[str, str]]


@pytest.fixture
async def customer_id(sessionmaker: SessionMaker) -> int:
    async with sessionmaker.begin() as session:
        customer, _ = await upsert_customer(session, parse_customer({"external_id": "E-1"}, "US"))
        return customer.id


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/healthz", 200),
        ("/console", 200),
        ("/static/favicon.svg", 200),
        ("/api/me", 200),
        ("/api/customers/999", 404),
        ("/no/such/page", 404),
    ],
)
async def test_every_answer_names_sastre_without_versions(
    client: Client, auth: Headers, path: str, status: int
) -> None:
    response = await client.get(path, headers=auth(Role.ADMIN))
    assert response.status == status
    assert response.headers["Server"] == "Sastre"


async def test_an_answer_without_a_token_names_sastre_too(client: Client) -> None:
    response = await client.get("/api/me")
    assert response.status == 401
    assert response.headers["Server"] == "Sastre"


async def test_the_gdpr_export_is_never_stored_by_a_cache(
    client: Client, auth: Headers, customer_id: int
) -> None:
    response = await client.get(f"/api/customers/{customer_id}/export", headers=auth(Role.ADMIN))
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("path", "role", "status"),
    [
        ("/api/me", Role.ADMIN, 200),
        ("/api/faq", Role.ADMIN, 200),
        ("/api/customers/999", Role.ADMIN, 404),
        ("/api/customers/1/export", None, 401),
    ],
)
async def test_every_api_answer_is_never_stored_by_a_cache(
    client: Client, auth: Headers, path: str, role: Role | None, status: int
) -> None:
    response = await client.get(path, headers=auth(role) if role else {})
    assert response.status == status
    assert response.headers["Cache-Control"] == "no-store"


async def test_static_files_keep_their_own_caching(client: Client) -> None:
    response = await client.get("/static/console.js")
    assert response.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("path", ["/static/%00", "/static/a%00.js", "/api/customers/%01"])
async def test_a_control_character_in_the_path_is_a_400(client: Client, path: str) -> None:
    # /static/%00 once reached the file system after the handler returned: an empty reply.
    response = await client.get(path)
    assert response.status == 400
    assert (await response.json())["error"] == "invalid path"
