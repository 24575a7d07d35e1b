"""Loading a customer's contact state: reachability, time zone fallback, contact hours by location,
complaints and contacts already made."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta

from hypothesis import given
from hypothesis import strategies as st

from consent.ledger import record_consent
from consent.models import ContactMade, Undeliverable
from consent.policy import ContactHours, ContactState
from consent.preferences import update_preferences
from consent.snapshot import (
    CHANNEL_IDENTITIES,
    load_contact_state,
    region_of_phone,
    undeliverable_channels,
)
from consent.types import Action, Channel, ConsentStatus, Purpose, Source
from crm_core.customers import Lead, create_leads, upsert_customer
from crm_core.models import Identity, IdentityKind, InteractionKind, Tier
from crm_core.records import parse_customer
from crm_core.timeline import add_interaction
from sastre.db import SessionMaker

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


async def _customer(sessionmaker: SessionMaker, **fields: str) -> int:
    async with sessionmaker.begin() as session:
        customer, _ = await upsert_customer(
            session, parse_customer({"external_id": "C-1", **fields}, "US")
        )
        return customer.id


async def _also_holds(sessionmaker: SessionMaker, customer: int, phone: str) -> None:
    async with sessionmaker.begin() as session:
        session.add(Identity(kind="phone", value=phone, customer_id=customer))


async def _state(
    sessionmaker: SessionMaker,
    customer: int,
    quiet_overrides: Mapping[str, ContactHours] | None = None,
) -> ContactState:
    async with sessionmaker() as session:
        return await load_contact_state(
            session, customer, at=NOW, default_timezone="UTC", quiet_overrides=quiet_overrides
        )


def test_region_of_phone_reads_the_us_state() -> None:
    assert region_of_phone("+13055550123") == ("US", "FL")
    assert region_of_phone("+14155552671") == ("US", "CA")
    assert region_of_phone("+12065550100") == ("US", "WA")
    assert region_of_phone("+34612345678") == ("ES", None)


async def test_channels_are_reachable_by_the_identities_held(sessionmaker: SessionMaker) -> None:
    customer = await _customer(sessionmaker, email="ana@example.com", phone="+12125550199")
    state = await _state(sessionmaker, customer)
    assert state.reachable == {Channel.EMAIL, Channel.SMS, Channel.VOICE}


async def test_time_zone_falls_back_to_the_phone_number(sessionmaker: SessionMaker) -> None:
    customer = await _customer(sessionmaker, phone="+14155552671")
    assert (await _state(sessionmaker, customer)).timezone == "America/Los_Angeles"


async def test_the_customers_own_time_zone_comes_first(sessionmaker: SessionMaker) -> None:
    customer = await _customer(sessionmaker, phone="+14155552671", timezone="Europe/Madrid")
    assert (await _state(sessionmaker, customer)).timezone == "Europe/Madrid"
    async with sessionmaker.begin() as session:
        await update_preferences(
            session,
            customer,
            {"timezone": "Asia/Tokyo"},
            actor="test",
            source=Source.AGENT,
            evidence={},
        )
    assert (await _state(sessionmaker, customer)).timezone == "Asia/Tokyo"


async def test_a_florida_number_gets_florida_contact_hours(sessionmaker: SessionMaker) -> None:
    customer = await _customer(sessionmaker, phone="+13055550123")
    assert (await _state(sessionmaker, customer)).contact_hours == ContactHours(time(8), time(20))


async def test_contact_hour_overrides_apply_by_country(sessionmaker: SessionMaker) -> None:
    customer = await _customer(sessionmaker, phone="+34612345678", country="ES")
    overrides = {"ES": ContactHours(time(9), time(21))}
    state = await _state(sessionmaker, customer, quiet_overrides=overrides)
    assert state.contact_hours == ContactHours(time(9), time(21))


async def test_consents_complaints_contacts_and_bounces_are_loaded(
    sessionmaker: SessionMaker,
) -> None:
    customer = await _customer(sessionmaker, email="ana@example.com")
    async with sessionmaker.begin() as session:
        await record_consent(
            session,
            customer,
            Channel.TELEGRAM,
            Purpose.MARKETING,
            Action.GRANT,
            Source.API,
            actor="test",
        )
        await add_interaction(
            session,
            customer,
            InteractionKind.COMPLAINT,
            "late delivery",
            occurred_at=NOW - timedelta(days=3),
        )
        session.add(
            ContactMade(
                customer_id=customer,
                channel="email",
                purpose="marketing",
                at=NOW - timedelta(hours=5),
            )
        )
        session.add(
            ContactMade(
                customer_id=customer,
                channel="email",
                purpose="marketing",
                at=NOW - timedelta(days=30),
            )
        )  # too old to count
        session.add(
            Undeliverable(
                customer_id=customer,
                channel="email",
                address="ana@example.com",
                reason="5.1.1 user unknown",
            )
        )
    state = await _state(sessionmaker, customer)
    assert state.consents == {(Channel.TELEGRAM, Purpose.MARKETING, ""): ConsentStatus.GRANTED}
    assert state.last_complaint_at == NOW - timedelta(days=3)
    assert [channel for channel, _ in state.recent_marketing] == [Channel.EMAIL]
    assert state.undeliverable == {Channel.EMAIL}
    assert state.tier is Tier.STANDARD


def test_an_address_kept_as_written_is_in_no_region() -> None:
    for written in ("22395", "ACME", "+999123"):
        assert region_of_phone(written) == (None, None)


async def test_a_short_code_identity_reaches_nothing_and_takes_the_default_zone(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker.begin() as session:
        created = await create_leads(session, [Lead("phone", "22395"), Lead("phone", "ACME")])
    for lead in created.values():
        state = await _state(sessionmaker, lead.id)
        assert state.reachable == frozenset()
        assert state.timezone == "UTC"  # the default: a short code is in no time zone


async def test_a_real_number_beside_a_short_code_is_the_one_used(
    sessionmaker: SessionMaker,
) -> None:
    customer = await _customer(sessionmaker, phone="+14155552671")
    await _also_holds(sessionmaker, customer, "22395")
    state = await _state(sessionmaker, customer)
    assert state.reachable == {Channel.SMS, Channel.VOICE}
    assert state.timezone == "America/Los_Angeles"


async def _marked(sessionmaker: SessionMaker, customer: int, *numbers: str) -> None:
    async with sessionmaker.begin() as session:
        for number in numbers:
            session.add(
                Undeliverable(
                    customer_id=customer, channel="sms", address=number, reason="twilio error 30005"
                )
            )


async def test_sms_is_undeliverable_only_once_every_number_is_marked(
    sessionmaker: SessionMaker,
) -> None:
    customer = await _customer(sessionmaker, phone="+14155552671")
    await _also_holds(sessionmaker, customer, "+14155552672")
    await _marked(sessionmaker, customer, "+14155552671")
    assert Channel.SMS not in (await _state(sessionmaker, customer)).undeliverable
    await _marked(sessionmaker, customer, "+14155552672")
    assert Channel.SMS in (await _state(sessionmaker, customer)).undeliverable


async def test_a_mark_on_a_number_no_longer_held_counts_for_nothing(
    sessionmaker: SessionMaker,
) -> None:
    # The old number bounced; the customer now has only a new one.
    customer = await _customer(sessionmaker, phone="+14155552671")
    await _marked(sessionmaker, customer, "+14155550199")
    assert (await _state(sessionmaker, customer)).undeliverable == frozenset()


async def test_a_number_sms_cannot_reach_may_still_take_a_call(
    sessionmaker: SessionMaker,
) -> None:
    customer = await _customer(sessionmaker, phone="+14155552671")
    await _marked(sessionmaker, customer, "+14155552671")  # 30006: a landline
    state = await _state(sessionmaker, customer)
    assert state.undeliverable == {Channel.SMS}
    assert Channel.VOICE in state.reachable


ADDRESSES = st.sampled_from(["+14155552671", "+14155552672", "ana@example.com", "ana@x.org"])
KINDS = st.sampled_from([kind.value for kind in CHANNEL_IDENTITIES.values()])
IDENTITIES = st.lists(st.tuples(KINDS, ADDRESSES), max_size=6)
MARKS = st.sets(st.tuples(st.sampled_from([c.value for c in CHANNEL_IDENTITIES]), ADDRESSES))


@given(IDENTITIES, MARKS, MARKS)
def test_more_marks_never_make_a_channel_deliverable(
    identities: list[tuple[str, str]], marks: set[tuple[str, str]], more: set[tuple[str, str]]
) -> None:
    assert undeliverable_channels(identities, marks) <= undeliverable_channels(
        identities, marks | more
    )


@given(IDENTITIES, MARKS, st.sampled_from(list(CHANNEL_IDENTITIES)))
def test_an_unmarked_address_makes_its_channel_deliverable(
    identities: list[tuple[str, str]], marks: set[tuple[str, str]], channel: Channel
) -> None:
    fresh = "+14155550123" if CHANNEL_IDENTITIES[channel] is IdentityKind.PHONE else "new@x.org"
    held = [*identities, (CHANNEL_IDENTITIES[channel].value, fresh)]
    assert channel not in undeliverable_channels(held, marks)


@given(IDENTITIES, st.sampled_from(list(CHANNEL_IDENTITIES)))
def test_a_channel_with_every_address_marked_is_undeliverable(
    identities: list[tuple[str, str]], channel: Channel
) -> None:
    kind = CHANNEL_IDENTITIES[channel].value
    held = [*identities, (kind, "+14155550123" if kind == "phone" else "new@x.org")]
    marks = {(channel.value, value) for identity_kind, value in held if identity_kind == kind}
    assert channel in undeliverable_channels(held, marks)
