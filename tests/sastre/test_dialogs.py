"""Building the bot from the settings."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

import pytest

from dialog.rasa import RasaRestBrain
from dialog.selfservice import SelfServiceBrain
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.dialogs import build_brain


async def test_without_rasa_the_embedded_bot_answers(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    async with AsyncExitStack() as stack:
        assert isinstance(await build_brain(settings, sessionmaker, stack), SelfServiceBrain)


async def test_rasa_on_sqlite_is_warned_against(
    settings: Settings, sessionmaker: SessionMaker, caplog: pytest.LogCaptureFixture
) -> None:
    rasa = settings.model_copy(update={"rasa_url": "http://127.0.0.1:5005"})
    with caplog.at_level(logging.WARNING, logger="sastre.dialogs"):
        async with AsyncExitStack() as stack:
            brain = await build_brain(rasa, sessionmaker, stack)
    assert isinstance(brain, RasaRestBrain)
    warned = "use PostgreSQL with Rasa" in caplog.text
    assert warned == settings.database_url.startswith("sqlite")
