"""A worker: claim due rows, call the providers, record what happened, and wait for more.

Each round is two transactions around the calls: the claim (rows marked `sending` under this
worker's lease, committed before any provider is called) and the results. Up to `concurrency`
calls are in flight at once, so a crash re-sends at most that many. Between rounds the worker
sleeps until woken (`wake`: a commit in this process, a Redis message from another) or until
the soonest due row (a retry, a deferred message), checking at least every `poll` seconds, so a
wake-up lost between processes without Redis costs at most that.

A permanent failure may say more than "this message failed" (an SMS refused because the number
sent STOP to the carrier): the channel's hook (`on_failure`, from `sastre.senders`) records that
in the transaction that settles the failure. The loop itself knows no channel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from channels.base import ChannelName, DeliveryFailed, OutboundMessage, Sender
from crm_core.sqltypes import utcnow
from dialog.outbox import Admit, Claimed, Result, claim, next_due, settle
from sastre.db import SessionMaker
from sastre.operations.unit import Unit, unit_of_work
from sastre.worker.backoff import RetryPolicy, next_attempt

__all__ = ["FailureHook", "Worker", "outbound"]

# What a permanent failure on a channel means beyond the message (consent, the address), run in
# the unit that settles it.
FailureHook = Callable[[Unit, Result], Awaitable[None]]

log = logging.getLogger(__name__)

DEFAULT_POLICY = RetryPolicy()
_OPTIONS = ("html", "subject", "in_reply_to", "unsubscribe_url", "status_callback")


def outbound(row: Claimed) -> OutboundMessage:
    """The port's message for a claimed row: our message id is the provider's idempotency key."""
    extra: dict[str, Any] = {name: row.options[name] for name in _OPTIONS if name in row.options}
    return OutboundMessage(
        channel=row.channel,
        address=row.address,
        text=row.text,
        reference=f"sastre-{row.message_id}",
        metadata={k: str(v) for k, v in row.options.get("metadata", {}).items()},
        references=tuple(row.options.get("references", ())),
        **extra,
    )


class Worker:
    def __init__(
        self,
        sessionmaker: SessionMaker,
        senders: Mapping[ChannelName, Sender],
        *,
        reader: SessionMaker | None = None,
        name: str | None = None,
        concurrency: int = 64,
        lease: timedelta = timedelta(seconds=60),
        policy: RetryPolicy = DEFAULT_POLICY,
        admit: Admit | None = None,
        poll: float = 0.05,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = utcnow,
        on_failure: Mapping[ChannelName, FailureHook] | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._reader = reader or sessionmaker
        self._senders = dict(senders)
        self._channels = list(self._senders)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"[:64]
        self._concurrency = concurrency
        self._lease = lease
        self._policy = policy
        self._admit = admit
        self._poll = poll
        self._jitter = jitter
        self._clock = clock
        self._on_failure = dict(on_failure or {})
        self._woken = asyncio.Event()
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (channel, outcome) → sends

    def wake(self) -> None:
        """Rows were committed: look now (safe to call from any task of this loop)."""
        self._woken.set()

    async def round(self) -> int:
        """One claim, its calls and their results; returns how many rows were sent or tried."""
        if not self._channels:
            return 0
        async with self._sessionmaker.begin() as session:
            rows = await claim(
                session,
                worker=self.name,
                channels=self._channels,
                limit=self._concurrency,
                lease=self._lease,
                now=self._clock(),
                admit=self._admit,
            )
        if not rows:
            return 0
        results = await asyncio.gather(*(self._send(row) for row in rows))
        await self._settle(results)
        for result in results:
            self.outcomes[(result.claimed.channel.value, result.outcome)] += 1
        return len(rows)

    async def _settle(self, results: list[Result]) -> None:
        hooked = [
            (hook, r)
            for r in results
            if r.outcome == "failed" and (hook := self._on_failure.get(r.claimed.channel))
        ]
        if not hooked:
            async with self._sessionmaker.begin() as session:
                await settle(session, results, worker=self.name, now=self._clock())
            return
        async with unit_of_work(self._sessionmaker, f"worker:{self.name}") as unit:
            await settle(unit.session, results, worker=self.name, now=self._clock())
            for hook, result in hooked:
                await hook(unit, result)

    async def _send(self, row: Claimed) -> Result:
        sender = self._senders[row.channel]
        try:
            # A call that outlives the lease would race the worker that takes the row over.
            async with asyncio.timeout(self._lease.total_seconds() * 0.8):
                provider_id = await sender.send(outbound(row))
        except DeliveryFailed as failed:
            return self._failed(
                row, failed.reason, failed.code, failed.retryable, failed.retry_after
            )
        except TimeoutError:
            return self._failed(row, "the provider did not answer in time", None, True, None)
        except Exception as error:  # an adapter's bug or an unmapped network error: try again
            log.exception("sending message %s", row.message_id)
            return self._failed(row, f"{type(error).__name__}: {error}", None, True, None)
        return Result(row, "sent", provider_id=provider_id)

    def _failed(
        self,
        row: Claimed,
        reason: str,
        code: str | None,
        retryable: bool,
        retry_after: float | None,
    ) -> Result:
        verdict = next_attempt(
            self._policy,
            row.attempts,
            retryable=retryable,
            retry_after=retry_after,
            jitter=self._jitter(),
        )
        if verdict.retry:
            at = self._clock() + timedelta(seconds=verdict.delay)
            return Result(row, "retry", code=code, reason=reason, retry_at=at)
        return Result(row, "failed", code=code, reason=reason)

    async def drain(self) -> int:
        """Rounds until nothing is due now (tests, the benchmark); returns the rows handled."""
        total = 0
        while handled := await self.round():
            total += handled
        return total

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Until `stop` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            self._woken.clear()
            try:
                handled = await self.round()
            except Exception:  # the database went away for a moment: try again shortly
                log.exception("outbox worker round failed")
                handled = 0
                await asyncio.sleep(1)
            if handled:
                continue
            await self._idle(stop)

    async def _idle(self, stop: asyncio.Event) -> None:
        timeout = self._poll
        try:
            async with self._reader() as session:
                due = await next_due(session, self._channels)
        except Exception:
            due = None
        if due is not None:
            timeout = max(0.0, min(timeout, (due - self._clock()).total_seconds()))
        timeout = max(timeout, 0.005)  # a due row another worker is claiming right now
        waiters = [asyncio.ensure_future(self._woken.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
