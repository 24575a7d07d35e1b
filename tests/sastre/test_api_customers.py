"""The staff customer API: auth, roles, the 360 view, look-ups, create-or-update, merge, notes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sastre.auth import Role
from tests.sastre.conftest import Client

Auth = Callable[..., dict[str, str]]

ANA = {
    "external_id": "C-1",
    "name": "Ana Gómez",
    "email": "Ana@Example.com",
    "phone": "612 345 678",
    "country": "ES",
    "timezone": "Europe/Madrid",
    "language": "es",
    "revenue": 1200.5,
    "cost_to_serve": "300",
    "potential_value": 5000,
    "attributes": {"segment": "gold", "churn_risk": "low"},
}


async def _create(client: Client, auth: Auth, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/customers", json=body, headers=auth())
    assert response.status in (200, 201), await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def test_api_requires_a_bearer_token(client: Client) -> None:
    response = await client.get("/api/customers/1")
    assert response.status == 401
    assert (await response.json())["error"] == "authentication required"


async def test_an_unknown_token_is_refused(client: Client) -> None:
    response = await client.get(
        "/api/customers/1", headers={"Authorization": "Bearer sst_not-a-real-token"}
    )
    assert response.status == 401


async def test_a_marketer_may_not_write_customers(client: Client, auth: Auth) -> None:
    response = await client.post("/api/customers", json=ANA, headers=auth(Role.MARKETER))
    body = await response.json()
    assert response.status == 403
    assert body["detail"] == {"needs": "customers:write"}


async def test_create_returns_the_360_view(client: Client, auth: Auth) -> None:
    response = await client.post("/api/customers", json=ANA, headers=auth(Role.AGENT))
    view = await response.json()
    assert response.status == 201
    assert view["name"] == "Ana Gómez"
    assert view["value"] == {
        "revenue": 1200.5,
        "cost_to_serve": 300,
        "profit": 900.5,
        "potential_value": 5000,
    }
    assert {(i["kind"], i["value"]) for i in view["identities"]} == {
        ("email", "ana@example.com"),
        ("phone", "+34612345678"),
        ("external", "C-1"),
    }
    assert view["attributes"] == {"segment": "gold", "churn_risk": "low"}
    assert set(view) >= {"id", "language", "timezone", "tier", "tier_reason", "interactions"}


async def test_posting_the_same_external_id_updates(client: Client, auth: Auth) -> None:
    first = await _create(client, auth, ANA)
    response = await client.post(
        "/api/customers",
        json={"external_id": "C-1", "name": "Ana G.", "attributes": {"churn_risk": "high"}},
        headers=auth(),
    )
    view = await response.json()
    assert response.status == 200
    assert view["id"] == first["id"]
    assert view["name"] == "Ana G."
    assert view["language"] == "es"  # not given, so kept
    assert view["attributes"] == {"segment": "gold", "churn_risk": "high"}


async def test_invalid_fields_are_named(client: Client, auth: Auth) -> None:
    response = await client.post(
        "/api/customers",
        json={"external_id": "C-2", "email": "nope", "timezone": "Mars/Base"},
        headers=auth(),
    )
    body = await response.json()
    assert response.status == 400
    assert [d["field"] for d in body["detail"]] == ["email", "timezone"]


async def test_unknown_fields_are_refused(client: Client, auth: Auth) -> None:
    response = await client.post(
        "/api/customers", json={"external_id": "C-2", "favourite_colour": "red"}, headers=auth()
    )
    body = await response.json()
    assert response.status == 400
    assert body["detail"][0]["field"] == "favourite_colour"


async def test_a_body_that_is_not_json_gets_400(client: Client, auth: Auth) -> None:
    response = await client.post("/api/customers", data=b"{oops", headers=auth())
    assert response.status == 400
    assert (await response.json())["error"] == "the body is not valid JSON"


async def test_an_email_of_another_customer_is_a_conflict(client: Client, auth: Auth) -> None:
    ana = await _create(client, auth, ANA)
    response = await client.post(
        "/api/customers", json={"external_id": "C-9", "email": "ana@example.com"}, headers=auth()
    )
    body = await response.json()
    assert response.status == 409
    assert body["detail"]["customer_id"] == ana["id"]


async def test_lookup_by_each_identity(client: Client, auth: Auth) -> None:
    ana = await _create(client, auth, ANA)
    for query in (
        {"email": "ANA@example.com"},
        {"phone": "+34 612 345 678"},
        {"external_id": "C-1"},
    ):
        response = await client.get("/api/customers", params=query, headers=auth(Role.MARKETER))
        assert response.status == 200, query
        assert (await response.json())["id"] == ana["id"]


async def test_lookup_needs_exactly_one_key(client: Client, auth: Auth) -> None:
    response = await client.get("/api/customers", headers=auth())
    assert response.status == 400
    assert "email" in (await response.json())["detail"]["parameters"]


async def test_lookup_of_an_unknown_customer_is_404(client: Client, auth: Auth) -> None:
    response = await client.get("/api/customers", params={"email": "x@example.com"}, headers=auth())
    assert response.status == 404
    missing = await client.get("/api/customers/999999", headers=auth())
    assert missing.status == 404


async def test_a_non_numeric_id_is_400(client: Client, auth: Auth) -> None:
    response = await client.get("/api/customers/abc", headers=auth())
    assert response.status == 400


async def test_merge_moves_identities_and_old_id_follows(client: Client, auth: Auth) -> None:
    ana = await _create(client, auth, ANA)
    lead = await _create(client, auth, {"external_id": "WEB-7", "telegram": "123456"})
    response = await client.post(
        f"/api/customers/{ana['id']}/merge", json={"other_id": lead["id"]}, headers=auth()
    )
    merged = await response.json()
    assert response.status == 200, merged
    assert ("telegram", "123456") in {(i["kind"], i["value"]) for i in merged["identities"]}
    old = await client.get(f"/api/customers/{lead['id']}", headers=auth())
    assert (await old.json())["id"] == ana["id"]


async def test_an_agent_may_not_merge(client: Client, auth: Auth) -> None:
    response = await client.post(
        "/api/customers/1/merge", json={"other_id": 2}, headers=auth(Role.AGENT)
    )
    assert response.status == 403


async def test_a_supervisor_may_not_force_a_merge(client: Client, auth: Auth) -> None:
    response = await client.post(
        "/api/customers/1/merge", json={"other_id": 2, "force": True}, headers=auth(Role.SUPERVISOR)
    )
    assert response.status == 403


async def test_an_agent_adds_a_note_to_the_timeline(client: Client, auth: Auth) -> None:
    ana = await _create(client, auth, ANA)
    response = await client.post(
        f"/api/customers/{ana['id']}/interactions",
        json={"kind": "note", "summary": "Prefers calls after 18:00"},
        headers=auth(Role.AGENT),
    )
    assert response.status == 201
    view = await (await client.get(f"/api/customers/{ana['id']}", headers=auth())).json()
    assert view["interactions"][0]["summary"] == "Prefers calls after 18:00"
    assert view["interactions"][0]["actor"] == "agent:test-agent"
