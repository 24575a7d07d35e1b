"""aiohttp's own 4xx answers carry their reason like ours: a 405 names the methods the route
takes (and keeps its Allow header), a 413 the size a body may have. The e-mail webhook takes
messages up to SASTRE_EMAIL_MAX_BYTES, and says so beyond it."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from sastre.auth import Role
from sastre.config import Settings
from tests.sastre.conftest import Client, ClientFactory
from tests.sastre.test_webhooks_email import HEADERS, PATH, email_client, email_settings, raw

Headers = Callable[[Role], dict[str, str]]


@pytest.mark.parametrize("path", ["/webhooks/twilio/sms", "/webhooks/twilio/status", PATH])
async def test_a_wrong_method_names_the_methods_the_route_takes(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert await response.json() == {
        "error": "Method Not Allowed",
        "detail": f"{path} takes POST, not GET",
    }


async def test_a_body_over_the_limit_states_the_limit(client: Client, auth: Headers) -> None:
    response = await client.post(
        "/api/customers",
        data=io.BytesIO(b"{" + b" " * (1024**2 + 1) + b"}"),
        headers=auth(Role.ADMIN) | {"Content-Type": "application/json"},
    )
    assert response.status == 413
    assert await response.json() == {
        "error": "Request Entity Too Large",
        "detail": "a request body may be at most 1048576 bytes",
    }


async def test_an_email_over_the_configured_limit_is_413_naming_it(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    limit = 64 * 1024
    client = await email_client(aiohttp_client, email_settings(settings, email_max_bytes=limit))
    message = raw("plain")
    padded = message + b"x" * (limit + 1 - len(message))
    response = await client.post(PATH, data=padded, headers=HEADERS)
    assert response.status == 413
    assert await response.json() == {
        "error": "message too large",
        "detail": f"a message may be at most {limit} bytes (SASTRE_EMAIL_MAX_BYTES)",
    }


async def test_an_email_within_the_configured_limit_is_taken_past_the_json_limit(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    limit = 3 * 1024**2
    client = await email_client(aiohttp_client, email_settings(settings, email_max_bytes=limit))
    message = raw("plain") + b"\n" + b"y" * (2 * 1024**2)
    response = await client.post(PATH, data=io.BytesIO(message), headers=HEADERS)
    assert response.status == 200, await response.text()
