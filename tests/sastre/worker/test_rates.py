"""Per-channel rates hold across workers sharing a storage: memory, and the real Redis."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from limits.aio.storage import RedisStorage

from channels.base import ChannelName
from dialog.outbox import Claimed
from sastre.worker.rates import ChannelRates, rate_item, storage_for


def row(n: int, channel: ChannelName = ChannelName.SMS) -> Claimed:
    return Claimed(n, 1, channel, "+14155552671", "hi", "service", {}, 1, False)


async def _two_workers_share_one_limit(url: str | None) -> None:
    # Three SMS in 59 s (`rate_item`): the calls below need not come within a second.
    rates = {ChannelName.SMS: 3 / 59, ChannelName.EMAIL: 0.0}
    storage, close = storage_for(url)
    namespace = uuid.uuid4().hex  # the suite's Redis is shared by the tests
    first = ChannelRates(rates, storage, namespace=namespace)
    second = ChannelRates(rates, storage, namespace=namespace)
    a = await first([row(n) for n in range(2)])
    b = await second([row(n) for n in range(2, 5)] + [row(9, ChannelName.EMAIL)])
    admitted = [c.message_id for c, later in a + b if later is None]
    held = [later for _, later in a + b if later is not None]
    assert sorted(admitted) == [0, 1, 2, 9]  # three SMS in the window; e-mail unlimited
    assert len(held) == 2
    assert held[0] == held[1]
    await close()


async def test_rates_in_memory() -> None:
    await _two_workers_share_one_limit(None)


async def test_rates_in_redis(redis_url: str) -> None:
    await _two_workers_share_one_limit(redis_url)


async def test_a_redis_url_on_a_unix_socket_is_taken_by_the_shared_limiter() -> None:
    # redis-py spells it unix://, limits redis+unix://: the worker must start with either.
    storage, close = storage_for("unix:///tmp/no-such-redis.sock")
    try:
        assert isinstance(storage, RedisStorage)
    finally:
        await close()


@pytest.mark.parametrize(
    ("rate", "hits", "seconds"),
    [(1000, 1000, 1), (1, 1, 1), (1.5, 3, 2), (0.75, 3, 4), (0.5, 1, 2), (0.01, 1, 100)],
)
def test_a_rate_is_whole_hits_in_whole_seconds(rate: float, hits: int, seconds: int) -> None:
    item = rate_item(rate)
    assert (item.amount, item.get_expiry()) == (hits, seconds)


@given(st.floats(min_value=0.001, max_value=100_000, allow_nan=False, allow_infinity=False))
def test_a_rate_is_never_exceeded_and_barely_undercut(rate: float) -> None:
    item = rate_item(rate)
    held = item.amount / item.get_expiry()
    assert held <= rate * (1 + 1e-9)
    assert held >= rate * 0.94  # rounding down whole hits in a window of at most a minute
