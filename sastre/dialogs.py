"""Building the bot from settings: the embedded one (understanding, FAQ, rasa-sdk actions run
in-process) or a real Rasa server's REST channel."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from functools import cache
from pathlib import Path

import aiohttp
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

import dialog
from actions.deps import ActionDeps, configure
from actions.runner import EmbeddedActions
from dialog.faq import FaqMatcher
from dialog.faq_store import FaqCatalogue, seed_from_file
from dialog.nlu import EmbeddedUnderstander
from dialog.rasa import RasaRestBrain
from dialog.readahead import Reader
from dialog.selfservice import SelfServiceBrain
from dialog.turns import Bot
from sastre.bot_reading import LoopReader, ProcessReader, reading_in_a_process
from sastre.config import Settings
from sastre.db import SessionMaker

__all__ = ["SHIPPED_FAQ", "build_brain", "embedded_reader"]

log = logging.getLogger(__name__)
SHIPPED_FAQ = Path(dialog.__file__).parent / "data" / "faq.yaml"


async def _seed_faq(sessionmaker: SessionMaker) -> None:
    """Load the shipped knowledge base into an empty FAQ table. A database that is down must
    not stop the service from starting (it answers /healthz with 503 and recovers by itself);
    the bot then simply has no FAQ answers until the next start."""
    try:
        async with sessionmaker.begin() as session:
            seeded = await seed_from_file(session, SHIPPED_FAQ, only_if_empty=True)
            if seeded:
                log.info("dialog: FAQ seeded with %d entries from %s", seeded, SHIPPED_FAQ)
    except (DBAPIError, OSError) as e:
        log.warning("dialog: FAQ not seeded, the database is unreachable: %s", e)


async def build_brain(
    settings: Settings,
    sessionmaker: SessionMaker,
    stack: AsyncExitStack,
    catalogue: FaqCatalogue | None = None,
) -> Bot:
    configure(
        ActionDeps(
            sessionmaker=sessionmaker,
            default_region=settings.default_region,
            default_timezone=settings.default_timezone,
            public_url=settings.external_url,
            secret=settings.secret(),
            brand=settings.brand_name,
        )
    )
    stack.callback(configure, None)
    if settings.rasa_url:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        log.info("dialog: user text goes to Rasa at %s", settings.rasa_url)
        return RasaRestBrain(settings.rasa_url, http)
    await _seed_faq(sessionmaker)
    catalogue = catalogue or FaqCatalogue(matcher=settings.faq_matcher)

    async def faq(session: AsyncSession) -> FaqMatcher:
        return await catalogue.index(session)

    return SelfServiceBrain(_understander(), faq, EmbeddedActions())


async def embedded_reader(
    settings: Settings, catalogue: FaqCatalogue, stack: AsyncExitStack
) -> Reader:
    """What reads queued messages for the embedded bot before their batch (`sastre.bot_reading`):
    a process of its own, or the event loop (SASTRE_BOT_READER)."""
    if not reading_in_a_process(settings.bot_reader):
        return LoopReader(_understander(), catalogue)
    reader = ProcessReader(_understander(), catalogue)
    await reader.start()
    stack.push_async_callback(reader.close)
    return reader


@cache
def _understander() -> EmbeddedUnderstander:
    # Trained once per process from the shipped examples, then only read: every app shares it.
    return EmbeddedUnderstander()
