"""The providers' local fakes, each in a process of its own, for the outbox benchmark.

The fake Twilio REST API (`tests.support.fake_twilio`) and the aiosmtpd peer
(`tests.support.smtp_peer`) are the ones the tests use; here each runs in a spawned process
(nothing of the benchmark's event loop shared, and its CPU not charged to the worker) on
127.0.0.1 and a port the kernel picks. The parent asks it over a pipe how many messages it has
taken and how much CPU it has used, and stops it when done.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Literal

__all__ = ["ACCOUNT_SID", "AUTH_TOKEN", "Peer", "PeerKind", "peer_process"]

PeerKind = Literal["twilio", "smtp"]
ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "bench-twilio-auth-token-0123456789"


async def _answer(pipe: Connection, accepted: object) -> None:
    """Answer the parent's questions ("count", "stop") with (messages taken, CPU seconds)
    until it says stop."""
    while True:
        question = await asyncio.to_thread(pipe.recv)
        pipe.send((getattr(accepted, "accepted", 0), time.process_time()))
        if question == "stop":
            return


async def _serve(kind: PeerKind, pipe: Connection) -> None:
    if kind == "twilio":
        from tests.support.fake_twilio import FakeTwilio

        async with FakeTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, keep=False) as fake:
            pipe.send(fake.base_url)
            await _answer(pipe, fake)
        return
    from tests.support.smtp_peer import smtp_peer

    async with smtp_peer(keep=False) as peer:
        pipe.send(f"127.0.0.1:{peer.port}")
        await _answer(pipe, peer)


def _main(kind: PeerKind, pipe: Connection) -> None:
    asyncio.run(_serve(kind, pipe))


@dataclass
class Peer:
    """A fake running in its own process: where it listens, and what it has taken."""

    kind: PeerKind
    address: str  # the fake Twilio's base URL, or the SMTP peer's host:port
    _pipe: Connection

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def accepted(self) -> int:
        """The messages the fake has taken so far (called off the event loop, or briefly)."""
        return self.tally()[0]

    def tally(self) -> tuple[int, float]:
        """(messages taken so far, the fake's CPU seconds so far)."""
        self._pipe.send("count")
        count, cpu = self._pipe.recv()
        return int(count), float(cpu)


@contextlib.contextmanager
def peer_process(kind: PeerKind) -> Iterator[Peer]:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_main, args=(kind, theirs), name=f"fake-{kind}", daemon=True)
    process.start()
    theirs.close()
    try:
        if not ours.poll(60):
            raise RuntimeError(f"the {kind} fake did not start")
        yield Peer(kind, ours.recv(), ours)
    finally:
        with contextlib.suppress(OSError, EOFError):
            ours.send("stop")
            ours.recv()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()
