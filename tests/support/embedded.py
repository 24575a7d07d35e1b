"""The inbound path with the bot the service ships (its model, KB and actions), for tests that
hold the real bot to what customers ask."""

from __future__ import annotations

from contextlib import AsyncExitStack

from channels.base import ChannelName, InboundMessage
from consent.replies import Brand
from dialog.inbound import InboundProcessor
from sastre.config import Settings
from sastre.db import SessionMaker
from sastre.dialogs import build_brain
from tests.support.quick import quick


async def embedded_processor(
    sessionmaker: SessionMaker, settings: Settings, stack: AsyncExitStack
) -> InboundProcessor:
    """An `InboundProcessor` answering with `build_brain`'s bot, as `sastre serve` builds it."""
    brain = await build_brain(settings, sessionmaker, stack)
    return InboundProcessor(
        quick(sessionmaker),
        brain,
        default_region="US",
        default_language="en",
        default_timezone="UTC",
        brand=Brand("Sastre", "support@example.com"),
    )


def web(text: str, n: int) -> InboundMessage:
    """The web chat visitor's n-th message."""
    return InboundMessage(ChannelName.WEBCHAT, "visitor-000001", text, f"v1:{n}")
