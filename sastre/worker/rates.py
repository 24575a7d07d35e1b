"""Messages per second per channel, held across every worker of a process, and across processes
when Redis is configured (the `limits` library's moving window; its Redis storage is shared).

A row the limit holds back is not claimed: it stays queued, due again when the window has room.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import ConnectionPool

from channels.base import ChannelName
from crm_core.sqltypes import utcnow
from dialog.outbox import Claimed

__all__ = ["ChannelRates", "storage_for"]

NAMESPACE = "sastre-send"


def storage_for(redis_url: str | None) -> tuple[Storage, Callable[[], Awaitable[None]]]:
    """Redis when configured (shared by every process), else this process's memory; with the
    function that closes its connections."""
    if redis_url:
        pool = ConnectionPool.from_url(redis_url)
        scheme, _, rest = redis_url.partition("://")
        storage = RedisStorage(
            f"async+{scheme}://{rest}",
            implementation="redispy",
            connection_pool=pool,  # type: ignore[arg-type]  # passed on to redis-py
        )
        return storage, pool.aclose

    async def nothing() -> None:
        return None

    return MemoryStorage(), nothing


def _item(per_second: float) -> RateLimitItem:
    """`limits` counts whole hits in a window: 0.5/s is 1 per 2 s, 1,000/s is 1,000 per 1 s."""
    if per_second >= 1:
        return RateLimitItemPerSecond(round(per_second), 1)
    return RateLimitItemPerSecond(1, max(1, round(1 / per_second)))


class ChannelRates:
    """The `admit` of a claim: which rows may go now, and when the others may try again."""

    def __init__(
        self, rates: Mapping[ChannelName, float], storage: Storage, *, namespace: str = NAMESPACE
    ) -> None:
        self._namespace = namespace
        self._items = {channel: _item(rate) for channel, rate in rates.items() if rate > 0}
        self._limiter = MovingWindowRateLimiter(storage)
        self._storage = storage

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
            if row.channel not in full and await self._limiter.hit(
                item, self._namespace, row.channel
            ):
                decided.append((row, None))
                continue
            if row.channel not in full:  # the window is full: when does it have room again?
                stats = await self._limiter.get_window_stats(item, self._namespace, row.channel)
                reset = datetime.fromtimestamp(stats.reset_time, tz=utcnow().tzinfo)
                full[row.channel] = max(reset, utcnow() + timedelta(milliseconds=10))
            decided.append((row, full[row.channel]))
        return decided
