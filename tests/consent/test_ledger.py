"""The consent ledger: double opt-in, revocation, append-only events, state == replay, merges."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from consent.ledger import (
    NothingToConfirm,
    consent_history,
    consent_status,
    current_consents,
    event_view,
    merge_consents,
    record_consent,
    replay,
)
from consent.models import ConsentEvent, ConsentState
from consent.types import GENERAL, Action, Channel, ConsentStatus, Purpose, Source
from crm_core.customers import fold_customer, plan_merge
from crm_core.models import Customer, CustomerStatus
from sastre.db import SessionMaker

ACTOR = "test"


async def _customer(sessionmaker: SessionMaker) -> int:
    async with sessionmaker.begin() as session:
        customer = Customer(status=CustomerStatus.CUSTOMER.value)
        session.add(customer)
        await session.flush()
        return customer.id


async def _status(
    sessionmaker: SessionMaker, customer_id: int, channel: Channel, topic: str = GENERAL
) -> str | None:
    async with sessionmaker() as session:
        return await session.scalar(
            select(ConsentState.status).where(
                ConsentState.customer_id == customer_id,
                ConsentState.channel == channel.value,
                ConsentState.purpose == Purpose.MARKETING.value,
                ConsentState.topic == topic,
            )
        )


async def _record(
    sessionmaker: SessionMaker,
    customer_id: int,
    channel: Channel,
    action: Action,
    topic: str = GENERAL,
    purpose: Purpose = Purpose.MARKETING,
) -> None:
    async with sessionmaker.begin() as session:
        await record_consent(
            session,
            customer_id,
            channel,
            purpose,
            action,
            Source.API,
            actor=ACTOR,
            evidence={"wording": "Send me offers", "version": "v1"},
            topic=topic,
        )


async def test_email_marketing_waits_for_confirmation(sessionmaker: SessionMaker) -> None:
    customer = await _customer(sessionmaker)
    await _record(sessionmaker, customer, Channel.EMAIL, Action.GRANT)
    assert await _status(sessionmaker, customer, Channel.EMAIL) == "pending"
    await _record(sessionmaker, customer, Channel.EMAIL, Action.CONFIRM)
    assert await _status(sessionmaker, customer, Channel.EMAIL) == "granted"


async def test_telegram_marketing_needs_no_confirmation(sessionmaker: SessionMaker) -> None:
    customer = await _customer(sessionmaker)
    await _record(sessionmaker, customer, Channel.TELEGRAM, Action.GRANT)
    assert await _status(sessionmaker, customer, Channel.TELEGRAM) == "granted"


async def test_confirming_nothing_is_refused_and_not_recorded(sessionmaker: SessionMaker) -> None:
    customer = await _customer(sessionmaker)
    with pytest.raises(NothingToConfirm):
        await _record(sessionmaker, customer, Channel.SMS, Action.CONFIRM)
    async with sessionmaker() as session:
        assert await consent_history(session, customer) == []


async def test_a_general_revoke_revokes_every_topic(sessionmaker: SessionMaker) -> None:
    customer = await _customer(sessionmaker)
    await _record(sessionmaker, customer, Channel.TELEGRAM, Action.GRANT, topic="offers")
    await _record(sessionmaker, customer, Channel.TELEGRAM, Action.GRANT, topic="new-products")
    await _record(sessionmaker, customer, Channel.TELEGRAM, Action.REVOKE)
    for topic in (GENERAL, "offers", "new-products"):
        assert await _status(sessionmaker, customer, Channel.TELEGRAM, topic) == "revoked"


async def test_a_topic_revoke_keeps_the_other_topics(sessionmaker: SessionMaker) -> None:
    customer = await _customer(sessionmaker)
    await _record(sessionmaker, customer, Channel.TELEGRAM, Action.GRANT, topic="offers")
    await _record(sessionmaker, customer, Channel.TELEGRAM, Action.GRANT, topic="new-products")
    await _record(sessionmaker, customer, Channel.TELEGRAM, Action.REVOKE, topic="offers")
    assert await _status(sessionmaker, customer, Channel.TELEGRAM, "offers") == "revoked"
    assert await _status(sessionmaker, customer, Channel.TELEGRAM, "new-products") == "granted"


async def test_every_state_row_names_the_event_behind_it(sessionmaker: SessionMaker) -> None:
    customer = await _customer(sessionmaker)
    await _record(sessionmaker, customer, Channel.EMAIL, Action.GRANT)
    await _record(sessionmaker, customer, Channel.EMAIL, Action.CONFIRM)
    async with sessionmaker() as session:
        [(state, event)] = await current_consents(session, customer)
    assert state.status == "granted"
    assert event.action == "confirm"
    assert event.evidence == {"wording": "Send me offers", "version": "v1"}


async def test_events_cannot_be_updated_or_deleted(sessionmaker: SessionMaker) -> None:
    customer = await _customer(sessionmaker)
    await _record(sessionmaker, customer, Channel.EMAIL, Action.GRANT)
    for statement in (
        update(ConsentEvent).values(action="revoke"),
        delete(ConsentEvent),
    ):
        with pytest.raises((DBAPIError, IntegrityError), match="append-only"):
            async with sessionmaker.begin() as session:
                await session.execute(statement)
    async with sessionmaker() as session:
        assert [e.action for e in await consent_history(session, customer)] == ["grant"]


async def test_events_cannot_be_truncated_on_postgresql(sessionmaker: SessionMaker) -> None:
    async with sessionmaker() as session:
        if session.get_bind().dialect.name != "postgresql":
            return  # SQLite has no TRUNCATE; DELETE is refused above
    with pytest.raises(DBAPIError, match="append-only"):
        async with sessionmaker.begin() as session:
            await session.execute(text("TRUNCATE consent_events CASCADE"))


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(list(Channel)),
        st.sampled_from(list(Purpose)),
        st.sampled_from([GENERAL, GENERAL, "offers", "new-products"]),
        st.sampled_from(list(Action)),
    ),
    max_size=25,
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=EVENTS)
async def test_the_state_always_equals_replaying_the_ledger(
    sessionmaker: SessionMaker, events: list[tuple[Channel, Purpose, str, Action]]
) -> None:
    customer = await _customer(sessionmaker)
    for channel, purpose, topic, action in events:
        try:
            async with sessionmaker.begin() as session:
                await record_consent(
                    session,
                    customer,
                    channel,
                    purpose,
                    action,
                    Source.API,
                    actor=ACTOR,
                    topic=topic,
                )
        except NothingToConfirm:
            pass
    async with sessionmaker() as session:
        stored = {
            (s.channel, s.purpose, s.topic): (ConsentStatus(s.status), s.event_id)
            for s, _ in await current_consents(session, customer)
        }
        history = await consent_history(session, customer)
    assert stored == replay(history)


async def test_after_a_merge_the_most_restrictive_state_wins(sessionmaker: SessionMaker) -> None:
    survivor, other = await _customer(sessionmaker), await _customer(sessionmaker)
    await _record(sessionmaker, survivor, Channel.TELEGRAM, Action.GRANT)  # revoked by other
    await _record(sessionmaker, other, Channel.TELEGRAM, Action.REVOKE)
    await _record(sessionmaker, survivor, Channel.SMS, Action.REVOKE)  # other's grant loses
    await _record(sessionmaker, other, Channel.SMS, Action.GRANT)
    await _record(sessionmaker, other, Channel.SMS, Action.CONFIRM)
    await _record(sessionmaker, other, Channel.EMAIL, Action.GRANT)  # only other had a word
    await _record(sessionmaker, other, Channel.EMAIL, Action.CONFIRM)
    async with sessionmaker.begin() as session:
        await fold_customer(session, await plan_merge(session, survivor, other))
        recorded = await merge_consents(session, survivor, other, ACTOR)
    assert await _status(sessionmaker, survivor, Channel.TELEGRAM) == "revoked"
    assert await _status(sessionmaker, survivor, Channel.SMS) == "revoked"
    assert await _status(sessionmaker, survivor, Channel.EMAIL) == "granted"
    assert {e.source for e in recorded} == {"merge"}
    assert all(e.evidence["merged_customer_id"] == other for e in recorded)


async def test_a_merged_away_record_keeps_its_events_and_no_state(
    sessionmaker: SessionMaker,
) -> None:
    """The bug: the tombstone kept its `pending` row beside the survivor's."""
    survivor, other = await _customer(sessionmaker), await _customer(sessionmaker)
    await _record(sessionmaker, other, Channel.EMAIL, Action.GRANT)  # pending
    await _record(sessionmaker, other, Channel.TELEGRAM, Action.REVOKE)
    async with sessionmaker.begin() as session:
        await fold_customer(session, await plan_merge(session, survivor, other))
        await merge_consents(session, survivor, other, ACTOR)
    async with sessionmaker() as session:
        left = await current_consents(session, other)
        history = await consent_history(session, other)
    assert left == []
    assert [(e.channel, e.action) for e in history] == [("email", "grant"), ("telegram", "revoke")]
    assert await _status(sessionmaker, survivor, Channel.EMAIL) == "pending"


async def test_the_status_of_a_merged_id_is_its_survivors(sessionmaker: SessionMaker) -> None:
    survivor, other = await _customer(sessionmaker), await _customer(sessionmaker)
    await _record(sessionmaker, other, Channel.EMAIL, Action.GRANT)  # the tombstone's: pending
    await _record(sessionmaker, survivor, Channel.EMAIL, Action.GRANT)
    await _record(sessionmaker, survivor, Channel.EMAIL, Action.CONFIRM)
    async with sessionmaker.begin() as session:
        await fold_customer(session, await plan_merge(session, survivor, other))
    async with sessionmaker.begin() as session:
        status = await consent_status(session, other, Channel.EMAIL, Purpose.MARKETING)
    assert status is ConsentStatus.GRANTED


async def test_an_event_view_without_evidence_rights_keeps_what_not_who(
    sessionmaker: SessionMaker,
) -> None:
    customer = await _customer(sessionmaker)
    async with sessionmaker.begin() as session:
        event = await record_consent(
            session,
            customer,
            Channel.EMAIL,
            Purpose.MARKETING,
            Action.GRANT,
            Source.WEB_FORM,
            actor=ACTOR,
            evidence={"wording": "Send me offers", "ip": "203.0.113.9", "user_agent": "UA/1"},
        )
    full, redacted = event_view(event), event_view(event, full_evidence=False)
    assert full["evidence"]["ip"] == "203.0.113.9"
    assert (full["evidence_redacted"], redacted["evidence_redacted"]) == (False, True)
    assert redacted["evidence"] == {"wording": "Send me offers"}
