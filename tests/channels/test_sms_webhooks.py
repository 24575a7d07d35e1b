"""Twilio's webhook signature: ours is the reference library's, computed with less overhead."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from channels.sms_webhooks import WebhookSignature

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
