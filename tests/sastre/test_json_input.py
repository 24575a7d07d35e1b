"""JSON from outside: what `json.loads` accepts but Sastre cannot store or walk is refused with
the field it was found in, and on the API as a 400, never a 500."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_core.customers import upsert_customer
from crm_core.records import parse_customer
from sastre.auth import Role
from sastre.db import SessionMaker
from sastre.web.json_input import MAX_DEPTH, UnacceptableJson, find_problem, loads
from tests.sastre.conftest import Client

Headers = Callable[[Role], dict[str, str]]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def refusal(text: str) -> tuple[str, str]:
    with pytest.raises(UnacceptableJson) as caught:
        loads(text)
    return caught.value.field, caught.value.reason


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert loads(nested(MAX_DEPTH)) is not None


def test_nesting_past_the_limit_is_refused() -> None:
    assert refusal(nested(MAX_DEPTH + 1))[1] == f"nested deeper than {MAX_DEPTH} levels"


def test_nesting_past_the_parser_s_own_limit_is_refused_not_a_recursion_error() -> None:
    assert refusal(nested(100_000)) == ("body", f"nested deeper than {MAX_DEPTH} levels")


def test_deep_nesting_names_where_it_goes_deep() -> None:
    text = json.dumps({"data": {"x": [1, json.loads(nested(MAX_DEPTH))]}})
    assert refusal(text)[0] == "data"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"name": "\\ud800"}', "name"),
        ('{"name": "ok \\udfff ok"}', "name"),
        ('{"data": {"list": ["fine", "\\ud83d"]}}', "data.list[1]"),
        ('"\\ud800"', "body"),
    ],
)
def test_a_lone_surrogate_is_refused_naming_its_field(text: str, field: str) -> None:
    assert refusal(text) == (field, "holds a lone UTF-16 surrogate (not Unicode text)")


def test_a_lone_surrogate_in_a_name_is_refused_without_showing_it() -> None:
    assert refusal('{"data": {"\\ud800": 1}}') == (
        "data",
        "a name holds a lone UTF-16 surrogate",
    )


def test_a_surrogate_pair_is_an_ordinary_character() -> None:
    assert loads('{"name": "\\ud83d\\ude00"}') == {"name": "\U0001f600"}


@pytest.mark.parametrize("text", ['{"x": NaN}', '{"x": Infinity}', '{"x": -Infinity}'])
def test_non_numbers_json_does_not_allow_are_refused_naming_their_field(text: str) -> None:
    # Once named "" whatever the member.
    field, reason = refusal(text)
    assert field == "x"
    assert "is not a number JSON allows" in reason


def test_a_problem_of_the_whole_document_names_the_body() -> None:
    assert refusal("NaN") == ("body", "NaN is not a number JSON allows")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"summary": "a\\u0000b"}', "summary"),
        ('{"data": {"list": ["fine", "\\u0000"]}}', "data.list[1]"),
        ('"\\u0000"', "body"),
    ],
)
def test_a_nul_character_is_refused_naming_its_field(text: str, field: str) -> None:
    # PostgreSQL refuses NUL in text and JSON columns: once a 500 there, stored on SQLite.
    assert refusal(text) == (field, "holds a NUL character (\\u0000), which cannot be stored")


def test_a_nul_character_in_a_name_is_refused_without_showing_it() -> None:
    assert refusal('{"data": {"a\\u0000": 1}}') == (
        "data",
        "a name holds a NUL character (\\u0000)",
    )


def test_a_number_too_large_for_a_float_is_refused() -> None:
    assert refusal('{"revenue": 1e400}') == ("revenue", "is too large a number")


def test_an_integer_of_thousands_of_digits_is_refused() -> None:
    assert refusal('{"revenue": 1' + "0" * 5000 + "}") == (
        "revenue",
        "holds a number with too many digits",
    )


def test_text_that_is_not_json_is_still_a_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        loads("{")


# JSON's own characters, escapes and number parts, so that most draws are nearly JSON.
JSONISH = st.text(alphabet='[]{}",: 0123456789eE.-+\\udc8NaInfity', max_size=200)


@settings(max_examples=300, deadline=None)
@given(JSONISH)
def test_any_text_is_json_or_a_decode_error_or_refused(text: str) -> None:
    with contextlib.suppress(json.JSONDecodeError, UnacceptableJson):
        loads(text)


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.text() | st.floats() | st.integers(), lambda inner: st.lists(inner)))
def test_every_string_and_float_the_checker_passes_can_be_stored(value: Any) -> None:
    if find_problem(value) is None:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")


# --- on the API, both databases -------------------------------------------------------------------


async def post_raw(client: Client, auth: Headers, path: str, text: str) -> tuple[int, Any]:
    response = await client.post(
        path,
        data=text.encode("utf-8"),
        headers={**auth(Role.ADMIN), "Content-Type": "application/json"},
    )
    return response.status, await response.json()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"external_id": "A-1", "name": "\\ud800"}', "name"),
        ('{"external_id": "A-1", "loyalty": "\\udc00"}', "loyalty"),
        ('{"external_id": "A-1", "revenue": 1e400}', "revenue"),
        ('{"external_id": "A-1", "x": NaN}', "x"),
        ('{"external_id": "A-1", "x": ' + "9" * 5000 + "}", "x"),
        (nested(100_000), "body"),
        ('{"external_id": "A-1", "name": "Ana\\u0000"}', "name"),
    ],
    ids=["surrogate", "surrogate-attribute", "1e400", "NaN", "5000-digits", "100000-deep", "NUL"],
)
async def test_hostile_json_is_a_400_naming_the_field(
    client: Client, auth: Headers, text: str, field: str
) -> None:
    status, answer = await post_raw(client, auth, "/api/customers", text)
    assert status == 400
    assert answer["error"] == "invalid request body"
    assert [problem["field"] for problem in answer["detail"]] == [field]


async def test_a_revenue_of_ten_to_the_thirty_is_a_400(client: Client, auth: Headers) -> None:
    status, answer = await post_raw(
        client, auth, "/api/customers", '{"external_id": "A-1", "revenue": 1' + "0" * 30 + "}"
    )
    assert (status, answer["detail"]) == (
        400,
        [{"field": "revenue", "reason": "is implausibly large (at most 9,999,999,999,999.99)"}],
    )


async def test_a_nul_in_a_note_is_a_400_naming_the_summary(
    client: Client, auth: Headers, sessionmaker: SessionMaker
) -> None:
    # Once a 201 on SQLite and a 500 on PostgreSQL, which refuses NUL in text.
    customer_id = await a_customer(sessionmaker)
    status, answer = await post_raw(
        client,
        auth,
        f"/api/customers/{customer_id}/interactions",
        '{"kind": "note", "summary": "called\\u0000"}',
    )
    assert status == 400
    assert [problem["field"] for problem in answer["detail"]] == ["summary"]


async def a_customer(sessionmaker: SessionMaker) -> int:
    async with sessionmaker.begin() as session:
        customer, _ = await upsert_customer(session, parse_customer({"external_id": "N-1"}, "US"))
    return customer.id


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/contact-decision", {"customer_id": True, "purpose": "marketing"}, "customer_id"),
        (
            "/api/messages",
            {"customer_id": True, "text": "hi", "purpose": "service"},
            "customer_id",
        ),
        ("/api/customers/{id}/merge", {"other_id": True}, "other_id"),
        ("/api/customers", {"external_id": "B-2", "telegram": True}, "telegram"),
    ],
    ids=["decision", "message", "merge", "telegram"],
)
async def test_a_boolean_is_not_an_id(
    client: Client,
    auth: Headers,
    sessionmaker: SessionMaker,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    # true was read as customer 1.
    customer_id = await a_customer(sessionmaker)
    status, answer = await post_raw(client, auth, path.format(id=customer_id), json.dumps(body))
    assert status == 400, answer
    # pydantic names each type of a union it tried ("telegram.str", "telegram.int").
    assert {problem["field"].split(".")[0] for problem in answer["detail"]} == {field}
