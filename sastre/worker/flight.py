"""The rows a running worker holds: claimed and not yet settled.

A row is held from its claim until its result is committed, so `held` is both "calls in flight"
and "calls made whose result is not recorded yet": what a crash at this moment would send again.
The worker never holds more than its concurrency; results wait in `finished` for the settler,
which takes them all at once (one batch per transaction).

A call must not outlive its row's lease (another worker would take the row over and send it
too): the rows of one claim share their lease, so one timer per claim cancels whichever of its
calls are still out after `patience` seconds, and each becomes the `late` result (a retry),
rather than a timer per call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from dialog.outbox import Claimed, Result

__all__ = ["Flight"]


class Flight:
    def __init__(
        self,
        send: Callable[[Claimed], Awaitable[Result]],
        *,
        late: Callable[[Claimed], Result],
    ) -> None:
        self._send = send
        self._late = late
        self._expired: set[asyncio.Future[None]] = set()
        self.held = 0
        self.finished: list[Result] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()  # results wait for the settler
        self.settled = asyncio.Event()  # a batch was settled: room for more claims

    def start(self, rows: Sequence[Claimed], *, patience: float) -> None:
        """Send these rows (one claim's), each in a task of its own, for at most `patience`
        seconds (what is left of their lease)."""
        self.held += len(rows)
        out: set[asyncio.Task[None]] = set()
        timer = asyncio.get_running_loop().call_later(patience, self._expire, out)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            out.discard(task)
            if not out:
                timer.cancel()

        for row in rows:
            task = asyncio.ensure_future(self._call(row))
            self._tasks.add(task)
            out.add(task)
            task.add_done_callback(done)

    def _expire(self, out: set[asyncio.Task[None]]) -> None:
        for task in list(out):
            self._expired.add(task)
            task.cancel()

    async def _call(self, row: Claimed) -> None:
        try:
            result = await self._send(row)  # never raises: a failure is a Result
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task not in self._expired:
                raise
            self._expired.discard(task)
            result = self._late(row)
        self.finished.append(result)
        self.ready.set()

    def take(self) -> list[Result]:
        """Every result not settled yet (the settler's next batch)."""
        batch, self.finished = self.finished, []
        self.ready.clear()
        return batch

    def release(self, count: int) -> None:
        """A batch was committed (or given up on): its rows are no longer held."""
        self.held -= count
        self.settled.set()

    def cancel(self) -> None:
        """Abandon the calls in flight (the worker's task was cancelled): their rows stay
        `sending` under the lease and are taken over when it runs out."""
        for task in list(self._tasks):
            task.cancel()
