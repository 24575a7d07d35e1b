"""Staff sends to one customer at the same time take turns: the frequency caps count each one,
and the customer's conversation is opened once (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text, update

from consent.models import ContactMade
from consent.types import Channel, Purpose
from crm_core.sqltypes import utcnow
from dialog.models import Conversation, Message
from dialog.outbox.models import OutboxEntry
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.operations.messages import Queued, Refused, do_retry_message, do_send_message
from sastre.operations.outreach import Outreach
from tests.sastre.conftest import Client
from tests.sastre.test_api_consent import _customer, _record
from tests.sastre.test_api_messages import SENDERS

Auth = Callable[..., dict[str, str]]
AT_ONCE = 8  # within the test engine's pool, so every send has its own connection


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """SMS and e-mail sendable, contact at any hour, one marketing message a day."""
    update: dict[str, Any] = {
        **SENDERS,
        "quiet_hours": "US=00:00-00:00",
        "marketing_max_per_day": 1,
        "marketing_max_per_week": 5,
    }
    return settings.model_copy(update=update)


async def _at_once(
    settings: Settings, sessionmaker: SessionMaker, customer: int, purpose: Purpose
) -> list[Queued]:
    outreach = Outreach.from_settings(settings)
    sends = (
        do_send_message(
            sessionmaker,
            customer_id=customer,
            text=f"message {n}",
            purpose=purpose,
            channel=Channel.EMAIL,
            actor="test",
            outreach=outreach,
        )
        for n in range(AT_ONCE)
    )
    return list(await asyncio.gather(*sends))


async def test_marketing_sends_at_once_pass_the_daily_cap_once(
    client: Client, auth: Auth, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer(client, auth)
    await _record(client, auth, customer)
    await _record(client, auth, customer, action="confirm")
    queued = await _at_once(settings, sessionmaker, customer, Purpose.MARKETING)
    outcomes = Counter(q.decision["outcome"] for q in queued)
    assert outcomes == {"allow": 1, "defer": AT_ONCE - 1}
    assert {q.decision["reason"] for q in queued if q.decision["outcome"] == "defer"} == {
        "frequency_cap"
    }
    assert await _made_soon(sessionmaker, customer) == 1


async def _made_soon(sessionmaker: SessionMaker, customer: int) -> int | None:
    async with sessionmaker() as session:
        soon = utcnow() + timedelta(hours=1)
        return await session.scalar(
            select(func.count())
            .select_from(ContactMade)
            .where(ContactMade.customer_id == customer, ContactMade.at < soon)
        )


async def test_failed_marketing_retried_at_once_passes_the_daily_cap_once(
    client: Client, auth: Auth, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer(client, auth)
    await _record(client, auth, customer)
    await _record(client, auth, customer, action="confirm")
    queued = await _at_once(settings, sessionmaker, customer, Purpose.MARKETING)
    async with sessionmaker.begin() as session:  # none of them reached the customer
        await session.execute(update(OutboxEntry).values(state="failed"))
        await session.execute(delete(ContactMade))
    outreach = Outreach.from_settings(settings)
    retried = await asyncio.gather(
        *(
            do_retry_message(sessionmaker, q.message_id, actor="test", outreach=outreach)
            for q in queued
        )
    )
    assert Counter(r.decision["outcome"] for r in retried) == {"allow": 1, "defer": AT_ONCE - 1}
    assert await _made_soon(sessionmaker, customer) == 1


async def test_a_marketing_email_is_not_retried_without_a_postal_address(
    client: Client, auth: Auth, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """Queued while the address was set, retried after it was taken away: refused, as a new
    send would be, naming the setting."""
    customer = await _customer(client, auth)
    await _record(client, auth, customer)
    await _record(client, auth, customer, action="confirm")
    [queued, *_] = await _at_once(settings, sessionmaker, customer, Purpose.MARKETING)
    async with sessionmaker.begin() as session:
        await session.execute(update(OutboxEntry).values(state="failed"))
    unlawful = Outreach.from_settings(settings.model_copy(update={"postal_address": None}))
    with pytest.raises(Refused) as refused:
        await do_retry_message(sessionmaker, queued.message_id, actor="test", outreach=unlawful)
    assert refused.value.reason == "no_postal_address"
    assert "SASTRE_POSTAL_ADDRESS" in refused.value.explanation


async def test_sends_at_once_to_a_customer_without_a_conversation_open_one(
    client: Client, auth: Auth, settings: Settings, sessionmaker: SessionMaker
) -> None:
    customer = await _customer(client, auth)
    queued = await _at_once(settings, sessionmaker, customer, Purpose.SERVICE)
    assert len({q.message_id for q in queued}) == AT_ONCE
    async with sessionmaker() as session:
        theirs = select(Conversation.id).where(Conversation.customer_id == customer)
        conversations = (await session.scalars(theirs)).all()
        holding = await session.scalars(
            select(Message.conversation_id).where(Message.customer_id == customer)
        )
        assert len(conversations) == 1
        assert set(holding) == set(conversations)


async def _waiting_on_a_lock(sessionmaker: SessionMaker) -> bool:
    async with sessionmaker() as session:
        waiting = await session.scalar(
            text("SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'")
        )
    return bool(waiting)


async def test_a_send_while_an_inbound_message_opens_the_conversation_joins_it(
    client: Client, auth: Auth, settings: Settings, sessionmaker: SessionMaker
) -> None:
    """The inbound path opens conversations without holding the customer: the send's own
    opening must give way to it, not fail on the one-open-conversation index."""
    customer = await _customer(client, auth)
    async with sessionmaker.begin() as inbound:
        opened = Conversation(customer_id=customer, channel="sms", address="+12125550199")
        inbound.add(opened)
        await inbound.flush()
        send = asyncio.create_task(
            do_send_message(
                sessionmaker,
                customer_id=customer,
                text="Your order is ready",
                purpose=Purpose.SERVICE,
                channel=Channel.EMAIL,
                actor="test",
                outreach=Outreach.from_settings(settings),
            )
        )
        if inbound.get_bind().dialect.name == "postgresql":
            # Commit only once the send waits on our row: its INSERT met the uncommitted
            # conversation. (SQLite: the send waits for the write lock before it reads.)
            for _ in range(500):
                if await _waiting_on_a_lock(sessionmaker):
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the send never waited on the inbound conversation")
        else:
            await asyncio.sleep(0)
    queued = await send
    async with sessionmaker() as session:
        message = await session.get(Message, queued.message_id)
        assert message is not None
        assert message.conversation_id == opened.id


async def test_a_send_opens_the_conversation_in_the_customers_language(
    client: Client, auth: Auth, settings: Settings, sessionmaker: SessionMaker
) -> None:
    # Their answer that reads as either language ("ok") is answered in the conversation's.
    customer = await _customer(client, auth, language="es")
    await do_send_message(
        sessionmaker,
        customer_id=customer,
        text="Su pedido ha salido",
        purpose=Purpose.SERVICE,
        channel=Channel.EMAIL,
        actor="test",
        outreach=Outreach.from_settings(settings),
    )
    async with sessionmaker() as session:
        languages = await session.scalars(
            select(Conversation.language).where(Conversation.customer_id == customer)
        )
        assert list(languages) == ["es"]
