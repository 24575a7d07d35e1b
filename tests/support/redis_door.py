"""A door between the code under test and the suite's real Redis, which a test can shut and open
again: an outage of Redis for one test, without stopping the server every other test shares.

A TCP forwarder bound to port 0 (no race for a port): open, it relays each connection to Redis;
shut, it drops every connection it relays and closes new ones as soon as they are accepted, as
a Redis that died and a port nobody listens on look to a client. The port stays the door's, so
Redis "comes back" where the client expects it. Frozen, it keeps every connection and accepts
new ones but carries nothing either way, as a Redis stopped (SIGSTOP) or cut off without a reset
looks: a read never ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self
from urllib.parse import urlsplit

__all__ = ["RedisDoor"]


class RedisDoor:
    def __init__(self, redis_url: str) -> None:
        parts = urlsplit(redis_url)
        assert parts.hostname is not None
        assert parts.port is not None
        self._target = (parts.hostname, parts.port)
        self._database = parts.path
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.is_open = True
        self.frozen = False
        self.url = ""

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}{self._database}"
        return self

    async def __aexit__(self, *_: object) -> None:
        self.shut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def shut(self) -> None:
        """Redis is gone: every relayed connection dropped, every new one closed at once."""
        self.is_open = False
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    def open(self) -> None:
        self.is_open = True

    def freeze(self) -> None:
        """Redis hangs: nothing is carried until `thaw`."""
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if not self.is_open:
            client_w.close()
            return
        redis_r, redis_w = await asyncio.open_connection(*self._target)
        self._writers.update((client_w, redis_w))
        pumps = [
            asyncio.ensure_future(self._pump(client_r, redis_w)),
            asyncio.ensure_future(self._pump(redis_r, client_w)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
                self._tasks.discard(pump)
            for writer in (client_w, redis_w):
                self._writers.discard(writer)
                writer.close()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                if self.frozen:
                    continue  # what a hung Redis never reads, nor answers
                sink.write(data)
                await sink.drain()
