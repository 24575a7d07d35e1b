"""The server's own answers, sent before a request reaches the app (an over-long header, bytes
that are not HTTP), are JSON errors that name Sastre and never quote what the client sent.

Raw sockets, because a client library refuses to send such requests. Each server listens on a
socket the test bound to port 0, so there is no port to race for.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from sastre.web.edge import install_headers
from sastre.web.server import YOUNG_COLLECTION_EVERY, SastreRunner

SECRET = b"Sup3rS3cret"  # what a client sent and must not see again


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": "world"})


@pytest.fixture
async def address() -> AsyncIterator[tuple[str, int]]:
    app = web.Application()
    app.router.add_get("/", hello)
    install_headers(app)
    runner = SastreRunner(app)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield sock.getsockname()[:2]
    finally:
        await runner.cleanup()


async def exchange(address: tuple[str, int], request: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """The status line, headers and body the server answers `request` with."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=10)  # the server closes after it
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


async def test_an_over_long_header_is_a_json_400_that_does_not_echo_it(
    address: tuple[str, int],
) -> None:
    long_value = SECRET * (20_000 // len(SECRET))
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + long_value + b"\r\n\r\n"
    status, headers, body = await exchange(address, request)
    assert status.split()[1] == b"400"
    assert headers["content-type"].startswith("application/json")
    assert headers["server"] == "Sastre"
    assert json.loads(body) == {
        "error": "bad request",
        "detail": "a request line or header is too long",
    }
    assert SECRET not in body


async def test_bytes_that_are_not_http_get_a_json_400(address: tuple[str, int]) -> None:
    status, headers, body = await exchange(address, b"\x16\x03\x01" + SECRET + b"\r\n\r\n")
    assert status.split()[1] == b"400"
    assert headers["server"] == "Sastre"
    assert json.loads(body)["error"] == "bad request"
    assert SECRET not in body


async def test_an_ordinary_request_is_answered_by_the_app(address: tuple[str, int]) -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    status, headers, body = await exchange(address, request)
    assert status.split()[1] == b"200"
    assert headers["server"] == "Sastre"
    assert json.loads(body) == {"hello": "world"}


SERVE = textwrap.dedent(
    """
    import socket, sys
    from collections.abc import AsyncIterator
    from aiohttp import web
    from sastre.web.server import run_app

    async def cleanup(app: web.Application) -> AsyncIterator[None]:
        yield
        print("cleaned up", flush=True)

    app = web.Application()
    app.cleanup_ctx.append(cleanup)
    sock = socket.create_server(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    run_app(app, sock=[sock], announce=lambda line: print(line, flush=True))
    print("stopped", flush=True)
    """
)


def test_run_app_serves_until_sigterm_then_runs_every_cleanup_context() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", SERVE], stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        assert process.stdout.readline().startswith("listening on")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert conn.recv(4096).startswith(b"HTTP/1.1 404")  # served: the app has no routes
        process.terminate()
        rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert rest.splitlines() == ["cleaned up", "stopped"]


async def test_serving_collects_young_garbage_less_often_and_gives_the_setting_back() -> None:
    before = gc.get_threshold()
    runner = SastreRunner(web.Application())
    await runner.setup()
    try:
        assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, *before[1:])
    finally:
        await runner.cleanup()
    assert gc.get_threshold() == before
