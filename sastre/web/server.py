"""Running the app on aiohttp's server, with the server's own answers made like Sastre's.

Before a request reaches the app, aiohttp's protocol may refuse it: a header longer than
`max_field_size`, a request line too long, bytes that are not HTTP. Its default answer is a
plain-text 400 that quotes the first hundred offending bytes back, with `Server:` naming the
Python and aiohttp versions, and a full traceback in the log for every such request. Here those
answers are the same JSON errors as everywhere else, say what was wrong without repeating it,
and log one line.

aiohttp has no setting for this; its documented extension point is the `RequestHandler` a
`web.Server` builds per connection, so `SastreRunner` is an `AppRunner` whose server builds
`SastreProtocol`. `run_app` is `web.run_app` with that runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Callable, Sequence
from http import HTTPStatus

from aiohttp import hdrs, web
from aiohttp.http_exceptions import BadHttpMethod, BadStatusLine, LineTooLong
from typing_extensions import override

from sastre.web.edge import SERVER_NAME

__all__ = ["SastreProtocol", "SastreRunner", "protocol_error_detail", "run_app"]

log = logging.getLogger(__name__)


def protocol_error_detail(status: int, exc: BaseException | None) -> str:
    """What the client did wrong, in words that never repeat what it sent."""
    if isinstance(exc, LineTooLong):
        return "a request line or header is too long"
    if isinstance(exc, BadHttpMethod | BadStatusLine):
        return "this is not an HTTP request"
    if status == HTTPStatus.INTERNAL_SERVER_ERROR:
        return "internal error"
    if status == HTTPStatus.GATEWAY_TIMEOUT:
        return "the request took too long"
    return "the request is not valid HTTP"


class SastreProtocol(web.RequestHandler):
    """aiohttp's per-connection protocol, answering its own errors in Sastre's JSON."""

    @override
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            self.log_exception("error handling a request from %s", request.remote, exc_info=exc)
        else:
            # A malformed request is the client's doing: one line, no traceback to flood the log.
            log.info("refused a malformed request from %s: %s", request.remote, type(exc).__name__)
        if request.writer.output_size > 0:
            # Part of an answer is out: there is no way to send another (aiohttp does the same).
            raise ConnectionError("an answer was already being sent; cannot send the error")
        phrase = HTTPStatus(status).phrase.lower()  # aiohttp only passes statuses it knows
        response = web.json_response(
            {"error": phrase, "detail": protocol_error_detail(status, exc)},
            status=status,
            headers={hdrs.SERVER: SERVER_NAME},
        )
        response.force_close()
        return response


class _Server(web.Server):
    """aiohttp's low-level server, building `SastreProtocol` for each connection."""

    @classmethod
    def replacing(cls, server: web.Server) -> _Server:
        return cls(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )

    @override
    def __call__(self) -> web.RequestHandler:
        return SastreProtocol(self, loop=self._loop, **self._kwargs)


# Container objects allocated (net) between two collections of the youngest generation. Serving
# a request frees almost everything it allocates by reference counting; Python's default (700)
# made a collection every 25 messages or so under load, 3-5% of the event loop's time for
# nothing found (bench.sms_inbound: 238 collections in a run of 6,000 webhooks, 100-180 ms in
# all). At 10,000 a collection comes every few hundred messages and takes 1-3 ms.
YOUNG_COLLECTION_EVERY = 10_000


class SastreRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer protocol errors like the app does, and whose
    start-up leaves the cyclic garbage collector only what serving allocates, less often."""

    _thresholds: tuple[int, int, int] | None = None

    @override
    async def setup(self) -> None:
        await super().setup()
        # What start-up built (the bot's model and FAQ index, SQLAlchemy's mappings, the
        # libraries) lives as long as the process. Frozen, a full collection walks only what
        # serving allocated since: unfrozen, each one paused the event loop 140-175 ms under
        # load (bench.sms_inbound), and those pauses were the slowest 1% of the answers.
        gc.collect()
        gc.freeze()
        self._thresholds = gc.get_threshold()
        _, older, oldest = self._thresholds
        gc.set_threshold(YOUNG_COLLECTION_EVERY, older, oldest)

    @override
    async def cleanup(self) -> None:
        try:
            await super().cleanup()
        finally:
            gc.unfreeze()
            if self._thresholds is not None:
                gc.set_threshold(*self._thresholds)
                self._thresholds = None

    @override
    async def _make_server(self) -> web.Server:
        return _Server.replacing(await super()._make_server())


async def _serve(
    app: web.Application,
    sockets: Sequence[socket.socket],
    announce: Callable[[str], None] | None,
) -> None:
    runner = SastreRunner(app, handle_signals=False, access_log=None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def asked_to_stop(name: str) -> None:
        # A second Ctrl+C or SIGTERM while stopping does not cut the stop short: interrupted,
        # the cleanup left the database open and the worker child unreaped, and the process
        # waited forever for the driver's threads. The stop takes seconds (calls in flight).
        if stop.is_set():
            log.warning("%s: already stopping, once the work in flight is settled", name)
        stop.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    for number in signals:
        loop.add_signal_handler(number, asked_to_stop, number.name)
    try:
        await runner.setup()
        try:
            sites = [web.SockSite(runner, sock) for sock in sockets]
            for site in sites:
                await site.start()
            if announce is not None:
                announce(f"listening on {', '.join(site.name for site in sites)}")
            await stop.wait()  # until SIGINT or SIGTERM
        finally:
            await runner.cleanup()  # every cleanup context runs, as with web.run_app
    finally:
        for number in signals:
            loop.remove_signal_handler(number)


def run_app(
    app: web.Application,
    *,
    sock: Sequence[socket.socket],
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve `app` on the bound sockets `sock` until SIGINT or SIGTERM, then shut down
    gracefully, as `web.run_app` does: the app's cleanup contexts all run, whatever signals
    come meanwhile."""
    with asyncio.Runner() as runner, contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
        runner.run(_serve(app, sock, announce))
