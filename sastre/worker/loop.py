"""A worker: claim due rows, call the providers, record what happened, and wait for more.

Every claim is a transaction that marks its rows `sending` under this worker's lease, committed
before any provider is called; results are recorded in transactions of their own. While
running (`run`, `drain`) the worker keeps its calls flowing instead of working in rounds that
each wait for their slowest call: it claims again as soon as enough earlier rows are settled,
and records results in batches as they come in (everything finished while the last batch was
being written). A row counts against `concurrency` from its claim until its result is
committed, so at most that many calls are in flight or unrecorded at any moment: a crash
re-sends at most `concurrency`. Between claims that find nothing the worker sleeps until woken
(`wake`: a commit in this process, a Redis message from another) or until the soonest due row
(a retry, a deferred message), checking at least every `poll` seconds, so a wake-up lost
between processes without Redis costs at most that.

A permanent failure may say more than "this message failed" (an SMS refused because the number
sent STOP to the carrier): the channel's hook (`on_failure`, from `sastre.senders`) records that
in the transaction that settles the failure. The loop itself knows no channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from channels.base import ChannelName, DeliveryFailed, OutboundMessage, Sender
from crm_core.sqltypes import utcnow
from dialog.outbox import Admit, Claimed, Result, Wait, claim, next_due, settle
from dialog.outbox.models import CODE_LENGTH, PROVIDER_ID_LENGTH
from sastre.db import SessionMaker
from sastre.operations.unit import Unit, unit_of_work
from sastre.worker.backoff import RetryPolicy, next_attempt
from sastre.worker.flight import Flight

__all__ = ["FailureHook", "Worker", "outbound"]

# What a permanent failure on a channel means beyond the message (consent, the address), run in
# the unit that settles it.
FailureHook = Callable[[Unit, Result], Awaitable[None]]

log = logging.getLogger(__name__)

DEFAULT_POLICY = RetryPolicy()
# Results that could not be written (the database away for a moment) are written again, at
# these growing intervals, while their rows' lease lasts (less this margin, the time a write
# takes): a row left `sending` past it is sent again by whoever takes it over.
_SETTLE_FIRST_DELAY = 0.1
_SETTLE_MAX_DELAY = 5.0
_SETTLE_MARGIN = timedelta(seconds=2)
_OPTIONS = ("html", "subject", "in_reply_to", "unsubscribe_url", "status_callback")


def outbound(row: Claimed) -> OutboundMessage:
    """The port's message for a claimed row: our message id is the provider's idempotency key
    (an e-mail's Message-ID), the same for every call of one delivery (a re-send after a crash
    is a duplicate a mail server may drop); a delivery staff started again (`delivery`, see
    `sastre.operations.messages`) is a message of its own, so a bounce of the old one is not
    taken for one of it."""
    extra: dict[str, Any] = {name: row.options[name] for name in _OPTIONS if name in row.options}
    delivery = row.options.get("delivery")
    return OutboundMessage(
        channel=row.channel,
        address=row.address,
        text=row.text,
        reference=f"sastre-{row.message_id}" + (f".{delivery}" if delivery else ""),
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
        wait: Wait | None = None,
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
        self._wait = wait
        self._poll = poll
        self._jitter = jitter
        self._clock = clock
        self._on_failure = dict(on_failure or {})
        self._woken = asyncio.Event()
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (channel, outcome) → sends

    def wake(self) -> None:
        """Rows were committed: look now (safe to call from any task of this loop)."""
        self._woken.set()

    async def _claim(self, limit: int) -> list[Claimed]:
        async with self._sessionmaker.begin() as session:
            return await claim(
                session,
                worker=self.name,
                channels=self._channels,
                limit=limit,
                lease=self._lease,
                now=self._clock(),
                admit=self._admit,
                wait=self._wait,
            )

    async def round(self) -> int:
        """One claim, its calls and their results; returns how many rows were sent or tried."""
        if not self._channels:
            return 0
        rows = await self._claim(self._concurrency)
        if not rows:
            return 0
        results = await asyncio.gather(*(self._send(row) for row in rows))
        await self._settle(results)
        self._count(results)
        return len(rows)

    def _count(self, results: Sequence[Result]) -> None:
        for result in results:
            self.outcomes[(result.claimed.channel.value, result.outcome)] += 1

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

    @property
    def _patience(self) -> float:
        """How long a call may take: one that outlives the lease would race the worker that
        takes the row over."""
        return self._lease.total_seconds() * 0.8

    def patience_for(self, rows: Sequence[Claimed]) -> float:
        """How long the calls of these rows (one claim's) may take from now: until a fifth of
        the lease before it runs out. The lease counts from before the claim, which may have
        waited (for SQLite's write lock, a rate limit): counted from after it, a call could
        outlive the lease and be made again by whoever took the row over, with no crash."""
        leases = [row.lease_until for row in rows if row.lease_until is not None]
        if not leases:
            return self._patience
        left = (min(leases) - self._clock()).total_seconds() - self._lease.total_seconds() * 0.2
        return max(0.0, min(self._patience, left))

    async def _send(self, row: Claimed) -> Result:
        """One call, within the lease (`round`; a running worker times whole claims)."""
        try:
            async with asyncio.timeout(self.patience_for([row])):
                return await self._call(row)
        except TimeoutError:
            return self._late(row)

    def _late(self, row: Claimed) -> Result:
        return self._failed(row, "the provider did not answer in time", None, True, None)

    async def _call(self, row: Claimed) -> Result:
        sender = self._senders[row.channel]
        try:
            provider_id = await sender.send(outbound(row))
        except DeliveryFailed as failed:
            return self._failed(
                row, failed.reason, failed.code, failed.retryable, failed.retry_after
            )
        except TimeoutError:
            return self._late(row)
        except Exception as error:  # an adapter's bug or an unmapped network error: try again
            log.exception("sending message %s", row.message_id)
            return self._failed(row, f"{type(error).__name__}: {error}", None, True, None)
        # A provider id longer than the column (no provider's is) is kept cut: refused by the
        # database, the result would be lost and the message sent again.
        return Result(row, "sent", provider_id=provider_id[:PROVIDER_ID_LENGTH])

    def _failed(
        self,
        row: Claimed,
        reason: str,
        code: str | None,
        retryable: bool,
        retry_after: float | None,
    ) -> Result:
        code = code[:CODE_LENGTH] if code is not None else None  # as for the provider id
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
        """Until nothing is due now and every call is settled (tests, the benchmark); returns
        the rows handled."""
        return await self._pump(asyncio.Event(), until_idle=True)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Until `stop` is set (the calls in flight are finished and recorded first), or the
        task is cancelled (they are abandoned to their lease)."""
        await self._pump(stop or asyncio.Event(), until_idle=False)

    async def _pump(self, stop: asyncio.Event, *, until_idle: bool) -> int:
        """Claim while there is room, send each row as soon as it is claimed, settle results
        as they come; returns the rows handled."""
        if not self._channels:
            if not until_idle:  # nothing to send on: it waits to be stopped, as it says it does
                await stop.wait()
            return 0
        flight = Flight(self._call, late=self._late)
        settler = asyncio.ensure_future(self._settler(flight))
        # Claim once a few rows have room (not one by one), or at once when nothing is held.
        refill = max(1, self._concurrency // 8)
        handled = 0
        try:
            while not stop.is_set():
                room = self._concurrency - flight.held
                if flight.held and room < refill:
                    await _first(flight.settled, stop)
                    flight.settled.clear()
                    continue
                self._woken.clear()
                try:
                    rows = await self._claim(room)
                except Exception:  # the database went away for a moment: try again shortly
                    if until_idle:
                        raise
                    log.exception("outbox worker claim failed")
                    await _first(stop, within=1)
                    continue
                if rows:
                    flight.start(rows, patience=self.patience_for(rows))
                    handled += len(rows)
                    continue
                if flight.held:  # nothing due now; calls out: their settling, or a wake-up
                    flight.settled.clear()
                    await _first(flight.settled, self._woken, stop, within=self._poll)
                    continue
                if until_idle:
                    break
                await self._idle(stop)
            while flight.held:  # stopping: the calls out finish and are recorded
                flight.settled.clear()
                await flight.settled.wait()
        except BaseException:
            flight.cancel()
            raise
        finally:
            settler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await settler
        return handled

    async def _settler(self, flight: Flight) -> None:
        """Record finished calls, all those waiting in one transaction, until cancelled."""
        while True:
            await flight.ready.wait()
            batch = flight.take()
            await self._record(batch)
            self._count(batch)
            flight.release(len(batch))

    async def _record(self, batch: list[Result]) -> None:
        """Write the results, whatever it takes while their lease lasts: a call the provider
        took and that is not recorded is made again by the worker that takes the row over.

        A batch that fails is written result by result, so one that cannot be written keeps
        none of the others from being recorded; what still fails is tried again, at growing
        intervals (the database away for a while), each until just before its own lease runs
        out. Then that row is left to its lease, as after a crash (and logged: its call may be
        made twice); the others are still tried (one row claimed long ago, with little lease
        left, used to end the tries of all of them). Stopping does not cut this short: the
        results are what a graceful stop waits for."""
        pending = batch
        unleased = self._clock() + self._lease  # (a row claimed with no lease: from now)
        delay = _SETTLE_FIRST_DELAY
        while True:
            try:
                await self._settle(pending)
                return
            except Exception:
                log.exception("recording %d outbox results failed", len(pending))
            if len(pending) > 1:
                failed = len(pending)
                pending = [result for result in pending if not await self._settled_alone(result)]
                log.warning(
                    "wrote %d of %d outbox results one by one", failed - len(pending), failed
                )
            retry_at = self._clock() + timedelta(seconds=delay)
            kept: list[Result] = []
            late: list[Result] = []
            for result in pending:
                lease = result.claimed.lease_until or unleased
                (late if lease - _SETTLE_MARGIN <= retry_at else kept).append(result)
            if late:
                log.error(
                    "gave up recording the results of messages %s: they will be sent again "
                    "when their lease runs out",
                    ", ".join(str(r.claimed.message_id) for r in late),
                )
            pending = kept
            if not pending:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, _SETTLE_MAX_DELAY)

    async def _settled_alone(self, result: Result) -> bool:
        # Quietly: with the database away every one fails, and `_record` says so once a round.
        try:
            await self._settle([result])
        except Exception as error:
            log.debug(
                "recording the result of message %s failed: %s", result.claimed.message_id, error
            )
            return False
        return True

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
        await _first(self._woken, stop, within=timeout)


async def _first(*events: asyncio.Event, within: float | None = None) -> None:
    """Until one of the events is set, or the timeout."""
    if any(event.is_set() for event in events):
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
