"""Where the embedded bot reads queued messages before their turn: on the event loop, or in a
process of its own.

What the bot reads of a text alone (the intent model's scores, the FAQ's ranking of its
entries; see `dialog.readahead`) can be done before the message's batch asks. On the event
loop that work fills the loop's idle moments. With a second core it is better done there: under
load the web process's one event loop is what saturates (in the inbound SMS benchmark, reading
was about a quarter of its time) while the other core has time to spare.

`ProcessReader` keeps one child process (spawned: none of this process's threads, sockets or
loop are shared) holding the very model the understander was trained to and an index built from
the same FAQ entries, so it computes exactly the numbers the loop would. One request is in
flight at a time and texts handed in meanwhile go together in the next: the child is only ever
sent a request while it waits for one, so neither side can block writing to the other, and a
busy child gets bigger batches, which cost less per text.

Reading elsewhere only saves work, it never decides anything: a text whose reading has not come
back when its turn comes is read on the loop then, as it always was. A child that dies is logged
and started again, sooner after a long run than after quick failures; meanwhile the loop reads.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Final

from dialog.faq import FaqEntry, FaqIndex
from dialog.faq_store import FaqCatalogue
from dialog.nlu import EmbeddedUnderstander, TextRead, TextReader
from sastre.worker.supervisor import describe_exit, next_restart

__all__ = ["LoopReader", "ProcessReader", "reading_in_a_process"]

log = logging.getLogger(__name__)

START_TIMEOUT: Final = 60.0  # a child that has not said it is ready by then is replaced
# A child that has not answered a request in this long is taken for stuck, and replaced: its
# texts are read on the loop (whose turns waited for it at most `processor.READ_WAIT` each).
STUCK_AFTER: Final = 10.0


class LoopReader:
    """Reading ahead on the event loop, in one call for many texts (`dialog.readahead`)."""

    elsewhere = False

    def __init__(self, understander: EmbeddedUnderstander, catalogue: FaqCatalogue) -> None:
        self._understander = understander
        self._catalogue = catalogue

    def read(self, texts: Sequence[str]) -> asyncio.Future[None] | None:
        self._understander.read_ahead(texts)
        if isinstance(index := self._catalogue.current(), FaqIndex):  # the semantic one doesn't
            index.read_ahead(texts)
        return None


def reading_in_a_process(setting: str, cpus: int | None = None) -> bool:
    """SASTRE_BOT_READER: "process", "loop", or "auto" (a process when there is a second core:
    on one core it would only take turns with the loop it was meant to relieve)."""
    if setting == "auto":
        return (os.cpu_count() or 1 if cpus is None else cpus) >= 2
    return setting == "process"


@dataclass
class _Request:
    """Texts handed in since the last request was sent, and who waits for them."""

    texts: list[str] = field(default_factory=list)
    waiting: list[asyncio.Future[None]] = field(default_factory=list)


@dataclass
class _InFlight:
    texts: list[str]
    index: FaqIndex | None  # the index the child scored against, to keep its scores on
    waiting: list[asyncio.Future[None]]


class ProcessReader:
    """Reading ahead in a child process; `read` returns what to await before the turn."""

    elsewhere = True

    def __init__(self, understander: EmbeddedUnderstander, catalogue: FaqCatalogue) -> None:
        self._understander = understander
        self._catalogue = catalogue
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None
        self._ready = False
        self._next = _Request()
        self._in_flight: _InFlight | None = None
        self._sent_at = 0.0
        self._child_index: FaqIndex | None = None  # the index whose entries the child holds
        self._restart: asyncio.TimerHandle | None = None
        self._started_at = 0.0
        self._failures = 0
        self._closed = False
        self._starting: asyncio.Future[None] | None = None  # a restart's start, kept referenced

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        """Start the child; it reads once it has said it is ready (a second or so of imports),
        and until then `read` leaves the reading to the loop. A child that cannot be started
        (the system refuses a process) is logged and tried again later: the loop reads."""
        try:
            await self._spawn()
        except Exception:
            log.exception("bot reader: could not start a child")
            self._lost()

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_child,
            args=(theirs, self._understander.text_reader),
            name="sastre-bot-reader",
            daemon=True,  # ended with this process, even when nothing stops it politely
        )
        # Off the loop: spawning writes the model (a few MB) to the child before returning.
        await asyncio.to_thread(process.start)
        theirs.close()
        if self._closed:  # closed while it started
            process.kill()
            process.join(timeout=5)
            ours.close()
            return  # the child's end: once the child is gone, reading ours fails at once
        self._process, self._connection = process, ours
        self._started_at = time.monotonic()
        loop.add_reader(ours.fileno(), self._readable)
        self._restart = loop.call_later(START_TIMEOUT, self._too_slow)

    def read(self, texts: Sequence[str]) -> asyncio.Future[None] | None:
        if self._in_flight is not None and time.monotonic() - self._sent_at > STUCK_AFTER:
            log.warning("bot reader: the child has not answered in %.0f s", STUCK_AFTER)
            self._lost()
        if not self._ready or not texts:
            return None
        waiting = asyncio.get_running_loop().create_future()
        self._next.texts.extend(texts)
        self._next.waiting.append(waiting)
        if self._in_flight is None:
            self._send()
        return waiting

    async def close(self) -> None:
        self._closed = True
        self._stop_child()
        self._release_all()

    def _send(self) -> None:
        assert self._connection is not None
        request, self._next = self._next, _Request()
        index = self._catalogue.current()
        index = index if isinstance(index, FaqIndex) else None
        try:
            if index is not None and index is not self._child_index:
                self._connection.send(("faq", list(index.entries), index.threshold))
                self._child_index = index
            self._connection.send(("read", request.texts, index is not None))
            self._sent_at = time.monotonic()
        except Exception as error:  # the child is gone (its end of the pipe closed), or worse
            self._in_flight = _InFlight(request.texts, index, request.waiting)
            if not isinstance(error, OSError | ValueError):
                log.exception("bot reader: could not send the child its texts")
            self._lost()
            return
        self._in_flight = _InFlight(request.texts, index, request.waiting)

    def _readable(self) -> None:
        assert self._connection is not None
        try:
            message = self._connection.recv()
        except (EOFError, OSError):
            self._lost()
            return
        if message[0] == "ready":
            self._ready = True
            if self._restart is not None:
                self._restart.cancel()
                self._restart = None
            log.info("bot reader: reading ahead in process %s", self._process_id())
            return
        flight, self._in_flight = self._in_flight, None
        assert flight is not None, "the child answers only what it was asked"
        if message[0] == "read":
            reads: list[TextRead] = message[1]
            self._understander.keep_ahead(flight.texts, reads)
            if message[2] is not None and flight.index is not None:
                flight.index.keep_ahead(flight.texts, message[2])
        else:  # an error the child caught: these texts are read on the loop at their turn
            log.warning("bot reader: the child could not read: %s", message[1])
        _release(flight.waiting)
        if self._next.texts:
            self._send()

    def _process_id(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _too_slow(self) -> None:
        self._restart = None
        log.warning("bot reader: the child did not start within %.0f s", START_TIMEOUT)
        self._lost()

    def _lost(self) -> None:
        """The child is gone (or stuck starting): the loop reads until another one is ready."""
        process = self._process
        stuck = process is not None and process.is_alive()
        self._stop_child()
        self._release_all()
        if self._closed:
            return
        restart = next_restart(self._failures, time.monotonic() - self._started_at)
        self._failures = restart.failures
        log.warning(
            "bot reader: the child %s; reading on the event loop, starting another in %.1f s",
            "could not start"
            if process is None
            else "stopped answering"
            if stuck
            else describe_exit(process.exitcode),
            restart.delay,
        )
        self._restart = asyncio.get_running_loop().call_later(restart.delay, self._start_again)

    def _start_again(self) -> None:
        self._restart = None
        if not self._closed:
            self._starting = asyncio.ensure_future(self.start())

    def _stop_child(self) -> None:
        self._ready = False
        self._child_index = None
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        if self._connection is not None:
            asyncio.get_running_loop().remove_reader(self._connection.fileno())
            self._connection.close()
            self._connection = None
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()  # it holds nothing to save: readings are recomputed
            self._process.join(timeout=5)
            self._process = None

    def _release_all(self) -> None:
        if self._in_flight is not None:
            _release(self._in_flight.waiting)
            self._in_flight = None
        _release(self._next.waiting)
        self._next = _Request()


def _release(waiting: list[asyncio.Future[None]]) -> None:
    for future in waiting:
        if not future.done():
            future.set_result(None)


def _child(connection: Connection, reader: TextReader) -> None:
    """The child: reads what it is sent until its parent is gone. It stops when its parent
    does (its end of the pipe closes), never on a Ctrl+C meant for the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    index: FaqIndex | None = None
    connection.send(("ready",))
    while True:
        try:
            request: tuple[Any, ...] = connection.recv()
        except (EOFError, OSError):
            return
        if request[0] == "faq":
            entries: list[FaqEntry] = request[1]
            try:
                index = FaqIndex(entries, threshold=request[2])
            except Exception:  # the parent built it; without it, the loop scores
                index = None
            continue
        try:
            texts: list[str] = request[1]
            ranked = index.rank_texts(texts) if request[2] and index is not None else None
            connection.send(("read", reader.read_all(texts), ranked))
        except Exception as error:  # reported: the parent reads on the loop
            connection.send(("error", f"{type(error).__name__}: {error}"))
