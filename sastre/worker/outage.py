"""Redis going away and coming back, said once each way.

Redis carries only what can be rebuilt from the database (the wake-ups between processes, the
shared rate limits), so its outage is a degraded mode, not a failure: each user falls back (a
local rate limit, polling the database) and says so in one warning when Redis goes, one when it
is back, instead of a traceback per call. While it is away, Redis is tried again `retry_every`
seconds after the last failed try ended, then twice as long after each further failure, up to
`MAX_RETRY_EVERY`: a host that does not answer (each try waits for its timeout) slows a few
calls down, not every call, nor one call in two.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["MAX_RETRY_EVERY", "REDIS_ERRORS", "Outage"]

log = logging.getLogger(__name__)


def _redis_errors() -> tuple[type[Exception], ...]:
    from limits.errors import StorageError
    from redis.exceptions import RedisError

    # OSError: a refused or reset connection the client did not wrap.
    return (RedisError, StorageError, OSError)


REDIS_ERRORS = _redis_errors()
MAX_RETRY_EVERY = 30.0  # seconds between tries at most, however long Redis is away


class Outage:
    """Whether Redis answers, as one user of it sees it, and when to try it again."""

    def __init__(
        self,
        what: str,
        fallback: str,
        *,
        retry_every: float = 2.0,
        max_retry_every: float = MAX_RETRY_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._what = what  # "the shared rate limits"
        self._fallback = fallback  # "each worker limits its own sends"
        self._retry_every = retry_every
        self._max_retry_every = max_retry_every
        self._clock = clock
        self._down_since: float | None = None
        self._last_try = 0.0  # when the last failed try ended
        self._misses = 0  # failed tries since Redis went

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def may_try(self) -> bool:
        """Whether to call Redis now: always while it answers, now and then while it does not."""
        if self._down_since is None:
            return True
        wait = min(self._max_retry_every, self._retry_every * 2.0 ** max(0, self._misses - 1))
        now = self._clock()
        if now - self._last_try < wait:
            return False
        # This caller tries; the others wait for its outcome (`failed` restarts the wait when
        # the try ends), so a Redis that hangs costs one caller its timeout, not each of them.
        self._last_try = now
        return True

    def failed(self, error: BaseException) -> None:
        self._last_try = self._clock()
        self._misses += 1
        if self._down_since is not None:
            return
        self._down_since = self._last_try
        log.warning(
            "Redis is unreachable for %s (%s: %s); meanwhile %s",
            self._what,
            type(error).__name__,
            str(error).splitlines()[0][:200] if str(error) else "no detail",
            self._fallback,
        )

    def succeeded(self) -> None:
        if self._down_since is None:
            return
        away = self._clock() - self._down_since
        self._down_since = None
        self._misses = 0
        log.warning("Redis is back for %s after %.0f s", self._what, away)
