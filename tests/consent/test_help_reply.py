"""The HELP reply states the programme's message frequency in the customer's language, as a
sentence of its own (a capital after the full stop), from the catalogues (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.base import ChannelName, InboundMessage
from consent.replies import Brand
from dialog.inbound import InboundProcessor
from sastre.config import ConfigError, load_settings
from sastre.db import SessionMaker
from tests.dialog.test_inbound import FakeBrain
from wording import translate

SENTENCE_START = re.compile(r"[.!?] +(\S)")


def sentences_start_with_a_capital(text: str) -> bool:
    return all(first.isupper() or first.isdigit() for first in SENTENCE_START.findall(text))


def processor(sessionmaker: SessionMaker, per_month: int) -> InboundProcessor:
    return InboundProcessor(
        sessionmaker,
        FakeBrain(),
        default_region="ES",
        default_language="es",
        default_timezone="Europe/Madrid",
        brand=Brand("Sastre", "support@example.com", messages_per_month=per_month),
    )


async def help_reply(sessionmaker: SessionMaker, text: str, per_month: int = 4) -> str:
    message = InboundMessage(ChannelName.SMS, "+34609281590", text, provider_id=f"SM-{text}")
    result = await processor(sessionmaker, per_month).handle(message)
    return result.replies[0].text


async def test_the_spanish_help_reply_is_spanish_throughout(sessionmaker: SessionMaker) -> None:
    reply = await help_reply(sessionmaker, "AYUDA")
    assert "Frecuencia de mensajes: hasta 4 al mes." in reply
    assert "msgs" not in reply
    assert "month" not in reply
    assert sentences_start_with_a_capital(reply)


async def test_the_english_help_reply_states_the_configured_frequency(
    sessionmaker: SessionMaker,
) -> None:
    reply = await help_reply(sessionmaker, "HELP", per_month=8)
    assert "Msg frequency: up to 8 per month." in reply
    assert sentences_start_with_a_capital(reply)


@given(st.sampled_from(["en", "es"]), st.integers(0, 10_000))
def test_the_frequency_is_a_sentence_of_its_own_in_every_language(
    language: str, per_month: int
) -> None:
    frequency = (
        translate(language, "keyword.frequency", count=per_month)
        if per_month
        else translate(language, "keyword.frequency.varies")
    )
    assert frequency[0].isupper()
    assert not frequency.endswith(".")  # the HELP template puts the full stop
    assert (str(per_month) in frequency) == bool(per_month)


def test_the_stated_frequency_is_a_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SASTRE_SMS_MESSAGES_PER_MONTH", "8")
    assert load_settings(_env_file=None).sms_messages_per_month == 8
    monkeypatch.setenv("SASTRE_SMS_MESSAGES_PER_MONTH", "-1")
    with pytest.raises(ConfigError, match="SASTRE_SMS_MESSAGES_PER_MONTH"):
        load_settings(_env_file=None)
