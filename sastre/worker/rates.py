"""Messages per second per channel, held across every worker of a process, and across processes
when Redis is configured (the `limits` library's moving window; its Redis storage is shared).

A row the limit holds back is not claimed, nor touched: it keeps its place in line, and the
claims leave its channel out until the window has room (`dialog.outbox.queue`), so a channel's
messages go in the order they became due.

Redis unreachable does not stop the sends: each process limits its own, in memory, until Redis
answers again (tried every couple of seconds), saying so once each way (`outage`). With several
processes the channel's rate may then be exceeded up to that many times; a provider that minds
answers 429 and the retry waits.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import ConnectionPool

from channels.base import ChannelName
from crm_core.sqltypes import utcnow
from dialog.outbox import Claimed
from sastre.worker.outage import REDIS_ERRORS, Outage

__all__ = ["ChannelRates", "rate_item", "storage_for"]

NAMESPACE = "sastre-send"
REDIS_TIMEOUT = 2.0  # seconds to connect to Redis, or for it to answer
LIMITER_TIMEOUT = 0.25  # the same for the rate limiter, which a claim waits for
T = TypeVar("T")
_WINDOWS = 60  # the longest window a rate is counted in, in seconds


def storage_for(redis_url: str | None) -> tuple[Storage, Callable[[], Awaitable[None]]]:
    """Redis when configured (shared by every process), else this process's memory; with the
    function that closes its connections."""
    if redis_url:
        # A claim waits for the limiter inside its transaction (holding SQLite's write lock):
        # a Redis that stops answering must fail fast. Its answers take well under a
        # millisecond on a sound network.
        pool = ConnectionPool.from_url(
            redis_url, socket_connect_timeout=LIMITER_TIMEOUT, socket_timeout=LIMITER_TIMEOUT
        )
        scheme, _, rest = redis_url.partition("://")
        # limits picks its storage by scheme only (the pool above is what connects), and it
        # spells redis-py's `unix://` as `redis+unix://`.
        scheme = "redis+unix" if scheme == "unix" else scheme
        storage = RedisStorage(
            f"async+{scheme}://{rest}",
            implementation="redispy",
            connection_pool=pool,  # type: ignore[arg-type]  # passed on to redis-py
            wrap_exceptions=True,  # its errors as limits' StorageError, whatever the driver
        )
        return storage, pool.aclose

    async def nothing() -> None:
        return None

    return MemoryStorage(), nothing


def rate_item(per_second: float) -> RateLimitItem:
    """The rate as `limits` counts it, whole hits in a window of whole seconds, never above it:
    1,000/s is 1,000 per 1 s, 1.5/s is 3 per 2 s, 0.75/s is 3 per 4 s, 0.01/s is 1 per 100 s.
    Of the windows up to a minute long, the one whose whole hits come nearest the rate from
    below (the shortest of those as near: a long window lets its hits go in one burst)."""
    hits, seconds = max(
        ((math.floor(per_second * window + 1e-9), window) for window in range(1, _WINDOWS + 1)),
        key=lambda pair: (pair[0] / pair[1], -pair[1]),
    )
    if hits < 1:  # slower than one a minute
        return RateLimitItemPerSecond(1, math.ceil(1 / per_second - 1e-9))
    return RateLimitItemPerSecond(hits, seconds)


class ChannelRates:
    """The `admit` of a claim: which rows may go now, and when their channel has room again."""

    def __init__(
        self, rates: Mapping[ChannelName, float], storage: Storage, *, namespace: str = NAMESPACE
    ) -> None:
        self._namespace = namespace
        self._items = {channel: rate_item(rate) for channel, rate in rates.items() if rate > 0}
        # Shared: Redis, when configured. Local: this process's memory, alone without Redis, and
        # the fallback while Redis is unreachable.
        local = storage if isinstance(storage, MemoryStorage) else MemoryStorage()
        self._local = MovingWindowRateLimiter(local)
        self._shared = None if storage is local else MovingWindowRateLimiter(storage)
        self.outage = Outage("the shared rate limits", "each process limits its own sends")

    @property
    def limited(self) -> bool:
        return bool(self._items)

    async def __call__(self, rows: Sequence[Claimed]) -> list[tuple[Claimed, datetime | None]]:
        decided: list[tuple[Claimed, datetime | None]] = []
        full: dict[ChannelName, datetime] = {}
        for row in rows:
            item = self._items.get(row.channel)
            if item is None:
                decided.append((row, None))
                continue
            if row.channel not in full and await self._ask(
                MovingWindowRateLimiter.hit, item, row.channel
            ):
                decided.append((row, None))
                continue
            if row.channel not in full:  # the window is full: when does it have room again?
                stats = await self._ask(MovingWindowRateLimiter.get_window_stats, item, row.channel)
                reset = datetime.fromtimestamp(stats.reset_time, tz=utcnow().tzinfo)
                full[row.channel] = max(reset, utcnow() + timedelta(milliseconds=10))
            decided.append((row, full[row.channel]))
        return decided

    async def _ask(
        self,
        call: Callable[[MovingWindowRateLimiter, RateLimitItem, str, str], Awaitable[T]],
        item: RateLimitItem,
        channel: ChannelName,
    ) -> T:
        """The shared limiter's answer, or the local one's while Redis is unreachable."""
        if self._shared is not None and self.outage.may_try():
            try:
                answer = await call(self._shared, item, self._namespace, channel)
            except REDIS_ERRORS as error:
                self.outage.failed(error)
            else:
                self.outage.succeeded()
                return answer
        return await call(self._local, item, self._namespace, channel)
