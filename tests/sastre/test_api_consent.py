"""The staff consent API: record with evidence, current state, history, preferences, export,
and the contact decision."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sastre.auth import Role
from tests.sastre.conftest import Client

Auth = Callable[..., dict[str, str]]

GRANT = {
    "channel": "email",
    "purpose": "marketing",
    "action": "grant",
    "source": "web_form",
    "evidence": {"wording": "Yes, e-mail me offers", "version": "form-v3", "ip": "203.0.113.9"},
}


async def _customer(client: Client, auth: Auth, **extra: Any) -> int:
    body = {"external_id": "C-1", "email": "ana@example.com", "phone": "+12125550199", **extra}
    response = await client.post("/api/customers", json=body, headers=auth())
    assert response.status == 201, await response.text()
    customer_id: int = (await response.json())["id"]
    return customer_id


async def _record(client: Client, auth: Auth, customer: int, **changes: Any) -> Any:
    response = await client.post(
        f"/api/customers/{customer}/consent", json={**GRANT, **changes}, headers=auth()
    )
    return response.status, await response.json()


async def test_a_grant_is_pending_until_confirmed(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    status, body = await _record(client, auth, customer)
    assert status == 201
    assert body["consents"][0]["status"] == "pending"
    status, body = await _record(client, auth, customer, action="confirm")
    assert body["consents"][0]["status"] == "granted"
    assert body["consents"][0]["event"]["action"] == "confirm"


async def test_a_grant_without_wording_is_refused(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    status, body = await _record(client, auth, customer, evidence={})
    assert status == 400
    assert body["detail"][0]["field"] == "evidence.wording"


async def test_a_revoke_needs_no_evidence(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    status, body = await _record(client, auth, customer, action="revoke", evidence={})
    assert status == 201
    assert body["consents"][0]["status"] == "revoked"


async def test_wrong_values_are_named(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    for field, value in (("channel", "fax"), ("action", "maybe"), ("source", "merge")):
        status, body = await _record(client, auth, customer, **{field: value})
        assert status == 400, field
        assert body["detail"][0]["field"] == field


async def test_confirming_nothing_is_a_conflict(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    status, body = await _record(client, auth, customer, action="confirm")
    assert status == 409
    assert "no pending" in body["error"]


async def test_a_marketer_may_not_record_consent(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    response = await client.post(
        f"/api/customers/{customer}/consent", json=GRANT, headers=auth(Role.MARKETER)
    )
    assert response.status == 403


async def test_current_state_shows_the_event_behind_it(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    await _record(client, auth, customer)
    response = await client.get(f"/api/customers/{customer}/consent", headers=auth())
    body = await response.json()
    [entry] = body["consents"]
    assert entry["event"]["evidence"]["wording"] == "Yes, e-mail me offers"
    assert entry["event"]["evidence"]["version"] == "form-v3"
    assert entry["event"]["actor"] == "admin:test-admin"


async def test_history_lists_every_event_oldest_first(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    await _record(client, auth, customer)
    await _record(client, auth, customer, action="confirm")
    await _record(client, auth, customer, action="revoke", evidence={})
    response = await client.get(f"/api/customers/{customer}/consent/history", headers=auth())
    events = (await response.json())["events"]
    assert [e["action"] for e in events] == ["grant", "confirm", "revoke"]


async def test_preferences_can_be_read_and_changed(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    response = await client.put(
        f"/api/customers/{customer}/preferences",
        json={
            "channels": ["sms", "email"],
            "window": {"days": ["mon", "tue"], "start": "18:00", "end": "20:30"},
            "language": "es",
        },
        headers=auth(Role.AGENT),
    )
    assert response.status == 200, await response.text()
    shown = await (
        await client.get(f"/api/customers/{customer}/preferences", headers=auth())
    ).json()
    assert shown["channels"] == ["sms", "email"]
    assert shown["window"] == {"days": ["mon", "tue"], "start": "18:00", "end": "20:30"}


async def test_bad_preferences_are_named(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    response = await client.put(
        f"/api/customers/{customer}/preferences",
        json={"window": {"start": "25:00", "end": "10:00"}},
        headers=auth(),
    )
    assert response.status == 400
    assert (await response.json())["detail"][0]["field"] == "window.start"


async def test_export_holds_everything(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    await _record(client, auth, customer)
    await client.post(
        f"/api/customers/{customer}/interactions",
        json={"kind": "note", "summary": "called about an order"},
        headers=auth(),
    )
    response = await client.get(f"/api/customers/{customer}/export", headers=auth(Role.SUPERVISOR))
    body = await response.json()
    assert response.status == 200
    assert body["interactions"][0]["summary"] == "called about an order"
    assert body["consent_events"][0]["action"] == "grant"
    assert body["customer"]["id"] == customer
    assert {
        "identities",
        "contact_preferences",
        "contacts_made",
        "undeliverable_addresses",
        "conversations",
        "messages",
        "audit_log",
    } <= set(body)


async def test_the_export_is_never_cached(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    response = await client.get(f"/api/customers/{customer}/export", headers=auth())
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"


async def test_an_agent_may_not_export(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    response = await client.get(f"/api/customers/{customer}/export", headers=auth(Role.AGENT))
    assert response.status == 403


async def test_contact_decision_without_consent_is_deny(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    response = await client.post(
        "/api/contact-decision",
        json={
            "customer_id": customer,
            "purpose": "marketing",
            "channel": "email",
            "at": "2026-11-23T15:00:00Z",
        },
        headers=auth(Role.MARKETER),
    )
    body = await response.json()
    assert response.status == 200, body
    assert (body["outcome"], body["reason"]) == ("deny", "no_consent")


async def test_contact_decision_after_confirmation_allows(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth, timezone="America/New_York")
    await _record(client, auth, customer)
    await _record(client, auth, customer, action="confirm")
    response = await client.post(
        "/api/contact-decision",
        json={"customer_id": customer, "purpose": "marketing", "at": "2026-11-23T15:00:00Z"},
        headers=auth(),
    )
    body = await response.json()
    assert (body["outcome"], body["channel"]) == ("allow", "email")


async def test_contact_decision_at_night_defers(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth, timezone="America/New_York")
    response = await client.post(
        "/api/contact-decision",
        json={
            "customer_id": customer,
            "purpose": "service",
            "channel": "sms",
            "at": "2026-11-23T03:00:00Z",
        },  # 22:00 in New York
        headers=auth(),
    )
    body = await response.json()
    assert (body["outcome"], body["reason"]) == ("defer", "quiet_hours")
    assert body["defer_until"].startswith("2026-11-23T13:00:00")  # 08:00 in New York


async def test_contact_decision_needs_an_aware_time(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    response = await client.post(
        "/api/contact-decision",
        json={"customer_id": customer, "purpose": "service", "at": "2026-11-23T15:00:00"},
        headers=auth(),
    )
    assert response.status == 400
    assert (await response.json())["detail"][0]["field"] == "at"


@pytest.mark.parametrize(
    "at",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        "9999-12-31T23:59:59Z",
        "1969-12-31T23:59:59Z",
    ],
)
async def test_contact_decision_at_an_impossible_time_is_refused_with_a_reason(
    client: Client, auth: Auth, at: str
) -> None:
    customer = await _customer(client, auth, timezone="America/New_York")
    response = await client.post(
        "/api/contact-decision",
        json={"customer_id": customer, "purpose": "service", "channel": "sms", "at": at},
        headers=auth(),
    )
    body = await response.json()
    assert response.status == 400, body
    assert body["detail"][0]["field"] == "at"
    assert "between 1970-01-01 and 9000-01-01" in body["detail"][0]["reason"]


async def test_consent_that_occurred_in_year_one_is_refused(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    status, body = await _record(client, auth, customer, occurred_at="0001-01-01T00:00:00+01:00")
    assert status == 400
    assert body["detail"][0]["field"] == "occurred_at"


async def test_a_marketer_reads_consent_without_its_evidence(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    await _record(client, auth, customer)
    current = await client.get(f"/api/customers/{customer}/consent", headers=auth(Role.MARKETER))
    history = await client.get(
        f"/api/customers/{customer}/consent/history", headers=auth(Role.MARKETER)
    )
    [entry] = (await current.json())["consents"]
    [event] = (await history.json())["events"]
    for shown in (entry["event"], event):
        assert shown["evidence"] == {"wording": "Yes, e-mail me offers", "version": "form-v3"}
        assert shown["evidence_redacted"] is True
    assert entry["status"] == "pending"


async def test_an_agent_reads_the_whole_evidence(client: Client, auth: Auth) -> None:
    customer = await _customer(client, auth)
    await _record(client, auth, customer)
    response = await client.get(
        f"/api/customers/{customer}/consent/history", headers=auth(Role.AGENT)
    )
    [event] = (await response.json())["events"]
    assert event["evidence"]["ip"] == "203.0.113.9"
    assert event["evidence"]["recorded_via"]["ip"]
    assert event["evidence_redacted"] is False


async def test_merging_customers_keeps_the_most_restrictive_consent(
    client: Client, auth: Auth
) -> None:
    ana = await _customer(client, auth)
    response = await client.post(
        "/api/customers", json={"external_id": "WEB-1", "telegram": "4242"}, headers=auth()
    )
    lead = (await response.json())["id"]
    await _record(client, auth, ana, channel="telegram")
    await _record(client, auth, lead, channel="telegram", action="revoke", evidence={})
    response = await client.post(
        f"/api/customers/{ana}/merge", json={"other_id": lead}, headers=auth()
    )
    assert response.status == 200
    consent = await (await client.get(f"/api/customers/{ana}/consent", headers=auth())).json()
    [telegram] = [c for c in consent["consents"] if c["channel"] == "telegram"]
    assert telegram["status"] == "revoked"
    assert telegram["event"]["source"] == "merge"
