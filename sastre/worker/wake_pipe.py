"""Wake-ups from `sastre serve` to the worker it spawned, with no Redis: a byte down a pipe.

Without Redis a worker in another process would only find a committed row by looking in the
database (every 50 ms). The worker `sastre serve` starts is its own child, so the web process
holds the write end of a pipe whose read end the child watches on its event loop: every commit
that queued rows (`dialog.outbox.announce`) writes one byte, and the worker looks at once.

The wake-up is a hint, never the record: a byte lost (the pipe full, the worker restarting)
costs nothing, since a full pipe means wake-ups are already waiting and the worker still looks
in the database on its own. Each worker the supervisor starts gets a pipe of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection

__all__ = ["WakePipe", "hear_pipe"]

_READ = 4096  # a burst of wake-ups is one look: read them all at once


class WakePipe:
    """The web process's end: a new pipe for each worker started, and `wake` for commits."""

    def __init__(self) -> None:
        self._writer: Connection | None = None

    def reader_for_next_worker(self) -> Connection:
        """The read end to hand the worker about to be spawned (the parent closes its copy once
        the child has it); the previous worker's pipe is closed."""
        self.close()
        reader, writer = multiprocessing.get_context("spawn").Pipe(duplex=False)
        # Never block the event loop on a worker that is slow to read (or stopped).
        os.set_blocking(writer.fileno(), False)
        self._writer = writer
        return reader

    def wake(self) -> None:
        if self._writer is None:
            return
        # Full: wake-ups are waiting to be read already. Broken: the worker is gone, and the
        # one the supervisor starts next gets a pipe of its own.
        with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            os.write(self._writer.fileno(), b"\x01")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def hear_pipe(reader: Connection, wake: Callable[[], None]) -> Callable[[], None]:
    """In the worker: call `wake` whenever bytes arrive; returns the undo. At the end of the
    pipe (the web process gone) it stops listening: the worker stops with its parent anyway."""
    loop = asyncio.get_running_loop()
    fd = reader.fileno()
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            data = os.read(fd, _READ)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            return
        wake()

    loop.add_reader(fd, readable)

    def undo() -> None:
        loop.remove_reader(fd)
        reader.close()

    return undo
