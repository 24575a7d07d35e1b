"""The outbox worker that `sastre serve` and `sastre demo` run beside the web server, kept
running: a worker that ends without being asked to (a crash, an OOM kill, `kill -9`) is logged
in one line naming its exit code or signal and started again, sooner after a long run than after
a string of quick failures (`next_restart`, pure). While none runs, `state` says so and /healthz
answers 503.

The child is watched through its sentinel (a pipe the system closes when it ends), read by the
event loop: no thread, no polling.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing.process
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "BASE_DELAY",
    "MAX_DELAY",
    "STABLE_UPTIME",
    "Restart",
    "WorkerState",
    "WorkerSupervisor",
    "describe_exit",
    "next_restart",
]

log = logging.getLogger(__name__)

WorkerState = Literal["starting", "ok", "restarting", "stopped"]
Spawn = Callable[[], multiprocessing.process.BaseProcess]

BASE_DELAY: Final = 0.5  # seconds before the first restart
MAX_DELAY: Final = 60.0  # a worker that cannot start is tried once a minute, not in a tight loop
STABLE_UPTIME: Final = 60.0  # a worker that ran this long had started fine: count from one again
# A SIGTERM finishes the calls in flight and records them; past this the worker is killed, and
# a call still out is made again after its lease. Longer than the slowest adapter's own bound
# on a call (SMTP's 30 s, Twilio's 15 s), so a graceful stop never cuts one short.
STOP_TIMEOUT: Final = 40.0


@dataclass(frozen=True, slots=True)
class Restart:
    """When to start the worker again, and why that soon."""

    delay: float
    failures: int  # quick failures in a row, this one included
    reason: str


def next_restart(
    failures: int,
    uptime: float,
    *,
    base: float = BASE_DELAY,
    cap: float = MAX_DELAY,
    stable: float = STABLE_UPTIME,
) -> Restart:
    """The restart after a worker ended unexpectedly, having run `uptime` seconds, with
    `failures` quick failures before it.

    A worker that ran a while had started fine: whatever killed it may not come back, so it is
    started again almost at once. One that keeps ending soon after its start (a bad database
    URL, a crash at import) waits twice as long each time, up to `cap`: the log gets one line per
    attempt, not a flood, and the machine is not kept busy starting interpreters."""
    if uptime >= stable:
        return Restart(base, 1, f"it had run {uptime:.0f} s")
    count = failures + 1
    delay = min(cap, base * 2 ** min(count - 1, 30))
    return Restart(delay, count, f"failure {count} in a row within {stable:g} s of starting")


def describe_exit(exitcode: int | None) -> str:
    """How a process ended, as the log line says it: by its code or by the signal that killed
    it (multiprocessing reports a signal as a negative code)."""
    if exitcode is None:
        return "ended"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name}"
    return f"exited with code {exitcode}"


class WorkerSupervisor:
    """Start, watch, restart and stop one worker process (`spawn` starts one and returns it)."""

    def __init__(
        self,
        spawn: Spawn,
        *,
        backoff: Callable[[int, float], Restart] = next_restart,
        clock: Callable[[], float] = time.monotonic,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self._spawn_process = spawn
        self._backoff = backoff
        self._clock = clock
        self._stop_timeout = stop_timeout
        self._state: WorkerState = "starting"
        self._process: multiprocessing.process.BaseProcess | None = None
        self._started_at = 0.0
        self._failures = 0
        self._restart: asyncio.TimerHandle | None = None
        self._gone = asyncio.Event()
        self._changed = asyncio.Event()
        self.last_exit: str | None = None  # how the last unexpected end went, for /healthz
        self.starts = 0

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _set(self, state: WorkerState) -> None:
        self._state = state
        self._changed.set()

    async def until(self, state: WorkerState) -> None:
        """Until the worker is in `state` (tests, and whoever waits for a restart)."""
        while self._state != state:
            self._changed.clear()
            await self._changed.wait()

    async def start(self) -> None:
        self._start()

    def _start(self) -> None:
        self._restart = None
        if self._state == "stopped":
            return
        try:
            process = self._spawn_process()
        except Exception as error:  # no process to watch: try again as after a quick failure
            self._schedule(f"could not be started ({type(error).__name__}: {error})", None, 0.0)
            return
        self._process = process
        self._started_at = self._clock()
        self._gone = asyncio.Event()
        self.starts += 1
        assert process.sentinel is not None
        asyncio.get_running_loop().add_reader(process.sentinel, self._ended, process)
        log.info("outbox worker started (pid %s)", process.pid)
        self._set("ok")

    def _ended(self, process: multiprocessing.process.BaseProcess) -> None:
        asyncio.get_running_loop().remove_reader(process.sentinel)
        # Reap it (no <defunct> left behind) and read its exit: the pipe closes as the process
        # exits, a moment before the system can report its status.
        process.join(STOP_TIMEOUT)
        self._process = None
        self._gone.set()
        if self._state == "stopped":
            return
        uptime = self._clock() - self._started_at
        self._schedule(describe_exit(process.exitcode), process.pid, uptime)

    def _schedule(self, how: str, pid: int | None, uptime: float) -> None:
        restart = self._backoff(self._failures, uptime)
        self._failures = restart.failures
        self.last_exit = how
        who = "outbox worker" if pid is None else f"outbox worker (pid {pid})"
        log.warning(
            "%s %s after %.1f s; starting another in %g s (%s)",
            who,
            how,
            uptime,
            restart.delay,
            restart.reason,
        )
        self._set("restarting")
        self._restart = asyncio.get_running_loop().call_later(restart.delay, self._start)

    async def stop(self) -> None:
        """Ask the worker to stop (SIGTERM: it finishes and records its calls in flight), and
        kill it if it has not within the stop timeout. No restart follows."""
        self._set("stopped")
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        process = self._process
        if process is None:
            return
        process.terminate()
        try:
            async with asyncio.timeout(self._stop_timeout):
                await self._gone.wait()
        except TimeoutError:
            log.warning(
                "outbox worker (pid %s) did not stop within %g s; killing it",
                process.pid,
                self._stop_timeout,
            )
            process.kill()
            await self._gone.wait()
