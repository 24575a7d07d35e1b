"""A POSTed body that is not the form its Content-Type claims: a 400 naming what is wrong, on
every route that reads a form (the Twilio webhooks, one-click unsubscribe, the preference
centre), never a 500, and nothing changed."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import FormData
from pydantic import SecretStr

from consent.tokens import LinkSigner, PreferenceLink, UnsubscribeLink
from consent.types import Channel
from crm_core.models import Customer, CustomerStatus
from sastre.app import create_app
from sastre.config import Settings
from sastre.db import SessionMaker
from tests.sastre.conftest import Client, ClientFactory
from tests.sastre.test_public_pages import _actions, _customer_with_email_marketing

URLENCODED = "application/x-www-form-urlencoded"
# (Content-Type, body) pairs aiohttp cannot read as a form, and what the reason must say.
BROKEN_URLENCODED = [
    pytest.param(URLENCODED, b"\xff\xfe=\xff", "is not utf-8 text", id="not-utf8"),
    pytest.param(URLENCODED + "; charset=bogus", b"a=b", "charset", id="unknown-charset"),
]
BROKEN_MULTIPART = [
    pytest.param("multipart/form-data", b"x", "without a boundary", id="no-boundary"),
    pytest.param(
        "multipart/form-data; boundary=XYZ", b"garbage", "multipart/form-data", id="bad-boundary"
    ),
]
BROKEN = BROKEN_URLENCODED + BROKEN_MULTIPART


@pytest.fixture
async def sms_client(aiohttp_client: ClientFactory, settings: Settings) -> Client:
    configured = settings.model_copy(
        update={
            "public_url": "https://sastre.example.com",
            "twilio_account_sid": "AC" + "0" * 32,
            "twilio_auth_token": SecretStr("twilio-auth-token-for-tests-0123"),
            "twilio_from": "+14155550100",
        }
    )
    return await aiohttp_client(create_app(configured))


def _links(settings: Settings, customer: int) -> dict[str, str]:
    signer = LinkSigner(settings.secret())
    unsubscribe = signer.unsubscribe_token(UnsubscribeLink(customer, Channel.EMAIL, ""))
    preferences = signer.preferences_token(PreferenceLink(customer, Channel.EMAIL))
    return {"unsubscribe": f"/u/{unsubscribe}", "preferences": f"/preferences/{preferences}"}


async def _refused(answer: Any, field: str, says: str) -> None:
    assert answer.status == 400, await answer.text()
    body = await answer.json()
    assert body["error"] == "invalid form body"
    [problem] = body["detail"]
    assert problem["field"] == field
    assert says in problem["reason"].lower()


@pytest.mark.parametrize(("content_type", "body", "says"), BROKEN_URLENCODED)
@pytest.mark.parametrize("path", ["/webhooks/twilio/sms", "/webhooks/twilio/status"])
async def test_a_twilio_webhook_that_is_not_form_data_is_400(
    sms_client: Client, path: str, content_type: str, body: bytes, says: str
) -> None:
    answer = await sms_client.post(
        path, data=body, headers={"Content-Type": content_type, "X-Twilio-Signature": "x"}
    )
    await _refused(answer, "body", says)


async def test_a_form_value_with_a_nul_is_400_naming_it(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """A NUL cannot be stored. (Twilio's webhooks keep it until their signature is checked,
    then replace it: `tests/sastre/test_webhooks_twilio.py`.)"""
    customer = await _customer_with_email_marketing(sessionmaker)
    answer = await client.post(
        _links(settings, customer)["preferences"],
        data=b"language=e%00s",
        headers={"Content-Type": URLENCODED},
    )
    await _refused(answer, "language", "nul")


@pytest.mark.parametrize(("content_type", "body", "says"), BROKEN)
@pytest.mark.parametrize("page", ["unsubscribe", "preferences"])
async def test_a_link_posted_with_a_body_that_is_not_form_data_is_400_and_changes_nothing(
    client: Client,
    settings: Settings,
    sessionmaker: SessionMaker,
    page: str,
    content_type: str,
    body: bytes,
    says: str,
) -> None:
    customer = await _customer_with_email_marketing(sessionmaker)
    before = await _actions(sessionmaker, customer)
    answer = await client.post(
        _links(settings, customer)[page], data=body, headers={"Content-Type": content_type}
    )
    await _refused(answer, "body", says)
    assert await _actions(sessionmaker, customer) == before


async def test_a_file_in_the_preference_form_is_400_naming_the_field(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    async with sessionmaker.begin() as session:
        customer = Customer(status=CustomerStatus.CUSTOMER.value, language="en")
        session.add(customer)
        await session.flush()
        customer_id = customer.id
    form = FormData()
    form.add_field("language", b"es", filename="language.txt")
    answer = await client.post(_links(settings, customer_id)["preferences"], data=form)
    await _refused(answer, "language", "is a file")


async def test_rfc_8058_one_click_in_multipart_still_unsubscribes(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer_with_email_marketing(sessionmaker)
    form = FormData(default_to_multipart=True)
    form.add_field("List-Unsubscribe", "One-Click")
    answer = await client.post(_links(settings, customer)["unsubscribe"], data=form)
    assert answer.status == 200
    assert (await _actions(sessionmaker, customer))[-1][0] == "revoke"
