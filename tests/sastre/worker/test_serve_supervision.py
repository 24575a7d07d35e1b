"""Through the command itself: `sastre demo` runs the outbox worker as `sastre serve` does, and
serve's worker, killed, is logged in one line and started again, its sends going on. The
spawned worker logs as the command does, without the Twilio client's HTTP chatter; serve killed
outright takes its worker with it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.sastre.test_cli import listening_url
from tests.sastre.worker.test_serve import (
    CUSTOMER,
    SASTRE,
    Watched,
    _children,
    _env,
    _post_help,
    _stop,
    _watching,
    twilio,
)
from tests.support.fake_twilio import FakeTwilio

__all__ = ["twilio"]  # the fixture, shared with test_serve


@contextlib.asynccontextmanager
async def _running(
    tmp_path: Path, twilio: FakeTwilio, *command: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """The command, running, and the URL its first line names; its log goes to a file. Killed
    at the end if the test has not stopped it."""
    with (tmp_path / "log").open("wb") as log:  # the child keeps its own copy
        process = await asyncio.create_subprocess_exec(
            SASTRE,
            *command,
            env=_env(tmp_path, twilio),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    assert process.stdout is not None
    async with asyncio.timeout(120):
        first = (await process.stdout.readline()).decode()
    try:
        assert first, (
            f"sastre {command[0]} stopped while starting:\n{(tmp_path / 'log').read_text()}"
        )
        yield process, listening_url(first)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _worker_pid(pid: int) -> int:
    [worker] = [child for child, cmd in _children(pid).items() if "spawn_main" in cmd]
    return worker


async def _answered(twilio: FakeTwilio, count: int) -> None:
    """Until the fake has taken `count` messages (a bound, not a figure: usually milliseconds)."""
    assert isinstance(twilio.messages, Watched)
    async with asyncio.timeout(90):
        while len(twilio.messages) < count:
            twilio.messages.arrived.clear()
            await twilio.messages.arrived.wait()


@pytest.mark.timeout(300)
async def test_demo_sends_through_its_own_worker(tmp_path: Path, twilio: FakeTwilio) -> None:
    async with _running(tmp_path, twilio, "demo", "--customers", "3") as (process, url):
        await _post_help(url, twilio)
        await _answered(twilio, 1)
        assert [m.to for m in twilio.messages] == [CUSTOMER]
        await _stop(process)


@pytest.mark.timeout(300)
async def test_serve_starts_a_killed_worker_again_and_says_so_once(
    tmp_path: Path, twilio: FakeTwilio
) -> None:
    async with _running(tmp_path, twilio, "serve") as (process, url):
        killed = _worker_pid(process.pid)
        with _watching([killed]) as ended:
            os.kill(killed, signal.SIGKILL)
            async with asyncio.timeout(30):
                await ended()
        # The reply to this message is sent by the worker started in its place.
        await _post_help(url, twilio)
        await _answered(twilio, 1)
        assert _worker_pid(process.pid) != killed
        await _stop(process)
    log = (tmp_path / "log").read_text()
    [line] = [line for line in log.splitlines() if "SIGKILL" in line]
    assert f"outbox worker (pid {killed}) was killed by SIGKILL" in line
    # The worker logs as the command does (SASTRE_LOG_LEVEL, INFO by default; the first one
    # may have been killed before its first line), without the Twilio client's HTTP debugging.
    assert "INFO sastre.worker.process: outbox worker sending on sms" in log
    assert "Twilio API Request" not in log
    assert "twilio.async_http_client" not in log


@pytest.mark.timeout(300)
async def test_a_killed_serve_takes_its_worker_with_it(tmp_path: Path, twilio: FakeTwilio) -> None:
    async with _running(tmp_path, twilio, "serve") as (process, _):
        worker = _worker_pid(process.pid)
        with _watching([worker]) as ended:
            process.kill()  # SIGKILL: serve cannot tell its worker to stop
            await process.wait()
            async with asyncio.timeout(30):
                await ended()
    log = (tmp_path / "log").read_text()
    assert f"the process that started this worker (pid {process.pid}) is gone: stopping" in log
