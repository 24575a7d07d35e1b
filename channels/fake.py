"""A `Sender` that delivers nowhere: it records what it was given and fails when told to.

Tests, the demo and the outbox benchmark use it where a real provider would be; the contract
tests every real adapter passes run against it too. `delay` makes it a slow provider (the crash
test kills a worker while calls are in flight), `failures` queues the next outcomes.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field

from channels.base import ChannelName, DeliveryFailed, OutboundMessage

__all__ = ["FakeSender", "SentRecord"]


@dataclass(frozen=True, slots=True)
class SentRecord:
    message: OutboundMessage
    provider_id: str


@dataclass
class FakeSender:
    """Records sends in order; `fail_next` queues failures consumed one per call."""

    channel: ChannelName = ChannelName.SMS
    delay: float = 0.0
    sent: list[SentRecord] = field(default_factory=list)
    calls: int = 0
    _failures: deque[DeliveryFailed] = field(default_factory=deque)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    closed: bool = False

    def fail_next(self, *failures: DeliveryFailed) -> None:
        self._failures.extend(failures)

    async def send(self, message: OutboundMessage) -> str:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._failures:
            raise self._failures.popleft()
        provider_id = f"fake-{self.channel.value}-{next(self._ids)}"
        self.sent.append(SentRecord(message, provider_id))
        return provider_id

    async def close(self) -> None:
        self.closed = True
