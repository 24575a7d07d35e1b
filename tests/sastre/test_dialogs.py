"""Building the bot from the settings."""

from __future__ import annotations

from contextlib import AsyncExitStack

from dialog.rasa import RasaRestBrain
from dialog.selfservice import SelfServiceBrain
from dialog.turns import RemoteBot
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.dialogs import build_brain


async def test_without_rasa_the_embedded_bot_answers(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    async with AsyncExitStack() as stack:
        assert isinstance(await build_brain(settings, sessionmaker, stack), SelfServiceBrain)


async def test_with_a_rasa_url_rasa_answers(settings: Settings, sessionmaker: SessionMaker) -> None:
    rasa = settings.model_copy(update={"rasa_url": "http://127.0.0.1:5005"})
    async with AsyncExitStack() as stack:
        brain = await build_brain(rasa, sessionmaker, stack)
    assert isinstance(brain, RasaRestBrain)
    assert isinstance(brain, RemoteBot)  # asked with no transaction open (dialog.inbound)
