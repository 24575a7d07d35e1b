"""Whatever a client sends, the staff API answers with a status below 500 and, for a refusal, a
JSON error with its reason (DEVELOPERS.md: bad input gets a clear error, never a 500)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from crm_core.customers import upsert_customer
from crm_core.records import parse_customer
from sastre.auth import Role
from sastre.db import SessionMaker
from sastre.web.consent import ConsentIn, DecisionIn
from sastre.web.customers import CustomerIn, InteractionIn, MergeIn
from sastre.web.faq import FaqEntryIn, MatchIn
from tests.sastre.conftest import Client

Headers = Callable[[Role], dict[str, str]]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(
        ["", "es", "en", "sms", "email", "CMV", "2026-11-22T10:00:00Z", "+34612345678"]
    )
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def bodies(model: type[BaseModel] | None) -> st.SearchStrategy[Any]:
    """JSON bodies: objects using the model's own field names, with values of any type, and
    anything else JSON can be."""
    names = sorted(model.model_fields) if model else []
    keys = st.sampled_from(names) | st.text(max_size=10) if names else st.text(max_size=10)
    return st.dictionaries(keys, values, max_size=8) | values


PATH_IDS = st.sampled_from(["1", "0", "-1", "abc", "99999999999999999999999", "1.5", "%20"])
ENDPOINTS: list[tuple[str, str, type[BaseModel] | None]] = [
    ("POST", "/api/customers", CustomerIn),
    ("POST", "/api/customers/{id}/merge", MergeIn),
    ("POST", "/api/customers/{id}/interactions", InteractionIn),
    ("POST", "/api/customers/{id}/consent", ConsentIn),
    ("PUT", "/api/customers/{id}/preferences", None),
    ("POST", "/api/contact-decision", DecisionIn),
    ("PUT", "/api/faq/{id}", FaqEntryIn),
    ("POST", "/api/faq/match", MatchIn),
]

fuzzing = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.generate],
)


def assert_clear_answer(status: int, text: str) -> None:
    assert status < 500, text
    if status >= 400:
        error = json.loads(text)
        assert isinstance(error["error"], str)
        assert error["error"]


@pytest.fixture
async def customer(sessionmaker: SessionMaker) -> None:
    """Customer 1 exists, so that bodies reach the code behind the look-up."""
    async with sessionmaker.begin() as session:
        fields = {"external_id": "F-1", "name": "Ana", "email": "ana@example.com"}
        await upsert_customer(session, parse_customer(fields, "US"))


# Raw JSON text, for what an ordinary client would not send: nesting far past any limit, lone
# UTF-16 surrogates, numbers past a float, past Decimal's 28 digits or past Python's 4300-digit
# integer conversion, and the NaN and Infinity that Python's parser accepts.
hostile_values = st.one_of(
    st.integers(min_value=1, max_value=100_000).map(lambda depth: "[" * depth + "]" * depth),
    st.text(st.characters(categories=["Cs"]) | st.characters(), min_size=1, max_size=8).map(
        json.dumps  # escapes a lone surrogate as \udXXX, which the server's parser decodes
    ),
    st.integers(min_value=10**20, max_value=10**400).map(str),
    st.integers(min_value=4301, max_value=6000).map(lambda digits: "9" * digits),
    st.from_regex(r"\A-?[1-9][0-9]{0,40}(\.[0-9]{1,40})?([eE][+-]?[0-9]{1,4})?\Z"),
    st.sampled_from(["NaN", "Infinity", "-Infinity", '"1' + "0" * 30 + '"']),
)


def hostile_bodies(model: type[BaseModel] | None) -> st.SearchStrategy[str]:
    """A JSON object whose members (named as the model's fields, or anything) hold hostile
    values, as they are or wrapped in a list."""
    names = st.sampled_from(sorted(model.model_fields)) if model else st.text(max_size=10)
    member = st.tuples(
        names | st.text(max_size=10),
        hostile_values | hostile_values.map(lambda raw: f"[{raw}]"),
    )
    return st.lists(member, min_size=1, max_size=4).map(
        lambda members: "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in members) + "}"
    )


@pytest.mark.parametrize(("method", "path", "model"), ENDPOINTS, ids=[e[1] for e in ENDPOINTS])
@fuzzing
@given(data=st.data())
async def test_any_json_body_gets_a_clear_answer(
    client: Client,
    auth: Headers,
    customer: None,
    method: str,
    path: str,
    model: type[BaseModel] | None,
    data: st.DataObject,
) -> None:
    text = data.draw(bodies(model).map(json.dumps) | hostile_bodies(model), label="body")
    url = path.replace("{id}", data.draw(PATH_IDS, label="id") if "{id}" in path else "")
    response = await client.request(
        method,
        url,
        data=text.encode("ascii"),  # json.dumps escapes all else, a lone surrogate too
        headers={**auth(Role.ADMIN), "Content-Type": "application/json"},
    )
    assert_clear_answer(response.status, await response.text())


@fuzzing
@given(raw=st.binary(max_size=64))
async def test_a_body_that_is_not_json_gets_a_clear_answer(
    client: Client, auth: Headers, raw: bytes
) -> None:
    response = await client.post(
        "/api/customers",
        data=raw,
        headers={**auth(Role.ADMIN), "Content-Type": "application/json"},
    )
    assert_clear_answer(response.status, await response.text())


@fuzzing
@given(
    key=st.sampled_from(["email", "phone", "telegram", "external_id", "webchat", "name", ""]),
    value=st.text(max_size=40),
)
async def test_any_customer_query_gets_a_clear_answer(
    client: Client, auth: Headers, key: str, value: str
) -> None:
    response = await client.get("/api/customers", params={key: value}, headers=auth(Role.ADMIN))
    assert_clear_answer(response.status, await response.text())


async def test_a_json_body_in_a_charset_nobody_knows_is_refused(
    client: Client, auth: Headers
) -> None:
    response = await client.post(
        "/api/faq/match",
        data=b'{"text": "hi"}',
        headers={**auth(Role.ADMIN), "Content-Type": "application/json; charset=bogus"},
    )
    assert response.status == 400
    assert (await response.json())["detail"] == "unknown charset 'bogus'"


async def test_a_json_body_that_is_not_what_its_content_encoding_says_is_refused(
    client: Client, auth: Headers
) -> None:
    response = await client.post(
        "/api/faq/match",
        data=b'{"text": "hi"}',
        headers={
            **auth(Role.ADMIN),
            "Content-Type": "application/json",
            "Content-Encoding": "deflate",
        },
    )
    assert response.status == 400
    assert (await response.json())["error"] == "the body could not be read"


async def status_of_raw(client: Client, request: bytes) -> int:
    """Send bytes no HTTP client library would (a header that is not UTF-8); the status."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1])


@pytest.mark.parametrize("path", ["/api/me", "/api/customers/1"])
async def test_a_token_that_is_not_utf8_is_no_token(client: Client, path: str) -> None:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\n".encode()
        + b"Authorization: Bearer sst_\xff\xfe\r\nConnection: close\r\n\r\n"
    )
    assert await status_of_raw(client, request) == 401


async def test_a_malformed_origin_is_not_one_of_ours(client: Client) -> None:
    texts = await client.get("/chat/texts", headers={"Origin": "http://[::1"})
    assert texts.status < 500
    assert "Access-Control-Allow-Origin" not in texts.headers
    refused = await client.get("/ws/chat", headers={"Origin": "http://[::1"})
    assert refused.status == 403
