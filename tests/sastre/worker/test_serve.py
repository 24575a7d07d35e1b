"""`sastre serve` runs the outbox's worker in a process of its own: an SMS webhook's answer
reaches the provider (a local fake of Twilio's REST API) with no other process running, and a
SIGTERM stops the server and its worker. `SASTRE_SERVE_WORKER=0` leaves the worker out."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from aiohttp import ClientSession
from typing_extensions import override

from channels.sms_webhooks import WebhookSignature
from tests.sastre.test_cli import listening_url
from tests.support.fake_twilio import FakeTwilio, Taken

SASTRE = str(Path(sys.executable).with_name("sastre"))
FIXTURE = Path(__file__).parents[2] / "channels" / "fixtures" / "twilio" / "inbound_plain.txt"
PUBLIC = "https://sastre.example.com"
INBOUND = "/webhooks/twilio/sms"
CUSTOMER = "+14155552671"


class Watched(list[Taken]):
    """The fake's list of messages taken, telling when one arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()

    @override
    def append(self, item: Taken) -> None:
        super().append(item)
        self.arrived.set()


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(messages=Watched()) as fake:
        yield fake


def _env(tmp_path: Path, twilio: FakeTwilio, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SASTRE_")}
    env.update(
        SASTRE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        SASTRE_SECRET_KEY="serve-test-secret-0123456789",
        SASTRE_PORT="0",  # the system picks the port as the command binds: no race for it
        SASTRE_PUBLIC_URL=PUBLIC,
        SASTRE_TWILIO_ACCOUNT_SID=twilio.account_sid,
        SASTRE_TWILIO_AUTH_TOKEN=twilio.auth_token,
        SASTRE_TWILIO_FROM="+14155550100",
        SASTRE_TWILIO_API_BASE=twilio.base_url,
        SASTRE_RATE_SMS="0",
        # The outbox worker is then serve's one spawned child, the one these tests look for.
        SASTRE_BOT_READER="loop",
        **extra,
    )
    return env


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their command lines."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # it ended while we looked
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


@contextlib.contextmanager
def _watching(pids: list[int]) -> Iterator[Callable[[], Awaitable[None]]]:
    """Handles on processes that are not ours to wait for (pidfds: no pid reuse can fool them);
    yields a function that returns once every one of them has ended."""
    fds = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # already gone
            fds.append(os.pidfd_open(pid))

    async def ended() -> None:
        loop = asyncio.get_running_loop()
        for fd in fds:
            done = asyncio.Event()
            loop.add_reader(fd, done.set)  # a pidfd is readable once its process has exited
            try:
                await done.wait()
            finally:
                loop.remove_reader(fd)

    try:
        yield ended
    finally:
        for fd in fds:
            os.close(fd)


def _sms(body: str, account_sid: str) -> dict[str, str]:
    form = dict(parse_qsl(FIXTURE.read_text().strip(), keep_blank_values=True))
    sid = "SM" + "5e" * 16
    form.update(Body=body, MessageSid=sid, SmsSid=sid, SmsMessageSid=sid, From=CUSTOMER)
    return form | {"AccountSid": account_sid}


async def _started(
    tmp_path: Path, twilio: FakeTwilio, **extra: str
) -> tuple[asyncio.subprocess.Process, str]:
    """`sastre serve`, running, and the URL its first line says it listens on."""
    process = await asyncio.create_subprocess_exec(
        SASTRE,
        "serve",
        env=_env(tmp_path, twilio, **extra),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    async with asyncio.timeout(60):
        first = (await process.stdout.readline()).decode()
    assert first, "sastre serve stopped while starting"
    return process, listening_url(first)


async def _post_help(url: str, twilio: FakeTwilio) -> None:
    form = _sms("HELP", twilio.account_sid)
    signature = WebhookSignature(twilio.auth_token, PUBLIC).sign(INBOUND, form)
    async with (
        ClientSession() as http,
        http.post(
            f"{url}{INBOUND}",
            data=form,
            headers={"X-Twilio-Signature": signature},
        ) as response,
    ):
        assert response.status == 200, await response.text()


async def _stop(process: asyncio.subprocess.Process) -> bytes:
    process.send_signal(signal.SIGTERM)
    assert process.stdout is not None
    async with asyncio.timeout(60):
        rest = await process.stdout.read()
        assert await process.wait() == 0
    return rest


@pytest.mark.timeout(180)
async def test_serve_sends_a_webhooks_answer_through_its_own_worker_and_stops_both(
    tmp_path: Path, twilio: FakeTwilio
) -> None:
    process, url = await _started(tmp_path, twilio)
    try:
        # The worker, and the helper process the standard library starts beside it.
        children = _children(process.pid)
        assert any("spawn_main" in cmd for cmd in children.values()), children
        helpers = [pid for pid, cmd in children.items() if "multiprocessing" in cmd]
        with _watching(helpers) as ended:
            await _post_help(url, twilio)
            assert isinstance(twilio.messages, Watched)
            async with asyncio.timeout(60):  # a bound, not a figure: usually milliseconds
                await twilio.messages.arrived.wait()
            [answer] = twilio.messages
            assert answer.to == CUSTOMER
            assert answer.status_callback == f"{PUBLIC}/webhooks/twilio/status"
            assert b"Sastre stopped." in await _stop(process)
            async with asyncio.timeout(30):
                await ended()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.timeout(180)
async def test_serve_without_its_worker_sends_nothing(tmp_path: Path, twilio: FakeTwilio) -> None:
    process, url = await _started(tmp_path, twilio, SASTRE_SERVE_WORKER="0")
    try:
        assert not [cmd for cmd in _children(process.pid).values() if "spawn_main" in cmd]
        await _post_help(url, twilio)
        await _stop(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert twilio.messages == []
