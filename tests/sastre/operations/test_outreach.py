"""Which channels a company-initiated message may be offered on: only where a sender is
configured, only where the text fits; and to which of the customer's addresses."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from channels.base import ChannelName
from consent.models import Undeliverable
from consent.types import Channel
from crm_core.customers import upsert_customer
from crm_core.models import Identity
from crm_core.records import parse_customer
from dialog.media import by_consent_channel
from sastre.db import SessionMaker
from sastre.operations.outreach import address_on, carriers

SENDABLE = frozenset({ChannelName.SMS, ChannelName.EMAIL})


def test_an_explicit_channel_nobody_sends_on_is_named() -> None:
    assert carriers(1, Channel.TELEGRAM, SENDABLE) == (
        (),
        "no_sender",
        "no sender is configured for telegram",
    )


def test_an_explicit_sms_longer_than_sms_takes() -> None:
    assert carriers(1601, Channel.SMS, SENDABLE) == (
        (),
        "text_too_long",
        "the text is 1,601 characters; sms takes at most 1,600",
    )
    assert carriers(1600, Channel.SMS, SENDABLE) == ((Channel.SMS,), None, None)


def test_left_to_the_policy_only_what_fits_where_someone_sends() -> None:
    assert carriers(2000, None, SENDABLE) == ((Channel.EMAIL,), None, None)
    assert carriers(2000, None, {ChannelName.SMS})[1] == "text_too_long"
    assert carriers(5, None, frozenset())[1] == "no_sender"


@given(
    st.integers(min_value=1, max_value=20_000),
    st.sets(st.sampled_from(list(ChannelName))),
    st.none() | st.sampled_from(list(Channel)),
)
def test_what_is_offered_is_sendable_and_fits_or_there_is_a_reason(
    length: int, sendable: set[ChannelName], requested: Channel | None
) -> None:
    channels, refusal, reason = carriers(length, requested, sendable)
    assert bool(channels) != bool(refusal)
    assert bool(refusal) == bool(reason)
    for channel in channels:
        medium = by_consent_channel(channel)
        assert medium.name in sendable
        assert medium.max_send is None or length <= medium.max_send
        assert requested in (None, channel)


async def _customer_with_numbers(sessionmaker: SessionMaker, *numbers: str) -> int:
    async with sessionmaker.begin() as session:
        customer, _ = await upsert_customer(
            session, parse_customer({"external_id": "C-1", "phone": numbers[0]}, "US")
        )
        for number in numbers[1:]:
            session.add(Identity(kind="phone", value=number, customer_id=customer.id))
        return customer.id


async def _mark(sessionmaker: SessionMaker, customer: int, number: str) -> None:
    async with sessionmaker.begin() as session:
        session.add(
            Undeliverable(customer_id=customer, channel="sms", address=number, reason="30005")
        )


async def test_a_number_marked_undeliverable_is_passed_over_for_the_next(
    sessionmaker: SessionMaker,
) -> None:
    customer = await _customer_with_numbers(sessionmaker, "+14155552671", "+14155552672")
    async with sessionmaker() as session:
        assert await address_on(session, customer, Channel.SMS) == "+14155552671"
    await _mark(sessionmaker, customer, "+14155552671")
    async with sessionmaker() as session:
        assert await address_on(session, customer, Channel.SMS) == "+14155552672"
        # A mark is for one channel: the number may still take a call.
        assert await address_on(session, customer, Channel.VOICE) == "+14155552671"
    await _mark(sessionmaker, customer, "+14155552672")
    async with sessionmaker() as session:
        assert await address_on(session, customer, Channel.SMS) is None
