"""The web chat's pure side: the signed visitor cookie, identity proofs, the JSON frames."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.webchat import (
    MAX_TEXT,
    ChatLine,
    ClientMessage,
    IdentityProof,
    MessageRate,
    ProtocolError,
    VisitorCookies,
    error_frame,
    handoff_frame,
    history_frame,
    identity_hash,
    message_frame,
    new_visitor_id,
    origin_allowed,
    parse_client_frame,
    parse_language,
)

SECRET = b"service-secret-0123456789"
SITE_SECRET = b"site-secret"
WEBCHAT_IDENTITY = re.compile(r"[A-Za-z0-9_-]{8,128}")  # what crm_core accepts


def frame(**fields: object) -> str:
    return json.dumps(fields)


def test_a_visitor_id_is_random_and_a_valid_webchat_identity() -> None:
    ids = {new_visitor_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(WEBCHAT_IDENTITY.fullmatch(i) and len(i) >= 22 for i in ids)


def test_a_signed_cookie_reads_back_as_its_visitor() -> None:
    cookies = VisitorCookies(SECRET)
    visitor = new_visitor_id()
    assert cookies.read(cookies.sign(visitor)) == visitor


@pytest.mark.parametrize(
    "forge",
    [
        lambda c, v: "",
        lambda c, v: v,  # an id without a signature
        lambda c, v: c.replace(v, new_visitor_id()),  # somebody else's id, our old signature
        lambda c, v: c[:-2] + ("AA" if not c.endswith("AA") else "BB"),  # an altered signature
        lambda c, v: VisitorCookies(b"another-key").sign(v),  # signed with another key
        lambda c, v: c + "x",
    ],
)
def test_a_forged_or_altered_cookie_is_no_visitor(forge: object) -> None:
    cookies = VisitorCookies(SECRET)
    visitor = new_visitor_id()
    assert callable(forge)
    assert cookies.read(forge(cookies.sign(visitor), visitor)) is None
    assert cookies.read(None) is None


def test_only_a_visitor_id_can_be_signed() -> None:
    with pytest.raises(ValueError, match="visitor id"):
        VisitorCookies(SECRET).sign("short")


def test_an_identity_proof_is_the_sites_hmac_of_its_user_id() -> None:
    good = identity_hash(SITE_SECRET, "C-1")
    # What the site runs, e.g. Ruby's OpenSSL::HMAC.hexdigest("sha256", secret, user_id).
    assert good == hmac.new(SITE_SECRET, b"C-1", hashlib.sha256).hexdigest()
    assert IdentityProof("C-1", good).verify(SITE_SECRET)
    assert IdentityProof("C-1", good.upper()).verify(SITE_SECRET)  # hex is hex


@pytest.mark.parametrize(
    ("user_id", "user_hash"),
    [
        ("C-2", identity_hash(SITE_SECRET, "C-1")),  # another user's hash
        ("C-1", identity_hash(b"wrong-secret", "C-1")),
        ("C-1", ""),
        ("C-1", "not hex at all"),
        ("", identity_hash(SITE_SECRET, "")),
        ("x" * 300, identity_hash(SITE_SECRET, "x" * 300)),  # longer than an external id
    ],
)
def test_a_wrong_identity_proof_is_refused(user_id: str, user_hash: str) -> None:
    assert not IdentityProof(user_id, user_hash).verify(SITE_SECRET)


def test_a_message_frame_is_parsed() -> None:
    parsed = parse_client_frame(frame(type="message", id="c-1_A", text="  ¿Abrís el domingo?  "))
    assert parsed == ClientMessage("c-1_A", "¿Abrís el domingo?")


def test_four_thousand_characters_are_accepted_and_one_more_is_refused_not_cut() -> None:
    assert parse_client_frame(frame(type="message", id="a", text="ñ" * MAX_TEXT)).text == (
        "ñ" * MAX_TEXT
    )
    with pytest.raises(ProtocolError) as refused:
        parse_client_frame(frame(type="message", id="a", text="ñ" * (MAX_TEXT + 1)))
    assert refused.value.code == "too_long"
    assert refused.value.params == {"count": MAX_TEXT + 1, "limit": MAX_TEXT}
    assert refused.value.message_id == "a"


@pytest.mark.parametrize(
    ("raw", "code", "params"),
    [
        ("not json", "not_json", {}),
        ("[1, 2]", "not_an_object", {}),
        (frame(type="typing", id="a"), "unknown_type", {"type": "'typing'"}),
        (frame(id="a", text="hi"), "unknown_type", {"type": "'None'"}),
        (frame(type="message", text="hi"), "bad_id", {}),
        (frame(type="message", id="", text="hi"), "bad_id", {}),
        (frame(type="message", id="a b", text="hi"), "bad_id", {}),
        (frame(type="message", id="a" * 65, text="hi"), "bad_id", {}),
        (frame(type="message", id="a"), "empty", {}),
        (frame(type="message", id="a", text="   "), "empty", {}),
        (frame(type="message", id="a", text=7), "empty", {}),
    ],
)
def test_a_bad_frame_is_refused_with_a_code(raw: str, code: str, params: dict[str, str]) -> None:
    # A code, not a sentence: the service words it in the visitor's language.
    with pytest.raises(ProtocolError) as refused:
        parse_client_frame(raw)
    assert (refused.value.code, refused.value.params) == (code, params)


@pytest.mark.parametrize(
    ("value", "language"),
    [
        ("es-ES,es;q=0.9,en;q=0.8", "es"),
        ("en-US", "en"),
        ("ES", "es"),
        ("pt_BR", "pt"),
        ("*", None),
        ("", None),
        (None, None),
        ("<script>", None),
    ],
)
def test_the_language_is_the_primary_subtag(value: str | None, language: str | None) -> None:
    assert parse_language(value) == language


def test_server_frames() -> None:
    at = datetime(2026, 11, 2, 10, 30, tzinfo=UTC)
    line = ChatLine("m7", "bot", "<b>hola</b>", at)
    assert message_frame(line) == {
        "type": "message",
        "id": "m7",
        "author": "bot",
        "text": "<b>hola</b>",
        "at": "2026-11-02T10:30:00+00:00",
    }
    assert history_frame([line]) == {"type": "history", "messages": [message_frame(line)]}
    assert handoff_frame("ya viene") == {"type": "handoff", "text": "ya viene"}
    assert error_frame("empty", "no") == {"type": "error", "code": "empty", "reason": "no"}
    assert error_frame("empty", "no", "c1") == {
        "type": "error",
        "code": "empty",
        "reason": "no",
        "id": "c1",
    }


@pytest.mark.parametrize(
    ("origin", "allowed", "expected"),
    [
        (None, [], True),  # not a browser
        ("https://chat.example", [], True),  # our own host
        ("https://evil.example", [], False),
        ("https://shop.example", ["https://shop.example/"], True),
        ("https://SHOP.example", ["https://shop.example"], True),
        ("https://anything.example", ["*"], True),
        ("null", [], False),  # a sandboxed frame or a file: page
        ("http://[::1", [], False),  # no URL at all
    ],
)
def test_who_may_open_the_chat(origin: str | None, allowed: list[str], expected: bool) -> None:
    assert origin_allowed(origin, {"chat.example"}, allowed) is expected


def test_the_rate_allows_a_burst_then_one_a_second() -> None:
    rate = MessageRate(burst=3, per_second=1)
    assert [rate.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert not rate.allow(0.5)
    assert rate.allow(1.6)
    assert not rate.allow(1.7)
    assert [rate.allow(100.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


@given(st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=200))
def test_the_rate_never_lets_more_through_than_burst_plus_refill(gaps: list[float]) -> None:
    rate, now, allowed = MessageRate(burst=8, per_second=1), 0.0, 0
    for gap in gaps:
        now += gap
        allowed += rate.allow(now)
    assert allowed <= 8 + now * 1
