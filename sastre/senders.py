"""The composition of senders: `{ChannelName: Sender}` from the settings, for the workers.

Each medium's builder (`sastre.channels_setup.<medium>.build_sender`) returns None when that
medium is not configured; a worker claims only the channels it has a sender for, so a message on
an unconfigured channel waits in the outbox (and shows in its depth) instead of failing.

`failure_hooks` is the other half of a channel's knowledge the worker needs: what a permanent
refusal on that channel means beyond the message (Twilio's 21610: the number sent STOP to the
carrier, so SMS consent is revoked), run in the transaction that records the failure.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from channels.base import ChannelName, Sender
from dialog.outbox import Result
from sastre.config import Settings
from sastre.operations.unit import Unit
from sastre.worker.loop import FailureHook

__all__ = ["BUILDERS", "built_senders", "failure_hooks"]

log = logging.getLogger(__name__)

# The medium's builder module (in sastre.channels_setup), by channel.
BUILDERS: dict[ChannelName, str] = {
    ChannelName.SMS: "sastre.channels_setup.sms",
    ChannelName.EMAIL: "sastre.channels_setup.email",
}


async def _close(sender: Any) -> None:
    close = getattr(sender, "close", None) or getattr(sender, "aclose", None)
    if close is not None:
        await close()
    elif hasattr(sender, "__aexit__"):
        await sender.__aexit__(None, None, None)


@asynccontextmanager
async def built_senders(settings: Settings) -> AsyncIterator[dict[ChannelName, Sender]]:
    """Every configured medium's sender, open for the block, closed after it (in the loop)."""
    senders: dict[ChannelName, Sender] = {}
    try:
        for channel, module_name in BUILDERS.items():
            try:
                module = importlib.import_module(module_name)
            except ImportError:  # that medium's adapter is not installed in this build
                continue
            sender = module.build_sender(settings)
            if sender is not None:
                if hasattr(sender, "__aenter__"):
                    sender = await sender.__aenter__()
                senders[channel] = sender
        yield senders
    finally:
        for sender in senders.values():
            try:
                await _close(sender)
            except Exception:
                log.exception("closing a sender")


def failure_hooks(settings: Settings) -> dict[ChannelName, FailureHook]:
    """Each channel's "on permanent failure" act, for the workers."""
    from sastre.operations.email import settle_email_refusal
    from sastre.operations.sms import settle_sms_refusal

    region = settings.default_region

    async def sms(unit: Unit, result: Result) -> None:
        await settle_sms_refusal(unit, result, region=region)

    async def email(unit: Unit, result: Result) -> None:  # 5.1.1 user unknown: undeliverable
        await settle_email_refusal(unit, result, region=region)

    return {ChannelName.SMS: sms, ChannelName.EMAIL: email}
