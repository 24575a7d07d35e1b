"""The SMTP listener's port is taken with the HTTP one, before anything changes: in use, `sastre
serve` and `sastre demo` say so in one line naming SASTRE_SMTP_LISTEN and leave the database
untouched; free, the listener serves the very socket the command bound."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pytest_aiohttp.plugin import AiohttpClient

from sastre.app import create_app
from sastre.config import Settings
from sastre.email_listener import SMTP_PORT, SMTP_SOCKET
from sastre.listeners import SMTP_LISTENER, bind_listener
from tests.sastre.test_cli import _one_line, sastre, taken_port

__all__ = ["taken_port"]  # the fixture, shared with test_cli


@pytest.mark.parametrize("command", [["serve"], ["demo", "--customers", "3"]])
def test_an_smtp_port_in_use_stops_start_up_in_one_line_and_changes_nothing(
    tmp_path: Path, taken_port: int, command: list[str]
) -> None:
    result = sastre(
        tmp_path, *command, SASTRE_PORT="0", SASTRE_SMTP_LISTEN=f"127.0.0.1:{taken_port}"
    )
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert f"127.0.0.1:{taken_port} is already in use" in line
    assert "SASTRE_SMTP_LISTEN" in line
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "cli.db").exists()  # never migrated, no worker started


async def test_the_listener_serves_the_socket_bound_before_start_up(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    bound = bind_listener("127.0.0.1", 0, SMTP_LISTENER)
    port = bound.getsockname()[1]
    app = create_app(settings.model_copy(update={"smtp_listen": "127.0.0.1:0"}))
    app[SMTP_SOCKET] = bound
    await aiohttp_client(app)
    assert app[SMTP_PORT] == port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(30):
            assert (await reader.readline()).startswith(b"220 ")
            writer.write(b"EHLO test.example\r\n")
            await writer.drain()
            lines = []
            while not (line := await reader.readline()).startswith(b"250 "):
                lines.append(line)
        # The size it takes is the configured one (SASTRE_EMAIL_MAX_BYTES), said in EHLO.
        assert f"250-SIZE {settings.email_max_bytes}\r\n".encode() in lines
    finally:
        writer.close()
        await writer.wait_closed()
