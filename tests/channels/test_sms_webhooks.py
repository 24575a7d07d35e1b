"""Twilio's webhook signature: ours is the reference library's, computed with less overhead;
and a Webhook Setting's SharedKey signature (HMAC-SHA256 or SHA1, by key id), checked by it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict
from twilio.request_validator import RequestValidator, get_signature_algorithm

from channels.sms_webhooks import WebhookSignature

PUBLIC = "https://sastre.example.com"
PATH = "/webhooks/twilio/sms"
FORM = {"Body": "hola", "From": "+14155552671", "MessageSid": "SM" + "a1" * 16}
TOKEN = "the-account-auth-token"
KEYS = {"webhooks_sharedkey_old": "old-secret-0123456789", "webhooks_sharedkey_new": "new-secret"}

# Twilio's documented example (the security page, and the library's own tests).
DOCS_TOKEN = "12345"
DOCS_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOCS_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}


def test_the_documented_example_signs_as_twilio_documents_it() -> None:
    ours = WebhookSignature(DOCS_TOKEN, "https://mycompany.com")
    assert ours.signature(DOCS_URL, DOCS_PARAMS) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert ours.valid("/myapp.php?foo=1&bar=2", DOCS_PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")


text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
# A path and query as a request carries them (aiohttp's path_qs).
path_qs = st.from_regex(r"\A/[a-z0-9/_.-]{0,20}(\?[a-z0-9=&]{0,12})?\Z")


@given(
    token=text.filter(bool),
    path=path_qs,
    pairs=st.lists(st.tuples(text, text), max_size=8),
    repeated=st.booleans(),
)
def test_the_signature_is_the_reference_librarys(
    token: str, path: str, pairs: list[tuple[str, str]], repeated: bool
) -> None:
    # A MultiDict (aiohttp's form) signs every value of a repeated name; a dict one each.
    params: MultiDict[str] | dict[str, str] = MultiDict(pairs) if repeated else dict(pairs)
    url = "https://sastre.example.com" + path
    expected = RequestValidator(token).compute_signature(url, params)
    ours = WebhookSignature(token, "https://sastre.example.com")
    assert ours.signature(url, params) == expected
    assert ours.valid(path, params, expected)
    assert not ours.valid(path, params, expected[:-2] + "é=")


def shared(key: str, algorithm: str = "HMAC_SHA256", params: dict[str, str] = FORM) -> str:
    """The signature Twilio sends for a Setting with this SharedKey (the library computes it)."""
    return str(RequestValidator(KEYS[key]).compute_signature(PUBLIC + PATH, params, algorithm))


def settings_header(key: str, algorithm: str = "HMAC_SHA256") -> str:
    return f"key={key},algorithm={algorithm}"


OURS = WebhookSignature(TOKEN, PUBLIC, KEYS)


@pytest.mark.parametrize("key", sorted(KEYS))
@pytest.mark.parametrize("algorithm", ["HMAC_SHA256", "HMAC_SHA1"])
def test_a_shared_key_signature_holds_for_every_key_held_during_a_rotation(
    key: str, algorithm: str
) -> None:
    signature = shared(key, algorithm)
    assert OURS.refusal(PATH, FORM, signature, settings_header(key, algorithm)) is None


def test_a_shared_key_signature_must_match_the_form() -> None:
    signature = shared("webhooks_sharedkey_new")
    changed = {**FORM, "Body": "adiós"}
    refused = OURS.refusal(PATH, changed, signature, settings_header("webhooks_sharedkey_new"))
    assert refused == (
        "X-Twilio-Signature does not match shared key webhooks_sharedkey_new (HMAC_SHA256)"
    )


def test_naming_a_shared_key_is_checked_only_against_it() -> None:
    # The auth token's signature under a settings header: the key named is what counts.
    by_token = OURS.sign(PATH, FORM)
    assert OURS.valid(PATH, FORM, by_token)
    assert not OURS.valid(PATH, FORM, by_token, settings_header("webhooks_sharedkey_new"))


def test_a_key_not_held_here_is_refused_by_its_id() -> None:
    signature = str(
        RequestValidator("a-secret-we-never-had").compute_signature(
            PUBLIC + PATH, FORM, "HMAC_SHA256"
        )
    )
    refused = OURS.refusal(PATH, FORM, signature, settings_header("webhooks_sharedkey_gone"))
    assert refused == "signed with a shared key not held here: webhooks_sharedkey_gone"
    assert not WebhookSignature(TOKEN, PUBLIC).valid(
        PATH, FORM, shared("webhooks_sharedkey_new"), settings_header("webhooks_sharedkey_new")
    )  # no keys configured: nothing signed with one holds


def test_an_algorithm_the_library_cannot_check_is_refused_by_name() -> None:
    header = settings_header("webhooks_sharedkey_new", "HMAC_SHA512")
    refused = OURS.refusal(PATH, FORM, shared("webhooks_sharedkey_new"), header)
    assert refused == "signed with HMAC_SHA512, which the twilio library here cannot check"


def test_a_missing_signature_is_refused_as_missing() -> None:
    assert OURS.refusal(PATH, FORM, None) == "X-Twilio-Signature is missing"
    assert OURS.refusal(PATH, FORM, "", settings_header("webhooks_sharedkey_new")) == (
        "X-Twilio-Signature is missing"
    )


@given(pairs=st.lists(st.tuples(text, text), max_size=8))
def test_any_form_signed_with_a_shared_key_holds(pairs: list[tuple[str, str]]) -> None:
    params: MultiDict[str] = MultiDict(pairs)
    signature = str(
        RequestValidator(KEYS["webhooks_sharedkey_new"]).compute_signature(
            PUBLIC + PATH, params, "HMAC_SHA256"
        )
    )
    assert OURS.valid(PATH, params, signature, settings_header("webhooks_sharedkey_new"))


def test_a_signature_by_another_held_key_is_refused() -> None:
    # Trying every key held would take this: only the key the header names may sign.
    signature = shared("webhooks_sharedkey_old")
    assert not OURS.valid(PATH, FORM, signature, settings_header("webhooks_sharedkey_new"))


def test_the_algorithm_the_header_names_is_the_one_checked() -> None:
    by_sha1 = shared("webhooks_sharedkey_new", "HMAC_SHA1")
    assert not OURS.valid(PATH, FORM, by_sha1, settings_header("webhooks_sharedkey_new"))
    lower = settings_header("webhooks_sharedkey_new", "hmac_sha1")  # as the library, any case
    assert OURS.valid(PATH, FORM, by_sha1, lower)


@pytest.mark.parametrize(
    "header",
    [
        "key=webhooks_sharedkey_new,algorithm=HMAC_SHA256",
        " algorithm = HMAC_SHA256 , key = webhooks_sharedkey_new ",
        "key=,key=webhooks_sharedkey_new,algorithm=HMAC_SHA256",
        "key=webhooks_sharedkey_new,algorithm=,algorithm=HMAC_SHA256",
    ],
)
def test_the_header_is_read_as_the_library_reads_it(header: str) -> None:
    assert get_signature_algorithm(header) == "HMAC_SHA256"
    assert OURS.valid(PATH, FORM, shared("webhooks_sharedkey_new"), header)


def test_what_a_sender_put_in_the_header_is_not_repeated_unless_it_is_an_id() -> None:
    signature = shared("webhooks_sharedkey_new")
    odd = "key=<script>" + "x" * 100 + ",algorithm=HMAC_SHA256"
    assert OURS.refusal(PATH, FORM, signature, odd) == "signed with a shared key not held here"
    weird = "key=webhooks_sharedkey_new,algorithm=<b>MD5</b>"
    assert OURS.refusal(PATH, FORM, signature, weird) == (
        "signed with an algorithm, which the twilio library here cannot check"
    )
