"""The SMS sender from the settings: none without an account; with one, Twilio at the
configured API base, asking for status callbacks at our public URL."""

from __future__ import annotations

from pydantic import SecretStr

from channels.base import ChannelName, OutboundMessage
from channels.sms import TwilioSms
from sastre.channels_setup.sms import build_sender, status_callback_url
from sastre.config import Settings, load_settings
from tests.support.fake_twilio import FakeTwilio


def _settings(**values: object) -> Settings:
    return load_settings(_env_file=None, secret_key="test-secret-key-0123456789").model_copy(
        update=values
    )


def test_without_an_account_there_is_no_sms_sender() -> None:
    assert build_sender(_settings()) is None


def test_the_status_callback_is_on_our_public_url() -> None:
    settings = _settings(public_url="https://crm.example.com")
    assert status_callback_url(settings) == "https://crm.example.com/webhooks/twilio/status"


async def test_the_sender_talks_to_the_configured_api_with_our_callback() -> None:
    async with FakeTwilio() as fake:
        settings = _settings(
            public_url="https://crm.example.com",
            twilio_account_sid=fake.account_sid,
            twilio_auth_token=SecretStr(fake.auth_token),
            twilio_from="+14155550100",
            twilio_api_base=fake.base_url,
        )
        sender = build_sender(settings)
        assert isinstance(sender, TwilioSms)
        async with sender:
            sid = await sender.send(OutboundMessage(ChannelName.SMS, "+14155552671", "Hi"))
    assert [(m.sid, m.sender, m.status_callback) for m in fake.messages] == [
        (sid, "+14155550100", "https://crm.example.com/webhooks/twilio/status")
    ]


async def test_the_sender_keeps_a_connection_per_call_the_worker_has_in_flight() -> None:
    settings = _settings(
        public_url="https://crm.example.com",
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token=SecretStr("token-0123456789"),
        twilio_from="+14155550100",
        worker_concurrency=200,
    )
    sender = build_sender(settings)
    assert isinstance(sender, TwilioSms)
    async with sender:
        assert sender.connections == 200
