"""Senders of an incoming SMS that no customer writes from: a signed message from a short code,
an alphanumeric sender id or a number the phone number tables do not know is stored before the
200 and never answered; a WhatsApp address is refused as not an SMS (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from consent.models import ConsentEvent
from consent.replies import service_revoked
from consent.types import Channel
from crm_core.models import Customer, Identity, IdentityKind, Interaction, InteractionKind
from dialog.models import Direction, Message
from dialog.outbox import OutboxEntry
from dialog.senders import SENDER, UNANSWERED
from sastre.db import SessionMaker
from tests.sastre.test_webhooks_twilio import (  # noqa: F401 (fixtures)
    INBOUND,
    Client,
    post,
    sms,
    sms_settings,
    twilio_client,
)


async def stored_in(sessionmaker: SessionMaker) -> list[Message]:
    async with sessionmaker() as session:
        found = await session.scalars(
            select(Message).where(Message.direction == Direction.IN.value).order_by(Message.id)
        )
        return list(found)


async def outbox_size(sessionmaker: SessionMaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxEntry)) or 0)


@pytest.mark.parametrize(
    ("sender", "kind"),
    [
        ("22395", "short_code"),
        ("MyBank", "alphanumeric"),
        ("+447700900123", "unrecognised_number"),
    ],
)
async def test_a_sender_no_customer_writes_from_is_stored_as_written_and_not_answered(
    twilio_client: Client,  # noqa: F811
    sessionmaker: SessionMaker,
    sender: str,
    kind: str,
) -> None:
    for n in (1, 2):  # the second one from the same sender lands in the same place
        answer = await post(twilio_client, INBOUND, sms("Your code is 123456", n, sender=sender))
        assert answer.status == 200
    first, second = await stored_in(sessionmaker)
    assert (first.address, first.channel) == (sender, "sms")
    assert first.conversation_id == second.conversation_id
    assert await outbox_size(sessionmaker) == 0  # nothing answers it, nor any account data
    async with sessionmaker() as session:
        owner = (await session.scalars(select(Identity).where(Identity.value == sender))).one()
        assert owner.kind == IdentityKind.PHONE
        assert await session.scalar(select(func.count()).select_from(Customer)) == 1


async def test_the_reason_staff_see_names_the_number_s_own_country(
    twilio_client: Client,  # noqa: F811
    sessionmaker: SessionMaker,
) -> None:
    answer = await post(twilio_client, INBOUND, sms("hello", 1, sender="+447700900123"))
    assert answer.status == 200
    async with sessionmaker() as session:
        [note] = await session.scalars(
            select(Interaction).where(Interaction.kind == InteractionKind.MESSAGE_IN.value)
        )
    provider = note.data["provider"]
    assert provider[SENDER] == "unrecognised_number"
    assert "valid number in GB" in provider[UNANSWERED]
    assert " US" not in provider[UNANSWERED]


@pytest.mark.parametrize("form", [{}, {"OptOutType": "STOP"}])
async def test_stop_from_a_sender_nothing_answers_is_recorded_unanswered(
    twilio_client: Client,  # noqa: F811
    sessionmaker: SessionMaker,
    form: dict[str, str],
) -> None:
    """STOP means stop, whoever texts it: a number the tables do not know is heard too."""
    sender = "+447700900123"
    answer = await post(twilio_client, INBOUND, sms("STOP", 1, sender=sender, **form))
    assert answer.status == 200
    async with sessionmaker() as session:
        owner = (await session.scalars(select(Identity).where(Identity.value == sender))).one()
        assert await service_revoked(session, owner.customer_id, Channel.SMS)
    assert await outbox_size(sessionmaker) == 0  # and no confirmation: nothing answers it


async def test_words_from_a_sender_nothing_answers_change_no_consent(
    twilio_client: Client,  # noqa: F811
    sessionmaker: SessionMaker,
) -> None:
    sender = "+447700900123"
    for n, text in enumerate(["stop sending me codes", "START"], start=1):
        assert (await post(twilio_client, INBOUND, sms(text, n, sender=sender))).status == 200
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ConsentEvent)) == 0


@pytest.mark.parametrize("sender", ["whatsapp:+12136116957", "messenger:1234567890"])
async def test_another_channel_s_address_is_refused_as_not_an_sms(
    twilio_client: Client,  # noqa: F811
    sessionmaker: SessionMaker,
    sender: str,
) -> None:
    answer = await post(twilio_client, INBOUND, sms("hi", 1, sender=sender))
    assert answer.status == 400
    body = await answer.json()
    assert body["detail"]["field"] == "From"
    assert "takes SMS and MMS only" in body["detail"]["reason"]
    assert await stored_in(sessionmaker) == []
    assert await outbox_size(sessionmaker) == 0
