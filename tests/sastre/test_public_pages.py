"""Customer pages behind signed links: RFC 8058 one-click unsubscribe and the preference centre."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import select

from consent.ledger import consent_history, record_consent
from consent.tokens import ConfirmLink, LinkSigner, PreferenceLink, UnsubscribeLink
from consent.types import Action, Channel, Purpose, Source
from crm_core.models import AuditEntry, Customer, CustomerStatus
from sastre.app import create_app
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.operations import do_merge_customers
from tests.sastre.conftest import Client, ClientFactory

Auth = Callable[..., dict[str, str]]


async def _customer_with_email_marketing(sessionmaker: SessionMaker, language: str = "en") -> int:
    async with sessionmaker.begin() as session:
        customer = Customer(status=CustomerStatus.CUSTOMER.value, language=language)
        session.add(customer)
        await session.flush()
        for action in (Action.GRANT, Action.CONFIRM):
            await record_consent(
                session,
                customer.id,
                Channel.EMAIL,
                Purpose.MARKETING,
                action,
                Source.WEB_FORM,
                actor="test",
                evidence={"wording": "offers by e-mail"},
            )
        return customer.id


def _unsubscribe_url(settings: Settings, customer: int, topic: str = "") -> str:
    token = LinkSigner(settings.secret()).unsubscribe_token(
        UnsubscribeLink(customer, Channel.EMAIL, topic)
    )
    return f"/u/{token}"


def _preferences_url(settings: Settings, customer: int) -> str:
    token = LinkSigner(settings.secret()).preferences_token(PreferenceLink(customer, Channel.EMAIL))
    return f"/preferences/{token}"


async def _actions(sessionmaker: SessionMaker, customer: int) -> list[tuple[str, str]]:
    async with sessionmaker() as session:
        return [(e.action, e.source) for e in await consent_history(session, customer)]


async def test_the_unsubscribe_page_has_one_button(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer_with_email_marketing(sessionmaker)
    response = await client.get(_unsubscribe_url(settings, customer))
    page = await response.text()
    assert response.status == 200
    assert page.count("<button") == 1
    assert "Stop receiving marketing messages by e-mail?" in page
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


async def test_one_click_post_unsubscribes_without_cookie_or_login(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer_with_email_marketing(sessionmaker)
    response = await client.post(
        _unsubscribe_url(settings, customer), data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status == 200
    assert await _actions(sessionmaker, customer) == [
        ("grant", "web_form"),
        ("confirm", "web_form"),
        ("revoke", "unsubscribe_link"),
    ]


async def test_unsubscribe_is_idempotent(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer_with_email_marketing(sessionmaker)
    url = _unsubscribe_url(settings, customer)
    for _ in range(3):
        assert (await client.post(url, data={"List-Unsubscribe": "One-Click"})).status == 200
    assert [a for a, _ in await _actions(sessionmaker, customer)].count("revoke") == 1


async def test_the_revocation_records_its_evidence(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer_with_email_marketing(sessionmaker)
    await client.post(
        _unsubscribe_url(settings, customer, "offers"),
        headers={"User-Agent": "MailClient/1.0"},
    )
    async with sessionmaker() as session:
        revoke = (await consent_history(session, customer))[-1]
    assert revoke.topic == "offers"
    assert revoke.evidence["user_agent"] == "MailClient/1.0"
    assert revoke.evidence["method"] == "page"
    assert revoke.evidence["ip"]


async def test_a_forged_or_damaged_link_gets_400(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer_with_email_marketing(sessionmaker)
    url = _unsubscribe_url(settings, customer)
    forged = LinkSigner(b"another key").unsubscribe_token(UnsubscribeLink(customer, Channel.EMAIL))
    for bad in (url[:-3] + "xyz", f"/u/{forged}", "/u/nonsense"):
        response = await client.post(bad)
        assert response.status == 400, bad
        assert response.content_type == "text/plain"
        assert "not valid" in await response.text()
    assert [a for a, _ in await _actions(sessionmaker, customer)].count("revoke") == 0


async def test_a_signed_link_for_an_id_no_database_holds_gets_400(
    client: Client, settings: Settings
) -> None:
    signer = LinkSigner(settings.secret())
    largest = signer.preferences_token(PreferenceLink(2**63 - 1, Channel.EMAIL))
    assert signer.read_preferences(largest).customer_id == 2**63 - 1  # a valid id, if unknown
    for customer in (2**63, 10**30):
        for url in (
            f"/preferences/{signer.preferences_token(PreferenceLink(customer, Channel.EMAIL))}",
            f"/u/{signer.unsubscribe_token(UnsubscribeLink(customer, Channel.EMAIL))}",
            f"/c/{signer.confirm_token(ConfirmLink(customer, Channel.EMAIL))}",
        ):
            response = await client.get(url)
            assert response.status == 400, url
            assert "not valid" in await response.text()


async def test_a_clock_too_large_for_any_hour_is_explained(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer_with_email_marketing(sessionmaker)
    response = await client.post(
        _preferences_url(settings, customer), data={"start": "9" * 20 + ":00", "end": "10:00"}
    )
    assert response.status == 400
    assert "is not a time like 09:30" in await response.text()


async def test_a_form_that_is_not_what_its_content_encoding_says_gets_400(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer_with_email_marketing(sessionmaker)
    response = await client.post(
        _preferences_url(settings, customer),
        data=b"start=09%3A00&end=10%3A00",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Encoding": "gzip",  # and it is not gzip
        },
    )
    assert response.status == 400
    assert "the body could not be read" in await response.text()


async def test_pages_speak_the_customers_language(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer_with_email_marketing(sessionmaker, language="es")
    page = await (await client.get(_unsubscribe_url(settings, customer))).text()
    assert "¿Dejar de recibir mensajes comerciales por correo electrónico?" in page
    page = await (await client.get(_preferences_url(settings, customer))).text()
    assert "Sus preferencias de contacto" in page


async def test_a_language_without_a_catalogue_falls_back_to_the_default_one(
    aiohttp_client: ClientFactory, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """The one fallback rule: the customer's language, else the deployment's, else English."""
    client = await aiohttp_client(
        create_app(settings.model_copy(update={"default_language": "es"}))
    )
    customer = await _customer_with_email_marketing(sessionmaker, language="fr")
    page = await (await client.get(_unsubscribe_url(settings, customer))).text()
    assert '<html lang="es">' in page
    assert "¿Dejar de recibir mensajes comerciales por correo electrónico?" in page


async def test_the_language_menu_offers_every_catalogue_in_its_own_name(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer_with_email_marketing(sessionmaker, language="es")
    page = await (await client.get(_preferences_url(settings, customer))).text()
    assert '<option value="en" >English</option>' in page
    assert '<option value="es" selected>Español</option>' in page
    assert '<label class="check"><input type="checkbox" name="day" value="sat" checked> sáb' in page


@pytest.mark.parametrize(
    ("language", "labels"),
    [
        ("en", ["E-mail", "SMS", "Telegram", "Web chat", "Phone call"]),
        ("es", ["Correo electrónico", "SMS", "Telegram", "Chat web", "Llamada"]),
    ],
)
async def test_a_channel_is_lower_case_inside_a_sentence_and_capitalised_as_a_label(
    client: Client, settings: Settings, sessionmaker: SessionMaker, language: str, labels: list[str]
) -> None:
    customer = await _customer_with_email_marketing(sessionmaker, language=language)
    page = await (await client.get(_preferences_url(settings, customer))).text()
    for label in labels:
        assert f">{label}</option>" in page, label
    if language == "en":
        assert "Marketing by e-mail: yes" in page


async def test_the_preference_centre_saves_choices_with_evidence(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer_with_email_marketing(sessionmaker)
    url = _preferences_url(settings, customer)
    form = {
        "channel_0": "email",
        "channel_1": "sms",
        "topic": "offers",
        "day": ["mon", "fri"],
        "start": "18:00",
        "end": "21:00",
        "language": "en",
    }
    response = await client.post(url, data=form)
    assert response.status == 200
    assert "Your preferences are saved." in await response.text()
    async with sessionmaker() as session:
        audit = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "preferences.update")
        )
        history = await consent_history(session, customer)
    assert audit is not None
    assert audit.data["after"]["window"] == {
        "days": ["mon", "fri"],
        "start": "18:00",
        "end": "21:00",
    }
    offers = [(e.channel, e.action) for e in history if e.topic == "offers"]
    # The link came by e-mail, so opening it proves the address: the grant is confirmed at once.
    assert ("email", "grant") in offers
    assert ("email", "confirm") in offers
    assert ("sms", "grant") in offers
    assert ("sms", "confirm") not in offers


async def test_a_bad_window_is_explained(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer_with_email_marketing(sessionmaker)
    response = await client.post(
        _preferences_url(settings, customer), data={"start": "18:00", "end": "18:00"}
    )
    assert response.status == 400
    assert "start and end are the same time" in await response.text()


async def test_withdraw_everything_in_one_click(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer_with_email_marketing(sessionmaker)
    response = await client.post(_preferences_url(settings, customer) + "/withdraw")
    assert response.status == 200
    page = await response.text()
    assert "All your marketing consents are withdrawn." in page
    assert "Marketing by e-mail: no" in page


async def _customer_with_pending_email_marketing(sessionmaker: SessionMaker) -> int:
    async with sessionmaker.begin() as session:
        customer = Customer(status=CustomerStatus.CUSTOMER.value, language="en")
        session.add(customer)
        await session.flush()
        await record_consent(
            session,
            customer.id,
            Channel.EMAIL,
            Purpose.MARKETING,
            Action.GRANT,
            Source.WEB_FORM,
            actor="test",
            evidence={"wording": "offers by e-mail"},
        )
        return customer.id


def _confirm_url(settings: Settings, customer: int) -> str:
    token = LinkSigner(settings.secret()).confirm_token(ConfirmLink(customer, Channel.EMAIL))
    return f"/c/{token}"


async def test_the_confirmation_link_completes_double_opt_in(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer_with_pending_email_marketing(sessionmaker)
    page = await (await client.get(_confirm_url(settings, customer))).text()
    assert "Confirm that you want to receive marketing messages by e-mail." in page
    response = await client.post(_confirm_url(settings, customer))
    assert "your subscription is confirmed" in await response.text()
    again = await client.post(_confirm_url(settings, customer))
    assert again.status == 200
    assert "your subscription is confirmed" in await again.text()  # a second click: still so
    actions = await _actions(sessionmaker, customer)
    assert actions == [("grant", "web_form"), ("confirm", "web_form")]
    async with sessionmaker() as session:
        confirm = (await consent_history(session, customer))[-1]
    assert confirm.evidence["method"] == "confirmation link"


async def test_a_forged_confirmation_link_gets_400(client: Client) -> None:
    response = await client.post("/c/forged.token")
    assert response.status == 400


async def test_a_double_click_on_the_confirmation_link_confirms_once(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """Two POSTs racing each other: both answered 200, one confirmation in the ledger."""
    customer = await _customer_with_pending_email_marketing(sessionmaker)
    url = _confirm_url(settings, customer)
    first, second = await asyncio.gather(client.post(url), client.post(url))
    for response in (first, second):
        assert response.status == 200
        assert "your subscription is confirmed" in await response.text()
    assert [a for a, _ in await _actions(sessionmaker, customer)] == ["grant", "confirm"]


async def _merge_into_new_customer(sessionmaker: SessionMaker, merged: int) -> int:
    async with sessionmaker.begin() as session:
        survivor = Customer(status=CustomerStatus.CUSTOMER.value, language="es")
        session.add(survivor)
    await do_merge_customers(sessionmaker, survivor.id, merged, actor="supervisor:test")
    return survivor.id


async def test_a_confirmation_link_sent_before_a_merge_confirms_the_survivor(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer_with_pending_email_marketing(sessionmaker)
    survivor = await _merge_into_new_customer(sessionmaker, customer)
    url = _confirm_url(settings, customer)
    page = await (await client.get(url)).text()
    assert "Confirme que desea recibir" in page  # the survivor's pending consent, in its language
    for _ in range(2):
        response = await client.post(url)
        assert response.status == 200
        assert "su suscripción está confirmada" in await response.text()
    assert await _actions(sessionmaker, survivor) == [
        ("grant", "merge"),
        ("confirm", "web_form"),
    ]
    assert await _actions(sessionmaker, customer) == [("grant", "web_form")]  # left as it was


async def test_a_confirmation_link_for_a_survivor_already_confirmed_says_so(
    client: Client, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """The check and the write read the same customer: the tombstone's stale `pending` is not
    taken for the survivor's."""
    customer = await _customer_with_pending_email_marketing(sessionmaker)
    survivor = await _customer_with_email_marketing(sessionmaker)
    await do_merge_customers(sessionmaker, survivor, customer, actor="supervisor:test")
    response = await client.post(_confirm_url(settings, customer))
    assert response.status == 200
    assert "your subscription is confirmed" in await response.text()
    assert [a for a, _ in await _actions(sessionmaker, survivor)] == ["grant", "confirm"]
