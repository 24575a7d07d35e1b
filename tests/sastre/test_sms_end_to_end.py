"""SMS from end to end: Twilio posts a message, the service stores it and queues the answer, a
worker sends it through the real twilio client to a local fake of the REST API, and the fake's
status callback comes back signed to the service (through a proxy: another host than the
public one). On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from channels.base import ChannelName
from channels.sms import TwilioSms
from dialog.outbox import OutboxEntry
from sastre.app import create_app
from sastre.channels_setup.sms import build_sender
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.worker import Worker
from tests.sastre.conftest import ClientFactory
from tests.sastre.test_webhooks_twilio import (
    INBOUND,
    PUBLIC,
    TOKEN,
    Client,
    post,
    replies_to,
    sms,
)
from tests.support.fake_twilio import FakeTwilio


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(auth_token=TOKEN) as twilio:  # the token the webhooks are signed with
        yield twilio


@pytest.fixture
def e2e_settings(settings: Settings, fake: FakeTwilio) -> Settings:
    return settings.model_copy(
        update={
            "public_url": PUBLIC,
            "twilio_account_sid": fake.account_sid,
            "twilio_auth_token": SecretStr(fake.auth_token),
            "twilio_from": "+14155550100",
            "twilio_api_base": fake.base_url,
        }
    )


@pytest.fixture
async def service(aiohttp_client: ClientFactory, e2e_settings: Settings) -> Client:
    return await aiohttp_client(create_app(e2e_settings))


@pytest.fixture
async def sender(e2e_settings: Settings) -> AsyncIterator[TwilioSms]:
    built = build_sender(e2e_settings)
    assert built is not None
    async with built:
        yield built


async def states(sessionmaker: SessionMaker) -> list[tuple[str, str | None]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(OutboxEntry.state, OutboxEntry.provider_id).order_by(OutboxEntry.message_id)
        )
        return [(row.state, row.provider_id) for row in rows]


async def test_an_answer_goes_out_through_twilio_and_its_delivery_comes_back(
    service: Client,
    sessionmaker: SessionMaker,
    fake: FakeTwilio,
    sender: TwilioSms,
) -> None:
    assert (await post(service, INBOUND, sms("Where is my order?", 1))).status == 200
    worker = Worker(sessionmaker, {ChannelName.SMS: sender})
    assert await worker.drain() == 1
    [taken] = fake.messages
    assert taken.to == "+14155552671"
    assert taken.body == (await replies_to(sessionmaker))[0]
    assert await states(sessionmaker) == [("sent", taken.sid)]
    proxy = str(service.make_url("/")).rstrip("/")
    assert await fake.report(taken.sid, "delivered", via=proxy) == 200
    assert await fake.report(taken.sid, "sent", via=proxy) == 200  # late: changes nothing
    assert await states(sessionmaker) == [("delivered", taken.sid)]


async def test_a_reply_queued_before_stop_is_not_sent_only_the_confirmation(
    service: Client, sessionmaker: SessionMaker, fake: FakeTwilio, sender: TwilioSms
) -> None:
    assert (await post(service, INBOUND, sms("Where is my order?", 1))).status == 200
    assert (await post(service, INBOUND, sms("STOP", 2))).status == 200
    answer, confirmation = await replies_to(sessionmaker)
    await Worker(sessionmaker, {ChannelName.SMS: sender}).drain()
    assert [m.body for m in fake.messages] == [confirmation]
    assert answer not in [m.body for m in fake.messages]


async def test_a_help_answer_queued_before_stop_is_not_sent_either(
    service: Client, sessionmaker: SessionMaker, fake: FakeTwilio, sender: TwilioSms
) -> None:
    # HELP's answer is a service message: only the STOP confirmation goes out whatever consent.
    assert (await post(service, INBOUND, sms("HELP", 1))).status == 200
    assert (await post(service, INBOUND, sms("STOP", 2))).status == 200
    helped, confirmation = await replies_to(sessionmaker)
    await Worker(sessionmaker, {ChannelName.SMS: sender}).drain()
    assert [m.body for m in fake.messages] == [confirmation]
    assert helped != confirmation


async def test_after_a_stop_twilio_confirmed_nothing_of_ours_goes(
    service: Client, sessionmaker: SessionMaker, fake: FakeTwilio, sender: TwilioSms
) -> None:
    """Twilio's Advanced Opt-Out acted on the STOP (OptOutType) and sent the confirmation
    configured there: the reply queued before it is not sent, and no second confirmation is."""
    assert (await post(service, INBOUND, sms("Where is my order?", 1))).status == 200
    assert (await post(service, INBOUND, sms("STOP", 2, OptOutType="STOP"))).status == 200
    assert len(await replies_to(sessionmaker)) == 1  # the bot's answer, queued before the STOP
    await Worker(sessionmaker, {ChannelName.SMS: sender}).drain()
    assert fake.messages == []
