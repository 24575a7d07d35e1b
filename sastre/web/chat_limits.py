"""How many new visitors and new leads one client may make through the web chat.

The chat limits messages per visitor (`channels.webchat.MessageRate`, one bucket shared by all
of a visitor's sockets in this process: opening more sockets buys no more), but a socket without a
visitor cookie is a new visitor, and a new visitor's first message makes a new customer (a lead):
a script opening sockets could fill the customer table. So new visitors are counted per client
address per minute, and new leads per hour (`SASTRE_WEBCHAT_NEW_VISITORS_PER_MINUTE`,
`SASTRE_WEBCHAT_NEW_LEADS_PER_HOUR`). The windows move (no burst at a window's edge) and are kept
in memory, per process; the `limits` library also keeps them in Redis, for several processes.
A refusal says which limit and how long to wait; the chat words it in the visitor's language.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Literal

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from channels.webchat import MessageRate
from sastre.config import Settings
from sastre.web.client_address import limit_key

__all__ = ["ChatLimits", "Refusal"]

_NAMESPACE: Final = "sastre.webchat"
RATES_KEPT: Final = 10_000  # visitors' message buckets kept, the most recently used


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a new visitor or lead is refused, and when to try again."""

    code: Literal["too_many_chats", "too_many_leads"]  # machine-readable; webchat.<code> words it
    limit: int  # new chats a minute, or new conversations an hour
    retry_after: int  # seconds


class ChatLimits:
    def __init__(self, new_visitors_per_minute: int, new_leads_per_hour: int) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._visitors: RateLimitItem = RateLimitItemPerMinute(
            new_visitors_per_minute, namespace=_NAMESPACE
        )
        self._leads: RateLimitItem = RateLimitItemPerHour(new_leads_per_hour, namespace=_NAMESPACE)
        self._rates: OrderedDict[str, MessageRate] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatLimits:
        return cls(settings.webchat_new_visitors_per_minute, settings.webchat_new_leads_per_hour)

    def message_rate(self, visitor_id: str) -> MessageRate:
        """The visitor's bucket of messages, one for all their sockets."""
        rate = self._rates.pop(visitor_id, None) or MessageRate()
        self._rates[visitor_id] = rate  # the most recently used last
        if len(self._rates) > RATES_KEPT:
            self._rates.popitem(last=False)
        return rate

    async def new_visitor(self, address: str) -> Refusal | None:
        """Count a new visitor from `address`; a refusal if it has made too many."""
        return await self._hit(self._visitors, "visitor", address, "too_many_chats")

    async def new_lead(self, address: str) -> Refusal | None:
        """Count a new lead (a new visitor's first message); a refusal if too many."""
        return await self._hit(self._leads, "lead", address, "too_many_leads")

    async def _hit(
        self,
        item: RateLimitItem,
        kind: str,
        address: str,
        code: Literal["too_many_chats", "too_many_leads"],
    ) -> Refusal | None:
        key = limit_key(address)
        if await self._limiter.hit(item, kind, key):
            return None
        stats = await self._limiter.get_window_stats(item, kind, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return Refusal(code, item.amount, retry_after)
